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

/// A running VM of `kind` with the default pool.
fn running_vm(kind: GuestKind) -> GuestVm {
    let vm = GuestVm::with_default_pool(kind);
    vm.set_power(Power::Running);
    vm
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

    /// A state-change table that lives as long as the test process (KMCL may keep the pointer).
    pub(super) fn state_callbacks(raw: VMBCHANNEL) -> NTSTATUS {
        let table = Box::leak(Box::new(VMB_CHANNEL_STATE_CHANGE_CALLBACKS_INIT()));
        // SAFETY: a live channel; the table is valid for the rest of the process.
        unsafe { (API.VmbChannelInitSetStateChangeCallbacks)(raw, table) }
    }
    pub(super) fn interface(raw: VMBCHANNEL) -> NTSTATUS {
        // SAFETY: a live channel; GUIDs by value.
        unsafe {
            (API.VmbServerChannelInitSetTargetInterfaceId)(
                raw,
                GUID::from_u128(7),
                GUID::from_u128(8),
            )
        }
    }
    pub(super) fn max_packet_size(raw: VMBCHANNEL) -> NTSTATUS {
        // SAFETY: a live channel.
        unsafe { (API.VmbChannelInitSetMaximumPacketSize)(raw, 128) }
    }
    /// Every Init call an observed VSP makes before Enable, except the target and the flags.
    pub(super) fn vsp_init(raw: VMBCHANNEL) {
        assert_eq!(interface(raw), STATUS_SUCCESS);
        assert_eq!(state_callbacks(raw), STATUS_SUCCESS);
        assert_eq!(packet_callbacks(raw), STATUS_SUCCESS);
        assert_eq!(max_packet_size(raw), STATUS_SUCCESS);
    }
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
    // Without the Init calls every observed VSP makes, Enable is refused (stricter reading).
    assert_eq!(call::enable(raw), ENABLE_INCOMPLETE_STATUS);
    assert_eq!(rules(&sim), [Rule::EnableIncomplete]);
    // Without a handle or the loopback flag there is no partition to offer to (inferred).
    call::vsp_init(raw);
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
    // The loopback guest is Windows-like: MmioMegabytes only (2), the optional 1 ignored.
    assert_eq!((space.address, space.size), (reservation.base, 2 * MIB));
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
    let vm = sim.add_vm(running_vm(GuestKind::Windows));
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
    call::vsp_init(raw);
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
    call::vsp_init(raw);
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
    assert_eq!(call::interface(raw), STATUS_SUCCESS);
    assert_eq!(call::max_packet_size(raw), STATUS_SUCCESS);
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

// ---------------------------------------------------------------------------------------------
// Issue 7 defects, provoked at the model level.

/// Converts `vm`'s VMBus handle in its worker process and offers a wrapper channel to it.
fn vm_channel<H: ChannelHandler>(sim: &Sim, vm: &SimVm, handler: H) -> ServerChannel<HvsimKmcl, H> {
    let mut kernel: HANDLE = ptr::null_mut();
    sim.in_process(vm.worker, || {
        // SAFETY: valid out-pointer; the owning process.
        let status = unsafe {
            (API.VmbConvertVmbusHandleToKernelHandle)(
                ptr::without_provenance_mut(vm.user_handle as usize),
                &raw mut kernel,
            )
        };
        assert_eq!(status, STATUS_SUCCESS);
    });
    let mut params = loopback_params(sim);
    params.vmbus_handle = Some(kernel);
    params.server_flags = VMBUS_SERVER_CHANNEL_INIT_FLAG_ENUMERATE_DEVICE_INTERFACE;
    let channel = ServerChannel::<HvsimKmcl, H>::create(params, handler).unwrap();
    // The test closes the kernel handle after the channel's Cleanup.
    KERNEL.set(kernel.addr());
    channel
}

thread_local! {
    static KERNEL: Cell<usize> = const { Cell::new(0) };
}

fn drop_vm_channel<H: ChannelHandler>(sim: &Sim, channel: ServerChannel<HvsimKmcl, H>) {
    drop(channel);
    sim.close_kernel_handle(KERNEL.get());
}

#[test]
fn defect_07_enable_requires_what_every_observed_vsp_sets() {
    let sim = Sim::new();
    type Setter = fn(VMBCHANNEL) -> NTSTATUS;
    let setters: [(&str, Setter); 4] = [
        ("VmbServerChannelInitSetTargetInterfaceId", call::interface),
        (
            "VmbChannelInitSetStateChangeCallbacks",
            call::state_callbacks,
        ),
        (
            "VmbChannelInitSetProcessPacketCallbacks",
            call::packet_callbacks,
        ),
        ("VmbChannelInitSetMaximumPacketSize", call::max_packet_size),
    ];
    for skipped in 0..setters.len() {
        let raw = raw_channel();
        assert_eq!(
            call::server_flags(raw, VMBUS_SERVER_CHANNEL_INIT_FLAG_LOOPBACK_OFFER),
            STATUS_SUCCESS
        );
        for (index, (_, set)) in setters.iter().enumerate() {
            if index != skipped {
                assert_eq!(set(raw), STATUS_SUCCESS);
            }
        }
        assert_eq!(call::enable(raw), ENABLE_INCOMPLETE_STATUS);
        let violations = sim.take_violations();
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].rule, Rule::EnableIncomplete);
        assert!(
            violations[0].detail.contains(setters[skipped].0),
            "{violations:?}"
        );
        assert!(violations[0].citation.contains("dxgkrnl"));
        assert!(sim.loopback_guest().offers().is_empty(), "nothing offered");
        // The missing call, then Enable succeeds.
        assert_eq!(setters[skipped].1(raw), STATUS_SUCCESS);
        assert_eq!(call::enable(raw), STATUS_SUCCESS);
        assert_eq!(sim.loopback_guest().offers().len(), 1);
        raw_teardown(raw);
    }
    sim.assert_clean();
}

