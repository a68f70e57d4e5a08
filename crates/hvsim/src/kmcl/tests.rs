//! The model's own rules, provoked directly through the raw table (the driver never breaks
//! them, so the driver-level tests in `tests/channel*.rs` cannot show that they are enforced).

use std::cell::Cell;
use std::ffi::c_void;
use std::ptr;

use kmcl::raw::*;
use kmcl::server::{
    ChannelHandler, ChannelRef, IncomingPacket, ServerChannel, ServerChannelParams,
};
use kmcl::{KmclFunction as F, KmclProvider};

use super::*;

const API: &KmclApi = &HVSIM_API;

/// A handler that does only what each test asks.
#[derive(Default)]
struct Plain {
    leak_packets: bool,
}

impl ChannelHandler for Plain {
    fn process_packet(&self, _: &ChannelRef<'_>, packet: IncomingPacket<'_>) {
        if self.leak_packets {
            std::mem::forget(packet);
        }
    }
}

fn loopback_params(sim: &Sim) -> ServerChannelParams<'static> {
    ServerChannelParams {
        parent: sim.parent_device(),
        vmbus_handle: None,
        incoming_at_passive: false,
        maximum_packet_size: 128,
        interface_type: GUID::from_u128(7),
        interface_instance: GUID::from_u128(8),
        server_flags: VMBUS_SERVER_CHANNEL_INIT_FLAG_LOOPBACK_OFFER,
        friendly_name: "model",
        mmio_megabytes: 2,
        mmio_megabytes_optional: 1,
    }
}

fn open_loopback(sim: &Sim, handler: Plain) -> (ServerChannel<HvsimKmcl, Plain>, ChannelId) {
    let channel = ServerChannel::<HvsimKmcl, Plain>::create(loopback_params(sim), handler).unwrap();
    let guest = sim.loopback_guest();
    let id = guest.only_offer().unwrap().channel;
    guest.open(id).unwrap();
    (channel, id)
}

fn rules(sim: &Sim) -> Vec<Rule> {
    sim.take_violations().into_iter().map(|v| v.rule).collect()
}

/// Allocates a raw channel (no wrapper).
fn raw_channel() -> VMBCHANNEL {
    let mut channel: VMBCHANNEL = ptr::null_mut();
    let parent = parent_device().as_ptr();
    // SAFETY: valid out-pointer; the model accepts its own parent token.
    let status = unsafe { (API.VmbChannelAllocate)(parent, TRUE, &raw mut channel) };
    assert_eq!(status, STATUS_SUCCESS);
    channel
}

/// One-call wrappers of the raw table for a live channel the test owns (each call is made
/// outside callbacks, at PASSIVE_LEVEL, with valid arguments unless the test says otherwise).
mod call {
    use super::*;

    pub(super) fn packet_callbacks(raw: VMBCHANNEL) -> NTSTATUS {
        // SAFETY: a live channel; `raw_process` matches PFN_VMB_CHANNEL_PROCESS_PACKET.
        unsafe { (API.VmbChannelInitSetProcessPacketCallbacks)(raw, Some(raw_process), None) }
    }
    pub(super) fn server_flags(raw: VMBCHANNEL, flags: u32) -> NTSTATUS {
        // SAFETY: a live channel.
        unsafe { (API.VmbServerChannelInitSetFlags)(raw, flags) }
    }
    pub(super) fn mmio(raw: VMBCHANNEL, megabytes: u16, optional: u16) -> NTSTATUS {
        // SAFETY: a live channel.
        unsafe { (API.VmbServerChannelInitSetMmioMegabytes)(raw, megabytes, optional) }
    }
    pub(super) fn enable(raw: VMBCHANNEL) -> NTSTATUS {
        // SAFETY: a live channel.
        unsafe { (API.VmbChannelEnable)(raw) }
    }
    pub(super) fn start(raw: VMBCHANNEL) {
        // SAFETY: a live channel.
        unsafe { (API.VmbChannelStart)(raw) }
    }
    pub(super) fn disable(raw: VMBCHANNEL) {
        // SAFETY: a live channel.
        unsafe { (API.VmbChannelDisable)(raw) }
    }
    pub(super) fn cleanup(raw: VMBCHANNEL) {
        // SAFETY: a channel the test releases once (or, on purpose, wrongly).
        unsafe { (API.VmbChannelCleanup)(raw) }
    }
}

