//! The sequence against the guest's placement: nothing is mapped before the guest has placed
//! the BAR and enabled memory decode (from either source), decode off and BAR moves unmap and
//! remap under a pause, hostile reports change nothing, and the device host is torn down only
//! after the VM.

mod support;

use std::cell::Cell;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{BASE, Fake, FakeClock, config, stop_flag};
use vmbmmio_devhost::clock::StopSignal;
use vmbmmio_devhost::driver::{ChannelIdentity, MappingState};
use vmbmmio_devhost::guid::Guid;
use vmbmmio_devhost::placement::{
    BarPlacement, BarState, GuestRange, GuestReport, PlacementError, PlacementSource,
    ReservationRelation,
};
use vmbmmio_devhost::sequence::{
    Cause, DEFAULT_VM_STOP_WAIT, DeviceHost, Event, EventLog, HostTeardown, Progress, Release,
    ServeEnd, Step, UnmapReason,
};

type Host = DeviceHost<Fake, Fake, Fake, Fake>;
type Recorded = Arc<Mutex<Vec<Event>>>;

/// The BAR of `config()`: 8 KiB + 4 KiB of regions in a 16 KiB BAR.
const BAR_SIZE: u64 = 16384;
const MOVED: u64 = 0xE_0000_0000;

fn recorder() -> (Recorded, EventLog) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    (
        events,
        Box::new(move |event: &Event| sink.lock().unwrap().push(event.clone())),
    )
}

/// Raises a stop after `n` checks (lets a wait loop run a few rounds).
struct StopAfter(Cell<u32>);

impl StopAfter {
    fn new(n: u32) -> Self {
        Self(Cell::new(n))
    }
}

impl StopSignal for StopAfter {
    fn stop_requested(&self) -> bool {
        let left = self.0.get();
        self.0.set(left.saturating_sub(1));
        left == 0
    }
}

/// A started host whose VM runs; the guest has not placed the BAR.
fn running_host(fake: &Fake) -> (Host, Recorded) {
    let (events, log) = recorder();
    let host = DeviceHost::start(&config(), fake.backends(), log).unwrap();
    fake.start_vm();
    (host, events)
}

fn placement(base: u64, memory_decode: bool) -> BarPlacement {
    BarPlacement {
        base,
        size: BAR_SIZE,
        memory_decode,
    }
}

fn ranges(fake: &Fake) -> usize {
    fake.world().ranges.len()
}

/// Stops the VM and releases; everything must be gone.
fn finish(fake: &Fake, host: Host) {
    fake.stop_vm();
    let report = host.shutdown();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.device_host, HostTeardown::AfterVmTornDown);
    fake.world().assert_nothing_left();
}

#[test]
fn defect_04_no_range_is_created_before_the_guest_enables_decode() {
    // Source (a): the platform forwards the guest's configuration writes to the emulator.
    let fake = Fake::default();
    let (mut host, events) = running_host(&fake);
    let clock = FakeClock { fake: fake.clone() };
    // The VM runs; the guest has not touched the BAR: waiting, nothing mapped.
    assert_eq!(
        host.map_regions(&clock, &StopAfter::new(5)).unwrap(),
        Progress::Stopped
    );
    assert_eq!(ranges(&fake), 0);
    assert!(events.lock().unwrap().contains(&Event::WaitingForPlacement));
    // The guest writes the BAR with decode off (Linux prepopulate_bars): still nothing.
    fake.config_decode(false);
    fake.config_write(0x18, BASE as u32);
    fake.config_write(0x1C, (BASE >> 32) as u32);
    assert_eq!(
        host.map_regions(&clock, &StopAfter::new(5)).unwrap(),
        Progress::Stopped
    );
    assert_eq!(ranges(&fake), 0);
    assert!(fake.world().create_log.is_empty());
    // Decode on: mapped, and every create saw the BAR placed with decode on.
    fake.world().guest_bar = Some(BASE);
    fake.config_decode(true);
    assert_eq!(
        host.map_regions(&clock, &*stop_flag()).unwrap(),
        Progress::Mapped
    );
    assert_eq!(host.mapped_for(), Some(BASE));
    assert_eq!(ranges(&fake), 2);
    assert_eq!(fake.world().create_log, vec![(Some(BASE), true); 2]);
    let accepted: Vec<_> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|event| match event {
            Event::PlacementAccepted(accepted) => Some((accepted.source, accepted.state)),
            _ => None,
        })
        .collect();
    assert_eq!(
        accepted.last(),
        Some(&(
            PlacementSource::ConfigSpace,
            BarState::Decoding { base: BASE }
        ))
    );
    finish(&fake, host);
}

