//! Lifecycle events of the HDV model: fault injection, reset, save and restore, a device host
//! that exits and a new one that attaches (docs/simulator.md, "Lifecycle events the model
//! supports").

mod hdv_support;

use std::sync::Arc;

use hdv_support::{CLASS, DEVICE_HOST, Handles, INSTANCE, VM, vm_config};
use hvsim::guest_memory::GuestPhysicalMemory;
use hvsim::hdv::{HdvCall, HdvSim, SavedVm, codes};
use hvsim::kmcl::{CallbackKind, ChannelId, GuestEvent, HvsimKmcl, Sim, SimHandleCloser, SimVm};
use hvsim::memory::{ProcessId, SectionAccess, SectionMemory, SectionResolver};
use hvsim::vm::{ClaimOwner, ClaimRequest, GuestKind, GuestVm, Power};
use hvsim::vpci::GuestPci;
use kmcl::raw::GUID;
use vmbmmio_core::channel::{
    ChannelConfig, ChannelTarget, DEFAULT_PACKET_SIZE, UserVmbusHandle, VmChannel,
    convert_vmbus_handle,
};
use vmbmmio_core::mmio_plan::MmioPlan;
use vmbmmio_devhost::callbacks::PciPnpId;
use vmbmmio_devhost::emulator::{Emulator, LifecycleEvent};
use vmbmmio_devhost::hresult::HResult;
use vmbmmio_devhost::layout::BarLayout;
use vmbmmio_devhost::platform::{
    ComputeSystem, DeviceHandle, DeviceHostFlags, DeviceHostHandle, HcsApi, HdvApi,
    MmioMappingFlags, MmioRange, SectionHandle,
};

const SECOND_HOST: ProcessId = ProcessId(5151);
const INJECTED: HResult = HResult::E_OUTOFMEMORY;

/// One device host's handles.
struct DeviceHost {
    hdv: HdvSim,
    emulator: Arc<Emulator>,
    system: ComputeSystem,
    host: DeviceHostHandle,
    device: DeviceHandle,
}

fn emulator() -> Arc<Emulator> {
    let emulator = Arc::new(Emulator::new(PciPnpId::default(), 2));
    emulator.set_layout(BarLayout::plan(&[8192, 4096]).unwrap());
    emulator
}

/// A device host in `hdv`'s process attaches to `VM` (before its start or, re-attaching,
/// while it runs).
fn attach(hdv: &HdvSim) -> DeviceHost {
    let mut hdv = hdv.clone();
    let emulator = emulator();
    let system = hdv.open_compute_system(VM).unwrap();
    let host = hdv
        .initialize_device_host(system, DeviceHostFlags::InitializeComSecurity)
        .unwrap();
    let device = hdv
        .create_pci_device(host, CLASS, INSTANCE, emulator.clone())
        .unwrap();
    DeviceHost {
        hdv,
        emulator,
        system,
        host,
        device,
    }
}

/// The VM (`guest`'s kind), its device host attached, not started.
fn world(kind: GuestKind) -> (Arc<Handles>, HdvSim, GuestVm, DeviceHost) {
    let guest = GuestVm::with_default_pool(kind);
    let handles = Arc::new(Handles::default());
    let hdv = HdvSim::new(handles.clone(), DEVICE_HOST);
    hdv.create_compute_system(VM, vm_config(), guest.clone())
        .unwrap();
    let host = attach(&hdv);
    (handles, hdv, guest, host)
}

/// A two-page section holding `byte`, mapped at pages 0..2 of BAR 2 (paused around it).
fn map(handles: &Handles, host: &mut DeviceHost, process: ProcessId, byte: u8) -> u64 {
    let memory = SectionMemory::new(2 * 4096);
    memory.write(0, &[byte; 16]).unwrap();
    map_memory(handles, host, process, &memory)
}

/// `memory` mapped at pages 0..2 of BAR 2 through a new handle in `process`.
fn map_memory(
    handles: &Handles,
    host: &mut DeviceHost,
    process: ProcessId,
    memory: &Arc<SectionMemory>,
) -> u64 {
    let section = handles.open(process, memory, SectionAccess::HDV_READ_WRITE);
    host.hdv.pause(host.system).unwrap();
    host.hdv
        .create_section_backed_mmio_range(host.device, &range(section))
        .unwrap();
    host.hdv.resume(host.system).unwrap();
    section
}

