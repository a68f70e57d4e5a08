//! The device host following the driver's guest events (WAIT_GUEST_EVENT, docs/ioctl.md): the
//! waiting loop starts right after OPEN_SESSION, READY maps, RELEASING / RESET / STOPPED /
//! CHANNEL_CLOSED unmap, a moved BAR is remapped, a report without READY changes nothing while
//! nothing is mapped, RESYNC acts on its snapshot, every shutdown (normal, Ctrl-C, a failed step)
//! cancels the pending wait and joins the thread before CLOSE_SESSION, and a driver without the
//! request leaves the configuration-space source working.
//!
//! The fake driver's wait blocks on a condition variable in the loop's own thread
//! (`support::FakeGuest`); the device host's thread runs the sequence as in the other tests.

mod support;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{BASE, Fake, FakeClock, FakeGuest, config, guest_event, stop_flag};
use vmbmmio_devhost::IoctlFailure;
use vmbmmio_devhost::clock::StopSignal;
use vmbmmio_devhost::driver::{DriverError, MappingState};
use vmbmmio_devhost::hresult::HResult;
use vmbmmio_devhost::sequence::guest_wait::{LoopStopHandle, WaitFailure};
use vmbmmio_devhost::sequence::{
    DeviceHost, Event, EventLog, GuestAction, Progress, RunHooks, ServeEnd, Step, UnmapReason, run,
    run_with,
};
use vmbmmio_proto::ioctl::GuestEventKind;

type Host = DeviceHost<Fake, Fake, Fake, Fake>;
type Recorded = Arc<Mutex<Vec<Event>>>;

const MOVED: u64 = 0xE_0000_0000;
/// `(decode_on, ready, releasing)` of the guest's device report.
const READY: Option<(bool, bool, bool)> = Some((true, true, false));
const NOT_READY: Option<(bool, bool, bool)> = Some((true, false, false));
const RELEASING: Option<(bool, bool, bool)> = Some((true, false, true));

fn recorder() -> (Recorded, EventLog) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    (
        events,
        Box::new(move |event: &Event| sink.lock().unwrap().push(event.clone())),
    )
}

/// A started host with a guest-event side; the VM runs, the loop waits for event 1.
fn following_host(fake: &Fake) -> (Host, Recorded, Arc<FakeGuest>) {
    let guest = fake.with_guest();
    let (events, log) = recorder();
    let host = DeviceHost::start(&config(), fake.backends(), log).unwrap();
    guest.settled(0);
    fake.start_vm();
    (host, events, guest)
}

/// The guest's event reaches the driver; returns once the loop handled it.
fn deliver(guest: &FakeGuest, sequence: u64, kind: GuestEventKind, base: u64, device: Dev) {
    guest.post(Ok(guest_event(sequence, kind, base, device)));
    guest.settled(sequence);
}

type Dev = Option<(bool, bool, bool)>;

/// The actions logged for guest events, in order.
fn guest_actions(events: &Recorded) -> Vec<(u64, GuestAction)> {
    events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|event| match event {
            Event::GuestEvent {
                sequence, action, ..
            } => Some((*sequence, *action)),
            _ => None,
        })
        .collect()
}

fn count(events: &Recorded, matches: impl Fn(&Event) -> bool) -> usize {
    events.lock().unwrap().iter().filter(|e| matches(e)).count()
}

fn journal_len(fake: &Fake) -> usize {
    fake.world().journal.len()
}

/// The journal shows the pending wait cancelled and the thread gone before CLOSE_SESSION.
fn assert_loop_stopped_before_close(fake: &Fake) {
    let journal = fake.world().journal.join("\n");
    let cancel = fake.journal_index("CancelIoEx").expect(&journal);
    let cancelled = fake.journal_index("wait cancelled").expect(&journal);
    let joined = fake.journal_index("guest source dropped").expect(&journal);
    let close = fake.journal_index("close_session").expect(&journal);
    assert!(
        cancel < cancelled && cancelled < joined && joined < close,
        "{journal}"
    );
    // Nothing waits in the driver after the thread let go of its source.
    let last_wait = fake
        .world()
        .journal
        .iter()
        .rposition(|e| e.starts_with("wait_guest_event"))
        .unwrap();
    assert!(last_wait < cancelled, "{journal}");
}