#[test]
fn defect_04_the_guests_report_alone_drives_the_mapping() {
    // Source (b): the platform handles the BAR registers itself (hdv.md §3.3 observed), so the
    // emulator never sees them; only the guest's report says where the BAR is.
    let fake = Fake::default();
    let (mut host, _) = running_host(&fake);
    let clock = FakeClock { fake: fake.clone() };
    fake.guest_sets(BASE, false);
    host.placement_reported(placement(BASE, false)).unwrap();
    assert_eq!(
        host.map_regions(&clock, &StopAfter::new(3)).unwrap(),
        Progress::Stopped
    );
    assert_eq!(ranges(&fake), 0);
    fake.guest_sets(BASE, true);
    let accepted = host.placement_reported(placement(BASE, true)).unwrap();
    assert_eq!(accepted.source, PlacementSource::GuestReport);
    assert_eq!(accepted.relation, ReservationRelation::NoReservation);
    assert_eq!(
        host.map_regions(&clock, &*stop_flag()).unwrap(),
        Progress::Mapped
    );
    assert_eq!(fake.world().create_log, vec![(Some(BASE), true); 2]);
    // A second map_regions with the regions mapped changes nothing.
    assert_eq!(
        host.map_regions(&clock, &*stop_flag()).unwrap(),
        Progress::Mapped
    );
    assert_eq!(fake.world().create_log.len(), 2);
    finish(&fake, host);
}

#[test]
fn a_placement_reported_before_the_vm_runs_waits_for_start() {
    let fake = Fake::default();
    let (events, log) = recorder();
    let mut host = DeviceHost::start(&config(), fake.backends(), log).unwrap();
    host.placement_reported(placement(BASE, true)).unwrap();
    let clock = FakeClock { fake: fake.clone() };
    host.follow_placement(&clock, &*stop_flag()).unwrap();
    assert_eq!(ranges(&fake), 0, "HDV refuses mappings before Start (§3.3)");
    fake.world().start_after_sleeps = Some(2);
    fake.guest_sets(BASE, true);
    assert_eq!(
        host.map_regions(&clock, &*stop_flag()).unwrap(),
        Progress::Mapped
    );
    assert_eq!(ranges(&fake), 2);
    assert!(!events.lock().unwrap().contains(&Event::WaitingForPlacement));
    finish(&fake, host);
}

/// A host mapped at [`BASE`] through configuration space.
fn mapped_host(fake: &Fake) -> (Host, Recorded) {
    let (mut host, events) = running_host(fake);
    fake.config_program_bar(BASE);
    let clock = FakeClock { fake: fake.clone() };
    assert_eq!(
        host.map_regions(&clock, &*stop_flag()).unwrap(),
        Progress::Mapped
    );
    (host, events)
}

fn journal_since(fake: &Fake, mark: usize) -> Vec<String> {
    fake.world().journal[mark..].to_vec()
}

#[test]
fn decode_off_unmaps_under_a_pause_and_decode_on_maps_again() {
    let fake = Fake::default();
    let (mut host, events) = mapped_host(&fake);
    let clock = FakeClock { fake: fake.clone() };
    let mark = fake.world().journal.len();
    fake.config_decode(false);
    host.follow_placement(&clock, &*stop_flag()).unwrap();
    assert_eq!(host.mapped_for(), None);
    assert_eq!(ranges(&fake), 0);
    assert_eq!(
        journal_since(&fake, mark),
        [
            "pause",
            "destroy_range",
            "destroy_range",
            "resume",
            "report_unmapped",
            "report_unmapped"
        ]
    );
    assert_eq!(host.mapping_states(), vec![MappingState::Unmapped; 2]);
    assert!(
        events
            .lock()
            .unwrap()
            .contains(&Event::RegionsUnmapped(UnmapReason::DecodeOff))
    );
    {
        let world = fake.world();
        assert!(world.reports.values().all(|s| *s == MappingState::Unmapped));
    }
    // Following again without a new report does nothing.
    host.follow_placement(&clock, &*stop_flag()).unwrap();
    assert_eq!(journal_since(&fake, mark).len(), 6);
    // Decode on again at the same base: mapped again.
    fake.config_decode(true);
    host.follow_placement(&clock, &*stop_flag()).unwrap();
    assert_eq!(host.mapped_for(), Some(BASE));
    assert_eq!(host.mapping_states(), vec![MappingState::SectionBacked; 2]);
    assert_eq!(fake.world().create_log, vec![(Some(BASE), true); 4]);
    finish(&fake, host);
}