fn range(section: u64) -> MmioRange {
    MmioRange {
        bar: 2,
        offset_pages: 0,
        length_pages: 2,
        flags: MmioMappingFlags::WRITEABLE,
        section: SectionHandle(section),
        section_offset_pages: 0,
    }
}

/// The guest probes, places BAR 2 and turns decode on; returns its base.
fn place(pci: &GuestPci) -> u64 {
    pci.probe().unwrap();
    pci.set_memory_decode(INSTANCE, true).unwrap();
    pci.bar(INSTANCE, 2).unwrap().base
}

fn read16(hdv: &HdvSim, gpa: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    GuestPhysicalMemory::new(hdv, VM).read(gpa, &mut out);
    out
}

/// The driver's real channel offered to KMCL VM `vm`.
fn offer(sim: &Sim, vm: &SimVm) -> VmChannel<HvsimKmcl, SimHandleCloser> {
    let user = UserVmbusHandle::new(vm.user_handle).unwrap();
    let handle = sim
        .in_process(vm.worker, || {
            convert_vmbus_handle::<HvsimKmcl, SimHandleCloser>(user)
        })
        .unwrap();
    let config = ChannelConfig {
        interface_type: GUID::from_u128(0x9a1e_4f52_7c3b_4d0e_8f61_2b7a_c0de_0001),
        interface_instance: GUID::from_u128(0x9a1e_4f52_7c3b_4d0e_8f61_2b7a_c0de_1001),
        friendly_name: "vmbmmio",
        max_packet_size: DEFAULT_PACKET_SIZE,
        target: ChannelTarget::VmbusHandle(handle),
    };
    VmChannel::offer(
        sim.parent_device(),
        config,
        MmioPlan::new(&[1 << 20]).unwrap(),
    )
    .unwrap()
}

/// Stops the VM and releases everything the device host holds.
fn shut_down(host: &mut DeviceHost) {
    if host.hdv.vm_state(VM).is_some_and(Power::guest_exists) {
        host.hdv.terminate_compute_system(VM).unwrap();
    }
    let _ = host
        .hdv
        .destroy_section_backed_mmio_range(host.device, 2, 0);
    host.hdv.teardown_device_host(host.host).unwrap();
    host.hdv.close_compute_system(host.system);
}

/// One HCS/HDV call a test makes.
type Call = Box<dyn Fn(&mut DeviceHost) -> Result<(), HResult>>;

/// Brings `host` to the state where a call of `call` would succeed; returns how to make it.
fn prepare(handles: &Handles, host: &mut DeviceHost, call: HdvCall) -> Call {
    let started = !matches!(
        call,
        HdvCall::OpenComputeSystem | HdvCall::InitializeDeviceHost | HdvCall::CreateDeviceInstance
    );
    if started {
        host.hdv.start_compute_system(VM).unwrap();
    }
    match call {
        HdvCall::OpenComputeSystem => Box::new(|h| h.hdv.open_compute_system(VM).map(|_| ())),
        HdvCall::CloseComputeSystem => unreachable!("cannot fail"),
        HdvCall::PauseComputeSystem => Box::new(|h| h.hdv.pause(h.system)),
        HdvCall::ResumeComputeSystem => {
            host.hdv.pause(host.system).unwrap();
            Box::new(|h| h.hdv.resume(h.system))
        }
        HdvCall::InitializeDeviceHost => Box::new(|h| {
            h.hdv
                .initialize_device_host(h.system, DeviceHostFlags::None)
                .map(|_| ())
        }),
        HdvCall::CreateDeviceInstance => Box::new(|h| {
            h.hdv
                .create_pci_device(h.host, CLASS, GUID_OTHER, emulator())
                .map(|_| ())
        }),
        HdvCall::CreateSectionBackedMmioRange => {
            let memory = SectionMemory::new(2 * 4096);
            let section = handles.open(DEVICE_HOST, &memory, SectionAccess::HDV_READ_WRITE);
            Box::new(move |h| {
                h.hdv
                    .create_section_backed_mmio_range(h.device, &range(section))
            })
        }
        HdvCall::DestroySectionBackedMmioRange => {
            map(handles, host, DEVICE_HOST, 1);
            Box::new(|h| h.hdv.destroy_section_backed_mmio_range(h.device, 2, 0))
        }
        HdvCall::TeardownDeviceHost => {
            host.hdv.terminate_compute_system(VM).unwrap();
            Box::new(|h| h.hdv.teardown_device_host(h.host))
        }
    }
}

