//! The guest's view of the device end to end: the device host's real call sequence runs
//! against the HDV model, the guest's vPCI bus driver (Linux pci-hyperv or Windows vpci.sys)
//! places the BAR through the vPCI platform, and its MMIO reaches the driver's section bytes
//! through the section-backed mapping or through the emulator's intercepts, byte for byte.

mod hdv_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hdv_support::{
    DEVICE_HOST, Handles, INSTANCE, SimClock, TestDriver, VM, devhost_config, world_with,
};
use hvsim::guest_memory::GuestPhysicalMemory;
use hvsim::hdv::{
    EARLY_MAPPING_CRASH, HdvSim, PlatformQuirks, SimSectionMapper, ViewCounters, VpciError,
};
use hvsim::memory::SectionMemory;
use hvsim::vm::{ClaimOwner, ClaimRequest, GpaRange, GuestKind, GuestVm, MmioPool, Power};
use hvsim::vpci::{GuestBar, GuestPci, GuestPciError};
use vmbmmio_devhost::driver::MappingState;
use vmbmmio_devhost::guid::Guid;
use vmbmmio_devhost::hresult::HResult;
use vmbmmio_devhost::platform::HcsApi;
use vmbmmio_devhost::sequence::{Backends, DeviceHost, Progress};

type Host = DeviceHost<HdvSim, HdvSim, TestDriver, SimSectionMapper>;

/// The device's BAR: index 2, 16 KiB, 64-bit (regions of 8 KiB and 4 KiB, rounded up).
const BAR: u8 = 2;
const BAR_SIZE: u64 = 16384;
const GIB: u64 = 1 << 30;

struct Scene {
    handles: Arc<Handles>,
    sim: HdvSim,
    host: Host,
    sections: Vec<Arc<SectionMemory>>,
    mapper_counters: Arc<ViewCounters>,
    guest: GuestPhysicalMemory,
    pci: GuestPci,
}

/// The device host is up and the VM (whose guest is `guest`) created; the VM is not started.
fn scene_with(guest: GuestVm) -> Scene {
    let (handles, sim) = world_with(guest);
    let driver = TestDriver::new(handles.clone());
    let sections = driver.sections.clone();
    let closer = handles.clone();
    let mapper = SimSectionMapper::new(handles.clone(), DEVICE_HOST)
        .with_handle_closer(move |process, handle| closer.close(process, handle));
    let mapper_counters = mapper.counters();
    let backends = Backends {
        hcs: sim.clone(),
        hdv: sim.clone(),
        driver,
        mapper,
    };
    let host = DeviceHost::start(&devhost_config(), backends, Box::new(|_| {})).unwrap();
    let sections = sections.lock().unwrap().clone();
    let guest = GuestPhysicalMemory::new(&sim, VM);
    let pci = GuestPci::new(&sim, VM).unwrap();
    Scene {
        handles,
        sim,
        host,
        sections,
        mapper_counters,
        guest,
        pci,
    }
}

fn scene_of(kind: GuestKind) -> Scene {
    scene_with(GuestVm::with_default_pool(kind))
}

fn scene() -> Scene {
    scene_of(GuestKind::Linux)
}

fn start_and_map(scene: &mut Scene) {
    let clock = SimClock::new(&scene.sim, Some(2));
    let progress = scene
        .host
        .map_regions(&clock, &AtomicBool::new(false))
        .unwrap();
    assert_eq!(progress, Progress::Mapped);
}

/// The guest's vPCI bus driver brings the device up; a Linux guest's driver then enables
/// memory decode (`pci_enable_device`). Returns the BAR as the guest knows it.
fn place(scene: &Scene) -> GuestBar {
    scene.pci.probe().unwrap();
    scene.pci.set_memory_decode(INSTANCE, true).unwrap();
    scene.pci.bar(INSTANCE, BAR).unwrap()
}

