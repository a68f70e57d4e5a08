//! The HDV/HCS model's rules (hdv.md §3.1, §3.3, §3.7, §5), one by one.

mod hdv_support;

use std::sync::Arc;

use hdv_support::{CLASS, DEVICE_HOST, Handles, INSTANCE, OTHER_PROCESS, VM, world};
use hvsim::hdv::{HdvSim, PlatformQuirks, VmConfig, VmState, VpciError, codes};
use hvsim::memory::{SectionAccess, SectionMemory};
use hvsim::sections::SimKernel;
use hvsim::vm::{GuestKind, GuestVm, Power};
use hvsim::vpci::{Capability, GuestPci, GuestPciError};
use vmbmmio_core::sections::{RegionAccess, SectionBackend};
use vmbmmio_devhost::callbacks::{PciDeviceCallbacks, PciPnpId};
use vmbmmio_devhost::emulator::{Emulator, LifecycleEvent};
use vmbmmio_devhost::guid::Guid;
use vmbmmio_devhost::hresult::HResult;
use vmbmmio_devhost::layout::BarLayout;
use vmbmmio_devhost::platform::{
    ComputeSystem, DeviceHandle, DeviceHostFlags, DeviceHostHandle, HcsApi, HdvApi,
    MmioMappingFlags, MmioRange, SectionHandle,
};

struct Setup {
    handles: Arc<Handles>,
    sim: HdvSim,
    emulator: Arc<Emulator>,
    system: ComputeSystem,
    host: DeviceHostHandle,
    device: DeviceHandle,
}

/// A device host with one device whose BAR2 is 16 KiB (4 pages), VM not started.
fn setup() -> Setup {
    let (handles, mut sim) = world();
    let emulator = Arc::new(Emulator::new(
        PciPnpId {
            vendor_id: 0x1af4,
            ..Default::default()
        },
        2,
    ));
    emulator.set_layout(BarLayout::plan(&[8192, 4096]).unwrap());
    let system = sim.open_compute_system(VM).unwrap();
    let host = sim
        .initialize_device_host(system, DeviceHostFlags::InitializeComSecurity)
        .unwrap();
    let device = sim
        .create_pci_device(host, CLASS, INSTANCE, emulator.clone())
        .unwrap();
    Setup {
        handles,
        sim,
        emulator,
        system,
        host,
        device,
    }
}

fn range(section: u64, offset_pages: u64, length_pages: u64) -> MmioRange {
    MmioRange {
        bar: 2,
        offset_pages,
        length_pages,
        flags: MmioMappingFlags::WRITEABLE,
        section: SectionHandle(section),
        section_offset_pages: 0,
    }
}

fn section(setup: &Setup, pages: usize, access: SectionAccess) -> u64 {
    setup
        .handles
        .open(DEVICE_HOST, &SectionMemory::new(pages * 4096), access)
}

#[test]
fn mapping_is_refused_with_invalid_state_until_the_vm_runs() {
    let mut s = setup();
    let handle = section(&s, 4, SectionAccess::HDV_READ_WRITE);
    assert_eq!(
        s.sim
            .create_section_backed_mmio_range(s.device, &range(handle, 0, 4)),
        Err(HResult::from_bits(0x8007_139F))
    );
    assert_eq!(s.sim.counters().ranges_refused_before_start, 1);
    s.sim.start_compute_system(VM).unwrap();
    s.sim.pause(s.system).unwrap();
    s.sim
        .create_section_backed_mmio_range(s.device, &range(handle, 0, 4))
        .unwrap();
    s.sim.resume(s.system).unwrap();
    assert_eq!(s.sim.counters().range_changes_while_running, 0);
    assert_eq!(s.sim.live_ranges(), 1);
}

#[test]
fn vm_start_calls_the_callbacks_in_the_observed_order() {
    let s = setup();
    s.sim.start_compute_system(VM).unwrap();
    assert_eq!(s.sim.vm_state(VM), Some(VmState::Running));
    assert_eq!(
        s.emulator.events(),
        [
            LifecycleEvent::Initialize,
            LifecycleEvent::SetConfiguration,
            LifecycleEvent::GetDetails,
            LifecycleEvent::Start
        ]
    );
    assert_eq!(s.emulator.configuration(), ["mode=test"]);
    s.sim.terminate_compute_system(VM).unwrap();
    assert_eq!(
        &s.emulator.events()[4..],
        [LifecycleEvent::Stop, LifecycleEvent::Teardown]
    );
    assert!(s.sim.guest_devices(VM).is_empty());
}