const GUID_OTHER: vmbmmio_devhost::guid::Guid =
    vmbmmio_devhost::guid::Guid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0);

#[test]
fn every_failed_hdv_call_returns_the_error_and_changes_nothing() {
    assert_eq!(HdvCall::ALL.len(), 9, "one variant per HcsApi/HdvApi entry");
    for &call in HdvCall::ALL.iter().filter(|call| call.can_fail()) {
        let (handles, hdv, guest, mut host) = world(GuestKind::Linux);
        let make = prepare(&handles, &mut host, call);
        let before = (
            hdv.counters(),
            hdv.live_ranges(),
            guest.power(),
            handles.open_count(),
            host.emulator.events(),
        );
        let calls = hdv.calls(call);
        hdv.fail_nth(call, 1, INJECTED);
        assert_eq!(make(&mut host), Err(INJECTED), "{call:?}");
        assert_eq!(hdv.calls(call), calls + 1, "{call:?} counted");
        let after = (
            hdv.counters(),
            hdv.live_ranges(),
            guest.power(),
            handles.open_count(),
            host.emulator.events(),
        );
        assert_eq!(before, after, "{call:?} changed the model");
        // Once: the next call works.
        assert_eq!(make(&mut host), Ok(()), "{call:?} retried");
    }
}

#[test]
fn faults_count_from_now_and_fire_once() {
    let (_, hdv, _, mut host) = world(GuestKind::Linux);
    hdv.fail_nth(HdvCall::OpenComputeSystem, 2, INJECTED);
    let first = host.hdv.open_compute_system(VM).unwrap();
    assert_eq!(host.hdv.open_compute_system(VM), Err(INJECTED));
    let third = host.hdv.open_compute_system(VM).unwrap();
    host.hdv.close_compute_system(first);
    host.hdv.close_compute_system(third);
    assert_eq!(hdv.calls(HdvCall::OpenComputeSystem), 4);
    assert_eq!(hdv.calls(HdvCall::CloseComputeSystem), 2);
    assert_eq!(hvsim::sections::FaultPoint::ALL.len(), 3);
    shut_down(&mut host);
    assert!(hdv.counters().all_released(), "{:?}", hdv.counters());
}

#[test]
#[should_panic(expected = "cannot fail")]
fn hcs_close_compute_system_cannot_be_failed() {
    let (_, hdv, _, _) = world(GuestKind::Linux);
    hdv.fail_nth(HdvCall::CloseComputeSystem, 1, INJECTED);
}

