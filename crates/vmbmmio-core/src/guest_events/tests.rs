//! The queue's state machine, without any platform: the glue's steps played by hand.

use std::sync::Mutex;

use vmbmmio_proto::ioctl::{GuestEventKind, GuestSnapshot};

use super::*;

struct StdLock(Mutex<GuestShared>);

impl EventLock for StdLock {
    fn new(shared: GuestShared) -> Option<Self> {
        Some(Self(Mutex::new(shared)))
    }

    fn with<R>(&self, f: impl FnOnce(&mut GuestShared) -> R) -> R {
        f(&mut self.0.lock().unwrap())
    }

    fn wake(&self, _wake: Wake) {}
}

const FILE: FileKey = FileKey(7);

fn queue() -> GuestEvents<StdLock> {
    let plan = crate::mmio_plan::MmioPlan::new(&[4096]).unwrap();
    let context = SessionContext::new(vmbmmio_proto::ioctl::WireGuid::from_u128(1), &plan, &[true]);
    GuestEvents::new(FILE, context).unwrap()
}

fn push(events: &GuestEvents<StdLock>, kind: GuestEventKind) -> (u64, Option<Wake>) {
    events.push(kind, 0, GuestSnapshot::default()).unwrap()
}

fn pend(events: &GuestEvents<StdLock>, last_seen: u64) -> Ticket {
    match events.begin_wait(last_seen).unwrap() {
        WaitStart::Pend(ticket) => ticket,
        other => panic!("expected to pend, got {other:?}"),
    }
}

fn complete(events: &GuestEvents<StdLock>, last_seen: u64) -> GuestEvent {
    match events.begin_wait(last_seen).unwrap() {
        WaitStart::Complete(event) => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

#[test]
fn sequences_start_at_one_without_gaps() {
    let events = queue();
    for expected in 1..=5 {
        assert_eq!(push(&events, GuestEventKind::GuestReady).0, expected);
    }
    for last_seen in 0..5 {
        assert_eq!(complete(&events, last_seen).sequence(), last_seen + 1);
    }
}

#[test]
fn a_parked_request_is_woken_by_a_push_and_gets_the_event() {
    let events = queue();
    let ticket = pend(&events, 0);
    assert_eq!(events.parked(ticket), None);
    let (sequence, wake) = push(&events, GuestEventKind::GuestReleasing);
    assert_eq!(wake, Some(Wake { file: FILE }));
    match events.deliver(ticket) {
        Delivery::Complete(event) => assert_eq!(event.sequence(), sequence),
        other => panic!("{other:?}"),
    }
    // Delivered, not consumed: the same last_seen gets it again.
    assert_eq!(complete(&events, 0).sequence(), 1);
}

#[test]
fn a_push_while_held_is_caught_when_parked() {
    let events = queue();
    let ticket = pend(&events, 0);
    // Held by the glue (not yet in its queue): no wake from the push ...
    assert_eq!(push(&events, GuestEventKind::GuestReady).1, None);
    // ... but parking it says to take it out again.
    assert_eq!(events.parked(ticket), Some(Wake { file: FILE }));
    assert!(matches!(events.deliver(ticket), Delivery::Complete(_)));
}

#[test]
fn a_stale_wake_requeues_a_newer_request() {
    let events = queue();
    let first = pend(&events, 0);
    assert_eq!(events.parked(first), None);
    let (_, wake) = push(&events, GuestEventKind::GuestReady);
    assert!(wake.is_some());
    // The request is cancelled before the wake is handled.
    assert!(events.cancel(first));
    // A newer request got event 1 at once, and the next one pends.
    assert_eq!(complete(&events, 0).sequence(), 1);
    let second = pend(&events, 1);
    assert_eq!(events.parked(second), None);
    // The stale wake retrieves the newer request: nothing for it yet.
    assert_eq!(events.deliver(second), Delivery::Requeue);
    assert_eq!(events.parked(second), None);
    // A late cancellation of the first request changes nothing.
    assert!(!events.cancel(first));
    assert!(push(&events, GuestEventKind::GuestReleasing).1.is_some());
    match events.deliver(second) {
        Delivery::Complete(event) => assert_eq!(event.sequence(), 2),
        other => panic!("{other:?}"),
    }
}

#[test]
fn full_queue_refuses_and_acknowledgement_makes_room() {
    let events = queue();
    for _ in 0..EVENT_CAPACITY {
        push(&events, GuestEventKind::GuestReady);
    }
    assert_eq!(
        events.push(GuestEventKind::GuestReady, 0, GuestSnapshot::default()),
        Err(PushError::Full)
    );
    assert_eq!(complete(&events, 1).sequence(), 2);
    assert_eq!(push(&events, GuestEventKind::GuestReady).0, 33);
}

#[test]
fn close_cancels_the_pending_request_and_refuses_later_pushes() {
    let events = queue();
    let ticket = pend(&events, 0);
    assert_eq!(events.parked(ticket), None);
    assert_eq!(events.close(), Some(Wake { file: FILE }));
    assert_eq!(events.deliver(ticket), Delivery::Cancel);
    assert_eq!(
        events.push(GuestEventKind::GuestReady, 0, GuestSnapshot::default()),
        Err(PushError::Closed)
    );
    assert_eq!(events.begin_wait(0), Err(WaitError::Closed));
}

#[test]
fn resync_is_not_pushable() {
    let events = queue();
    assert!(matches!(
        events.push(GuestEventKind::Resync, 0, GuestSnapshot::default()),
        Err(PushError::Invalid(_))
    ));
}