#[test]
fn start_fails_without_the_declared_device() {
    let (_, sim) = world();
    assert_eq!(
        sim.start_compute_system(VM),
        Err(codes::DEVICE_HOST_MISSING)
    );
    // A device with the wrong class GUID does not count either.
    let (_, mut sim) = world();
    let system = sim.open_compute_system(VM).unwrap();
    let host = sim
        .initialize_device_host(system, DeviceHostFlags::None)
        .unwrap();
    let emulator = Arc::new(Emulator::new(PciPnpId::default(), 2));
    sim.create_pci_device(host, Guid::from_u128(5), INSTANCE, emulator)
        .unwrap();
    assert_eq!(
        sim.start_compute_system(VM),
        Err(codes::DEVICE_HOST_MISSING)
    );
}

#[test]
fn a_failing_get_details_fails_the_start_and_tears_the_device_down() {
    let (_, mut sim) = world();
    let system = sim.open_compute_system(VM).unwrap();
    let host = sim
        .initialize_device_host(system, DeviceHostFlags::None)
        .unwrap();
    // No layout: GetDetails fails.
    let emulator = Arc::new(Emulator::new(PciPnpId::default(), 2));
    sim.create_pci_device(host, CLASS, INSTANCE, emulator.clone())
        .unwrap();
    assert_eq!(sim.start_compute_system(VM), Err(HResult::E_UNEXPECTED));
    assert_eq!(sim.vm_state(VM), Some(VmState::Stopped));
    assert_eq!(emulator.events().last(), Some(&LifecycleEvent::Teardown));
    assert!(!emulator.started());
}

#[test]
fn ranges_are_checked_against_the_bar_the_section_and_each_other() {
    let mut s = setup();
    s.sim.start_compute_system(VM).unwrap();
    s.sim.pause(s.system).unwrap();
    let four = section(&s, 4, SectionAccess::HDV_READ_WRITE);
    let one = section(&s, 1, SectionAccess::HDV_READ_WRITE);
    let read_only = section(&s, 4, SectionAccess::HDV_READ);
    let elsewhere = s.handles.open(
        OTHER_PROCESS,
        &SectionMemory::new(4096),
        SectionAccess::HDV_READ_WRITE,
    );
    let invalid = codes::INVALID_ARGUMENT;
    let cases = [
        (range(four, 3, 2), invalid, "past the 4-page BAR"),
        (range(four, u64::MAX, 2), invalid, "overflowing end"),
        (
            MmioRange {
                bar: 0,
                ..range(four, 0, 1)
            },
            invalid,
            "BAR0 is not implemented",
        ),
        (
            MmioRange {
                bar: 3,
                ..range(four, 0, 1)
            },
            invalid,
            "BAR3 is the upper half",
        ),
        (
            MmioRange {
                bar: 6,
                ..range(four, 0, 1)
            },
            invalid,
            "no BAR6",
        ),
        (range(four, 0, 0), invalid, "empty range"),
        (range(one, 0, 2), invalid, "section smaller than the range"),
        (
            MmioRange {
                section_offset_pages: 1,
                ..range(one, 0, 1)
            },
            invalid,
            "offset past the section",
        ),
        (
            range(elsewhere, 0, 1),
            codes::BAD_HANDLE,
            "handle of another process",
        ),
        (range(0xDEAD, 0, 1), codes::BAD_HANDLE, "unknown handle"),
        (
            range(read_only, 0, 1),
            codes::ACCESS_DENIED,
            "writeable mapping of a read-only handle",
        ),
        (
            MmioRange {
                flags: MmioMappingFlags {
                    writeable: false,
                    executable: true,
                },
                ..range(four, 0, 1)
            },
            codes::ACCESS_DENIED,
            "executable",
        ),
    ];
    for (request, error, why) in cases {
        assert_eq!(
            s.sim.create_section_backed_mmio_range(s.device, &request),
            Err(error),
            "{why}"
        );
    }
    assert_eq!(s.sim.live_ranges(), 0);

    let read_only_ok = MmioRange {
        flags: MmioMappingFlags::default(),
        ..range(read_only, 0, 2)
    };
    s.sim
        .create_section_backed_mmio_range(s.device, &read_only_ok)
        .unwrap();
    assert_eq!(
        s.sim
            .create_section_backed_mmio_range(s.device, &range(four, 1, 2)),
        Err(invalid),
        "overlap"
    );
    s.sim
        .create_section_backed_mmio_range(s.device, &range(four, 2, 2))
        .unwrap();
    assert_eq!(s.sim.live_ranges(), 2);

    // hdv.md §3.3: destroy names a range by BAR and start page only.
    assert_eq!(
        s.sim.destroy_section_backed_mmio_range(s.device, 2, 3),
        Err(invalid)
    );
    assert_eq!(
        s.sim.destroy_section_backed_mmio_range(s.device, 0, 2),
        Err(invalid)
    );
    s.sim
        .destroy_section_backed_mmio_range(s.device, 2, 2)
        .unwrap();
    s.sim.resume(s.system).unwrap();
    s.sim
        .destroy_section_backed_mmio_range(s.device, 2, 0)
        .unwrap();
    let counters = s.sim.counters();
    assert_eq!((counters.ranges_created, counters.ranges_destroyed), (2, 2));
    assert_eq!(
        counters.range_changes_while_running, 1,
        "the last destroy ran unpaused"
    );
}