#[test]
fn the_loop_starts_after_open_session_and_ready_maps_releasing_unmaps() {
    let fake = Fake::default();
    let (mut host, events, guest) = following_host(&fake);
    let clock = FakeClock { fake: fake.clone() };
    // Started right after OPEN_SESSION, first wait with last_seen 0.
    let open = fake.journal_index("open_session").unwrap();
    let tap = fake.journal_index("guest_events").unwrap();
    let first_wait = fake.journal_index("wait_guest_event 0").unwrap();
    assert!(open < tap && tap < first_wait);
    assert!(host.following_guest());
    {
        let events = events.lock().unwrap();
        let opened = events
            .iter()
            .position(|e| matches!(e, Event::SessionOpened { .. }))
            .unwrap();
        let following = events
            .iter()
            .position(|e| *e == Event::GuestEventsFollowing)
            .unwrap();
        assert!(opened < following);
    }

    // The guest enabled decode and sent READY: mapped, every range created with decode on.
    fake.guest_sets(BASE, true);
    deliver(&guest, 1, GuestEventKind::GuestReady, BASE, READY);
    assert_eq!(
        host.map_regions(&clock, &*stop_flag()).unwrap(),
        Progress::Mapped
    );
    assert_eq!(host.mapped_for(), Some(BASE));
    assert_eq!(fake.world().ranges.len(), 2);
    assert_eq!(fake.world().create_log, vec![(Some(BASE), true); 2]);
    assert_eq!(
        host.mapping_states(),
        [MappingState::SectionBacked, MappingState::SectionBacked]
    );
    let logged = events
        .lock()
        .unwrap()
        .iter()
        .find(|e| matches!(e, Event::GuestEvent { .. }))
        .unwrap()
        .to_string();
    assert_eq!(
        logged,
        "guest: ready (event 1), BAR at 0xf00000000 decode on → mapping at 0xf00000000"
    );

    // RELEASING: every range destroyed, every region reported unmapped.
    deliver(&guest, 2, GuestEventKind::GuestReleasing, BASE, RELEASING);
    host.follow_placement(&clock, &*stop_flag()).unwrap();
    assert!(fake.world().ranges.is_empty());
    assert_eq!(host.mapped_for(), None);
    assert_eq!(
        host.mapping_states(),
        [MappingState::Unmapped, MappingState::Unmapped]
    );
    assert!(
        events
            .lock()
            .unwrap()
            .contains(&Event::RegionsUnmapped(UnmapReason::DecodeOff))
    );
    assert_eq!(
        guest_actions(&events),
        [
            (1, GuestAction::Map { base: BASE }),
            (2, GuestAction::Unmap)
        ]
    );
    assert_eq!(guest.asked(), [0, 1, 2]);

    fake.stop_vm();
    let report = host.shutdown();
    assert!(report.is_clean(), "{report}");
    assert_loop_stopped_before_close(&fake);
    assert_eq!(
        count(&events, |e| matches!(
            e,
            Event::GuestEventsStopped { events: 2, .. }
        )),
        1
    );
    fake.world().assert_nothing_left();
}

