//! A model of the VMBus Kernel Mode Client Library (server side) and of the guest VMBus driver
//! that receives its offers.
//!
//! # What it is
//! - [`HvsimKmcl`]: a `kmcl::KmclProvider` whose table is filled with this module's
//!   `extern "system"` functions, so the driver's real channel code (the `kmcl` wrapper and
//!   `vmbmmio_core::channel`) runs unchanged against the model, down to the C calling convention.
//!   [`HvsimKmclWithoutMmioSpace`] is the same table without the optional
//!   `VmbChannelGetMmioSpace`, like the Windows import table.
//! - [`Sim`]: the test's handle on the simulated host: VMs and their worker processes, the
//!   current process, fault injection, the call log, the rule violations and the counters.
//! - [`SimGuest`]: the simulated guest VMBus driver of one VM (receives offers, reserves MMIO
//!   the way its [`GuestKind`] does, opens, sends packets, closes, reopens). Each KMCL VM is
//!   linked to one shared [`GuestVm`] (`crate::vm`): offers reach the guest and guest actions
//!   work only while that VM runs, and its MMIO comes from that VM's pool.
//! - [`Assumption`]: what the simulated host assumes without a public source (who owns a VM's
//!   VMBus handle), named so the demo can say it.
//! - [`SimHandleCloser`]: the kernel-handle closer (`ZwClose` on Windows) as a counting model.
//!
//! # One simulated host per test thread
//! KMCL's functions take no context argument besides the driver's own handles, so the model's
//! state is thread-local. [`Sim::new`] resets it; everything a test does with the model must
//! happen on that thread (the `Sim` is `!Send` to keep a test on its thread).
//!
//! # Rules
//! Every rule the model enforces cites `shared/reference/kmcl.md` ([`Rule::citation`]); where the
//! reference is uncertain the model takes the stricter reading and says so there. A broken rule
//! is recorded as a [`Violation`] and, for entry points that return an NTSTATUS, answered with
//! the documented error. Tests assert that none happened ([`Sim::assert_clean`]).

pub mod assumptions;
mod entry;
mod flows;
pub mod guest;
mod host;
pub mod log;
pub mod mmio;
mod outgoing;
mod restore;
pub mod rules;
mod sim;
mod vm_link;

use kmcl::server::ParentDevice;
use kmcl::{ContextEvent, KmclApi, KmclProvider};
use vmbmmio_core::channel::{KernelHandleCloser, KernelHandleValue};

pub use assumptions::{Assumption, AssumptionKind};
pub use guest::{
    DXGKRNL_MMIO_ALIGNMENT, GuestError, GuestEvent, MIB, Offer, PacketOutcome, SimGuest,
    WINDOWS_RESERVATION_ALIGNMENT,
};
pub use host::{InitValues, Irql, Lifecycle, SYSTEM_PROCESS, SimChannel};
pub use log::{CallArgs, CallRecord, CallbackKind, LogEntry};
pub use mmio::{ClaimError, ClaimRequest, GpaRange};
pub use rules::{ENABLE_INCOMPLETE_STATUS, Rule, Violation};
pub use sim::{Sim, SimVm};

pub use crate::vm::{GuestKind, GuestVm, Power};

use host::with_host;

/// A channel in the model (index of allocation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChannelId(pub u32);

/// A simulated VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VmId(pub u32);

impl VmId {
    /// The "partition" loopback offers go to: the host itself (kmcl.md §6, UNCERTAIN).
    pub const LOOPBACK: Self = Self(0);
}

/// What `VmbChannelGetMmioSpace` returns on a server channel, which is undocumented
/// (kmcl.md §5, §9 item 4). Tests pick one to prove the driver copes with each.
///
/// "The reservation" is what the guest's VMBus driver reserved: a Windows guest's PnP
/// reservation. A Linux guest's VMBus driver reserves nothing (its channel driver's own claim
/// never reaches VMBus), so there is nothing to report for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerMmioSpace {
    /// The guest's reservation (guest-physical base and size), as a guest caller sees it; zeros
    /// if there is none.
    GuestReservation,
    /// Zeros (as if KMCL had nothing to report).
    Zeros,
    /// A kernel-virtual-looking address (the docs' other reading) with the reservation's size.
    KernelVirtualAddress,
}

/// Resources counted by the model: every creation against its release.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// `VmbChannelAllocate` successes.
    pub channels_allocated: u64,
    /// `VmbChannelCleanup` of Disabled channels.
    pub channels_cleaned_up: u64,
    /// Kernel handles made by `VmbConvertVmbusHandleToKernelHandle`.
    pub kernel_handles_converted: u64,
    /// Kernel handles closed through [`SimHandleCloser`].
    pub kernel_handles_closed: u64,
    /// Packets delivered to ProcessPacket (redeliveries after a defer not counted again).
    pub packets_delivered: u64,
    /// `VmbChannelPacketComplete` calls on delivered packets.
    pub packets_completed: u64,
    /// `VmbChannelPacketFail` calls on delivered packets.
    pub packets_failed: u64,
    /// Channel contexts the `kmcl` wrapper allocated (via `KmclProvider::context_event`).
    pub contexts_allocated: u64,
    /// Channel contexts the wrapper freed.
    pub contexts_freed: u64,
    /// `VmbPacketAllocate` successes.
    pub outgoing_packets_allocated: u64,
    /// Outgoing packets freed (by `VmbPacketFree` or the default completion routine).
    pub outgoing_packets_released: u64,
}