#[test]
fn com_security_can_be_set_once_per_process() {
    let (_, mut sim) = world();
    let second_vm = Guid::from_u128(99);
    sim.create_compute_system(
        second_vm,
        VmConfig::default(),
        GuestVm::with_default_pool(GuestKind::Windows),
    )
    .unwrap();
    let first = sim.open_compute_system(VM).unwrap();
    let second = sim.open_compute_system(second_vm).unwrap();
    sim.initialize_device_host(first, DeviceHostFlags::InitializeComSecurity)
        .unwrap();
    assert_eq!(
        sim.initialize_device_host(second, DeviceHostFlags::InitializeComSecurity),
        Err(HResult::RPC_E_TOO_LATE)
    );
    sim.initialize_device_host(second, DeviceHostFlags::None)
        .unwrap();
}

#[test]
fn hosts_and_devices_only_before_the_start() {
    let mut s = setup();
    s.sim.start_compute_system(VM).unwrap();
    assert_eq!(
        s.sim
            .initialize_device_host(s.system, DeviceHostFlags::None),
        Err(codes::INVALID_STATE)
    );
    let other = Arc::new(Emulator::new(PciPnpId::default(), 0));
    assert_eq!(
        s.sim
            .create_pci_device(s.host, CLASS, Guid::from_u128(3), other),
        Err(codes::INVALID_STATE)
    );
}

#[test]
fn pause_and_resume_follow_the_vm_state() {
    let mut s = setup();
    assert_eq!(
        s.sim.pause(s.system),
        Err(codes::INVALID_STATE),
        "not started"
    );
    s.sim.start_compute_system(VM).unwrap();
    assert_eq!(
        s.sim.resume(s.system),
        Err(codes::INVALID_STATE),
        "not paused"
    );
    s.sim.pause(s.system).unwrap();
    assert_eq!(s.sim.vm_state(VM), Some(VmState::Paused));
    assert_eq!(
        s.sim.pause(s.system),
        Err(codes::INVALID_STATE),
        "already paused"
    );
    s.sim.resume(s.system).unwrap();
    assert_eq!(
        s.sim.open_compute_system(Guid::from_u128(1)),
        Err(codes::NOT_FOUND)
    );
    assert_eq!(s.sim.pause(ComputeSystem(1)), Err(codes::BAD_HANDLE));
}

#[test]
fn teardown_runs_on_the_initializing_thread_after_the_vm_stopped_and_releases_everything() {
    let mut s = setup();
    s.sim.start_compute_system(VM).unwrap();
    let handle = section(&s, 4, SectionAccess::HDV_READ_WRITE);
    s.sim.pause(s.system).unwrap();
    s.sim
        .create_section_backed_mmio_range(s.device, &range(handle, 0, 4))
        .unwrap();
    s.sim.resume(s.system).unwrap();
    // hdv.md §5 step 6: stop the VM, destroy the ranges, tear down.
    s.sim.terminate_compute_system(VM).unwrap();
    s.sim
        .destroy_section_backed_mmio_range(s.device, 2, 0)
        .unwrap();

    let mut elsewhere = s.sim.clone();
    let host = s.host;
    let result = std::thread::spawn(move || elsewhere.teardown_device_host(host))
        .join()
        .unwrap();
    assert_eq!(result, Err(codes::WRONG_THREAD));

    s.sim.teardown_device_host(s.host).unwrap();
    assert_eq!(s.sim.teardown_device_host(s.host), Err(codes::BAD_HANDLE));
    assert_eq!(
        s.sim.destroy_section_backed_mmio_range(s.device, 2, 0),
        Err(codes::BAD_HANDLE)
    );
    assert!(s.sim.guest_devices(VM).is_empty());
    s.sim.close_compute_system(s.system);
    s.sim.close_compute_system(s.system);
    let counters = s.sim.counters();
    assert!(counters.all_released(), "{counters:?}");
    assert_eq!(counters.ranges_released_by_teardown, 0);
    assert_eq!(counters.invalid_closes, 1);
    assert_eq!(
        s.handles.open_count(),
        1,
        "only the device host's own handle"
    );
}

