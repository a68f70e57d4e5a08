//! The HCS/HDV/driver sequence against fakes: order, retries, fallback, health signal, and
//! reverse-order unwinding after a failure injected at every step.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{BASE, Fake, FakeClock, config, stop_flag};
use vmbmmio_devhost::callbacks::PciDeviceCallbacks;
use vmbmmio_devhost::clock::StopSignal;
use vmbmmio_devhost::driver::{MappingState, RegionInfo, SessionId, SessionInfo};
use vmbmmio_devhost::hresult::HResult;
use vmbmmio_devhost::layout::LayoutError;
use vmbmmio_devhost::platform::MmioMappingFlags;
use vmbmmio_devhost::sequence::{
    Cause, DeviceHost, Event, EventLog, HostTeardown, Progress, RELEASE_DESTROY_ATTEMPTS, Release,
    ServeEnd, Step, run,
};

type Host = DeviceHost<Fake, Fake, Fake, Fake>;

type Recorded = Arc<Mutex<Vec<Event>>>;

fn recorder() -> (Recorded, EventLog) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    (
        events,
        Box::new(move |event: &Event| sink.lock().unwrap().push(event.clone())),
    )
}

/// A host whose VM started on the third poll and whose guest then placed the BAR at [`BASE`]
/// through configuration space, with every region mapped.
fn started_host(fake: &Fake) -> Host {
    {
        let mut world = fake.world();
        world.start_after_sleeps = Some(3);
        world.program_bar_on_start = Some(BASE);
    }
    let host = DeviceHost::start(&config(), fake.backends(), Box::new(|_| {})).unwrap();
    let clock = FakeClock { fake: fake.clone() };
    let mut host = host;
    assert_eq!(
        host.map_regions(&clock, &*stop_flag()).unwrap(),
        Progress::Mapped
    );
    host
}

/// Stops serving once every region has a reported state.
struct StopWhenMapped(Fake);

impl StopSignal for StopWhenMapped {
    fn stop_requested(&self) -> bool {
        let world = self.0.world();
        let reported: std::collections::BTreeSet<u32> = world
            .report_log
            .iter()
            .filter(|(_, state)| *state != MappingState::Unmapped)
            .map(|(region, _)| *region)
            .collect();
        reported.len() == 2
    }
}

#[test]
fn maps_every_region_once_the_vm_runs_and_releases_in_reverse() {
    let fake = Fake::default();
    fake.world().start_after_sleeps = Some(3);
    fake.world().program_bar_on_start = Some(BASE);
    let (events, log) = recorder();
    let mut host = DeviceHost::start(&config(), fake.backends(), log).unwrap();
    assert_eq!(events.lock().unwrap().last(), Some(&Event::Ready));
    assert!(
        fake.world().ranges.is_empty(),
        "nothing is mapped before the VM runs"
    );

    let clock = FakeClock { fake: fake.clone() };
    let stop = stop_flag();
    assert_eq!(host.map_regions(&clock, &*stop).unwrap(), Progress::Mapped);
    assert_eq!(host.mapping_states(), vec![MappingState::SectionBacked; 2]);
    {
        let world = fake.world();
        assert_eq!(world.sleeps, 3, "polled for Start three times");
        let ranges: Vec<_> = world.ranges.values().copied().collect();
        assert_eq!(ranges.len(), 2);
        assert_eq!(
            (
                ranges[0].bar,
                ranges[0].offset_pages,
                ranges[0].length_pages
            ),
            (2, 0, 2)
        );
        assert_eq!(
            (
                ranges[1].bar,
                ranges[1].offset_pages,
                ranges[1].length_pages
            ),
            (2, 2, 1)
        );
        assert_eq!(ranges[0].flags, MmioMappingFlags::WRITEABLE);
        assert_eq!(ranges[0].section_offset_pages, 0);
        assert_eq!(world.reports.len(), 2);
        assert!(!world.paused);
    }
    let events_now = events.lock().unwrap().clone();
    assert!(events_now.contains(&Event::VmStarted));
    assert!(
        events_now
            .iter()
            .any(|event| matches!(event, Event::DriverStatus(_)))
    );

    // The operator stops the VM (hdv.md §5 step 6); serving ends and everything is released.
    fake.stop_vm();
    assert_eq!(
        host.serve(&clock, &*stop, Duration::from_secs(1)).unwrap(),
        ServeEnd::VmTornDown
    );
    let report = host.shutdown();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.device_host, HostTeardown::AfterVmTornDown);
    let world = fake.world();
    world.assert_nothing_left();
    let stopped = world
        .journal
        .iter()
        .position(|c| c == "vm stopped")
        .unwrap();
    assert!(
        world.journal[stopped..].iter().all(|call| call != "pause"),
        "no pause after the VM was cleaned up"
    );

    // Release order: VM stopped, ranges, reports, handles, session, device host, VM handle.
    let position = |name: &str| {
        world
            .journal
            .iter()
            .rposition(|call| call.starts_with(name))
            .unwrap_or_else(|| panic!("{name}"))
    };
    assert!(position("vm stopped") < position("destroy_range"));
    assert!(position("destroy_range") < position("report_unmapped"));
    assert!(position("report_unmapped") < position("close_handle"));
    assert!(position("close_handle") < position("close_session"));
    assert!(position("close_session") < position("teardown_device_host"));
    assert!(position("teardown_device_host") < position("close_compute_system"));
    assert_eq!(world.report_log.last(), Some(&(0, MappingState::Unmapped)));
}