#[test]
fn decode_toggled_between_two_looks_still_remaps() {
    let fake = Fake::default();
    let (mut host, events) = mapped_host(&fake);
    let clock = FakeClock { fake: fake.clone() };
    fake.config_decode(false);
    fake.config_decode(true);
    let mark = fake.world().journal.len();
    host.follow_placement(&clock, &*stop_flag()).unwrap();
    let journal = journal_since(&fake, mark);
    assert_eq!(
        journal[..4],
        ["pause", "destroy_range", "destroy_range", "resume"]
    );
    assert_eq!(
        journal
            .iter()
            .filter(|call| call.starts_with("create_range"))
            .count(),
        2
    );
    assert_eq!(host.mapped_for(), Some(BASE));
    assert!(
        events
            .lock()
            .unwrap()
            .contains(&Event::RegionsUnmapped(UnmapReason::DecodeOff))
    );
    // The next look with nothing new does nothing.
    let mark = fake.world().journal.len();
    host.follow_placement(&clock, &*stop_flag()).unwrap();
    assert!(journal_since(&fake, mark).is_empty());
    finish(&fake, host);
}

#[test]
fn a_moved_bar_is_unmapped_and_mapped_again_at_the_new_base() {
    let fake = Fake::default();
    let (mut host, events) = mapped_host(&fake);
    let clock = FakeClock { fake: fake.clone() };
    // Through configuration space: decode off, BAR rewritten, decode on.
    fake.config_program_bar(MOVED);
    host.follow_placement(&clock, &*stop_flag()).unwrap();
    assert_eq!(host.mapped_for(), Some(MOVED));
    assert_eq!(ranges(&fake), 2);
    assert_eq!(
        fake.world().create_log[2..],
        [(Some(MOVED), true), (Some(MOVED), true)]
    );
    // The serve loop picks up the newest report only: decode back on at MOVED after the
    // intermediate reports, so one unmap (the move from BASE was seen as a whole).
    let unmaps: Vec<_> = events
        .lock()
        .unwrap()
        .iter()
        .filter(|event| matches!(event, Event::RegionsUnmapped(_)))
        .cloned()
        .collect();
    assert_eq!(
        unmaps,
        [Event::RegionsUnmapped(UnmapReason::BarMoved {
            from: BASE,
            to: MOVED
        })]
    );

    // The guest's report names a move without a decode-off in between: unmapped, then mapped.
    fake.guest_sets(BASE, true);
    host.placement_reported(placement(BASE, true)).unwrap();
    let mark = fake.world().journal.len();
    host.follow_placement(&clock, &*stop_flag()).unwrap();
    assert_eq!(host.mapped_for(), Some(BASE));
    let journal = journal_since(&fake, mark);
    let destroy = journal.iter().position(|c| c == "destroy_range").unwrap();
    let create = journal
        .iter()
        .position(|c| c.starts_with("create_range"))
        .unwrap();
    assert!(destroy < create, "{journal:?}");
    finish(&fake, host);
}

#[test]
fn bar_writes_while_decode_is_on_change_nothing() {
    let fake = Fake::default();
    let (mut host, events) = mapped_host(&fake);
    let clock = FakeClock { fake: fake.clone() };
    let before = events.lock().unwrap().len();
    // Hyper-V ignores BAR writes while decode is on (pci-hyperv prepopulate_bars); so does the
    // emulator, so no new placement appears and the ranges stay.
    fake.config_write(0x18, MOVED as u32);
    fake.config_write(0x1C, (MOVED >> 32) as u32);
    assert_eq!(fake.config_read(0x18) & !0xF, BASE as u32);
    host.follow_placement(&clock, &*stop_flag()).unwrap();
    assert_eq!(host.mapped_for(), Some(BASE));
    assert_eq!(events.lock().unwrap().len(), before);
    finish(&fake, host);
}

#[test]
fn serve_follows_the_placement() {
    let fake = Fake::default();
    let (mut host, _) = mapped_host(&fake);
    let clock = FakeClock { fake: fake.clone() };
    fake.config_decode(false);
    // One round of the serve loop, then stop.
    assert_eq!(
        host.serve(&clock, &StopAfter::new(0), Duration::from_millis(1))
            .unwrap(),
        ServeEnd::Stopped
    );
    assert_eq!(ranges(&fake), 0);
    fake.config_decode(true);
    assert_eq!(
        host.serve(&clock, &StopAfter::new(0), Duration::from_millis(1))
            .unwrap(),
        ServeEnd::Stopped
    );
    assert_eq!(ranges(&fake), 2);
    finish(&fake, host);
}