#[test]
fn the_guest_sees_only_declared_started_devices() {
    let (_, mut sim) = world();
    let system = sim.open_compute_system(VM).unwrap();
    let host = sim
        .initialize_device_host(system, DeviceHostFlags::None)
        .unwrap();
    let declared = Arc::new(Emulator::new(PciPnpId::default(), 2));
    declared.set_layout(BarLayout::plan(&[4096]).unwrap());
    let undeclared = Arc::new(Emulator::new(PciPnpId::default(), 2));
    undeclared.set_layout(BarLayout::plan(&[4096]).unwrap());
    sim.create_pci_device(host, CLASS, INSTANCE, declared)
        .unwrap();
    sim.create_pci_device(host, CLASS, Guid::from_u128(8), undeclared.clone())
        .unwrap();
    assert!(sim.guest_devices(VM).is_empty(), "not started");
    sim.start_compute_system(VM).unwrap();
    let visible = sim.guest_devices(VM);
    assert_eq!(visible.len(), 1);
    assert_eq!(visible[0].instance_id, INSTANCE);
    assert_eq!(
        visible[0].probed_bars,
        [0, 0, 0xFFFF_F00C, 0xFFFF_FFFF, 0, 0]
    );
    assert!(
        undeclared.events().is_empty(),
        "an undeclared device gets no callbacks"
    );
}

#[test]
fn the_no_effect_quirk_hides_ranges_from_the_guest() {
    let mut s = setup();
    s.sim.set_quirks(PlatformQuirks {
        mapping_has_no_effect: true,
        ..PlatformQuirks::default()
    });
    s.sim.start_compute_system(VM).unwrap();
    let handle = section(&s, 4, SectionAccess::HDV_READ_WRITE);
    s.sim.pause(s.system).unwrap();
    s.sim
        .create_section_backed_mmio_range(s.device, &range(handle, 0, 4))
        .unwrap();
    s.sim.resume(s.system).unwrap();
    assert_eq!(s.sim.live_ranges(), 1, "the call succeeds");
    assert!(
        s.sim.guest_devices(VM)[0].ranges.is_empty(),
        "but the guest does not see it"
    );
}

#[test]
fn the_compute_system_drives_the_one_shared_vm() {
    let handles = Arc::new(Handles::default());
    let mut sim = HdvSim::new(handles, DEVICE_HOST);
    let guest = GuestVm::with_default_pool(GuestKind::Linux);
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    guest.on_power_change(move |_, change| log.lock().unwrap().push(change.to));
    sim.create_compute_system(VM, VmConfig::default(), guest.clone())
        .unwrap();
    assert_eq!(
        sim.create_compute_system(Guid::from_u128(2), VmConfig::default(), guest.clone()),
        Err(codes::INVALID_ARGUMENT),
        "one GuestVm is one compute system"
    );
    let system = sim.open_compute_system(VM).unwrap();
    sim.start_compute_system(VM).unwrap();
    sim.pause(system).unwrap();
    assert_eq!(guest.power(), Power::Paused);
    sim.resume(system).unwrap();
    sim.terminate_compute_system(VM).unwrap();
    assert_eq!(sim.vm_state(VM), Some(guest.power()));
    assert_eq!(
        *seen.lock().unwrap(),
        [
            Power::Running,
            Power::Paused,
            Power::Running,
            Power::Stopped
        ]
    );
    assert!(sim.guest_vm(VM).unwrap().same_vm(&guest));
    let started = GuestVm::with_default_pool(GuestKind::Linux);
    started.set_power(Power::Running);
    assert_eq!(
        sim.create_compute_system(Guid::from_u128(3), VmConfig::default(), started),
        Err(codes::INVALID_ARGUMENT),
        "a compute system starts from a created VM"
    );
    sim.close_compute_system(system);
}