#[test]
fn every_unmapping_event_unmaps() {
    for (kind, device) in [
        (GuestEventKind::GuestReleasing, RELEASING),
        (GuestEventKind::GuestReset, None),
        (GuestEventKind::GuestStopped, READY),
        (GuestEventKind::ChannelClosed, None),
    ] {
        let fake = Fake::default();
        let (mut host, events, guest) = following_host(&fake);
        let clock = FakeClock { fake: fake.clone() };
        fake.guest_sets(BASE, true);
        deliver(&guest, 1, GuestEventKind::GuestReady, BASE, READY);
        assert_eq!(
            host.map_regions(&clock, &*stop_flag()).unwrap(),
            Progress::Mapped
        );
        deliver(&guest, 2, kind, BASE, device);
        host.follow_placement(&clock, &*stop_flag()).unwrap();
        assert!(fake.world().ranges.is_empty(), "{kind:?}");
        assert_eq!(host.mapped_for(), None, "{kind:?}");
        assert_eq!(
            guest_actions(&events).last(),
            Some(&(2, GuestAction::Unmap)),
            "{kind:?}"
        );
        fake.stop_vm();
        assert!(host.shutdown().is_clean());
        fake.world().assert_nothing_left();
    }
}

#[test]
fn a_moved_bar_is_remapped() {
    let fake = Fake::default();
    let (mut host, events, guest) = following_host(&fake);
    let clock = FakeClock { fake: fake.clone() };
    fake.guest_sets(BASE, true);
    deliver(&guest, 1, GuestEventKind::GuestReady, BASE, READY);
    assert_eq!(
        host.map_regions(&clock, &*stop_flag()).unwrap(),
        Progress::Mapped
    );
    // The guest moved the BAR (still ready, decode on) and reported it.
    fake.guest_sets(MOVED, true);
    deliver(&guest, 2, GuestEventKind::GuestReport, MOVED, READY);
    host.follow_placement(&clock, &*stop_flag()).unwrap();
    assert_eq!(host.mapped_for(), Some(MOVED));
    assert_eq!(fake.world().ranges.len(), 2);
    assert_eq!(
        fake.world().create_log,
        [
            (Some(BASE), true),
            (Some(BASE), true),
            (Some(MOVED), true),
            (Some(MOVED), true)
        ]
    );
    assert!(
        events
            .lock()
            .unwrap()
            .contains(&Event::RegionsUnmapped(UnmapReason::BarMoved {
                from: BASE,
                to: MOVED
            }))
    );
    assert_eq!(
        guest_actions(&events).last(),
        Some(&(
            2,
            GuestAction::Remap {
                from: BASE,
                to: MOVED
            }
        ))
    );
    fake.stop_vm();
    assert!(host.shutdown().is_clean());
    fake.world().assert_nothing_left();
}

#[test]
fn a_report_without_ready_changes_nothing_while_nothing_is_mapped() {
    let fake = Fake::default();
    let (mut host, events, guest) = following_host(&fake);
    let clock = FakeClock { fake: fake.clone() };
    // The device is reported with decode on but no READY: a decode-off placement.
    fake.guest_sets(BASE, true);
    deliver(&guest, 1, GuestEventKind::GuestReport, BASE, NOT_READY);
    let before = journal_len(&fake);
    let stop = stop_flag();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    // serve: follows the placement once, then sees the stop.
    assert_eq!(
        host.serve(&clock, &*stop, Duration::from_millis(1))
            .unwrap(),
        ServeEnd::Stopped
    );
    // No pause, no destroy, no report to the driver: nothing happened.
    assert_eq!(
        journal_len(&fake),
        before,
        "{}",
        fake.world().journal.join("\n")
    );
    assert_eq!(
        count(&events, |e| matches!(e, Event::RegionsUnmapped(_))),
        0
    );
    assert_eq!(guest_actions(&events), [(1, GuestAction::NothingMapped)]);

    // The same after a READY / RELEASING round: the next report without READY is a no-op.
    deliver(&guest, 2, GuestEventKind::GuestReady, BASE, READY);
    assert_eq!(
        host.map_regions(&clock, &*stop_flag()).unwrap(),
        Progress::Mapped
    );
    deliver(&guest, 3, GuestEventKind::GuestReleasing, BASE, RELEASING);
    host.follow_placement(&clock, &*stop_flag()).unwrap();
    assert!(fake.world().ranges.is_empty());
    fake.guest_sets(BASE, false);
    deliver(
        &guest,
        4,
        GuestEventKind::GuestReport,
        BASE,
        Some((false, false, false)),
    );
    let before = journal_len(&fake);
    host.follow_placement(&clock, &*stop_flag()).unwrap();
    assert_eq!(journal_len(&fake), before);
    assert_eq!(
        count(&events, |e| matches!(e, Event::RegionsUnmapped(_))),
        1
    );
    assert_eq!(
        guest_actions(&events)[1..],
        [
            (2, GuestAction::Map { base: BASE }),
            (3, GuestAction::Unmap),
            (4, GuestAction::NothingMapped)
        ]
    );
    fake.stop_vm();
    assert!(host.shutdown().is_clean());
    fake.world().assert_nothing_left();
}