#[test]
fn a_reset_closes_the_channel_once_reoffers_and_unplaces_the_bars() {
    let sim = Sim::new();
    let (handles, hdv, guest, mut host) = world(GuestKind::Linux);
    let vm = sim.add_vm(guest.clone());
    hdv.start_compute_system(VM).unwrap();
    let channel = offer(&sim, &vm);
    let kguest = sim.guest(vm.id);
    let offered = kguest.only_offer().unwrap();
    kguest.open(offered.channel).unwrap();
    let pci = GuestPci::new(&hdv, VM).unwrap();
    let base = place(&pci);
    map(&handles, &mut host, DEVICE_HOST, 0x5A);
    assert_eq!(read16(&hdv, base), [0x5A; 16]);
    let events_before = host.emulator.events();
    sim.clear_log();

    // Only a running VM can be reset.
    host.hdv.pause(host.system).unwrap();
    assert_eq!(hdv.reset_compute_system(VM), Err(codes::INVALID_STATE));
    host.hdv.resume(host.system).unwrap();
    hdv.reset_compute_system(VM).unwrap();

    assert_eq!(hdv.vm_state(VM), Some(Power::Running));
    assert_eq!(
        sim.callbacks(),
        [CallbackKind::Suspend, CallbackKind::Closed],
        "the guest's channel closed exactly once"
    );
    assert!(
        kguest
            .events()
            .contains(&GuestEvent::VmGone(Power::Resetting))
    );
    let again = kguest
        .only_offer()
        .expect("the enabled channel is offered again");
    assert_eq!(again.channel, offered.channel);
    assert_ne!(again.relid, offered.relid);
    // The vPCI bus was reset; the device host, its device and its range stay.
    let (bars, decode) = hdv.vpci_platform_bars(VM, INSTANCE).unwrap();
    assert!(bars.iter().all(|bar| bar.base == 0) && !decode);
    assert_eq!(hdv.live_ranges(), 1);
    assert_eq!(
        host.emulator.events(),
        events_before,
        "no Stop, no Teardown"
    );
    assert!(guest.claims().is_empty(), "the guest's claims went");
    assert_eq!(read16(&hdv, base), [0xFF; 16], "refused until placed again");
    assert!(
        pci.bar(INSTANCE, 2).is_none(),
        "the guest forgot its PCI state"
    );

    // Something else claims the old spot first: the guest places the BAR elsewhere.
    guest
        .claim(
            ClaimOwner::Other("framebuffer".into()),
            ClaimRequest {
                min: base,
                ..ClaimRequest::high(16 << 10, 16 << 10)
            },
        )
        .unwrap();
    let moved = place(&pci);
    assert_ne!(moved, base);
    assert_eq!(read16(&hdv, moved), [0x5A; 16], "the range follows the BAR");

    drop(channel);
    sim.assert_clean();
    shut_down(&mut host);
    assert!(hdv.counters().all_released(), "{:?}", hdv.counters());
    assert_eq!(hdv.counters().resets, 1);
}

#[test]
fn a_saved_vm_is_restored_with_its_pci_state_and_without_its_old_channel() {
    let sim = Sim::new();
    let (handles, hdv, guest, mut host) = world(GuestKind::Linux);
    let (vm, _) = sim.add_vm_assuming_vmbus_handle_in(guest.clone(), DEVICE_HOST);
    hdv.start_compute_system(VM).unwrap();
    let channel = offer(&sim, &vm);
    let kguest = sim.guest(vm.id);
    let old = kguest.only_offer().unwrap();
    kguest.open(old.channel).unwrap();
    let pci = GuestPci::new(&hdv, VM).unwrap();
    let base = place(&pci);
    map(&handles, &mut host, DEVICE_HOST, 0x11);

    // HcsSaveComputeSystem: refused while running, so pause, save, terminate.
    assert_eq!(
        hdv.save_compute_system(VM).err(),
        Some(codes::HCS_INVALID_STATE)
    );
    host.hdv.pause(host.system).unwrap();
    let saved: SavedVm = hdv.save_compute_system(VM).unwrap();
    assert_eq!(saved.kind(), GuestKind::Linux);
    assert_eq!(saved.vmbus_offers(), [old.channel.0]);
    hdv.terminate_compute_system(VM).unwrap();
    assert_eq!(
        &host.emulator.events()[4..],
        [LifecycleEvent::Stop, LifecycleEvent::Teardown]
    );

    // The old system is not gone while its device host holds it.
    assert_eq!(
        hdv.restore_compute_system(saved.clone(), vm_config()),
        Err(codes::SYSTEM_ALREADY_EXISTS)
    );
    shut_down(&mut host);
    hdv.restore_compute_system(saved.clone(), vm_config())
        .unwrap();
    let restored = hdv.guest_vm(VM).unwrap();
    assert!(!restored.same_vm(&guest), "a new VM");
    assert_eq!(restored.kind(), GuestKind::Linux);
    assert_eq!(
        restored.claims(),
        saved.claims(),
        "its MMIO claims as saved"
    );

    // A new device-host process attaches to the restored VM, which then starts.
    let second = hdv.for_process(SECOND_HOST);
    let mut host2 = attach(&second);
    hdv.start_compute_system(VM).unwrap();
    assert_eq!(
        hdv.vpci_platform_bars(VM, INSTANCE),
        saved.vpci_bars(INSTANCE),
        "placement and decode as saved"
    );
    let pci2 = pci.restored_into(&hdv, VM).unwrap();
    assert_eq!(pci2.bar(INSTANCE, 2).unwrap().base, base, "no re-probe");
    map(&handles, &mut host2, SECOND_HOST, 0x22);
    assert_eq!(read16(&hdv, base), [0x22; 16]);

    // KMCL: the restored VM has a new VMBus; its guest is told the old channel is gone.
    let (vm2, _) = sim.add_vm_assuming_vmbus_handle_in(restored, SECOND_HOST);
    assert_ne!(vm2.user_handle, vm.user_handle);
    let kguest2 = sim.guest(vm2.id);
    assert!(
        kguest2
            .events()
            .contains(&GuestEvent::RestoredChannelGone(old.channel))
    );
    assert!(
        kguest2.offers().is_empty(),
        "the old channel never reaches it"
    );
    assert!(
        sim.violations().is_empty(),
        "the driver's channel carries FORCE_NEW_CHANNEL: {:?}",
        sim.violations()
    );
    let channel2 = offer(&sim, &vm2);
    let new = kguest2.only_offer().unwrap();
    assert_ne!(new.channel, old.channel);
    assert_ne!(new.relid, old.relid);

    drop(channel);
    drop(channel2);
    sim.assert_clean();
    shut_down(&mut host2);
    assert!(hdv.counters().all_released(), "{:?}", hdv.counters());
    assert_eq!((hdv.counters().saves, hdv.counters().restores), (1, 1));
}