#[test]
fn retries_without_com_security_after_rpc_e_too_late() {
    let fake = Fake::default();
    fake.world().com_too_late = true;
    let (events, log) = recorder();
    let host = DeviceHost::start(&config(), fake.backends(), log).unwrap();
    assert!(
        events
            .lock()
            .unwrap()
            .contains(&Event::DeviceHostInitialized {
                com_security: false
            })
    );
    let inits: Vec<String> = fake
        .world()
        .journal
        .iter()
        .filter(|call| call.starts_with("initialize_device_host"))
        .cloned()
        .collect();
    assert_eq!(
        inits,
        [
            "initialize_device_host InitializeComSecurity",
            "initialize_device_host None"
        ]
    );
    assert!(host.shutdown().is_clean());
    fake.world().assert_nothing_left();
}

#[test]
fn invalid_state_is_retried_with_the_vm_running_in_between() {
    let fake = Fake::default();
    fake.world().invalid_state_replies = 3;
    let (events, log) = recorder();
    fake.world().start_after_sleeps = Some(1);
    fake.world().program_bar_on_start = Some(BASE);
    let mut host = DeviceHost::start(&config(), fake.backends(), log).unwrap();
    let clock = FakeClock { fake: fake.clone() };
    host.map_regions(&clock, &*stop_flag()).unwrap();
    assert_eq!(host.mapping_states(), vec![MappingState::SectionBacked; 2]);
    let events = events.lock().unwrap().clone();
    assert!(events.contains(&Event::RegionMapped {
        region: 0,
        state: MappingState::SectionBacked,
        attempts: 4
    }));
    {
        let world = fake.world();
        // One start poll plus three 1 ms retry waits; no real time passed.
        assert_eq!(world.slept, Duration::from_millis(50 + 3));
        let pauses = world.journal.iter().filter(|call| *call == "pause").count();
        let resumes = world
            .journal
            .iter()
            .filter(|call| *call == "resume")
            .count();
        assert_eq!(
            (pauses, resumes),
            (5, 5),
            "a pause and a resume per attempt"
        );
    }
    fake.stop_vm();
    assert!(host.shutdown().is_clean());
    fake.world().assert_nothing_left();
}

#[test]
fn exhausted_retries_fall_back_to_intercepts_which_serve_the_same_bytes() {
    let fake = Fake::default();
    // Exactly the retry bound (5 attempts): region 0 gives up, region 1 maps at once.
    fake.world().invalid_state_replies = 5;
    let host = started_host(&fake);
    let fallback = MappingState::InterceptFallback {
        hresult: HResult::INVALID_STATE,
    };
    assert_eq!(
        host.mapping_states(),
        vec![fallback, MappingState::SectionBacked]
    );
    assert_eq!(fake.world().reports.get(&0), Some(&fallback));

    // A guest write to BAR2 offset 0x10 reaches the emulator and lands in region 0's section;
    // bytes the driver writes into region 1 are what the guest reads at BAR offset 0x2000.
    let emulator: Arc<dyn PciDeviceCallbacks> = host.emulator().clone();
    emulator
        .write_intercepted_memory(2, 0x10, &0xDEAD_BEEF_u32.to_le_bytes())
        .unwrap();
    assert_eq!(
        fake.section_bytes(0, 0x10, 4),
        0xDEAD_BEEF_u32.to_le_bytes()
    );
    fake.world().sections[1].lock().unwrap()[8..16].copy_from_slice(&7u64.to_le_bytes());
    let mut word = [0; 8];
    emulator
        .read_intercepted_memory(2, 0x2008, &mut word)
        .unwrap();
    assert_eq!(u64::from_le_bytes(word), 7);
    assert_eq!(host.emulator().intercepts().total(2), 2);

    drop(emulator);
    fake.stop_vm();
    assert!(host.shutdown().is_clean());
    fake.world().assert_nothing_left();
}