#[test]
fn hostile_placements_are_refused_with_typed_errors_and_change_nothing() {
    let fake = Fake::default();
    let (mut host, events) = mapped_host(&fake);
    let clock = FakeClock { fake: fake.clone() };
    let refused = [
        (
            placement(BASE + 4096, true),
            PlacementError::Misaligned {
                base: BASE + 4096,
                alignment: BAR_SIZE,
            },
        ),
        (
            BarPlacement {
                base: BASE,
                size: 2 * BAR_SIZE,
                memory_decode: true,
            },
            PlacementError::SizeMismatch {
                expected: BAR_SIZE,
                got: 2 * BAR_SIZE,
            },
        ),
        (
            placement(u64::MAX - BAR_SIZE + 1, true),
            PlacementError::BeyondAddressSpace {
                base: u64::MAX - BAR_SIZE + 1,
                size: BAR_SIZE,
            },
        ),
        (
            placement(1 << 52, true),
            PlacementError::BeyondAddressSpace {
                base: 1 << 52,
                size: BAR_SIZE,
            },
        ),
        (placement(0, true), PlacementError::Unassigned),
    ];
    for (bad, error) in refused {
        assert_eq!(host.placement_reported(bad), Err(error), "{bad:?}");
    }
    // A BAR half inside the channel's reservation.
    let reservation = GuestRange {
        base: MOVED + 8192,
        size: 1 << 20,
    };
    let partial = GuestReport {
        bar: placement(MOVED, true),
        channel_reservation: Some(reservation),
    };
    assert_eq!(
        host.placement_reported(partial),
        Err(PlacementError::PartialOverlap {
            bar: GuestRange {
                base: MOVED,
                size: BAR_SIZE
            },
            reservation
        })
    );
    let empty = GuestReport {
        bar: placement(MOVED, true),
        channel_reservation: Some(GuestRange {
            base: MOVED,
            size: 0,
        }),
    };
    assert!(matches!(
        host.placement_reported(empty),
        Err(PlacementError::BadReservation { .. })
    ));
    let mark = fake.world().journal.len();
    host.follow_placement(&clock, &*stop_flag()).unwrap();
    assert_eq!(host.mapped_for(), Some(BASE), "still mapped where it was");
    assert!(journal_since(&fake, mark).is_empty(), "no platform call");
    let rejected: Vec<_> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|event| match event {
            Event::PlacementRejected(rejection) => Some(rejection.total),
            _ => None,
        })
        .collect();
    assert_eq!(rejected, [7], "one event for the newest, with the count");
    finish(&fake, host);
}

#[test]
fn a_bar_inside_the_channel_reservation_is_accepted_and_said() {
    // platform-paths J2: a Linux guest driver may place the BAR inside its channel's
    // reservation on purpose. Accepted, checked, reported; never assumed.
    let fake = Fake::default();
    let (mut host, events) = running_host(&fake);
    let clock = FakeClock { fake: fake.clone() };
    fake.guest_sets(BASE, true);
    let report = GuestReport {
        bar: placement(BASE, true),
        channel_reservation: Some(GuestRange {
            base: BASE - (1 << 20),
            size: 4 << 20,
        }),
    };
    let accepted = host.placement_reported(report).unwrap();
    assert_eq!(accepted.relation, ReservationRelation::Inside);
    host.map_regions(&clock, &*stop_flag()).unwrap();
    assert_eq!(ranges(&fake), 2);
    let said = events.lock().unwrap().iter().any(|event| {
        matches!(event, Event::PlacementAccepted(a) if a.relation == ReservationRelation::Inside)
            && event
                .to_string()
                .contains("inside the channel's MMIO reservation")
    });
    assert!(said);
    finish(&fake, host);
}

#[test]
fn defect_05_the_device_host_is_torn_down_after_the_vm_not_before() {
    // The VM is cleaned up first: ranges destroyed without a pause, then the device host.
    let fake = Fake::default();
    let (mut host, _) = mapped_host(&fake);
    let clock = FakeClock { fake: fake.clone() };
    fake.stop_vm();
    assert_eq!(
        host.serve(&clock, &*stop_flag(), Duration::from_secs(1))
            .unwrap(),
        ServeEnd::VmTornDown
    );
    let mark = fake.world().journal.len();
    let report = host.shutdown();
    assert_eq!(report.device_host, HostTeardown::AfterVmTornDown);
    assert!(report.is_clean(), "{report}");
    let journal = journal_since(&fake, mark);
    assert_eq!(journal[0], "destroy_range", "{journal:?}");
    assert!(!journal.contains(&"pause".to_string()));
    let world = fake.world();
    assert_eq!(world.teardown_refused_while_running, 0);
    world.assert_nothing_left();
}