#[test]
fn resync_acts_on_its_snapshot_and_the_loop_goes_on_from_its_sequence() {
    let fake = Fake::default();
    let (mut host, events, guest) = following_host(&fake);
    let clock = FakeClock { fake: fake.clone() };
    fake.guest_sets(BASE, true);
    deliver(&guest, 9, GuestEventKind::Resync, BASE, READY);
    assert_eq!(
        host.map_regions(&clock, &*stop_flag()).unwrap(),
        Progress::Mapped
    );
    assert_eq!(host.mapped_for(), Some(BASE));
    // The next event follows sequence 9; the channel closed with no device left.
    deliver(&guest, 10, GuestEventKind::ChannelClosed, 0, None);
    host.follow_placement(&clock, &*stop_flag()).unwrap();
    assert!(fake.world().ranges.is_empty());
    assert_eq!(guest.asked(), [0, 9, 10]);
    assert_eq!(
        guest_actions(&events),
        [
            (9, GuestAction::Map { base: BASE }),
            (10, GuestAction::Unmap)
        ]
    );
    let closed = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, Event::GuestEvent { sequence: 10, .. }))
        .map(ToString::to_string)
        .next()
        .unwrap();
    assert_eq!(
        closed,
        "guest: channel closed (event 10), no device reported → unmapping"
    );
    fake.stop_vm();
    assert!(host.shutdown().is_clean());
    fake.world().assert_nothing_left();
}

/// Stops (Ctrl-C) once the regions are mapped and the loop waits again.
struct StopWhenMapped {
    fake: Fake,
    guest: Arc<FakeGuest>,
    settled_at: u64,
}

impl StopSignal for StopWhenMapped {
    fn stop_requested(&self) -> bool {
        if self.fake.world().ranges.len() < 2 {
            return false;
        }
        self.guest.settled(self.settled_at);
        true
    }
}

/// A guest that already sent READY when the VM starts (the fake clock starts the VM).
fn ready_guest(fake: &Fake) -> Arc<FakeGuest> {
    let guest = fake.with_guest();
    guest.post(Ok(guest_event(1, GuestEventKind::GuestReady, BASE, READY)));
    let mut world = fake.world();
    world.start_after_sleeps = Some(1);
    world.guest_bar = Some(BASE);
    world.guest_decode = true;
    world.stop_vm_after_release = true;
    guest
}

#[test]
fn ctrl_c_cancels_the_pending_wait_and_joins_before_close_session() {
    let fake = Fake::default();
    let guest = ready_guest(&fake);
    let clock = FakeClock { fake: fake.clone() };
    let stop = StopWhenMapped {
        fake: fake.clone(),
        guest: Arc::clone(&guest),
        settled_at: 1,
    };
    let (events, log) = recorder();
    let summary = run(&config(), fake.backends(), &clock, &stop, log).unwrap();
    assert_eq!(summary.progress, Progress::Mapped);
    assert_eq!(summary.serve_end, Some(ServeEnd::Stopped));
    assert!(summary.teardown.is_clean(), "{}", summary.teardown);
    assert_loop_stopped_before_close(&fake);
    assert_eq!(
        count(&events, |e| matches!(e, Event::GuestEventsStopped { .. })),
        1
    );
    fake.world().assert_nothing_left();
}

