//! The guest's view of the device end to end: the device host's real call sequence runs
//! against the HDV model, the guest programs the BAR through configuration space, and its
//! MMIO reaches the driver's section bytes through the section-backed mapping or through the
//! emulator's intercepts, byte for byte.

mod hdv_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hdv_support::{
    DEVICE_HOST, Handles, INSTANCE, SimClock, TestDriver, VM, devhost_config, world,
};
use hvsim::guest_memory::{BarAssignment, GuestPciError, GuestPhysicalMemory};
use hvsim::hdv::{HdvSim, PlatformQuirks, SimSectionMapper, ViewCounters};
use hvsim::memory::SectionMemory;
use vmbmmio_devhost::driver::MappingState;
use vmbmmio_devhost::hresult::HResult;
use vmbmmio_devhost::placement::BarPlacement;
use vmbmmio_devhost::platform::HcsApi;
use vmbmmio_devhost::sequence::{Backends, DeviceHost, Progress};

type Host = DeviceHost<HdvSim, HdvSim, TestDriver, SimSectionMapper>;

const BASE: u64 = 0xF_0000_0000;

struct Scene {
    handles: Arc<Handles>,
    sim: HdvSim,
    host: Host,
    sections: Vec<Arc<SectionMemory>>,
    mapper_counters: Arc<ViewCounters>,
    guest: GuestPhysicalMemory,
}

/// The device host is up and the VM created; the VM is not started.
fn scene() -> Scene {
    let (handles, sim) = world();
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
    Scene {
        handles,
        sim,
        host,
        sections,
        mapper_counters,
        guest,
    }
}

/// The guest's report of its BAR (the stand-in for the channel protocol's report): the device
/// host maps only once the BAR is placed with memory decode on.
fn report_placement(scene: &Scene) {
    scene
        .host
        .placement_reported(BarPlacement {
            base: BASE,
            size: 16384,
            memory_decode: true,
        })
        .unwrap();
}

fn map(scene: &mut Scene) {
    report_placement(scene);
    let clock = SimClock::new(&scene.sim, None);
    let progress = scene
        .host
        .map_regions(&clock, &AtomicBool::new(false))
        .unwrap();
    assert_eq!(progress, Progress::Mapped);
}

/// The VM starts, the guest places the BAR and enables decode, the device host maps.
fn start_and_map(scene: &mut Scene) {
    scene.sim.start_compute_system(VM).unwrap();
    assign(scene);
    map(scene);
}

fn assign(scene: &Scene) -> BarAssignment {
    scene.guest.assign_bar(INSTANCE, 2, BASE).unwrap()
}

fn shutdown_and_check(scene: Scene) {
    let Scene {
        handles,
        sim,
        host,
        mapper_counters,
        ..
    } = scene;
    // hdv.md §5 step 6: the VM stops before the device host is torn down (it may be stopped
    // already).
    let _ = sim.terminate_compute_system(VM);
    let report = host.shutdown();
    assert!(report.is_clean(), "{report}");
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
        "every device-host handle was closed"
    );
}