/// hdv.md §5 step 6: the VM stops, then the device host destroys its ranges and tears down.
fn shutdown_and_check(scene: Scene) {
    let Scene {
        handles,
        sim,
        host,
        mapper_counters,
        ..
    } = scene;
    if sim.vm_state(VM).is_some_and(Power::guest_exists) {
        sim.terminate_compute_system(VM).unwrap();
    }
    assert!(host.shutdown().is_clean());
    let counters = sim.counters();
    assert!(counters.all_released(), "{counters:?}");
    assert_eq!(
        counters.range_changes_while_running, 0,
        "every change was made paused"
    );
    assert_eq!(
        mapper_counters.mapped.load(Ordering::SeqCst),
        mapper_counters.unmapped.load(Ordering::SeqCst)
    );
    assert_eq!(
        handles.open_count(),
        0,
        "every device-host handle was closed, and the worker's duplicates with the worker"
    );
}

#[test]
fn a_linux_guest_finds_the_device_and_pci_hyperv_places_its_bar() {
    let mut scene = scene();
    start_and_map(&mut scene);
    let reports = scene.pci.probe().unwrap();
    assert_eq!(reports.len(), 1);
    let report = &reports[0];
    // hv_allocate_config_window (kdump fix): 0x2000 bytes, 0x1000-aligned, at or above 4 GiB.
    let config = report.config_window.unwrap();
    assert_eq!(config.size, 0x2000);
    assert!(config.base >= 4 * GIB && config.base.is_multiple_of(0x1000));
    // One high bridge window (the BAR is 64-bit), aligned to the largest power of two not
    // above its size.
    assert_eq!(report.windows.len(), 1);
    let window = report.windows[0];
    assert!(window.base >= 4 * GIB);
    assert_eq!(window.size, BAR_SIZE);
    assert!(window.base.is_multiple_of(BAR_SIZE));
    // prepopulate_bars: the BAR at the window's start, decode left off.
    let bar = report.bars[0];
    assert_eq!(
        (
            bar.bar,
            bar.base,
            bar.size,
            bar.is_64bit,
            bar.inside_own_window
        ),
        (BAR, window.base, BAR_SIZE, true, true)
    );
    assert!(!report.memory_decode);
    assert_eq!(scene.pci.config_read(INSTANCE, 0x04).unwrap() & 0x2, 0);
    assert_eq!(
        scene.sim.vpci_platform_bars(VM, INSTANCE).unwrap(),
        (
            vec![hvsim::vpci::PlatformBar {
                bar: BAR,
                base: window.base,
                size: BAR_SIZE,
                is_64bit: true
            }],
            false
        )
    );
    // Enumeration: the IDs come from the emulator's configuration space.
    let functions = scene.pci.functions().unwrap();
    assert_eq!(functions.len(), 1);
    assert_eq!(
        (
            functions[0].instance,
            functions[0].vendor_id,
            functions[0].device_id
        ),
        (INSTANCE, 0x1af4, 0x1110)
    );
    // BAR registers read all ones on this platform (strict reading): the guest uses its shadow.
    for offset in (0x10..0x28).step_by(4) {
        assert_eq!(scene.pci.config_read(INSTANCE, offset).unwrap(), u32::MAX);
    }
    assert_eq!(
        scene.pci.config_read(Guid::from_u128(1), 0),
        Err(GuestPciError::Vpci(VpciError::NoDevice))
    );
    shutdown_and_check(scene);
}

#[test]
fn mapped_pages_reach_the_section_bytes_both_ways() {
    let mut scene = scene();
    start_and_map(&mut scene);
    assert_eq!(
        scene.host.mapping_states(),
        vec![MappingState::SectionBacked; 2]
    );
    let base = place(&scene).base;

    // Guest writes across the page boundary inside region 0 (BAR pages 0-1).
    let data: Vec<u8> = (0..64).collect();
    let report = scene.guest.write(base + 4096 - 32, &data);
    assert_eq!(report.section_bytes, 64);
    assert_eq!(report.intercepted_calls, 0);
    let mut back = vec![0; 64];
    scene.sections[0].read(4096 - 32, &mut back).unwrap();
    assert_eq!(back, data);

    // The driver writes region 1; the guest reads it at BAR page 2.
    scene.sections[1].write(100, b"hello guest").unwrap();
    let mut read = [0; 11];
    let report = scene.guest.read(base + 2 * 4096 + 100, &mut read);
    assert_eq!((&read, report.section_bytes), (b"hello guest", 11));
    assert_eq!(
        scene.host.emulator().intercepts().total(2),
        0,
        "no access reached the emulator"
    );
    shutdown_and_check(scene);
}