#[test]
fn a_normal_exit_stops_the_loop_before_close_session() {
    // The VM is cleaned up while serving: serve ends, the release stops the loop first.
    struct TearDownWhenMapped(StopWhenMapped);
    impl StopSignal for TearDownWhenMapped {
        fn stop_requested(&self) -> bool {
            if self.0.stop_requested() && self.0.fake.world().running {
                self.0.fake.stop_vm();
            }
            false
        }
    }
    let fake = Fake::default();
    let guest = ready_guest(&fake);
    let clock = FakeClock { fake: fake.clone() };
    let stop = TearDownWhenMapped(StopWhenMapped {
        fake: fake.clone(),
        guest,
        settled_at: 1,
    });
    let (_events, log) = recorder();
    let summary = run(&config(), fake.backends(), &clock, &stop, log).unwrap();
    assert_eq!(summary.serve_end, Some(ServeEnd::VmTornDown));
    assert!(summary.teardown.is_clean(), "{}", summary.teardown);
    assert_loop_stopped_before_close(&fake);
    fake.world().assert_nothing_left();
}

#[test]
fn a_failed_step_stops_the_loop_before_close_session() {
    let fake = Fake::default();
    let guest = ready_guest(&fake);
    fake.world().create_error = Some(HResult::E_FAIL);
    let mut config = config();
    config.intercept_fallback = false;
    let clock = FakeClock { fake: fake.clone() };
    // The loop must be waiting again when the mapping fails: wait for it before the first
    // poll of the placement can see READY.
    let stop = WaitSettled(Arc::clone(&guest));
    let (_events, log) = recorder();
    let error = run(&config, fake.backends(), &clock, &stop, log).unwrap_err();
    assert_eq!(error.step, Step::CreateRange { region: 0 });
    assert!(error.teardown.is_clean(), "{}", error.teardown);
    assert_loop_stopped_before_close(&fake);
    fake.world().assert_nothing_left();
}

/// Never stops; each check waits until the loop handled event 1 and waits again.
struct WaitSettled(Arc<FakeGuest>);

impl StopSignal for WaitSettled {
    fn stop_requested(&self) -> bool {
        self.0.settled(1);
        false
    }
}

#[test]
fn the_ctrl_c_hook_ends_the_waiting_thread_at_once() {
    let fake = Fake::default();
    let guest = ready_guest(&fake);
    let clock = FakeClock { fake: fake.clone() };
    let handle: Rc<RefCell<Option<LoopStopHandle>>> = Rc::default();
    let slot = Rc::clone(&handle);
    let hooks = RunHooks {
        guest_loop_started: Some(Box::new(move |h| *slot.borrow_mut() = Some(h))),
    };
    // Ctrl-C as the console handler does it: the hook first, the flag seen later.
    struct CtrlC {
        inner: StopWhenMapped,
        handle: Rc<RefCell<Option<LoopStopHandle>>>,
    }
    impl StopSignal for CtrlC {
        fn stop_requested(&self) -> bool {
            if !self.inner.stop_requested() {
                return false;
            }
            self.handle.borrow().as_ref().unwrap().request_stop();
            // The thread ends without being joined.
            let deadline = Instant::now() + Duration::from_secs(10);
            while self
                .inner
                .fake
                .journal_index("guest source dropped")
                .is_none()
            {
                assert!(Instant::now() < deadline, "the hook did not end the thread");
                std::thread::sleep(Duration::from_millis(1));
            }
            true
        }
    }
    let stop = CtrlC {
        inner: StopWhenMapped {
            fake: fake.clone(),
            guest,
            settled_at: 1,
        },
        handle: Rc::clone(&handle),
    };
    let (_events, log) = recorder();
    let summary = run_with(&config(), fake.backends(), &clock, &stop, log, hooks).unwrap();
    assert!(summary.teardown.is_clean());
    assert_loop_stopped_before_close(&fake);
    // After the run the handle holds nothing: stopping again is harmless.
    handle.borrow().as_ref().unwrap().request_stop();
    fake.world().assert_nothing_left();
}