/// A handler that asks for the MMIO space inside Opened (too early) or in Started.
struct AsksForMmio {
    in_opened: bool,
    seen: std::sync::Mutex<Option<kmcl::server::MmioSpace>>,
}

impl ChannelHandler for AsksForMmio {
    fn opened(&self, channel: &ChannelRef<'_>) -> Result<(), kmcl::ErrorStatus> {
        if self.in_opened {
            *self.seen.lock().unwrap() = channel.get_mmio_space();
        }
        Ok(())
    }

    fn started(&self, channel: &ChannelRef<'_>) {
        if !self.in_opened {
            *self.seen.lock().unwrap() = channel.get_mmio_space();
        }
    }

    fn process_packet(&self, _: &ChannelRef<'_>, _: IncomingPacket<'_>) {}
}

#[test]
fn defect_06_mmio_space_inside_opened_is_a_violation() {
    for in_opened in [true, false] {
        let sim = Sim::new();
        let handler = AsksForMmio {
            in_opened,
            seen: std::sync::Mutex::new(None),
        };
        let channel =
            ServerChannel::<HvsimKmcl, AsksForMmio>::create(loopback_params(&sim), handler)
                .unwrap();
        let guest = sim.loopback_guest();
        let id = guest.only_offer().unwrap().channel;
        guest.open(id).unwrap();
        let reservation = guest.reservation(id).unwrap();
        let seen = channel.handler().seen.lock().unwrap().unwrap();
        if in_opened {
            assert_eq!(rules(&sim), [Rule::MmioSpaceBeforeOpened]);
            assert_eq!((seen.address, seen.size), (0, 0), "nothing reported");
        } else {
            assert_eq!(rules(&sim), []);
            assert_eq!(
                (seen.address, seen.size),
                (reservation.base, reservation.size)
            );
        }
        drop(channel);
        sim.assert_clean();
    }
}

#[test]
fn defect_03_an_offer_reaches_the_guest_only_while_its_vm_runs() {
    let sim = Sim::new();
    let guest_vm = GuestVm::with_default_pool(GuestKind::Windows);
    let vm = sim.add_vm(guest_vm.clone());
    let channel = vm_channel(&sim, &vm, Plain::default());
    let guest = sim.guest(vm.id);
    let id = channel_id_of(&sim);
    assert!(
        guest.offers().is_empty(),
        "created, not started: no guest yet"
    );
    assert!(guest_vm.claims().is_empty(), "nothing reserved");
    assert_eq!(
        guest.open(id),
        Err(GuestError::VmNotRunning(Power::Created))
    );
    assert_eq!(sim.channel(id).unwrap().lifecycle, Lifecycle::Enabled);

    guest_vm.set_power(Power::Running);
    assert_eq!(guest.only_offer().unwrap().channel, id);
    let reservation = guest.reservation(id).unwrap();
    assert_eq!(guest_vm.claims().len(), 1);
    guest.open(id).unwrap();
    assert!(sim.channel(id).unwrap().running);

    // Paused: the guest does nothing, the channel stays open.
    guest_vm.set_power(Power::Paused);
    assert_eq!(
        guest.send(id, b"x"),
        Err(GuestError::VmNotRunning(Power::Paused))
    );
    assert_eq!(
        guest.close(id),
        Err(GuestError::VmNotRunning(Power::Paused))
    );
    assert!(sim.channel(id).unwrap().open);
    guest_vm.set_power(Power::Running);

    // Terminated: Suspend, then Closed; the offer and the reservation are gone, the host
    // channel stays Enabled.
    sim.clear_log();
    guest_vm.set_power(Power::Stopped);
    assert_eq!(
        sim.callbacks(),
        [CallbackKind::Suspend, CallbackKind::Closed]
    );
    let c = sim.channel(id).unwrap();
    assert!(!c.open && !c.running);
    assert_eq!(c.lifecycle, Lifecycle::Enabled);
    assert!(guest.offers().is_empty());
    assert_eq!(guest.reservation(id), None);
    assert!(guest_vm.claims().iter().all(|c| c.range != reservation));
    assert_eq!(
        guest.send(id, b"x"),
        Err(GuestError::VmNotRunning(Power::Stopped))
    );
    assert!(guest.events().contains(&GuestEvent::VmGone(Power::Stopped)));

    // Restarted: the still-enabled channel is offered again and can be reopened.
    guest_vm.set_power(Power::Running);
    assert_eq!(guest.only_offer().unwrap().channel, id);
    guest.open(id).unwrap();
    guest_vm.crash("test");
    assert!(!sim.channel(id).unwrap().open, "a crash closes like a stop");
    assert!(guest.offers().is_empty());
    drop_vm_channel(&sim, channel);
    sim.assert_clean();
}