#[test]
fn init_calls_need_a_disabled_channel_and_valid_arguments() {
    let sim = Sim::new();
    let (channel, _) = open_loopback(&sim, Plain::default());
    let raw = channel.channel_ref().raw();
    // SAFETY: a live channel; the call is wrong on purpose (after Enable).
    let status = unsafe { (API.VmbChannelInitSetMaximumPacketSize)(raw, 64) };
    assert_eq!(status, STATUS_INVALID_PARAMETER_1);
    assert_eq!(rules(&sim), [Rule::InitWhileNotDisabled]);
    drop(channel);
    sim.assert_clean();

    let raw = raw_channel();
    // SAFETY: a live, Disabled channel; wrong arguments on purpose.
    unsafe {
        assert_eq!(
            (API.VmbChannelInitSetMaximumPacketSize)(raw, 0),
            STATUS_INVALID_PARAMETER_2
        );
    }
    // SAFETY: as above.
    let status = unsafe { (API.VmbServerChannelInitSetFlags)(raw, 0x20) };
    assert_eq!(status, STATUS_INVALID_PARAMETER_2);
    let set_flags = API.VmbChannelInitSetFlags.unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { set_flags(raw, 0x2) }, STATUS_INVALID_PARAMETER_2);
    let mut table = VMB_CHANNEL_STATE_CHANGE_CALLBACKS_INIT();
    table.Version = 2;
    // SAFETY: as above; the table is a valid local.
    let status = unsafe { (API.VmbChannelInitSetStateChangeCallbacks)(raw, &raw mut table) };
    assert_eq!(status, STATUS_INVALID_PARAMETER_2);
    // SAFETY: as above.
    let status = unsafe { (API.VmbServerChannelInitSetMmioMegabytes)(raw, 0, 0) };
    assert_eq!(status, STATUS_INVALID_PARAMETER);
    assert_eq!(
        rules(&sim),
        [
            Rule::InvalidInitArgument,
            Rule::InvalidFlags,
            Rule::InvalidFlags,
            Rule::InvalidInitArgument,
            Rule::MmioMegabytesZero
        ]
    );
    // Without a handle or the loopback flag there is no partition to offer to (inferred).
    assert_eq!(call::enable(raw), STATUS_INVALID_DEVICE_STATE);
    assert_eq!(rules(&sim), [Rule::NoPartitionTarget]);
    call::cleanup(raw);
    call::start(raw); // deliberate use after Cleanup
    assert_eq!(rules(&sim), [Rule::UnknownChannel]);
    sim.assert_clean();
}

#[test]
fn cleanup_of_an_enabled_channel_is_refused() {
    let sim = Sim::new();
    let (channel, _) = open_loopback(&sim, Plain::default());
    let raw = channel.channel_ref().raw();
    // SAFETY: deliberately wrong: Cleanup before Disable.
    unsafe { (API.VmbChannelCleanup)(raw) };
    assert_eq!(rules(&sim), [Rule::CleanupWhileEnabled]);
    drop(channel); // the proper teardown still works
    sim.assert_clean();
}

#[test]
fn mmio_space_is_valid_only_while_open() {
    let sim = Sim::new();
    let channel =
        ServerChannel::<HvsimKmcl, Plain>::create(loopback_params(&sim), Plain::default()).unwrap();
    assert_eq!(
        channel.get_mmio_space(),
        Some(kmcl::server::MmioSpace {
            address: 0,
            size: 0
        })
    );
    assert_eq!(rules(&sim), [Rule::MmioSpaceBeforeOpened]);
    let guest = sim.loopback_guest();
    let id = guest.only_offer().unwrap().channel;
    guest.open(id).unwrap();
    let space = channel.get_mmio_space().unwrap();
    let reservation = guest.reservation(id).unwrap();
    assert_eq!((space.address, space.size), (reservation.base, 3 * MIB));
    drop(channel);
    sim.assert_clean();
}