#[test]
fn unmapped_pages_are_served_by_intercepts_from_the_same_bytes() {
    // Before the mapping (the VM runs, the device host has not mapped yet), every access is
    // intercepted; the bytes are still the section's.
    let mut scene = scene();
    scene.sim.start_compute_system(VM).unwrap();
    let base = place(&scene).base;
    let report = scene
        .guest
        .write(base + 8192 + 3, &0x1122_3344_5566_7788u64.to_le_bytes());
    // 8 bytes at an odd offset: naturally aligned pieces of 1, 4, 2, 1 bytes.
    assert_eq!((report.intercepted_calls, report.intercepted_bytes), (4, 8));
    let mut back = [0; 8];
    scene.sections[1].read(3, &mut back).unwrap();
    assert_eq!(u64::from_le_bytes(back), 0x1122_3344_5566_7788);
    scene.sections[0].write(0, &[9; 4]).unwrap();
    let mut word = [0; 4];
    let report = scene.guest.read(base, &mut word);
    assert_eq!((word, report.intercepted_calls), ([9; 4], 1));
    let counts = scene.host.emulator().intercepts();
    assert_eq!((counts.reads[2], counts.writes[2]), (1, 4));
    assert_eq!(counts.per_region, [1, 4]);
    // The power-of-two padding (BAR page 3) belongs to no region: reads 0.
    let report = scene.guest.read(base + 3 * 4096, &mut word);
    assert_eq!((word, report.intercepted_calls), ([0; 4], 1));

    // Once mapped, the same bytes come through the section directly.
    let clock = SimClock::new(&scene.sim, None);
    scene
        .host
        .map_regions(&clock, &AtomicBool::new(false))
        .unwrap();
    let report = scene.guest.read(base + 8192 + 3, &mut back);
    assert_eq!(
        (u64::from_le_bytes(back), report.section_bytes),
        (0x1122_3344_5566_7788, 8)
    );
    scene.host.check_fast_path().unwrap();
    assert_eq!(
        scene.host.mapping_states(),
        vec![MappingState::SectionBacked; 2]
    );
    shutdown_and_check(scene);
}

#[test]
fn the_observed_no_effect_mapping_is_detected_and_the_data_stays_right() {
    let mut scene = scene();
    scene.sim.set_quirks(PlatformQuirks {
        mapping_has_no_effect: true,
        ..PlatformQuirks::default()
    });
    start_and_map(&mut scene);
    assert_eq!(
        scene.host.mapping_states(),
        vec![MappingState::SectionBacked; 2]
    );
    let base = place(&scene).base;
    let report = scene.guest.write(base + 16, b"through intercepts");
    assert_eq!(report.section_bytes, 0);
    assert!(report.intercepted_calls > 0);
    let mut back = [0; 18];
    scene.sections[0].read(16, &mut back).unwrap();
    assert_eq!(&back, b"through intercepts");
    scene.host.check_fast_path().unwrap();
    assert_eq!(
        scene.host.mapping_states(),
        vec![
            MappingState::InterceptFallback {
                hresult: HResult::S_OK
            },
            MappingState::SectionBacked
        ]
    );
    shutdown_and_check(scene);
}