#[test]
fn a_refused_mapping_is_fatal_without_the_fallback() {
    let fake = Fake::default();
    {
        let mut world = fake.world();
        world.create_error = Some(HResult::E_ACCESSDENIED);
        world.start_after_sleeps = Some(1);
        world.program_bar_on_start = Some(BASE);
        // The unwinding waits for the VM to stop before the device host's teardown.
        world.stop_vm_after_release = true;
    }
    let mut config = config();
    config.intercept_fallback = false;
    let mut host = DeviceHost::start(&config, fake.backends(), Box::new(|_| {})).unwrap();
    let clock = FakeClock { fake: fake.clone() };
    let error = host.map_regions(&clock, &*stop_flag()).unwrap_err();
    assert_eq!(error.step, Step::CreateRange { region: 0 });
    assert_eq!(error.cause, Cause::Platform(HResult::E_ACCESSDENIED));
    assert!(error.teardown.is_clean(), "{}", error.teardown);
    assert_eq!(error.teardown.device_host, HostTeardown::AfterVmTornDown);
    fake.world().assert_nothing_left();
    let failed = MappingState::Failed {
        hresult: HResult::E_ACCESSDENIED,
    };
    assert_eq!(
        fake.world().report_log,
        [(0, failed), (0, MappingState::Unmapped)]
    );
    drop(host);
    fake.world().assert_nothing_left();
}

#[test]
fn accesses_that_still_reach_the_emulator_downgrade_a_section_backed_region() {
    let fake = Fake::default();
    let (events, log) = recorder();
    fake.world().start_after_sleeps = Some(1);
    fake.world().program_bar_on_start = Some(BASE);
    let mut host = DeviceHost::start(&config(), fake.backends(), log).unwrap();
    let clock = FakeClock { fake: fake.clone() };
    host.map_regions(&clock, &*stop_flag()).unwrap();
    host.check_fast_path().unwrap();
    assert_eq!(host.mapping_states(), vec![MappingState::SectionBacked; 2]);

    // hdv.md §3.3 observed: the mapping "succeeds" but guest accesses are still intercepted.
    let mut byte = [0];
    host.emulator()
        .read_intercepted_memory(2, 0x2000, &mut byte)
        .unwrap();
    host.check_fast_path().unwrap();
    let downgraded = MappingState::InterceptFallback {
        hresult: HResult::S_OK,
    };
    assert_eq!(
        host.mapping_states(),
        vec![MappingState::SectionBacked, downgraded]
    );
    assert_eq!(fake.world().reports.get(&1), Some(&downgraded));
    assert!(
        events
            .lock()
            .unwrap()
            .contains(&Event::FastPathNotInEffect {
                region: 1,
                intercepts: 1
            })
    );
    fake.stop_vm();
    assert!(host.shutdown().is_clean());
    fake.world().assert_nothing_left();
}

#[test]
fn a_stop_while_waiting_for_the_vm_releases_everything() {
    let fake = Fake::default();
    let mut host = DeviceHost::start(&config(), fake.backends(), Box::new(|_| {})).unwrap();
    let stop = stop_flag();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let clock = FakeClock { fake: fake.clone() };
    assert_eq!(host.map_regions(&clock, &*stop).unwrap(), Progress::Stopped);
    let report = host.shutdown();
    assert!(report.is_clean());
    assert_eq!(report.device_host, HostTeardown::BeforeVmStarted);
    let world = fake.world();
    world.assert_nothing_left();
    assert!(world.report_log.is_empty());
}