/// The only channel allocated so far.
fn channel_id_of(sim: &Sim) -> ChannelId {
    let ids = sim.channel_ids();
    assert_eq!(ids.len(), 1);
    ids[0]
}

#[test]
fn an_old_sims_vm_does_not_reach_a_new_sim() {
    let old = Sim::new();
    let guest_vm = GuestVm::with_default_pool(GuestKind::Windows);
    let vm = old.add_vm(guest_vm.clone());
    let channel = vm_channel(&old, &vm, Plain::default());
    drop_vm_channel(&old, channel);
    let sim = Sim::new();
    guest_vm.set_power(Power::Running);
    assert!(sim.guest(vm.id).offers().is_empty());
    assert!(sim.violations().is_empty());
}

#[test]
fn defect_02_a_linux_guest_reserves_nothing_until_its_driver_claims() {
    let sim = Sim::new();
    let guest_vm = running_vm(GuestKind::Linux);
    let vm = sim.add_vm(guest_vm.clone());
    let channel = vm_channel(&sim, &vm, Plain::default());
    let guest = sim.guest(vm.id);
    let offer = guest.only_offer().unwrap();
    assert_eq!(
        (offer.mmio_megabytes, offer.mmio_megabytes_optional),
        (2, 1)
    );
    assert_eq!(guest.reservation(offer.channel), None);
    assert!(guest_vm.claims().is_empty(), "hv_vmbus reserves nothing");
    guest.open(offer.channel).unwrap();
    // The VMBus layer knows nothing of a driver's claim.
    assert_eq!(
        channel.get_mmio_space(),
        Some(kmcl::server::MmioSpace {
            address: 0,
            size: 0
        })
    );
    let range = guest
        .claim_offered_mmio(offer.channel, DXGKRNL_MMIO_ALIGNMENT)
        .unwrap();
    assert_eq!(
        range.size,
        2 * MIB,
        "mmio_megabytes only; the optional 1 never read"
    );
    assert_eq!(range.base % DXGKRNL_MMIO_ALIGNMENT, 0);
    assert_eq!(guest.reservation(offer.channel), Some(range));
    assert_eq!(
        guest.claim_offered_mmio(offer.channel, DXGKRNL_MMIO_ALIGNMENT),
        Err(GuestError::AlreadyClaimed)
    );
    assert_eq!(guest.release_mmio(offer.channel), Ok(range));
    assert!(guest_vm.claims().is_empty());
    // Claimed again, then rescinded: the claim goes with the offer.
    guest
        .claim_mmio(offer.channel, ClaimRequest::anywhere(MIB, MIB))
        .unwrap();
    drop_vm_channel(&sim, channel);
    assert!(guest_vm.claims().is_empty(), "released on rescind");
    sim.assert_clean();
}