#[test]
fn accesses_outside_a_placed_decoding_bar_are_refused_with_all_ones() {
    let mut scene = scene();
    start_and_map(&mut scene);
    let mut word = [0u8; 4];
    // Not placed yet: no address reaches the device.
    let (pool_high, _) = (scene.pci.guest_vm().pool_windows()[1], ());
    assert_eq!(scene.guest.read(pool_high.base, &mut word).refused_bytes, 4);
    assert_eq!(word, [0xFF; 4]);
    // pci-hyperv placed the BAR but left decode off: still refused.
    scene.pci.probe().unwrap();
    let base = scene.pci.bar(INSTANCE, BAR).unwrap().base;
    assert_eq!(scene.guest.read(base, &mut word).refused_bytes, 4);
    scene.pci.set_memory_decode(INSTANCE, true).unwrap();
    scene.sections[0].write(0, &[1, 2, 3, 4]).unwrap();
    assert_eq!(scene.guest.read(base, &mut word).section_bytes, 4);
    // Memory decode off: refused, and writes do not land.
    scene.pci.set_memory_decode(INSTANCE, false).unwrap();
    assert_eq!(scene.guest.read(base, &mut word).refused_bytes, 4);
    assert_eq!(word, [0xFF; 4]);
    assert_eq!(scene.guest.write(base, &[7; 4]).refused_bytes, 4);
    scene.pci.set_memory_decode(INSTANCE, true).unwrap();
    // Past the end of the BAR, and an access straddling the end.
    assert_eq!(
        scene.guest.read(base + BAR_SIZE, &mut word).refused_bytes,
        4
    );
    let mut eight = [0; 8];
    let report = scene.guest.read(base + BAR_SIZE - 4, &mut eight);
    assert_eq!((report.intercepted_bytes, report.refused_bytes), (4, 4));
    assert_eq!(&eight[4..], [0xFF; 4]);
    let mut back = [0; 4];
    scene.sections[0].read(0, &mut back).unwrap();
    assert_eq!(back, [1, 2, 3, 4]);
    // A paused VM runs no guest code: the model refuses its accesses and its config cycles.
    let mut hcs = scene.sim.clone();
    let system = hcs.open_compute_system(VM).unwrap();
    hcs.pause(system).unwrap();
    assert_eq!(scene.guest.read(base, &mut word).refused_bytes, 4);
    assert_eq!(
        scene.pci.config_read(INSTANCE, 0),
        Err(GuestPciError::Vpci(VpciError::VmNotRunning))
    );
    hcs.resume(system).unwrap();
    hcs.close_compute_system(system);
    scene.guest.read(base, &mut word);
    assert_eq!(word, [1, 2, 3, 4]);
    shutdown_and_check(scene);
}

#[test]
fn the_vm_start_may_come_after_the_device_host_waits_and_terminate_ends_serving() {
    let mut scene = scene();
    // The VM starts on the device host's third poll.
    let clock = SimClock::new(&scene.sim, Some(3));
    scene
        .host
        .map_regions(&clock, &AtomicBool::new(false))
        .unwrap();
    assert_eq!(*clock.sleeps.lock().unwrap(), 3);
    assert_eq!(
        scene.sim.counters().ranges_refused_before_start,
        0,
        "nothing tried before Start"
    );
    scene.sim.terminate_compute_system(VM).unwrap();
    let end = scene
        .host
        .serve(
            &clock,
            &AtomicBool::new(false),
            std::time::Duration::from_secs(1),
        )
        .unwrap();
    assert_eq!(end, vmbmmio_devhost::sequence::ServeEnd::VmTornDown);
    // The VM is stopped: the unmapping cannot pause it and goes ahead anyway.
    shutdown_and_check(scene);
}