#[test]
fn the_guest_sizes_the_bar_like_getdetails_says() {
    let scene = scene();
    scene.sim.start_compute_system(VM).unwrap();
    let device = &scene.sim.guest_devices(VM)[0];
    let (size, is_64bit) = scene.guest.probe_bar(INSTANCE, 2).unwrap();
    assert_eq!((size, is_64bit), (16384, true));
    // What the BAR reads back after all ones is what GetDetails reported (hdv.md §3.7).
    scene.guest.config_write(INSTANCE, 0x18, u32::MAX);
    scene.guest.config_write(INSTANCE, 0x1C, u32::MAX);
    assert_eq!(
        scene.guest.config_read(INSTANCE, 0x18),
        device.probed_bars[2]
    );
    assert_eq!(
        scene.guest.config_read(INSTANCE, 0x1C),
        device.probed_bars[3]
    );
    assert_eq!(
        scene.guest.probe_bar(INSTANCE, 0),
        Err(GuestPciError::NoMemoryBar)
    );
    assert_eq!(
        scene.guest.assign_bar(INSTANCE, 2, BASE + 4096),
        Err(GuestPciError::Misaligned { size: 16384 })
    );
    let assignment = assign(&scene);
    assert_eq!(
        assignment,
        BarAssignment {
            base: BASE,
            size: 16384,
            is_64bit: true
        }
    );
    assert_eq!(scene.guest.config_read(INSTANCE, 0x18), 0xC);
    assert_eq!(scene.guest.config_read(INSTANCE, 0x1C), 0xF);
    assert_eq!(
        scene.guest.config_read(INSTANCE, 0x04) & 0x2,
        0x2,
        "memory decode on"
    );
    assert_eq!(scene.guest.config_read(INSTANCE, 0x00), 0x1110_1af4);
    let absent = vmbmmio_devhost::guid::Guid::from_u128(1);
    assert_eq!(
        scene.guest.config_read(absent, 0x00),
        u32::MAX,
        "no such device"
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
    assign(&scene);

    // Guest writes across the page boundary inside region 0 (BAR pages 0-1).
    let data: Vec<u8> = (0..64).collect();
    let report = scene.guest.write(BASE + 4096 - 32, &data);
    assert_eq!(report.section_bytes, 64);
    assert_eq!(report.intercepted_calls, 0);
    let mut back = vec![0; 64];
    scene.sections[0].read(4096 - 32, &mut back).unwrap();
    assert_eq!(back, data);

    // The driver writes region 1; the guest reads it at BAR page 2.
    scene.sections[1].write(100, b"hello guest").unwrap();
    let mut read = [0; 11];
    let report = scene.guest.read(BASE + 2 * 4096 + 100, &mut read);
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
    assign(&scene);
    let report = scene
        .guest
        .write(BASE + 8192 + 3, &0x1122_3344_5566_7788u64.to_le_bytes());
    // 8 bytes at an odd offset: naturally aligned pieces of 1, 4, 2, 1 bytes.
    assert_eq!((report.intercepted_calls, report.intercepted_bytes), (4, 8));
    let mut back = [0; 8];
    scene.sections[1].read(3, &mut back).unwrap();
    assert_eq!(u64::from_le_bytes(back), 0x1122_3344_5566_7788);
    scene.sections[0].write(0, &[9; 4]).unwrap();
    let mut word = [0; 4];
    let report = scene.guest.read(BASE, &mut word);
    assert_eq!((word, report.intercepted_calls), ([9; 4], 1));
    let counts = scene.host.emulator().intercepts();
    assert_eq!((counts.reads[2], counts.writes[2]), (1, 4));
    assert_eq!(counts.per_region, [1, 4]);
    // The power-of-two padding (BAR page 3) belongs to no region: reads 0.
    let report = scene.guest.read(BASE + 3 * 4096, &mut word);
    assert_eq!((word, report.intercepted_calls), ([0; 4], 1));

    // Once mapped, the same bytes come through the section directly.
    map(&mut scene);
    let report = scene.guest.read(BASE + 8192 + 3, &mut back);
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
    assign(&scene);
    let report = scene.guest.write(BASE + 16, b"through intercepts");
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
fn accesses_outside_a_decoding_bar_are_refused_with_all_ones() {
    let mut scene = scene();
    scene.sim.start_compute_system(VM).unwrap();
    let mut word = [0u8; 4];
    // BAR not assigned yet.
    assert_eq!(scene.guest.read(BASE, &mut word).refused_bytes, 4);
    assert_eq!(word, [0xFF; 4]);
    assign(&scene);
    map(&mut scene);
    scene.sections[0].write(0, &[1, 2, 3, 4]).unwrap();
    assert_eq!(scene.guest.read(BASE, &mut word).section_bytes, 4);
    // Memory decode off: refused, and writes do not land.
    scene.guest.set_memory_decode(INSTANCE, false);
    assert_eq!(scene.guest.read(BASE, &mut word).refused_bytes, 4);
    assert_eq!(word, [0xFF; 4]);
    assert_eq!(scene.guest.write(BASE, &[7; 4]).refused_bytes, 4);
    scene.guest.set_memory_decode(INSTANCE, true);
    // Past the end of the BAR, and an access straddling the end.
    assert_eq!(scene.guest.read(BASE + 16384, &mut word).refused_bytes, 4);
    let mut eight = [0; 8];
    let report = scene.guest.read(BASE + 16384 - 4, &mut eight);
    assert_eq!((report.intercepted_bytes, report.refused_bytes), (4, 4));
    assert_eq!(&eight[4..], [0xFF; 4]);
    let mut back = [0; 4];
    scene.sections[0].read(0, &mut back).unwrap();
    assert_eq!(back, [1, 2, 3, 4]);
    // A paused VM runs no guest code: the model refuses its accesses.
    let mut hcs = scene.sim.clone();
    let system = hcs.open_compute_system(VM).unwrap();
    hcs.pause(system).unwrap();
    assert_eq!(scene.guest.read(BASE, &mut word).refused_bytes, 4);
    hcs.resume(system).unwrap();
    hcs.close_compute_system(system);
    scene.guest.read(BASE, &mut word);
    assert_eq!(word, [1, 2, 3, 4]);
    shutdown_and_check(scene);
}

#[test]
fn the_vm_start_may_come_after_the_device_host_waits_and_terminate_ends_serving() {
    let mut scene = scene();
    // The VM starts on the device host's third poll; the placement was reported before.
    report_placement(&scene);
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