#[test]
fn defect_02_a_windows_guest_reserves_the_required_amount_only() {
    let sim = Sim::new();
    let guest_vm = running_vm(GuestKind::Windows);
    let vm = sim.add_vm(guest_vm.clone());
    let channel = vm_channel(&sim, &vm, Plain::default());
    let guest = sim.guest(vm.id);
    let offer = guest.only_offer().unwrap();
    let reservation = guest.reservation(offer.channel).unwrap();
    assert_eq!(
        reservation.size,
        2 * MIB,
        "MmioMegabytes 2; optional 1 ignored"
    );
    assert_eq!(reservation.base % WINDOWS_RESERVATION_ALIGNMENT, 0);
    assert_eq!(
        guest_vm.claim_of(&crate::vm::ClaimOwner::ChannelReservation(offer.channel.0)),
        Some(reservation)
    );
    assert_eq!(
        guest.claim_mmio(offer.channel, ClaimRequest::anywhere(MIB, MIB)),
        Err(GuestError::NotALinuxGuest)
    );
    drop_vm_channel(&sim, channel);
    assert!(guest_vm.claims().is_empty(), "released on rescind");
    sim.assert_clean();
}

#[test]
fn defect_03_the_vmbus_handle_assumption_is_named() {
    let sim = Sim::new();
    let device_host = crate::memory::ProcessId(77);
    let plain = sim.add_vm(running_vm(GuestKind::Windows));
    assert!(
        sim.assumptions().is_empty(),
        "a worker-owned handle assumes nothing"
    );
    let (vm, assumption) =
        sim.add_vm_assuming_vmbus_handle_in(running_vm(GuestKind::Windows), device_host);
    assert_eq!(vm.worker, device_host);
    assert_eq!(assumption.kind, AssumptionKind::VmbusHandleOwner);
    let text = assumption.to_string();
    assert!(text.starts_with("ASSUMPTION"), "{text}");
    assert!(
        text.contains("vmwp.exe") && text.contains("no documented way"),
        "{text}"
    );
    assert_eq!(sim.assumptions(), [assumption]);
    // The conversion rule still holds: only in the process that owns the handle.
    let mut kernel: HANDLE = ptr::null_mut();
    // SAFETY: valid out-pointer; deliberately in the wrong process (System).
    let status = unsafe {
        (API.VmbConvertVmbusHandleToKernelHandle)(
            ptr::without_provenance_mut(vm.user_handle as usize),
            &raw mut kernel,
        )
    };
    assert_eq!(status, STATUS_INVALID_HANDLE);
    assert_eq!(rules(&sim), [Rule::ConvertOutsideOwningProcess]);
    let _ = plain;
}

// ---- Rules the driver never breaks, provoked once each (docs/simulator.md lists them) ----

#[test]
fn kmcl_rule_enable_twice_is_refused() {
    let sim = Sim::new();
    let (raw, _) = raw_running_channel(&sim, 0);
    assert_ne!(call::enable(raw), STATUS_SUCCESS);
    assert_eq!(rules(&sim), [Rule::EnableWhileEnabled]);
    raw_teardown(raw);
    sim.assert_clean();
}

#[test]
fn kmcl_rule_start_before_enable_is_caught() {
    let sim = Sim::new();
    let raw = raw_channel();
    call::start(raw);
    assert_eq!(rules(&sim), [Rule::StartOutsideEnabled]);
    call::cleanup(raw);
    sim.assert_clean();
}

#[test]
fn kmcl_rule_unknown_packet_is_caught() {
    let sim = Sim::new();
    let never_delivered: VMBPACKETCOMPLETION = ptr::without_provenance_mut(0x5151_0000);
    // SAFETY: a NULL buffer with size 0 is allowed; the packet is wrong on purpose.
    unsafe { (API.VmbChannelPacketComplete)(never_delivered, ptr::null_mut(), 0) };
    assert_eq!(rules(&sim), [Rule::UnknownPacket]);
    sim.assert_clean();
}

#[test]
fn kmcl_rule_unknown_kernel_handle_is_refused() {
    let sim = Sim::new();
    let raw = raw_channel();
    let never_converted: HANDLE = ptr::without_provenance_mut(0x7777_0004);
    // SAFETY: a live, Disabled channel; the handle is wrong on purpose.
    let status = unsafe { (API.VmbServerChannelInitSetVmbusHandle)(raw, never_converted) };
    assert_eq!(status, STATUS_INVALID_HANDLE);
    assert_eq!(rules(&sim), [Rule::InvalidKernelHandle]);
    call::cleanup(raw);
    sim.assert_clean();
}

#[test]
fn kmcl_rule_null_arguments_are_refused() {
    let sim = Sim::new();
    let parent = parent_device().as_ptr();
    // SAFETY: the out-pointer is NULL on purpose; the model must not write through it.
    let status = unsafe { (API.VmbChannelAllocate)(parent, TRUE, ptr::null_mut()) };
    assert_ne!(status, STATUS_SUCCESS);
    assert_eq!(rules(&sim), [Rule::NullArgument]);
    assert_eq!(sim.counters().channels_allocated, 0);
    sim.assert_clean();
}