#[test]
fn a_windows_guest_gets_one_pnp_assignment_per_bar_with_decode_on() {
    let mut scene = scene_of(GuestKind::Windows);
    start_and_map(&mut scene);
    let reports = scene.pci.probe().unwrap();
    let report = &reports[0];
    assert_eq!(report.config_window, None, "no pci-hyperv window");
    assert_eq!(report.windows.len(), 1);
    let bar = report.bars[0];
    assert_eq!(report.windows[0], bar.range());
    assert!(bar.base.is_multiple_of(BAR_SIZE) && bar.inside_own_window);
    assert!(
        report.memory_decode,
        "vpci.sys starts the device with decode on"
    );
    assert!(scene.pci.guest_vm().claims().iter().any(|claim| {
        claim.owner
            == ClaimOwner::VpciBar {
                instance: INSTANCE.to_u128(),
                bar: BAR,
            }
            && claim.range == bar.range()
    }));
    scene.sections[1].write(0, b"windows").unwrap();
    let mut read = [0; 7];
    assert_eq!(
        scene.guest.read(bar.base + 8192, &mut read).section_bytes,
        7
    );
    assert_eq!(&read, b"windows");
    shutdown_and_check(scene);
}

#[test]
fn bar_writes_are_ignored_while_decode_is_on_and_the_guest_shadow_can_lie() {
    let mut scene = scene();
    start_and_map(&mut scene);
    let placed = place(&scene);
    let elsewhere = placed.base + 64 * BAR_SIZE;
    // Written with decode on: Hyper-V silently ignores it (pci-hyperv prepopulate_bars).
    scene.pci.write_bar(INSTANCE, BAR, elsewhere).unwrap();
    assert_eq!(scene.sim.counters().bar_writes_ignored_while_decoding, 2);
    assert_eq!(
        scene.pci.bar(INSTANCE, BAR).unwrap().base,
        elsewhere,
        "the guest believes what it wrote"
    );
    let (bars, decode) = scene.sim.vpci_platform_bars(VM, INSTANCE).unwrap();
    assert_eq!(
        (bars[0].base, decode),
        (placed.base, true),
        "the platform did not move it"
    );
    scene.sections[0].write(0, &[5; 4]).unwrap();
    let mut word = [0; 4];
    assert_eq!(scene.guest.read(elsewhere, &mut word).refused_bytes, 4);
    assert_eq!(scene.guest.read(placed.base, &mut word).section_bytes, 4);
    assert_eq!(word, [5; 4]);
    shutdown_and_check(scene);
}

#[test]
fn the_bar_and_other_claims_are_disjoint() {
    for kind in [GuestKind::Linux, GuestKind::Windows] {
        let mut scene = scene_of(kind);
        start_and_map(&mut scene);
        // The channel's driver claimed its range first (Linux: vmbus_allocate_mmio; Windows:
        // the VMBus driver's PnP reservation), BAR-sized and BAR-aligned to tempt an overlap.
        let vm = scene.pci.guest_vm().clone();
        let channel = vm
            .claim(
                ClaimOwner::ChannelReservation(1),
                ClaimRequest::high(BAR_SIZE, BAR_SIZE),
            )
            .unwrap();
        let bar = place(&scene);
        assert!(!bar.range().overlaps(&channel), "{kind:?}");
        let claims = vm.claims();
        for (i, a) in claims.iter().enumerate() {
            for b in &claims[i + 1..] {
                assert!(!a.range.overlaps(&b.range), "{kind:?}: {a:?} and {b:?}");
            }
        }
        shutdown_and_check(scene);
    }
}

#[test]
fn no_room_for_the_bridge_window_is_a_clear_error() {
    // A pool whose high window holds the configuration window but not a 16 KiB BAR.
    let pool = MmioPool::new(&[
        GpaRange {
            base: 0xF000_0000,
            size: 1 << 20,
        },
        GpaRange {
            base: 8 * GIB,
            size: 0x4000,
        },
    ]);
    let mut scene = scene_with(GuestVm::new(GuestKind::Linux, pool));
    start_and_map(&mut scene);
    let error = scene.pci.probe().unwrap_err();
    assert_eq!(
        error,
        GuestPciError::NoMmioSpace {
            high: true,
            size: BAR_SIZE
        }
    );
    assert_eq!(
        error.to_string(),
        "Need 0x4000 of high MMIO space. Consider reconfiguring the VM."
    );
    assert!(
        scene.pci.guest_vm().claims().is_empty(),
        "the failed bring-up released its configuration window"
    );
    assert_eq!(scene.pci.bar(INSTANCE, BAR), None);
    shutdown_and_check(scene);
}