#[test]
fn a_restored_guest_meeting_a_channel_without_force_new_is_a_violation() {
    // The same restore, with a KMCL channel that lacks FORCE_NEW_CHANNEL: the KMCL model
    // records it when the restored guest runs.
    let sim = Sim::new();
    let (_, hdv, guest, mut host) = world(GuestKind::Windows);
    let vm = sim.add_vm(guest.clone());
    hdv.start_compute_system(VM).unwrap();
    let (channel, handle) = without_force_new(&sim, &vm);
    let old: ChannelId = sim.guest(vm.id).only_offer().unwrap().channel;
    host.hdv.pause(host.system).unwrap();
    let saved = hdv.save_compute_system(VM).unwrap();
    shut_down(&mut host);
    hdv.restore_compute_system(saved, vm_config()).unwrap();
    let mut host2 = attach(&hdv.for_process(SECOND_HOST));
    let restored = hdv.guest_vm(VM).unwrap();
    let vm2 = sim.add_vm(restored);
    hdv.start_compute_system(VM).unwrap();
    let rules: Vec<_> = sim.take_violations().iter().map(|v| v.rule).collect();
    assert_eq!(rules, [hvsim::kmcl::Rule::RestoredChannelNotSaved]);
    assert!(
        sim.guest(vm2.id)
            .events()
            .contains(&GuestEvent::RestoredChannelGone(old))
    );
    drop(channel);
    drop(handle);
    sim.assert_clean();
    shut_down(&mut host2);
}

/// A raw KMCL server channel to `vm` whose flags lack FORCE_NEW_CHANNEL (no driver does this;
/// the model's rule needs one).
fn without_force_new(
    sim: &Sim,
    vm: &SimVm,
) -> (
    kmcl::server::ServerChannel<HvsimKmcl, NoPackets>,
    vmbmmio_core::channel::KernelVmbusHandle<SimHandleCloser>,
) {
    let user = UserVmbusHandle::new(vm.user_handle).unwrap();
    let handle = sim
        .in_process(vm.worker, || {
            convert_vmbus_handle::<HvsimKmcl, SimHandleCloser>(user)
        })
        .unwrap();
    // The kernel handle outlives the channel: the caller drops the channel first.
    let params = kmcl::server::ServerChannelParams {
        parent: sim.parent_device(),
        vmbus_handle: Some(handle.as_handle()),
        incoming_at_passive: false,
        maximum_packet_size: 128,
        interface_type: GUID::from_u128(7),
        interface_instance: GUID::from_u128(8),
        server_flags: kmcl::raw::VMBUS_SERVER_CHANNEL_INIT_FLAG_ENUMERATE_DEVICE_INTERFACE,
        friendly_name: "no-force-new",
        mmio_megabytes: 1,
        mmio_megabytes_optional: 0,
    };
    let channel = kmcl::server::ServerChannel::create(params, NoPackets).unwrap();
    (channel, handle)
}