#[test]
fn the_start_wait_times_out_on_the_injected_clock() {
    let fake = Fake::default();
    let mut config = config();
    config.start_timeout = Some(Duration::from_secs(2));
    let mut host = DeviceHost::start(&config, fake.backends(), Box::new(|_| {})).unwrap();
    let clock = FakeClock { fake: fake.clone() };
    let error = host.map_regions(&clock, &*stop_flag()).unwrap_err();
    assert_eq!(
        (error.step, error.cause),
        (Step::WaitForStart, Cause::TimedOut)
    );
    assert_eq!(fake.world().now, Duration::from_secs(2));
    fake.world().assert_nothing_left();
}

#[test]
fn a_bad_layout_from_the_driver_is_refused() {
    let fake = Fake::default();
    fake.world().session_override = Some(SessionInfo {
        session: SessionId(77),
        bar_size: 16384,
        regions: vec![
            RegionInfo {
                offset: 0,
                size: 8192,
            },
            RegionInfo {
                offset: 4096,
                size: 4096,
            },
        ],
    });
    let error = DeviceHost::start(&config(), fake.backends(), Box::new(|_| {}))
        .err()
        .unwrap();
    assert_eq!(error.step, Step::CheckLayout);
    assert_eq!(
        error.cause,
        Cause::Layout(LayoutError::Overlap {
            first: 0,
            second: 1
        })
    );
    fake.world().assert_nothing_left();
}

#[test]
fn dropping_a_host_without_shutdown_still_releases_everything() {
    let fake = Fake::default();
    let host = started_host(&fake);
    fake.stop_vm();
    drop(host);
    fake.world().assert_nothing_left();
}

#[test]
fn a_failure_injected_at_every_forward_step_unwinds_everything() {
    // A clean run first, to count the forward calls.
    let clean = Fake::default();
    {
        let mut world = clean.world();
        world.start_after_sleeps = Some(2);
        world.program_bar_on_start = Some(BASE);
        world.stop_vm_after_release = true;
    }
    let summary = run(
        &config(),
        clean.backends(),
        &FakeClock {
            fake: clean.clone(),
        },
        &StopWhenMapped(clean.clone()),
        Box::new(|_| {}),
    )
    .unwrap();
    assert_eq!(
        summary.states,
        vec![MappingState::SectionBacked; 2],
        "states before shutdown"
    );
    assert_eq!(summary.serve_end, Some(ServeEnd::Stopped));
    clean.world().assert_nothing_left();
    // 16 forward calls (open, init, device, session, 2 x (section, view), 2 x (pause, create,
    // resume, report)) plus the unwinding's pause (Ctrl-C with the VM running); its resume
    // comes after the first release and is covered by `teardown_pause_and_resume_failures`.
    let steps = clean.world().forward_calls_before_release.unwrap();
    assert_eq!(steps, 17, "{steps} forward calls");

    let mut failed_steps = Vec::new();
    for fail_at in 0..steps {
        let fake = Fake::default();
        {
            let mut world = fake.world();
            world.start_after_sleeps = Some(2);
            world.program_bar_on_start = Some(BASE);
            world.stop_vm_after_release = true;
            world.fail_at = Some(fail_at);
        }
        let result = run(
            &config(),
            fake.backends(),
            &FakeClock { fake: fake.clone() },
            &StopWhenMapped(fake.clone()),
            Box::new(|_| {}),
        );
        match result {
            Err(error) => {
                assert!(error.teardown.is_clean(), "{error}");
                failed_steps.push(error.step);
            }
            // A refused mapping falls back to intercepts and the run goes on.
            Ok(summary) => assert!(
                summary.teardown.is_clean(),
                "{fail_at}: {}",
                summary.teardown
            ),
        }
        let world = fake.world();
        world.assert_nothing_left();
        assert!(world.forward_calls > fail_at, "the injected step ran");
    }
    for step in [
        Step::OpenComputeSystem,
        Step::InitializeDeviceHost,
        Step::CreateDeviceInstance,
        Step::OpenSession,
        Step::GetSection { region: 1 },
        Step::MapView { region: 1 },
        Step::PauseVm { region: 1 },
        Step::ResumeVm { region: 0 },
        Step::ReportMapping { region: 1 },
    ] {
        assert!(
            failed_steps.contains(&step),
            "{step:?} never failed: {failed_steps:?}"
        );
    }
}

#[test]
fn a_range_destruction_refused_once_is_retried_and_nothing_is_left() {
    let fake = Fake::default();
    let host = started_host(&fake);
    fake.stop_vm();
    fake.world().fail_release = Some("destroy_range");
    let report = host.shutdown();
    assert!(report.failures.is_empty(), "{report}");
    assert!(fake.world().ranges.is_empty());
}

