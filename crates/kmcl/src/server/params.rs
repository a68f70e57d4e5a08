//! What a server channel is created with.

use core::ptr::NonNull;

use crate::raw::{DEVICE_OBJECT, GUID, HANDLE, PDEVICE_OBJECT};

/// The `DEVICE_OBJECT` passed to `VmbChannelAllocate` as the channel's parent (kmcl.md §2.1;
/// host dxgkrnl passes its own device object).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParentDevice(NonNull<DEVICE_OBJECT>);

// SAFETY: a DEVICE_OBJECT pointer is a kernel address valid on every thread; this type never
// dereferences it, it only hands it to VmbChannelAllocate.
unsafe impl Send for ParentDevice {}
// SAFETY: as above; the type is an immutable pointer value.
unsafe impl Sync for ParentDevice {}

impl ParentDevice {
    /// Wraps a device object pointer; `None` if it is NULL.
    ///
    /// # Safety
    /// `device` points to a `DEVICE_OBJECT` that stays valid until every channel allocated with
    /// it has been cleaned up (on Windows: the driver's WDM device object; in the simulator: the
    /// token the model hands out, which it never dereferences).
    pub unsafe fn from_raw(device: PDEVICE_OBJECT) -> Option<Self> {
        NonNull::new(device).map(Self)
    }

    /// The raw pointer.
    pub fn as_ptr(self) -> PDEVICE_OBJECT {
        self.0.as_ptr()
    }
}

/// Everything the Init calls of one server channel need (kmcl.md §4 "Init order").
#[derive(Clone, Copy, Debug)]
pub struct ServerChannelParams<'a> {
    /// Parent device for `VmbChannelAllocate`.
    pub parent: ParentDevice,
    /// Kernel VMBus handle selecting the target partition, for
    /// `VmbServerChannelInitSetVmbusHandle` (kmcl.md §6). `None` skips the call (loopback offers,
    /// as dxgkrnl's no-handle path does). The caller owns the handle and must close it only
    /// after the channel is cleaned up (kmcl.md §4 "Teardown").
    pub vmbus_handle: Option<HANDLE>,
    /// Call `VmbChannelSetIncomingProcessingAtPassive(TRUE)` right after Allocate, so
    /// `process_packet` runs at PASSIVE_LEVEL.
    pub incoming_at_passive: bool,
    /// `VmbChannelInitSetMaximumPacketSize` (must be > 0, kmcl.md §2.1).
    pub maximum_packet_size: u32,
    /// Interface type GUID (`VmbServerChannelInitSetTargetInterfaceId`), passed by value.
    pub interface_type: GUID,
    /// Interface instance GUID, passed by value.
    pub interface_instance: GUID,
    /// `VmbServerChannelInitSetFlags` (`VMBUS_SERVER_CHANNEL_INIT_FLAGS`).
    pub server_flags: u32,
    /// `VmbChannelInitSetFriendlyName`, copied to UTF-16 and kept alive with the channel.
    pub friendly_name: &'a str,
    /// `VmbServerChannelInitSetMmioMegabytes` `MmioMegabytes` (> 0, kmcl.md §9 item 5).
    pub mmio_megabytes: u16,
    /// `VmbServerChannelInitSetMmioMegabytes` `MmioMegabytesOptional`.
    pub mmio_megabytes_optional: u16,
}