#[test]
fn a_leaked_packet_is_caught_at_suspend_and_cleanup() {
    let sim = Sim::new();
    let (channel, id) = open_loopback(&sim, Plain { leak_packets: true });
    let outcome = sim.loopback_guest().send(id, b"never completed").unwrap();
    assert!(matches!(outcome, PacketOutcome::Pending(_)));
    drop(channel);
    assert_eq!(
        rules(&sim),
        [
            Rule::PacketsOutstandingAtSuspend,
            Rule::PacketsOutstandingAtCleanup
        ]
    );
    assert!(!sim.counters().balanced());
}

#[test]
fn closing_the_vmbus_handle_before_cleanup_is_flagged() {
    let sim = Sim::new();
    let vm = sim.add_vm(GuestConfig::default());
    let mut kernel: HANDLE = ptr::null_mut();
    sim.set_current_process(vm.worker);
    // SAFETY: valid out-pointer; right process.
    let status = unsafe {
        (API.VmbConvertVmbusHandleToKernelHandle)(
            ptr::without_provenance_mut(vm.user_handle as usize),
            &raw mut kernel,
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    sim.set_current_process(SYSTEM_PROCESS);
    let mut params = loopback_params(&sim);
    params.vmbus_handle = Some(kernel);
    params.server_flags = VMBUS_SERVER_CHANNEL_INIT_FLAG_ENUMERATE_DEVICE_INTERFACE;
    let channel = ServerChannel::<HvsimKmcl, Plain>::create(params, Plain::default()).unwrap();
    assert_eq!(sim.guest(vm.id).offers().len(), 1);
    sim.close_kernel_handle(kernel.addr());
    assert_eq!(rules(&sim), [Rule::HandleClosedBeforeCleanup]);
    sim.close_kernel_handle(kernel.addr());
    assert_eq!(rules(&sim), [Rule::HandleClosedTwice]);
    drop(channel);
    sim.assert_clean();
}

#[test]
fn fault_injection_fails_the_nth_call_without_side_effects() {
    let sim = Sim::new();
    sim.fail_nth(F::VmbChannelEnable, 2, STATUS_INSUFFICIENT_RESOURCES);
    let first =
        ServerChannel::<HvsimKmcl, Plain>::create(loopback_params(&sim), Plain::default()).unwrap();
    let second = ServerChannel::<HvsimKmcl, Plain>::create(loopback_params(&sim), Plain::default());
    assert!(second.is_err());
    assert_eq!(
        sim.loopback_guest().offers().len(),
        1,
        "the failed Enable offered nothing"
    );
    let enable = sim
        .calls()
        .into_iter()
        .filter(|c| c.function == F::VmbChannelEnable)
        .nth(1)
        .unwrap();
    assert_eq!(enable.status, Some(STATUS_INSUFFICIENT_RESOURCES));
    drop(first);
    sim.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// Raw ProcessPacket callbacks, for what the wrapper makes impossible.

thread_local! {
    static MODE: Cell<u8> = const { Cell::new(0) };
    static DELIVERIES: Cell<u32> = const { Cell::new(0) };
    static PENDING: Cell<usize> = const { Cell::new(0) };
}
const COMPLETE_TWICE: u8 = 1;
const DEFER_ONCE: u8 = 2;
const FAIL: u8 = 3;
const ALLOCATE_AT_DISPATCH: u8 = 4;
const LEAVE_PENDING: u8 = 5;

unsafe extern "system" fn raw_process(
    _channel: VMBCHANNEL,
    packet: VMBPACKETCOMPLETION,
    _buffer: *mut c_void,
    _length: u32,
    _flags: u32,
) {
    let delivery = DELIVERIES.get() + 1;
    DELIVERIES.set(delivery);
    match MODE.get() {
        COMPLETE_TWICE => {
            // SAFETY: a delivered packet; the second call is wrong on purpose.
            unsafe { (API.VmbChannelPacketComplete)(packet, ptr::null_mut(), 0) };
            // SAFETY: as above.
            unsafe { (API.VmbChannelPacketComplete)(packet, ptr::null_mut(), 0) };
        }
        DEFER_ONCE if delivery == 1 => {
            // SAFETY: inline from ProcessPacket, as required.
            unsafe { API.VmbChannelPacketDeferToPassive.unwrap()(packet) };
        }
        LEAVE_PENDING => PENDING.set(packet.expose_provenance()),
        FAIL => {
            // SAFETY: a delivered packet.
            unsafe { API.VmbChannelPacketFail.unwrap()(packet) };
        }
        ALLOCATE_AT_DISPATCH => {
            let mut channel: VMBCHANNEL = ptr::null_mut();
            // SAFETY: wrong on purpose: a PASSIVE_LEVEL call at DISPATCH_LEVEL.
            let status = unsafe {
                (API.VmbChannelAllocate)(parent_device().as_ptr(), TRUE, &raw mut channel)
            };
            assert_eq!(status, STATUS_INVALID_DEVICE_STATE);
            // SAFETY: a delivered packet.
            unsafe { (API.VmbChannelPacketComplete)(packet, ptr::null_mut(), 0) };
        }
        _ => {
            // SAFETY: a delivered packet, completed once with 2 readable bytes.
            unsafe { (API.VmbChannelPacketComplete)(packet, b"ok".as_ptr().cast_mut().cast(), 2) };
        }
    }
}

/// A raw, enabled, started loopback channel with `raw_process`, opened by the guest.
fn raw_running_channel(sim: &Sim, mode: u8) -> (VMBCHANNEL, ChannelId) {
    MODE.set(mode);
    DELIVERIES.set(0);
    let raw = raw_channel();
    assert_eq!(call::packet_callbacks(raw), STATUS_SUCCESS);
    assert_eq!(
        call::server_flags(raw, VMBUS_SERVER_CHANNEL_INIT_FLAG_LOOPBACK_OFFER),
        STATUS_SUCCESS
    );
    assert_eq!(call::mmio(raw, 1, 0), STATUS_SUCCESS);
    assert_eq!(call::enable(raw), STATUS_SUCCESS);
    call::start(raw);
    let guest = sim.loopback_guest();
    let id = guest.only_offer().unwrap().channel;
    guest.open(id).unwrap();
    (raw, id)
}

fn raw_teardown(raw: VMBCHANNEL) {
    call::disable(raw);
    call::cleanup(raw);
}

#[test]
fn a_packet_completed_twice_is_caught() {
    let sim = Sim::new();
    let (raw, id) = raw_running_channel(&sim, COMPLETE_TWICE);
    sim.loopback_guest().send(id, b"x").unwrap();
    assert_eq!(rules(&sim), [Rule::PacketCompletedTwice]);
    raw_teardown(raw);
    sim.assert_clean();
}

#[test]
fn a_deferred_packet_is_redelivered_at_passive() {
    let sim = Sim::new();
    let (raw, id) = raw_running_channel(&sim, DEFER_ONCE);
    let outcome = sim.loopback_guest().send(id, b"x").unwrap();
    assert_eq!(outcome, PacketOutcome::Completed(b"ok".to_vec()));
    assert_eq!(DELIVERIES.get(), 2);
    raw_teardown(raw);
    sim.assert_clean();
}

#[test]
fn a_packet_may_be_completed_later_but_deferred_only_inline() {
    let sim = Sim::new();
    let (raw, id) = raw_running_channel(&sim, LEAVE_PENDING);
    let outcome = sim.loopback_guest().send(id, b"x").unwrap();
    let PacketOutcome::Pending(token) = outcome else {
        panic!("{outcome:?}")
    };
    let packet: VMBPACKETCOMPLETION = ptr::with_exposed_provenance_mut(PENDING.get());
    // SAFETY: wrong on purpose: not inline from ProcessPacket.
    unsafe { API.VmbChannelPacketDeferToPassive.unwrap()(packet) };
    assert_eq!(rules(&sim), [Rule::DeferOutsideProcessPacket]);
    // Completing later, outside the callback, is allowed (kmcl.md §2.2 "inline or later").
    // SAFETY: a delivered, not yet completed packet, 2 readable bytes.
    unsafe { (API.VmbChannelPacketComplete)(packet, b"ok".as_ptr().cast_mut().cast(), 2) };
    assert_eq!(sim.loopback_guest().completion(token), Some(b"ok".to_vec()));
    raw_teardown(raw);
    sim.assert_clean();
}

#[test]
fn a_failed_packet_stops_the_queue() {
    let sim = Sim::new();
    let (raw, id) = raw_running_channel(&sim, FAIL);
    assert_eq!(
        sim.loopback_guest().send(id, b"x").unwrap(),
        PacketOutcome::Failed
    );
    assert_eq!(
        sim.loopback_guest().send(id, b"x"),
        Err(GuestError::QueueStopped)
    );
    raw_teardown(raw);
    sim.assert_clean();
}

#[test]
fn passive_calls_at_dispatch_are_caught() {
    let sim = Sim::new();
    let (raw, id) = raw_running_channel(&sim, ALLOCATE_AT_DISPATCH);
    sim.loopback_guest().send(id, b"x").unwrap();
    assert_eq!(rules(&sim), [Rule::PassiveCallAtDispatch]);
    raw_teardown(raw);
    sim.assert_clean();
}

#[test]
fn host_packets_are_queued_until_open_and_freed_by_the_default_routine() {
    let sim = Sim::new();
    let raw = raw_channel();
    MODE.set(0);
    assert_eq!(call::packet_callbacks(raw), STATUS_SUCCESS);
    assert_eq!(
        call::server_flags(raw, VMBUS_SERVER_CHANNEL_INIT_FLAG_LOOPBACK_OFFER),
        STATUS_SUCCESS
    );
    assert_eq!(call::enable(raw), STATUS_SUCCESS);
    call::start(raw);
    // SAFETY: a live channel.
    let packet = unsafe { API.VmbPacketAllocate.unwrap()(raw) };
    assert!(!packet.is_null());
    let mut bytes = *b"hello guest";
    // SAFETY: a fresh packet, 11 readable bytes, no MDL, valid flags.
    let status = unsafe {
        API.VmbPacketSend.unwrap()(packet, bytes.as_mut_ptr().cast(), 11, ptr::null_mut(), 0)
    };
    assert_eq!(status, STATUS_SUCCESS);
    let guest = sim.loopback_guest();
    let id = guest.only_offer().unwrap().channel;
    assert_eq!(guest.receive(id), None, "not transmitted before open");
    guest.open(id).unwrap();
    assert_eq!(guest.receive(id), Some(b"hello guest".to_vec()));
    // The default completion routine freed it: freeing again is caught.
    // SAFETY: wrong on purpose.
    unsafe { API.VmbPacketFree.unwrap()(packet) };
    assert_eq!(rules(&sim), [Rule::OutgoingPacketMisuse]);
    raw_teardown(raw);
    sim.assert_clean();
}

#[test]
fn the_table_without_mmio_space_lacks_only_that_entry() {
    assert!(
        HvsimKmclWithoutMmioSpace::api()
            .VmbChannelGetMmioSpace
            .is_none()
    );
    assert!(HvsimKmcl::api().VmbChannelGetMmioSpace.is_some());
    assert!(HvsimKmclWithoutMmioSpace::api().VmbChannelPause.is_some());
}

unsafe extern "system" fn first_started(_: VMBCHANNEL) {}
unsafe extern "system" fn second_started(_: VMBCHANNEL) {}

#[test]
fn a_callback_table_changed_after_init_is_caught() {
    let sim = Sim::new();
    // A table that outlives the channel, as the stricter reading requires.
    let mut table = Box::new(VMB_CHANNEL_STATE_CHANGE_CALLBACKS_INIT());
    table.EvtChannelStarted = Some(first_started);
    let raw = raw_channel();
    // SAFETY: a live Disabled channel; the boxed table stays alive until after Cleanup.
    let status = unsafe { (API.VmbChannelInitSetStateChangeCallbacks)(raw, &raw mut *table) };
    assert_eq!(status, STATUS_SUCCESS);
    assert_eq!(call::packet_callbacks(raw), STATUS_SUCCESS);
    assert_eq!(
        call::server_flags(raw, VMBUS_SERVER_CHANNEL_INIT_FLAG_LOOPBACK_OFFER),
        STATUS_SUCCESS
    );
    assert_eq!(call::mmio(raw, 1, 0), STATUS_SUCCESS);
    assert_eq!(call::enable(raw), STATUS_SUCCESS);
    call::start(raw);
    // The driver rewrites its table after Init: KMCL (keeping the pointer) would see it.
    table.EvtChannelStarted = Some(second_started);
    let guest = sim.loopback_guest();
    let id = guest.only_offer().unwrap().channel;
    guest.open(id).unwrap();
    assert!(rules(&sim).contains(&Rule::CallbackTableChanged));
    raw_teardown(raw);
    drop(table);
    sim.take_violations();
}