#[test]
fn a_failed_release_step_does_not_stop_the_others() {
    for (name, release) in [
        ("destroy_range", Release::DestroyRange { region: 1 }),
        ("report_unmapped", Release::ReportUnmapped { region: 1 }),
        ("close_session", Release::CloseSession),
        ("teardown_device_host", Release::TeardownDeviceHost),
    ] {
        let fake = Fake::default();
        let host = started_host(&fake);
        fake.stop_vm();
        fake.world().fail_release = Some(name);
        // A refused range destruction is retried: only one that keeps failing is reported.
        if name == "destroy_range" {
            fake.world().fail_release_again = RELEASE_DESTROY_ATTEMPTS - 1;
        }
        let report = host.shutdown();
        assert_eq!(report.failures.len(), 1, "{name}: {report}");
        assert_eq!(report.failures[0].0, release, "{name}");
        let world = fake.world();
        // Everything but the one failed release is gone.
        assert_eq!(world.systems_open, 0, "{name}");
        assert_eq!(world.handles_open, 0, "{name}");
        assert_eq!(world.sessions_open, 0, "{name}");
        assert!(!world.paused, "{name}");
        assert_eq!(
            world.ranges.len(),
            usize::from(name == "destroy_range"),
            "{name}"
        );
        assert_eq!(
            world.hosts_live,
            i64::from(name == "teardown_device_host"),
            "{name}"
        );
    }
}

#[test]
fn teardown_pause_and_resume_failures() {
    // Ctrl-C with the VM running; the operator stops it while the device host waits.
    // The pause before unmapping fails: the ranges are destroyed anyway, nothing is left.
    let fake = Fake::default();
    let host = started_host(&fake);
    let next = fake.world().forward_calls;
    fake.world().fail_at = Some(next);
    fake.world().stop_vm_after_release = true;
    let report = host.shutdown_waiting(&FakeClock { fake: fake.clone() });
    assert!(report.is_clean(), "{report}");
    fake.world().assert_nothing_left();

    // The resume after unmapping fails: reported, everything else released.
    let fake = Fake::default();
    let host = started_host(&fake);
    let next = fake.world().forward_calls;
    fake.world().fail_at = Some(next + 1);
    fake.world().stop_vm_after_release = true;
    let report = host.shutdown_waiting(&FakeClock { fake: fake.clone() });
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].0, Release::ResumeVm);
    let world = fake.world();
    assert!(world.ranges.is_empty());
    assert_eq!(
        (world.hosts_live, world.sessions_open, world.handles_open),
        (0, 0, 0)
    );
}

#[test]
fn a_guest_ro_region_is_read_only_for_the_device_host_and_the_guest() {
    let fake = Fake::default();
    fake.world().start_after_sleeps = Some(1);
    fake.world().program_bar_on_start = Some(BASE);
    // The test configuration with named regions instead of its sizes.
    let named = vmbmmio_devhost::config::load(&vmbmmio_devhost::config::CliArgs {
        vm_id: Some(support::VM.to_string()),
        regions: vec!["frames:8K:guest-ro".into(), "ctl:4K:host-ro".into()],
        vendor_id: Some("1".into()),
        device_id: Some("1".into()),
        ..Default::default()
    })
    .unwrap();
    let mut config = config();
    config.regions = named.regions;
    let mut host = DeviceHost::start(&config, fake.backends(), Box::new(|_| {})).unwrap();
    let clock = FakeClock { fake: fake.clone() };
    assert_eq!(
        host.map_regions(&clock, &*stop_flag()).unwrap(),
        Progress::Mapped
    );
    {
        let world = fake.world();
        let names: Vec<&str> = world
            .session_regions
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(names, ["frames", "ctl"]);
        assert_eq!(
            world.view_access,
            [
                vmbmmio_devhost::driver::SectionAccess::Read,
                vmbmmio_devhost::driver::SectionAccess::ReadWrite
            ]
        );
        let flags: Vec<MmioMappingFlags> = world.ranges.values().map(|r| r.flags).collect();
        assert_eq!(
            flags,
            [
                MmioMappingFlags {
                    writeable: false,
                    executable: false
                },
                MmioMappingFlags::WRITEABLE
            ]
        );
    }
    fake.stop_vm();
    let report = host.shutdown();
    assert!(report.is_clean(), "{report}");
    fake.world().assert_nothing_left();
}
