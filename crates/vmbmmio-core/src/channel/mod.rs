//! The driver's VMBus server channel: one per target VM.
//!
//! A [`VmChannel`] owns, in this order of release:
//! 1. the KMCL server channel (`kmcl::server::ServerChannel`), created with the MMIO reservation
//!    of its [`MmioPlan`] (`VmbServerChannelInitSetMmioMegabytes`), incoming processing at
//!    passive, and the Init order kmcl.md §4 records for host VSPs;
//! 2. the kernel VMBus handle that selects the VM, closed only after the channel's Cleanup
//!    (kmcl.md §4 "Teardown": closing it earlier is UNCERTAIN).
//!
//! Its state lives in [`ChannelShared`], the callback handler, as atomics (see [`state`] for
//! the diagram). A session's channel routes its guest's packets and its state changes to the
//! session's [`GuestPort`] (the guest control protocol, [`crate::guest`]); a channel offered
//! without one completes every packet with [`UNSUPPORTED_PACKET_COMPLETION`].
//!
//! # IRQL
//! | Entry point | IRQL | Context |
//! |---|---|---|
//! | [`convert_vmbus_handle`] | PASSIVE_LEVEL | the VM worker process (`EvtIoInCallerContext`) |
//! | [`VmChannel::offer`] | PASSIVE_LEVEL | any thread |
//! | dropping / [`VmChannel::close`] | PASSIVE_LEVEL | any thread, never inside a KMCL callback (impossible by types) |
//! | state getters | any | any |
//! | Opened, Started, PostStarted, Suspend, Closed callbacks | PASSIVE_LEVEL | KMCL's thread |
//! | ProcessPacket callback | PASSIVE_LEVEL (incoming at passive) | KMCL's thread |

mod config;
mod error;
mod handle;
mod shared;
pub mod state;

use alloc::boxed::Box;

use kmcl::KmclProvider;
use kmcl::server::{ParentDevice, ServerChannel, ServerChannelParams};

pub use config::{
    ChannelConfig, ChannelTarget, DEFAULT_PACKET_SIZE, MAX_FRIENDLY_NAME_UNITS, MAX_PACKET_SIZE,
};
pub use error::{ChannelError, ConfigError};
pub use handle::{
    KernelHandleCloser, KernelHandleValue, KernelVmbusHandle, UserVmbusHandle, convert_vmbus_handle,
};
pub use shared::{ChannelShared, ChannelStats, GuestPort, UNSUPPORTED_PACKET_COMPLETION};
pub use state::{ChannelState, GuestMmioWindow, MAX_GUEST_PHYSICAL_ADDRESS, Phase};

use crate::mmio_plan::MmioPlan;

/// One offered VMBus server channel and everything it owns.
///
/// Generic over where KMCL comes from (`P`: the `vmbkmclr.sys` imports on Windows, hvsim in
/// tests) and how kernel handles are closed (`C`: `ZwClose` on Windows, hvsim in tests).
/// Neither `Send` nor `Sync` (it owns a `ServerChannel`, see there): it lives in the control
/// device's state, which the glue owns and reaches only under its wait lock.
pub struct VmChannel<P: KmclProvider, C: KernelHandleCloser> {
    /// `Some` until teardown; dropped before `vmbus_handle`.
    server: Option<ServerChannel<P, ChannelShared>>,
    /// `None` for loopback; closed after `server` is cleaned up.
    vmbus_handle: Option<KernelVmbusHandle<C>>,
    plan: MmioPlan,
    loopback: bool,
}

impl<P: KmclProvider, C: KernelHandleCloser> VmChannel<P, C> {
    /// Validates `config`, then allocates, initialises, enables and starts the channel, with
    /// the MMIO reservation request `plan` carries (`MmioMegabytes` 1, `MmioMegabytesOptional`
    /// 0 for every plan: the shared memory lives in the paired device's BAR, see
    /// `mmio_plan`).
    ///
    /// On failure nothing is left behind: KMCL's channel is cleaned up, then the VMBus handle
    /// in `config.target` is closed.
    ///
    /// IRQL: PASSIVE_LEVEL.
    pub fn offer(
        parent: ParentDevice,
        config: ChannelConfig<'_, C>,
        plan: MmioPlan,
    ) -> Result<Self, ChannelError> {
        Self::offer_with_guest(parent, config, plan, None)
    }

    /// [`VmChannel::offer`], with the session's guest port: the channel's packets and state
    /// changes go there (`None`: every packet is refused with
    /// [`UNSUPPORTED_PACKET_COMPLETION`]).
    ///
    /// IRQL: PASSIVE_LEVEL.
    pub fn offer_with_guest(
        parent: ParentDevice,
        config: ChannelConfig<'_, C>,
        plan: MmioPlan,
        guest: Option<Box<dyn GuestPort>>,
    ) -> Result<Self, ChannelError> {
        config.validate()?;
        let server_flags = config.target.server_flags();
        let loopback = config.target.is_loopback();
        let vmbus_handle = match config.target {
            ChannelTarget::VmbusHandle(handle) => Some(handle),
            ChannelTarget::Loopback => None,
        };
        let params = ServerChannelParams {
            parent,
            vmbus_handle: vmbus_handle.as_ref().map(KernelVmbusHandle::as_handle),
            incoming_at_passive: true,
            maximum_packet_size: config.max_packet_size,
            interface_type: config.interface_type,
            interface_instance: config.interface_instance,
            server_flags,
            friendly_name: config.friendly_name,
            mmio_megabytes: plan.mmio_megabytes(),
            mmio_megabytes_optional: plan.mmio_megabytes_optional(),
        };
        match ServerChannel::create(params, ChannelShared::with_guest(guest)) {
            Ok(server) => Ok(Self {
                server: Some(server),
                vmbus_handle,
                plan,
                loopback,
            }),
            Err(error) => {
                // `create` has already cleaned up the channel; only now close the handle.
                drop(vmbus_handle);
                Err(ChannelError::Setup(error))
            }
        }
    }

    fn shared(&self) -> Option<&ChannelShared> {
        self.server.as_ref().map(ServerChannel::handler)
    }

    /// The channel's state. IRQL: any.
    pub fn state(&self) -> ChannelState {
        self.shared()
            .map_or(ChannelState::Closed, ChannelShared::state)
    }

    /// The guest MMIO range KMCL reported at Started (after Opened), while open; report only (kmcl.md §5: its
    /// meaning on a server channel is UNCERTAIN). IRQL: any.
    pub fn guest_mmio_window(&self) -> Option<GuestMmioWindow> {
        self.shared().and_then(ChannelShared::guest_mmio_window)
    }

    /// The channel's counters. IRQL: any.
    pub fn stats(&self) -> ChannelStats {
        self.shared().map(ChannelShared::stats).unwrap_or_default()
    }

    /// The MMIO plan the offer was made with.
    pub fn plan(&self) -> &MmioPlan {
        &self.plan
    }

    /// Whether this is a loopback (host-local test) channel.
    pub fn is_loopback(&self) -> bool {
        self.loopback
    }

    /// Tears the channel down: Disable (blocks until Suspend and Closed ran), Cleanup, then
    /// close the VMBus handle. Same as dropping it. IRQL: PASSIVE_LEVEL.
    pub fn close(self) {
        drop(self);
    }
}

impl<P: KmclProvider, C: KernelHandleCloser> Drop for VmChannel<P, C> {
    fn drop(&mut self) {
        // Disable + Cleanup + free the context first…
        drop(self.server.take());
        // …and only then close the handle the channel was bound to (kmcl.md §4 "Teardown").
        drop(self.vmbus_handle.take());
    }
}