#[test]
fn defect_05_ctrl_c_with_the_vm_running_defers_the_teardown() {
    let fake = Fake::default();
    let (host, events) = mapped_host(&fake);
    let clock = FakeClock { fake: fake.clone() };
    let mark = fake.world().journal.len();
    let report = host.shutdown_waiting(&clock);
    // Ranges destroyed under a pause, regions reported unmapped, handles and session released;
    // the device host and the VM handle wait for the VM (which never stops here).
    assert_eq!(
        report.device_host,
        HostTeardown::DeferredToProcessExit {
            waited: DEFAULT_VM_STOP_WAIT
        }
    );
    assert!(report.failures.is_empty());
    assert!(!report.is_clean());
    assert!(report.to_string().contains("deferred"), "{report}");
    let journal = journal_since(&fake, mark);
    assert_eq!(
        journal[..4],
        ["pause", "destroy_range", "destroy_range", "resume"]
    );
    assert!(!journal.contains(&"teardown_device_host".to_string()));
    {
        let world = fake.world();
        assert_eq!(world.teardown_refused_while_running, 0);
        assert!(world.ranges.is_empty());
        assert_eq!((world.handles_open, world.sessions_open), (0, 0));
        assert_eq!((world.hosts_live, world.systems_open), (1, 1));
        assert!(world.now >= DEFAULT_VM_STOP_WAIT, "waited on the clock");
    }
    let events = events.lock().unwrap();
    assert!(events.contains(&Event::WaitingForVmStop {
        timeout: DEFAULT_VM_STOP_WAIT
    }));
    assert!(events.contains(&Event::TeardownDeferred));
    assert!(!events.contains(&Event::TornDown));
}

#[test]
fn defect_05_ctrl_c_waits_for_a_vm_that_stops_and_then_tears_down() {
    let fake = Fake::default();
    let (mut host, _) = mapped_host(&fake);
    host.set_vm_stop_wait(Duration::from_secs(3));
    fake.world().stop_vm_after_release = true;
    let report = host.shutdown_waiting(&FakeClock { fake: fake.clone() });
    assert_eq!(report.device_host, HostTeardown::AfterVmTornDown);
    assert!(report.is_clean(), "{report}");
    let world = fake.world();
    let position = |name: &str| world.journal.iter().position(|c| c == name).unwrap();
    assert!(position("destroy_range") < position("vm stopped"));
    assert!(position("vm stopped") < position("teardown_device_host"));
    world.assert_nothing_left();
}

#[test]
fn a_deferred_teardown_finishes_on_drop_once_the_vm_stopped() {
    let fake = Fake::default();
    let (mut host, _) = mapped_host(&fake);
    // A failure while serving: the unwinding (no clock) defers the device host.
    let next = fake.world().forward_calls;
    fake.world().fail_at = Some(next);
    fake.config_decode(false);
    let error = host
        .follow_placement(&FakeClock { fake: fake.clone() }, &*stop_flag())
        .unwrap_err();
    assert_eq!(error.step, Step::PauseForUnmap);
    // fail() had a clock: it waited, the VM did not stop, the teardown was deferred.
    assert!(error.teardown.deferred(), "{}", error.teardown);
    assert_eq!(fake.world().hosts_live, 1);
    fake.stop_vm();
    drop(host);
    fake.world().assert_nothing_left();
}

#[test]
fn the_pairing_names_the_driver_clients_channel_and_a_mismatch_is_refused() {
    let fake = Fake::default();
    let config = config();
    let matching = ChannelIdentity {
        interface_type: config.interface_type,
        interface_instance: config.interface_instance,
    };
    fake.world().identity = Some(matching);
    let (events, log) = recorder();
    let host = DeviceHost::start(&config, fake.backends(), log).unwrap();
    assert!(events.lock().unwrap().contains(&Event::PairingExposed {
        interface_type: config.interface_type,
        interface_instance: config.interface_instance,
        protocol_version: vmbmmio_proto::pci_cap::CHANNEL_PROTOCOL_VERSION,
    }));
    assert!(host.shutdown().is_clean());

    let fake = Fake::default();
    let other = ChannelIdentity {
        interface_instance: Guid::from_u128(0x1234),
        ..matching
    };
    fake.world().identity = Some(other);
    let error = DeviceHost::start(&config, fake.backends(), Box::new(|_| {}))
        .err()
        .unwrap();
    assert_eq!(error.step, Step::CheckPairing);
    assert_eq!(
        error.cause,
        Cause::PairingMismatch {
            configured: matching,
            driver: other
        }
    );
    assert!(error.teardown.is_clean());
    fake.world().assert_nothing_left();
    let _ = Release::CloseSession;
}
