//! The waiting loop against scripted and blocking sources.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};

use vmbmmio_proto::ioctl::{GuestDevice, GuestReservation, GuestSnapshot};

use super::*;
use crate::placement::BarState;

const BAR_SIZE: u64 = 1 << 20;
const BAR_INDEX: u8 = 0;
const BAR_BASE: u64 = 0xF800_0000;

fn snapshot(ready: bool, decode_on: bool, releasing: bool) -> GuestSnapshot {
    GuestSnapshot {
        reservation: Some(GuestReservation {
            base: 0xFE00_0000,
            size: 1 << 20,
        }),
        device: Some(GuestDevice {
            bar_index: BAR_INDEX,
            bar_base: BAR_BASE,
            bar_size: BAR_SIZE,
            decode_on,
            ready,
            releasing,
        }),
        protocol_version: 0x0001_0000,
        guest_packets: 5,
        counted_errors: 0,
        errors_left: 16,
    }
}

fn event(sequence: u64, kind: GuestEventKind, snapshot: GuestSnapshot) -> GuestEvent {
    let flags = if kind == GuestEventKind::GuestReport {
        vmbmmio_proto::ioctl::EVENT_FLAG_DEVICE
    } else {
        0
    };
    GuestEvent::new(sequence, kind, flags, snapshot).unwrap()
}

fn follower() -> (GuestEventFollower, PlacementSignal) {
    let signal = PlacementSignal::new();
    signal.set_bar_size(BAR_SIZE);
    (
        GuestEventFollower::new(signal.clone(), BAR_SIZE, BAR_INDEX),
        signal,
    )
}

/// Replays a script; every call records the `last_seen` it was given. When the script is empty
/// it sets the stop flag and reports a cancelled wait (a shutdown).
struct Scripted {
    script: VecDeque<Result<GuestEvent, WaitFailure>>,
    asked: Vec<u64>,
    stop: Arc<AtomicBool>,
}

impl GuestEventSource for Scripted {
    fn wait(&mut self, last_seen: u64) -> Result<GuestEvent, WaitFailure> {
        self.asked.push(last_seen);
        self.script.pop_front().unwrap_or_else(|| {
            self.stop.store(true, Ordering::Release);
            Err(WaitFailure::Cancelled)
        })
    }
}

#[test]
fn ready_with_decode_on_maps_and_releasing_unmaps() {
    let (follower, signal) = follower();
    let ready = event(1, GuestEventKind::GuestReady, snapshot(true, true, false));
    assert!(matches!(follower.apply(&ready), Applied::Placed(_)));
    assert_eq!(
        signal.latest().unwrap().state,
        BarState::Decoding { base: BAR_BASE }
    );
    for kind in [
        GuestEventKind::GuestReleasing,
        GuestEventKind::GuestReset,
        GuestEventKind::GuestStopped,
        GuestEventKind::ChannelClosed,
    ] {
        follower.apply(&ready);
        let off = event(
            2,
            kind,
            snapshot(false, true, kind == GuestEventKind::GuestReleasing),
        );
        assert!(
            matches!(follower.apply(&off), Applied::Placed(_)),
            "{kind:?}"
        );
        assert_eq!(
            signal.latest().unwrap().state,
            BarState::DecodeOff,
            "{kind:?}"
        );
    }
}

#[test]
fn a_report_without_ready_maps_nothing() {
    let (follower, signal) = follower();
    let report = event(1, GuestEventKind::GuestReport, snapshot(false, true, false));
    // A device report with decode on but no READY: decode-off level (nothing mapped yet).
    assert!(matches!(follower.apply(&report), Applied::Placed(_)));
    assert_eq!(signal.latest().unwrap().state, BarState::DecodeOff);
    let no_device = GuestSnapshot {
        device: None,
        ..snapshot(false, false, false)
    };
    let reservation_only = GuestEvent::new(
        2,
        GuestEventKind::GuestReport,
        vmbmmio_proto::ioctl::EVENT_FLAG_RESERVATION,
        no_device,
    )
    .unwrap();
    assert_eq!(follower.apply(&reservation_only), Applied::Nothing);
}

#[test]
fn the_loop_handles_each_event_once_in_order_across_cancellations() {
    let (follower, signal) = follower();
    let stop = Arc::new(AtomicBool::new(false));
    let mut source = Scripted {
        script: VecDeque::from([
            Ok(event(
                1,
                GuestEventKind::GuestReport,
                snapshot(false, true, false),
            )),
            Err(WaitFailure::Cancelled),
            Ok(event(
                2,
                GuestEventKind::GuestReady,
                snapshot(true, true, false),
            )),
            // A duplicate (never sent by the driver): ignored, counted.
            Ok(event(
                2,
                GuestEventKind::GuestReady,
                snapshot(true, true, false),
            )),
            Ok(event(
                3,
                GuestEventKind::GuestReleasing,
                snapshot(false, true, true),
            )),
        ]),
        asked: Vec::new(),
        stop: Arc::clone(&stop),
    };
    let summary = follow_guest_events(&mut source, &follower, &stop, 0);
    let sequences: Vec<u64> = summary.events.iter().map(|(e, _)| e.sequence()).collect();
    assert_eq!(sequences, [1, 2, 3]);
    assert_eq!(summary.out_of_order, 1);
    assert_eq!(summary.cancelled_waits, 2);
    assert_eq!(summary.last_seen, 3);
    // The cancelled wait was re-issued with the same last_seen.
    assert_eq!(source.asked, [0, 1, 1, 2, 2, 3]);
    assert_eq!(signal.latest().unwrap().state, BarState::DecodeOff);
    assert!(summary.error.is_none());
}