struct NoPackets;

impl kmcl::server::ChannelHandler for NoPackets {
    fn process_packet(
        &self,
        _: &kmcl::server::ChannelRef<'_>,
        _: kmcl::server::IncomingPacket<'_>,
    ) {
    }
}

#[test]
fn a_device_host_that_exits_loses_its_ranges_and_a_new_one_attaches_and_maps_again() {
    let (handles, hdv, _, mut host) = world(GuestKind::Linux);
    hdv.start_compute_system(VM).unwrap();
    let pci = GuestPci::new(&hdv, VM).unwrap();
    let base = place(&pci);
    let memory = SectionMemory::new(2 * 4096);
    memory.write(0, &[0x77; 16]).unwrap();
    map_memory(&handles, &mut host, DEVICE_HOST, &memory);
    assert_eq!(read16(&hdv, base), [0x77; 16]);
    let worker = hdv.worker_process(VM).unwrap();
    assert_eq!(handles.open_in(worker), 1, "the worker's duplicate");
    let placement = hdv.vpci_platform_bars(VM, INSTANCE);

    // The device-host process exits without tearing down (a crash).
    handles.exit_process(DEVICE_HOST);
    hdv.process_exited(DEVICE_HOST);
    assert_eq!(hdv.live_ranges(), 0, "HDV destroyed the process's ranges");
    assert_eq!(
        handles.open_in(worker),
        0,
        "and the worker closed its duplicate"
    );
    let counters = hdv.counters();
    assert_eq!(counters.ranges_released_by_exit, 1);
    assert_eq!(counters.device_hosts_released_by_exit, 1);
    assert_eq!(counters.handles_closed_by_exit, 1);
    assert!(counters.all_released(), "no leak remains: {counters:?}");
    assert_eq!(
        &host.emulator.events()[4..],
        [],
        "no callback reaches an exited process"
    );
    assert_eq!(
        hdv.vpci_platform_bars(VM, INSTANCE),
        placement,
        "the guest did nothing"
    );
    assert_eq!(
        read16(&hdv, base),
        [0xFF; 16],
        "no section and no emulator behind the BAR"
    );
    let intercepted = GuestPhysicalMemory::new(&hdv, VM).read(base + 2 * 4096, &mut [0u8; 4]);
    assert_eq!(intercepted.intercepted_calls, 0);
    assert_eq!(intercepted.refused_bytes, 4);

    // A new device-host process attaches to the running VM and maps the same section again.
    let mut second = attach(&hdv.for_process(SECOND_HOST));
    assert_eq!(
        second.emulator.events(),
        [
            LifecycleEvent::Initialize,
            LifecycleEvent::SetConfiguration,
            LifecycleEvent::GetDetails,
            LifecycleEvent::Start
        ]
    );
    map_memory(&handles, &mut second, SECOND_HOST, &memory);
    assert_eq!(
        read16(&hdv, base),
        [0x77; 16],
        "the guest reads the section again"
    );
    let intercepted = GuestPhysicalMemory::new(&hdv, VM).read(base + 2 * 4096, &mut [0u8; 4]);
    assert_eq!(intercepted.refused_bytes, 0);
    assert!(
        intercepted.intercepted_calls > 0,
        "the new emulator serves the rest"
    );
    assert_eq!(handles.open_in(worker), 1);

    shut_down(&mut second);
    assert!(hdv.counters().all_released(), "{:?}", hdv.counters());
    assert_eq!(handles.open_in(worker), 0);
}

#[test]
fn only_an_orphaned_declared_device_can_be_attached_to_a_running_vm() {
    let (_, hdv, _, mut host) = world(GuestKind::Linux);
    hdv.start_compute_system(VM).unwrap();
    // Its device host still lives: a second one is refused.
    let mut other = hdv.for_process(SECOND_HOST);
    let system = other.open_compute_system(VM).unwrap();
    assert_eq!(
        other
            .initialize_device_host(system, DeviceHostFlags::None)
            .err(),
        Some(codes::INVALID_STATE)
    );
    other.close_compute_system(system);
    shut_down(&mut host);
    assert!(hdv.counters().all_released(), "{:?}", hdv.counters());
}