#[test]
fn a_bar_moved_into_the_channels_range_is_accepted_but_flagged() {
    let mut scene = scene();
    start_and_map(&mut scene);
    // platform-paths.md J2: the channel driver claims a BAR-sized, BAR-aligned range...
    let vm = scene.pci.guest_vm().clone();
    let channel = vm
        .claim(
            ClaimOwner::ChannelReservation(1),
            ClaimRequest::anywhere(BAR_SIZE, BAR_SIZE),
        )
        .unwrap();
    let placed = place(&scene);
    // ...and moves the BAR there: decode off, BAR written, decode on.
    assert_eq!(
        scene.pci.move_bar(INSTANCE, BAR, channel.base + 4096),
        Err(GuestPciError::Misaligned { size: BAR_SIZE })
    );
    let moved = scene.pci.move_bar(INSTANCE, BAR, channel.base).unwrap();
    assert_eq!(moved.range(), channel);
    assert!(
        !moved.inside_own_window,
        "flagged: outside its bridge window"
    );
    assert!(placed.inside_own_window);
    // The platform accepted it (no range check, like OpenVMM set_bars): the sections follow.
    scene.sections[0].write(0, b"moved").unwrap();
    let mut read = [0; 5];
    assert_eq!(scene.guest.read(channel.base, &mut read).section_bytes, 5);
    assert_eq!(&read, b"moved");
    assert_eq!(scene.guest.read(placed.base, &mut read).refused_bytes, 5);
    shutdown_and_check(scene);
}

/// Defect 1 (issue 7): the old `GuestPhysicalMemory::assign_bar` put the BAR at any base the
/// caller chose (the demo computed one inside the channel's reservation). Now only the guest's
/// vPCI places it, in its own window, and nothing else is decoded.
#[test]
fn defect_01_only_the_guests_vpci_places_the_bar_and_by_default_away_from_the_channel() {
    let mut scene = scene();
    start_and_map(&mut scene);
    let vm = scene.pci.guest_vm().clone();
    let channel = vm
        .claim(
            ClaimOwner::ChannelReservation(1),
            ClaimRequest::anywhere(4 << 20, 4096),
        )
        .unwrap();
    // The old demo's placement: the reservation's base rounded up to the BAR size.
    let invented = channel.base.next_multiple_of(BAR_SIZE);
    let mut word = [0; 4];
    assert_eq!(scene.guest.read(invented, &mut word).refused_bytes, 4);
    let bar = place(&scene);
    assert!(bar.inside_own_window);
    assert!(!bar.range().overlaps(&channel));
    assert_eq!(scene.guest.read(invented, &mut word).refused_bytes, 4);
    assert_eq!(scene.guest.read(bar.base, &mut word).refused_bytes, 0);
    shutdown_and_check(scene);
}