/// A blocking source: waits on a condvar until an event is posted or the wait is cancelled.
#[derive(Default)]
struct Blocking {
    state: Mutex<(VecDeque<GuestEvent>, bool)>,
    changed: Condvar,
}

struct BlockingSource(Arc<Blocking>);

impl GuestEventSource for BlockingSource {
    fn wait(&mut self, _last_seen: u64) -> Result<GuestEvent, WaitFailure> {
        let mut state = self.0.state.lock().unwrap();
        loop {
            if std::mem::take(&mut state.1) {
                return Err(WaitFailure::Cancelled);
            }
            if let Some(event) = state.0.pop_front() {
                return Ok(event);
            }
            state = self.0.changed.wait(state).unwrap();
        }
    }
}

#[test]
fn the_thread_stops_by_cancelling_its_pending_wait() {
    let (follower, signal) = follower();
    let shared = Arc::new(Blocking::default());
    let canceller = Arc::clone(&shared);
    let handle = GuestEventLoop::spawn(
        Box::new(BlockingSource(Arc::clone(&shared))),
        follower,
        Box::new(move || {
            canceller.state.lock().unwrap().1 = true;
            canceller.changed.notify_all();
        }),
    )
    .unwrap();
    {
        let mut state = shared.state.lock().unwrap();
        state.0.push_back(event(
            1,
            GuestEventKind::GuestReady,
            snapshot(true, true, false),
        ));
        shared.changed.notify_all();
    }
    while signal.latest().is_none() {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let summary = handle.stop();
    assert_eq!(summary.last_seen, 1);
    assert!(summary.cancelled_waits >= 1);
    assert_eq!(
        signal.latest().unwrap().state,
        BarState::Decoding { base: BAR_BASE }
    );
}

#[test]
fn notes_are_bounded_and_the_end_is_told_once() {
    let (follower, _signal) = follower();
    let notes = GuestNotes::new();
    let follower = follower.with_notes(notes.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let total = GUEST_NOTES_KEPT as u64 + 3;
    let mut script: VecDeque<Result<GuestEvent, WaitFailure>> = (1..=total)
        .map(|sequence| {
            Ok(event(
                sequence,
                GuestEventKind::GuestReport,
                snapshot(false, true, false),
            ))
        })
        .collect();
    script.push_back(Err(WaitFailure::Failed(DriverError::Rejected {
        reason: "gone".into(),
    })));
    let mut source = Scripted {
        script,
        asked: Vec::new(),
        stop: Arc::clone(&stop),
    };
    let summary = follow_guest_events(&mut source, &follower, &stop, 0);
    assert_eq!(summary.last_seen, total);
    let taken = notes.take();
    assert_eq!(taken.len(), GUEST_NOTES_KEPT + 1);
    assert_eq!(taken[0], GuestNote::Skipped(3));
    assert!(matches!(taken[1], GuestNote::Event(e, _) if e.sequence() == 4));
    assert!(notes.take().is_empty());
    assert_eq!(
        notes.take_end().as_deref(),
        Some("the driver refused the request: gone")
    );
    assert_eq!(notes.take_end(), None);
}

#[test]
fn a_stop_handle_outliving_its_loop_keeps_nothing() {
    let (follower, _signal) = follower();
    let shared = Arc::new(Blocking::default());
    let canceller = Arc::clone(&shared);
    let guest_loop = GuestEventLoop::spawn(
        Box::new(BlockingSource(Arc::clone(&shared))),
        follower,
        Box::new(move || {
            canceller.state.lock().unwrap().1 = true;
            canceller.changed.notify_all();
        }),
    )
    .unwrap();
    let handle = guest_loop.stop_handle();
    // From another thread: flag and cancel; the loop's thread ends without a join.
    let remote = handle.clone();
    std::thread::spawn(move || remote.request_stop())
        .join()
        .unwrap();
    while !guest_loop.is_finished() {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let summary = guest_loop.stop();
    assert!(summary.error.is_none());
    // The loop (and its canceller, which held the source's state) is gone.
    assert_eq!(Arc::strong_count(&shared), 1);
    handle.request_stop();
}

#[test]
fn a_report_naming_another_bar_is_refused_and_changes_nothing() {
    let (follower, signal) = follower();
    let mut wrong = snapshot(true, true, false);
    if let Some(device) = wrong.device.as_mut() {
        device.bar_index = BAR_INDEX + 2;
    }
    let applied = follower.apply(&event(1, GuestEventKind::GuestReady, wrong));
    assert_eq!(
        applied,
        Applied::WrongBar {
            reported: BAR_INDEX + 2,
            expected: BAR_INDEX
        }
    );
    assert_eq!(signal.latest(), None, "nothing reached the inbox");
    let right = follower.apply(&event(
        2,
        GuestEventKind::GuestReady,
        snapshot(true, true, false),
    ));
    assert!(matches!(right, Applied::Placed(_)), "{right:?}");
}
