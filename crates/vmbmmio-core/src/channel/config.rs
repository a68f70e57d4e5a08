//! What one channel is offered with, and the driver's limits on it.

use kmcl::raw::{
    GUID, VMBUS_SERVER_CHANNEL_INIT_FLAG_ENUMERATE_DEVICE_INTERFACE,
    VMBUS_SERVER_CHANNEL_INIT_FLAG_FORCE_NEW_CHANNEL,
    VMBUS_SERVER_CHANNEL_INIT_FLAG_LOOPBACK_OFFER,
};

use super::error::ConfigError;
use super::handle::{KernelHandleCloser, KernelVmbusHandle};

/// Largest `VmbChannelInitSetMaximumPacketSize` the driver asks for: 128 KiB, the largest value
/// observed in a host VSP (dxgkrnl, kmcl.md §2.1). It partly sizes the ring buffers.
pub const MAX_PACKET_SIZE: u32 = 0x2_0000;
/// A sensible default for the control protocol's small messages.
pub const DEFAULT_PACKET_SIZE: u32 = 0x1000;
/// Longest friendly name, in UTF-16 units ("keep it short", kmcl.md §2.1).
pub const MAX_FRIENDLY_NAME_UNITS: usize = 64;

/// Which partition the offer goes to.
pub enum ChannelTarget<C: KernelHandleCloser> {
    /// The VM whose VMBus the kernel handle names (kmcl.md §6). The handle was converted in the
    /// VM worker process's context (`convert_vmbus_handle`); the channel owns it from here on
    /// and closes it after Cleanup.
    VmbusHandle(KernelVmbusHandle<C>),
    /// **Host-local testing only.** No VMBus handle; the offer is made with
    /// `VMBUS_SERVER_CHANNEL_INIT_FLAG_LOOPBACK_OFFER`, which the header does not describe:
    /// kmcl.md §6 infers from dxgkrnl's no-handle path that it offers the channel back to the
    /// host itself. UNCERTAIN; never use it to serve a VM.
    Loopback,
}

impl<C: KernelHandleCloser> core::fmt::Debug for ChannelTarget<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::VmbusHandle(handle) => f.debug_tuple("VmbusHandle").field(handle).finish(),
            Self::Loopback => f.write_str("Loopback"),
        }
    }
}

impl<C: KernelHandleCloser> ChannelTarget<C> {
    /// The `VmbServerChannelInitSetFlags` value for this target. IRQL: any.
    ///
    /// - `ENUMERATE_DEVICE_INTERFACE` (0x2), as dxgkrnl sets it (kmcl.md §6);
    /// - `FORCE_NEW_CHANNEL` (0x8): after a VM save/restore KMCL re-offers a new channel and
    ///   abandons the old one (kmcl.md §7 "What the flags mean"; the WDK header
    ///   `VmbusKernelModeClientLibApi.h`). The driver registers no save/restore packet
    ///   callbacks and saves no channel state, so a restored guest must get a fresh offer,
    ///   never a channel whose state nobody saved;
    /// - plus `LOOPBACK_OFFER` (0x1) for the loopback target (dxgkrnl's no-handle path).
    pub const fn server_flags(&self) -> u32 {
        const FLAGS: u32 = VMBUS_SERVER_CHANNEL_INIT_FLAG_ENUMERATE_DEVICE_INTERFACE
            | VMBUS_SERVER_CHANNEL_INIT_FLAG_FORCE_NEW_CHANNEL;
        match self {
            Self::VmbusHandle(_) => FLAGS,
            Self::Loopback => VMBUS_SERVER_CHANNEL_INIT_FLAG_LOOPBACK_OFFER | FLAGS,
        }
    }

    /// Whether this is the loopback (test-only) target.
    pub const fn is_loopback(&self) -> bool {
        matches!(self, Self::Loopback)
    }
}

/// Configuration of one channel (one target VM).
pub struct ChannelConfig<'a, C: KernelHandleCloser> {
    /// Interface type GUID: names the protocol; the guest matches its driver on it.
    pub interface_type: GUID,
    /// Interface instance GUID: names this channel among channels of the same type.
    pub interface_instance: GUID,
    /// Friendly name for debugging and performance counters.
    pub friendly_name: &'a str,
    /// `VmbChannelInitSetMaximumPacketSize`, 1..=[`MAX_PACKET_SIZE`].
    pub max_packet_size: u32,
    /// Where the offer goes.
    pub target: ChannelTarget<C>,
}

impl<C: KernelHandleCloser> core::fmt::Debug for ChannelConfig<'_, C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ChannelConfig")
            .field("interface_type", &self.interface_type)
            .field("interface_instance", &self.interface_instance)
            .field("friendly_name", &self.friendly_name)
            .field("max_packet_size", &self.max_packet_size)
            .field("target", &self.target)
            .finish()
    }
}

impl<C: KernelHandleCloser> ChannelConfig<'_, C> {
    /// Checks the driver's limits. IRQL: any.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.interface_type == GUID::default() {
            return Err(ConfigError::NilInterfaceType);
        }
        if self.friendly_name.is_empty() {
            return Err(ConfigError::EmptyName);
        }
        if self.friendly_name.encode_utf16().count() > MAX_FRIENDLY_NAME_UNITS {
            return Err(ConfigError::NameTooLong);
        }
        if !(1..=MAX_PACKET_SIZE).contains(&self.max_packet_size) {
            return Err(ConfigError::PacketSizeOutOfRange {
                size: self.max_packet_size,
            });
        }
        Ok(())
    }
}