/// Defect 5 (issue 7): hdv.md §3.1 (hcs-rs: teardown after the compute system terminated) and
/// §5 step 6. The old model accepted the teardown while the VM ran and counted the ranges it
/// released as released.
#[test]
fn defect_05_teardown_is_refused_while_the_vm_runs_and_undestroyed_ranges_leak() {
    let mut s = setup();
    s.sim.start_compute_system(VM).unwrap();
    let handle = section(&s, 4, SectionAccess::HDV_READ_WRITE);
    s.sim.pause(s.system).unwrap();
    s.sim
        .create_section_backed_mmio_range(s.device, &range(handle, 0, 4))
        .unwrap();
    assert_eq!(
        s.sim.teardown_device_host(s.host),
        Err(codes::INVALID_STATE),
        "paused"
    );
    s.sim.resume(s.system).unwrap();
    assert_eq!(
        s.sim.teardown_device_host(s.host),
        Err(codes::INVALID_STATE),
        "running"
    );
    assert_eq!(s.sim.counters().teardowns_refused_while_running, 2);
    assert_eq!(s.sim.live_ranges(), 1, "nothing was released");
    // Stopped: the teardown goes ahead, but the range it releases was never destroyed.
    s.sim.terminate_compute_system(VM).unwrap();
    s.sim.teardown_device_host(s.host).unwrap();
    s.sim.close_compute_system(s.system);
    let counters = s.sim.counters();
    assert_eq!(counters.ranges_released_by_teardown, 1);
    assert!(!counters.all_released(), "an undestroyed range is a leak");
}

/// Defect 8 (issue 7): hdv.md §3.3, the section handle needs read/write/**query**. The old
/// model accepted map rights alone.
#[test]
fn defect_08_hdv_requires_section_query_on_the_handle() {
    let mut s = setup();
    s.sim.start_compute_system(VM).unwrap();
    s.sim.pause(s.system).unwrap();
    let no_query = section(&s, 4, SectionAccess::READ_WRITE);
    let read_no_query = section(&s, 4, SectionAccess::READ);
    assert_eq!(
        s.sim
            .create_section_backed_mmio_range(s.device, &range(no_query, 0, 4)),
        Err(codes::ACCESS_DENIED)
    );
    let read_only = MmioRange {
        flags: MmioMappingFlags::default(),
        ..range(read_no_query, 0, 4)
    };
    assert_eq!(
        s.sim.create_section_backed_mmio_range(s.device, &read_only),
        Err(codes::ACCESS_DENIED)
    );
    let with_query = section(&s, 4, SectionAccess::HDV_READ_WRITE);
    s.sim
        .create_section_backed_mmio_range(s.device, &range(with_query, 0, 4))
        .unwrap();
    s.sim.resume(s.system).unwrap();
}

/// Defect 9 (issue 7): hdv.md §3.3, the COM layer marshals the section handle
/// (`system_handle(sh_section)`) into the VM worker. With the real section model: the worker's
/// duplicate keeps the section alive after the driver released it and the device host died,
/// and leak counts see it until the range is destroyed or the worker exits.
#[test]
fn defect_09_the_worker_holds_a_duplicate_of_each_mapped_section() {
    let kernel = SimKernel::new();
    let device_host = kernel.spawn_process();
    let mut sim = HdvSim::new(Arc::new(kernel.clone()), device_host);
    sim.create_compute_system(
        VM,
        hdv_support::vm_config(),
        GuestVm::with_default_pool(GuestKind::Linux),
    )
    .unwrap();
    let emulator = Arc::new(Emulator::new(PciPnpId::default(), 2));
    emulator.set_layout(BarLayout::plan(&[8192, 4096]).unwrap());
    let system = sim.open_compute_system(VM).unwrap();
    let host = sim
        .initialize_device_host(system, DeviceHostFlags::None)
        .unwrap();
    let device = sim
        .create_pci_device(host, CLASS, INSTANCE, emulator)
        .unwrap();
    sim.start_compute_system(VM).unwrap();
    let worker = sim.worker_process(VM).unwrap();
    kernel.set_current_process(device_host);
    let mut sections = Vec::new();
    let mut handles = Vec::new();
    for _ in 0..2 {
        let section = kernel.create_section(8192).unwrap();
        let handle = kernel
            .open_user_handle(&section, RegionAccess::ReadWrite.access_mask())
            .unwrap();
        sections.push(section);
        handles.push(handle.0);
    }
    sim.pause(system).unwrap();
    sim.create_section_backed_mmio_range(device, &range(handles[0], 0, 2))
        .unwrap();
    sim.create_section_backed_mmio_range(device, &range(handles[1], 2, 2))
        .unwrap();
    sim.resume(system).unwrap();
    assert_eq!(kernel.handle_count(worker), 2, "one duplicate per range");

    // Destroying a range closes its duplicate.
    sim.destroy_section_backed_mmio_range(device, 2, 2).unwrap();
    assert_eq!(kernel.handle_count(worker), 1);

    // The driver releases its references and the device host dies: the worker's duplicate of
    // the still-mapped section keeps it alive, and the leak counts see it.
    let still_mapped = sections[0].object();
    for section in sections {
        kernel.close_section(section);
    }
    kernel.exit_process(device_host);
    assert!(kernel.is_alive(still_mapped));
    assert_eq!(kernel.live_sections(), 1);
    assert!(!kernel.counters().all_released());

    // The VM stops: the worker exits and with it the last handle.
    sim.terminate_compute_system(VM).unwrap();
    assert!(!kernel.is_alive(still_mapped));
    assert!(kernel.process_is_clean(worker));
    assert!(kernel.counters().all_released(), "{:?}", kernel.counters());
    let counters = sim.counters();
    assert_eq!(
        (
            counters.worker_duplicates,
            counters.worker_duplicates_closed
        ),
        (2, 2)
    );
    assert_eq!(sim.worker_process(VM), None);
}