#[test]
fn a_driver_without_wait_guest_event_is_logged_once_and_config_space_still_maps() {
    let fake = Fake::default();
    let guest = fake.with_guest();
    // An older driver: STATUS_INVALID_DEVICE_REQUEST, in user mode ERROR_INVALID_FUNCTION.
    guest.post(Err(WaitFailure::Failed(DriverError::Ioctl {
        request: "WAIT_GUEST_EVENT",
        failure: IoctlFailure::Win32(1),
    })));
    let (events, log) = recorder();
    let mut host: Host = DeviceHost::start(&config(), fake.backends(), log).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while host.following_guest() {
        assert!(Instant::now() < deadline, "the loop did not end");
        std::thread::sleep(Duration::from_millis(1));
    }
    let clock = FakeClock { fake: fake.clone() };
    fake.start_vm();
    // The guest programs the BAR through configuration space: mapped from that source.
    fake.config_program_bar(BASE);
    assert_eq!(
        host.map_regions(&clock, &*stop_flag()).unwrap(),
        Progress::Mapped
    );
    assert_eq!(host.mapped_for(), Some(BASE));
    host.follow_placement(&clock, &*stop_flag()).unwrap();
    let unavailable: Vec<String> = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, Event::GuestEventsUnavailable(_)))
        .map(ToString::to_string)
        .collect();
    assert_eq!(unavailable.len(), 1, "{unavailable:?}");
    assert!(
        unavailable[0].contains("WAIT_GUEST_EVENT failed: Win32 error 1 (ERROR_INVALID_FUNCTION)"),
        "{}",
        unavailable[0]
    );
    fake.stop_vm();
    assert!(host.shutdown().is_clean());
    // Still logged once; nothing was pending, so nothing was cancelled.
    assert_eq!(
        count(&events, |e| matches!(e, Event::GuestEventsUnavailable(_))),
        1
    );
    assert_eq!(
        count(&events, |e| matches!(e, Event::GuestEventsStopped { .. })),
        0
    );
    assert!(fake.journal_index("CancelIoEx").is_none());
    fake.world().assert_nothing_left();
}

#[test]
fn a_client_without_guest_events_runs_as_before() {
    let fake = Fake::default();
    let (events, log) = recorder();
    let host: Host = DeviceHost::start(&config(), fake.backends(), log).unwrap();
    assert!(!host.following_guest());
    assert!(host.guest_loop_stop_handle().is_none());
    assert_eq!(
        count(&events, |e| matches!(e, Event::GuestEventsFollowing)),
        0
    );
    assert!(host.shutdown().is_clean());
    assert!(fake.journal_index("wait_guest_event 0").is_none());
    fake.world().assert_nothing_left();
}

/// docs/protocol.md "Misbehaviour": when the driver stops answering a guest (GUEST_STOPPED), the
/// device host unmaps, ends serving and closes the session, which disables the guest's channel.
#[test]
fn guest_stopped_ends_serving_and_the_session_closes() {
    let fake = Fake::default();
    let (mut host, events, guest) = following_host(&fake);
    let clock = FakeClock { fake: fake.clone() };
    fake.guest_sets(BASE, true);
    deliver(&guest, 1, GuestEventKind::GuestReady, BASE, READY);
    assert_eq!(
        host.map_regions(&clock, &*stop_flag()).unwrap(),
        Progress::Mapped
    );
    deliver(&guest, 2, GuestEventKind::GuestStopped, BASE, READY);
    // Give the loop's thread the time to note it; `serve` ends on its own, no stop requested.
    let end = host
        .serve(&clock, &*stop_flag(), std::time::Duration::from_millis(1))
        .unwrap();
    assert_eq!(end, ServeEnd::GuestStopped);
    assert!(host.guest_stopped());
    assert_eq!(
        count(&events, |e| matches!(e, Event::GuestStoppedClosing)),
        1
    );
    fake.stop_vm();
    assert!(host.shutdown().is_clean());
    assert_loop_stopped_before_close(&fake);
    fake.world().assert_nothing_left();
}