impl Counters {
    /// Whether every creation has been matched by its release.
    pub fn balanced(&self) -> bool {
        self.channels_allocated == self.channels_cleaned_up
            && self.kernel_handles_converted == self.kernel_handles_closed
            && self.packets_delivered == self.packets_completed + self.packets_failed
            && self.contexts_allocated == self.contexts_freed
            && self.outgoing_packets_allocated == self.outgoing_packets_released
    }
}

const FULL_TABLE: KmclApi = KmclApi {
    VmbChannelAllocate: entry::channel_allocate,
    VmbChannelCleanup: entry::channel_cleanup,
    VmbChannelEnable: entry::channel_enable,
    VmbChannelDisable: entry::channel_disable,
    VmbChannelStart: entry::channel_start,
    VmbChannelPause: Some(entry::channel_pause),
    VmbChannelInitSetMaximumPacketSize: entry::init_set_maximum_packet_size,
    VmbChannelInitSetStateChangeCallbacks: entry::init_set_state_change_callbacks,
    VmbChannelInitSetProcessPacketCallbacks: entry::init_set_process_packet_callbacks,
    VmbChannelInitSetFriendlyName: entry::init_set_friendly_name,
    VmbChannelInitSetFlags: Some(entry::init_set_flags),
    VmbServerChannelInitSetFlags: entry::server_init_set_flags,
    VmbServerChannelInitSetMmioMegabytes: entry::server_init_set_mmio_megabytes,
    VmbServerChannelInitSetTargetInterfaceId: entry::server_init_set_target_interface_id,
    VmbServerChannelInitSetVmbusHandle: entry::server_init_set_vmbus_handle,
    VmbConvertVmbusHandleToKernelHandle: entry::convert_vmbus_handle,
    VmbChannelSetPointer: entry::channel_set_pointer,
    VmbChannelGetPointer: entry::channel_get_pointer,
    VmbChannelSetIncomingProcessingAtPassive: entry::channel_set_incoming_processing_at_passive,
    VmbChannelPacketComplete: entry::channel_packet_complete,
    VmbChannelPacketDeferToPassive: Some(entry::channel_packet_defer_to_passive),
    VmbChannelPacketFail: Some(entry::channel_packet_fail),
    VmbPacketAllocate: Some(outgoing::packet_allocate),
    VmbPacketFree: Some(outgoing::packet_free),
    VmbPacketSetCompletionRoutine: Some(outgoing::packet_set_completion_routine),
    VmbPacketSend: Some(outgoing::packet_send),
    VmbChannelGetMmioSpace: Some(entry::channel_get_mmio_space),
};

/// The model's table: every entry filled.
pub static HVSIM_API: KmclApi = FULL_TABLE;

/// The model's table without `VmbChannelGetMmioSpace` (as on the Windows import path).
pub static HVSIM_API_WITHOUT_MMIO_SPACE: KmclApi = KmclApi {
    VmbChannelGetMmioSpace: None,
    ..FULL_TABLE
};

fn count_context(event: ContextEvent) {
    with_host(|h| match event {
        ContextEvent::Allocated => h.counters.contexts_allocated += 1,
        ContextEvent::Freed => h.counters.contexts_freed += 1,
    });
}

/// KMCL from the model, every entry present.
pub struct HvsimKmcl;

impl KmclProvider for HvsimKmcl {
    fn api() -> &'static KmclApi {
        &HVSIM_API
    }

    fn context_event(event: ContextEvent) {
        count_context(event);
    }
}

/// KMCL from the model without the optional `VmbChannelGetMmioSpace`.
pub struct HvsimKmclWithoutMmioSpace;

impl KmclProvider for HvsimKmclWithoutMmioSpace {
    fn api() -> &'static KmclApi {
        &HVSIM_API_WITHOUT_MMIO_SPACE
    }

    fn context_event(event: ContextEvent) {
        count_context(event);
    }
}

/// The kernel-handle closer (`ZwClose`) as a model: counts closes and records violations for
/// unknown handles, double closes, and closes before the bound channel's Cleanup
/// (kmcl.md §4 "Teardown", stricter reading).
pub struct SimHandleCloser;

impl KernelHandleCloser for SimHandleCloser {
    /// The model records the close (and flags a double or early close as a violation).
    unsafe fn close(handle: KernelHandleValue) {
        with_host(|h| h.close_kernel_handle(handle.get()));
    }
}

/// The fake parent device object the model accepts in `VmbChannelAllocate`.
pub fn parent_device() -> ParentDevice {
    // SAFETY: the model never dereferences the parent device; any non-NULL value will do, and
    // this one is non-NULL.
    let device = unsafe { ParentDevice::from_raw(std::ptr::without_provenance_mut(0xD0D0_0000)) };
    device.unwrap_or_else(|| unreachable!("the value is non-NULL"))
}

#[cfg(test)]
mod held_tests;
#[cfg(test)]
mod tests;