/// Defect 4 (issue 7): hdv.md §3.3 observed (Looking Glass, 10.0.26100 nested): a range mapped
/// before the guest enabled memory decode crashed the VM worker when decode went on. The old
/// model had no such outcome.
#[test]
fn defect_04_an_early_mapping_crashes_the_worker_when_decode_goes_on() {
    let mut scene = scene();
    scene.sim.set_quirks(PlatformQuirks::observed_build());
    // The device host maps right after the start, before the guest enabled decode.
    start_and_map(&mut scene);
    let worker = scene.sim.worker_process(VM).unwrap();
    assert_eq!(scene.handles.open_in(worker), 2);
    scene.pci.probe().unwrap();
    assert_eq!(
        scene.pci.set_memory_decode(INSTANCE, true),
        Err(GuestPciError::Vpci(VpciError::WorkerCrashed))
    );
    let vm = scene.pci.guest_vm().clone();
    assert_eq!(vm.power(), Power::Crashed);
    assert_eq!(vm.crash_reason().as_deref(), Some(EARLY_MAPPING_CRASH));
    assert!(EARLY_MAPPING_CRASH.contains("CreateNewRangesForSection"));
    // The guest and its devices are gone: no claims, no device, no access, no worker.
    assert!(vm.claims().is_empty());
    assert!(scene.sim.guest_devices(VM).is_empty());
    assert_eq!(scene.pci.bar(INSTANCE, BAR), None);
    let mut word = [0; 4];
    assert_eq!(scene.guest.read(4 * GIB, &mut word).refused_bytes, 4);
    assert_eq!(
        scene.handles.open_in(worker),
        0,
        "the worker's duplicates died with it"
    );
    assert_eq!(scene.sim.counters().worker_crashes, 1);
    assert!(
        scene.host.emulator().events().last()
            == Some(&vmbmmio_devhost::emulator::LifecycleEvent::Start),
        "a dead worker delivers no Stop or Teardown (strict reading)"
    );
    assert_eq!(
        scene.sim.terminate_compute_system(VM),
        Err(hvsim::hdv::codes::INVALID_STATE)
    );
    // The device host can still clean up: the VM no longer runs.
    shutdown_and_check(scene);
}

#[test]
fn mapping_after_decode_is_on_does_not_crash_even_on_the_observed_build() {
    let mut scene = scene();
    scene.sim.set_quirks(PlatformQuirks {
        early_mapping_crashes_worker: true,
        ..PlatformQuirks::default()
    });
    scene.sim.start_compute_system(VM).unwrap();
    let base = place(&scene).base;
    let clock = SimClock::new(&scene.sim, None);
    scene
        .host
        .map_regions(&clock, &AtomicBool::new(false))
        .unwrap();
    // Toggling decode later is not the observed crash (the ranges were made while decoding).
    scene.pci.set_memory_decode(INSTANCE, false).unwrap();
    scene.pci.set_memory_decode(INSTANCE, true).unwrap();
    assert_eq!(scene.pci.guest_vm().power(), Power::Running);
    scene.sections[0].write(0, &[3; 4]).unwrap();
    let mut word = [0; 4];
    assert_eq!(scene.guest.read(base, &mut word).section_bytes, 4);
    assert_eq!(word, [3; 4]);
    shutdown_and_check(scene);
}

/// Defect 10 (issue 7): on the observed build the platform's vPCI handled the BAR registers
/// itself (hdv.md §3.3). The old model read the BAR base and the decode bit from the device
/// host's emulated configuration space; now they live in the platform, and the emulator never
/// sees the guest's command or BAR writes (strict reading).
#[test]
fn defect_10_bar_base_and_decode_live_in_the_platform_not_in_the_emulator() {
    let mut scene = scene();
    start_and_map(&mut scene);
    let bar = place(&scene);
    let emulator = scene.host.emulator().clone();
    use vmbmmio_devhost::callbacks::PciDeviceCallbacks;
    // The emulator's own registers never saw the guest's writes.
    assert_eq!(emulator.read_config_space(0x04).unwrap() & 0x2, 0);
    assert_eq!(emulator.read_config_space(0x18).unwrap() & !0xF, 0);
    // What the emulator holds does not decode anything either.
    let fake = bar.base + 1024 * BAR_SIZE;
    emulator.write_config_space(0x18, fake as u32).unwrap();
    emulator
        .write_config_space(0x1C, (fake >> 32) as u32)
        .unwrap();
    emulator.write_config_space(0x04, 0x2).unwrap();
    let mut word = [0; 4];
    assert_eq!(scene.guest.read(fake, &mut word).refused_bytes, 4);
    assert_eq!(scene.guest.read(bar.base, &mut word).refused_bytes, 0);
    // Other configuration accesses do reach the emulator (hdv.md §3.3 observed).
    scene.pci.config_write(INSTANCE, 0x3C, 0x0B).unwrap();
    assert_eq!(emulator.read_config_space(0x3C).unwrap() & 0xFF, 0x0B);
    shutdown_and_check(scene);
}