/// A device whose configuration space has a capability list (status bit 4 of the status
/// register, pointer at 0x34): a vendor-specific capability (0x09) at 0x40, then MSI (0x05) at
/// 0x50. Its BAR2 is 16 KiB, 64-bit.
struct CapabilityDevice;

impl PciDeviceCallbacks for CapabilityDevice {
    fn initialize(&self) -> Result<(), HResult> {
        Ok(())
    }
    fn teardown(&self) {}
    fn set_configuration(&self, _: &[String]) -> Result<(), HResult> {
        Ok(())
    }
    fn get_details(&self, probed: &mut [u32]) -> Result<PciPnpId, HResult> {
        probed.copy_from_slice(&[0, 0, 0xFFFF_C00C, 0xFFFF_FFFF, 0, 0]);
        Ok(PciPnpId::default())
    }
    fn start(&self) -> Result<(), HResult> {
        Ok(())
    }
    fn stop(&self) {}
    fn read_config_space(&self, offset: u32) -> Result<u32, HResult> {
        Ok(match offset {
            0x00 => 0x1110_1af4,
            // Status: capabilities list; command bits the emulator would hold (never seen).
            0x04 => 0x0010_0000 | 0x0006,
            0x34 => 0x40,
            0x40 => 0x0010_5009,
            0x50 => 0x0000_0005,
            _ => 0,
        })
    }
    fn write_config_space(&self, _: u32, _: u32) -> Result<(), HResult> {
        Ok(())
    }
    fn read_intercepted_memory(&self, _: u32, _: u64, _: &mut [u8]) -> Result<(), HResult> {
        Ok(())
    }
    fn write_intercepted_memory(&self, _: u32, _: u64, _: &[u8]) -> Result<(), HResult> {
        Ok(())
    }
}

#[test]
fn the_guest_walks_the_capability_list_the_emulator_serves() {
    let (_, mut sim) = world();
    let system = sim.open_compute_system(VM).unwrap();
    let host = sim
        .initialize_device_host(system, DeviceHostFlags::None)
        .unwrap();
    sim.create_pci_device(host, CLASS, INSTANCE, Arc::new(CapabilityDevice))
        .unwrap();
    sim.start_compute_system(VM).unwrap();
    let pci = GuestPci::new(&sim, VM).unwrap();
    pci.probe().unwrap();
    assert_eq!(
        pci.capabilities(INSTANCE).unwrap(),
        [
            Capability {
                id: 0x09,
                offset: 0x40
            },
            Capability {
                id: 0x05,
                offset: 0x50
            }
        ]
    );
    // The status half comes from the emulator, the command half from the platform (decode
    // off after pci-hyperv's prepopulate_bars, whatever the emulator says).
    assert_eq!(pci.config_read(INSTANCE, 0x04).unwrap(), 0x0010_0000);
    sim.terminate_compute_system(VM).unwrap();
    assert_eq!(
        pci.capabilities(INSTANCE),
        Err(GuestPciError::Vpci(VpciError::VmNotRunning))
    );
}
