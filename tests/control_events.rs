//! WAIT_GUEST_EVENT against the driver's real control device (docs/ioctl.md): a test per rule.
//!
//! The producer of the session's guest-event queue is the host engine of the guest protocol
//! (`vmbmmio_core::guest`, tested end to end in `tests/guest_protocol.rs`); these tests push
//! through the queue's own API (`ControlDevice::guest_events(file)`), so each rule of the queue is
//! tested without a guest. The glue's part (the manual
//! WDF queue that holds a pending request) is played by [`ManualQueue`], following the steps
//! the queue's module documents (`vmbmmio_core::guest_events`).

mod control_support;

use std::cell::RefCell;

use control_support::{Bench, Waited, vm_target};
use hvsim::platform::SimPlatform;
use kmcl::raw::{
    NTSTATUS, STATUS_BUFFER_TOO_SMALL, STATUS_CANCELLED, STATUS_INVALID_DEVICE_STATE,
    STATUS_INVALID_PARAMETER,
};
use vmbmmio_core::control::serve::{self, TableLock};
use vmbmmio_core::control::{
    Caller, ControlDevice, Delivered, PendingWait, Rundown, STATUS_DEVICE_BUSY,
};
use vmbmmio_core::guest_events::{EVENT_CAPACITY, GuestEvents, PushError, Wake};
use vmbmmio_proto::ioctl::{
    EVENT_FLAG_DEVICE, GuestDevice, GuestEvent, GuestEventKind, GuestSnapshot, IoctlCode,
    WaitGuestEventRequest, WireMessage, parse_wait_guest_event_reply,
};

type Events = GuestEvents<hvsim::platform::SimEventLock>;

const SIZES: [u64; 2] = [64 << 10, 8 << 10];

fn snapshot(packets: u64) -> GuestSnapshot {
    GuestSnapshot {
        reservation: None,
        device: Some(GuestDevice {
            bar_index: 0,
            bar_base: 0xF800_0000,
            bar_size: 1 << 20,
            decode_on: true,
            ready: true,
            releasing: false,
        }),
        protocol_version: 0x0001_0000,
        guest_packets: packets,
        counted_errors: 0,
        errors_left: 16,
    }
}

fn push(events: &Events, kind: GuestEventKind) -> (u64, Option<Wake>) {
    let flags = if kind == GuestEventKind::GuestReport {
        EVENT_FLAG_DEVICE
    } else {
        0
    };
    let packets = events.inspect(|queue| queue.newest()) + 1;
    events.push(kind, flags, snapshot(packets)).unwrap()
}

/// A bench with one device host whose session is open.
fn session() -> (Bench, Caller, Events) {
    let mut bench = Bench::new();
    let (process, vm) = bench.device_host_with_vm();
    let caller = bench.open_file(process, 1);
    bench.open_session(caller, vm_target(&vm), &SIZES).unwrap();
    let events = bench.control.guest_events(caller.file()).unwrap();
    (bench, caller, events)
}

/// The glue's manual queue, for one file: at most one parked request.
#[derive(Default)]
struct ManualQueue {
    parked: Option<PendingWait<SimPlatform>>,
    /// Requests completed, with their result.
    completed: Vec<Result<GuestEvent, NTSTATUS>>,
}

impl ManualQueue {
    /// The request pended: into the queue, then `parked` (step 2).
    fn park(&mut self, pending: PendingWait<SimPlatform>) {
        let wake = pending.parked();
        self.parked = Some(pending);
        if let Some(wake) = wake {
            self.wake(wake);
        }
    }

    /// A wake (step 4): retrieve, deliver, complete or requeue.
    fn wake(&mut self, _wake: Wake) {
        let Some(pending) = self.parked.take() else {
            return; // cancelled meanwhile: nothing to retrieve
        };
        let mut output = vec![0u8; IoctlCode::WaitGuestEvent.reply_size()];
        match pending.deliver(&mut output) {
            Delivered::Completed(written) => self
                .completed
                .push(Ok(parse_wait_guest_event_reply(&output[..written]).unwrap())),
            Delivered::Requeue => self.park(pending),
            Delivered::Failed(error) => self.completed.push(Err(error.to_ntstatus())),
        }
    }

    /// WDF cancelled the parked request (the device host's CancelIoEx, step 5).
    fn cancel(&mut self) {
        let pending = self.parked.take().expect("a parked request");
        pending.cancel();
        self.completed.push(Err(STATUS_CANCELLED));
    }

    fn take(&mut self) -> Vec<Result<GuestEvent, NTSTATUS>> {
        std::mem::take(&mut self.completed)
    }
}

fn sequences(results: &[Result<GuestEvent, NTSTATUS>]) -> Vec<u64> {
    results
        .iter()
        .map(|r| r.as_ref().unwrap().sequence())
        .collect()
}

#[test]
fn events_arrive_exactly_once_and_in_order() {
    let (mut bench, caller, events) = session();
    let mut queue = ManualQueue::default();
    let mut seen = Vec::new();
    let mut last_seen = 0;
    // The device host waits before anything happened.
    queue.park(bench.wait_guest_event(caller, 0).unwrap().pending());
    for round in 0..5 {
        // The guest reports 0..3 things per round while the device host waits or is busy.
        for _ in 0..round % 4 {
            if let (_, Some(wake)) = push(&events, GuestEventKind::GuestReport) {
                queue.wake(wake);
            }
        }
        for result in queue.take() {
            let event = result.unwrap();
            seen.push(event.sequence());
            last_seen = event.sequence();
        }
        if queue.parked.is_some() {
            continue; // still pending: nothing happened this round
        }
        // Drain what is there, then leave one request pending.
        loop {
            match bench.wait_guest_event(caller, last_seen).unwrap() {
                Waited::Event(event) => {
                    seen.push(event.sequence());
                    last_seen = event.sequence();
                }
                Waited::Pending(pending) => {
                    queue.park(pending);
                    break;
                }
            }
        }
    }
    let newest = events.inspect(|q| q.newest());
    // Rounds 0..5 push 0, 1, 2, 3 and 0 events.
    assert_eq!(newest, 6);
    assert_eq!(seen, (1..=newest).collect::<Vec<_>>());
}

#[test]
fn a_push_wakes_the_parked_request_with_the_next_event() {
    let (mut bench, caller, events) = session();
    let mut queue = ManualQueue::default();
    queue.park(bench.wait_guest_event(caller, 0).unwrap().pending());
    let (sequence, wake) = push(&events, GuestEventKind::GuestReady);
    assert_eq!(sequence, 1);
    let wake = wake.expect("the parked request is woken");
    assert_eq!(wake.file, caller.file());
    queue.wake(wake);
    let completed = queue.take();
    assert_eq!(sequences(&completed), [1]);
    let event = completed[0].as_ref().unwrap();
    assert_eq!(event.kind(), GuestEventKind::GuestReady);
    assert_eq!(*event.snapshot(), snapshot(1));
    // A second push while nothing is pending wakes nothing.
    assert_eq!(push(&events, GuestEventKind::GuestReleasing).1, None);
}

#[test]
fn cancel_and_rewait_consumes_nothing() {
    let (mut bench, caller, events) = session();
    let mut queue = ManualQueue::default();
    queue.park(bench.wait_guest_event(caller, 0).unwrap().pending());
    queue.cancel();
    assert_eq!(queue.take(), [Err(STATUS_CANCELLED)]);
    // The guest reports while no request is pending: nothing to wake.
    assert_eq!(push(&events, GuestEventKind::GuestReady).1, None);
    // The re-wait with the same last_seen gets it.
    assert_eq!(
        bench
            .wait_guest_event(caller, 0)
            .unwrap()
            .event()
            .sequence(),
        1
    );

    // A completion lost after the wake: the request is cancelled between the push's wake and
    // its retrieval. The event stays and comes again.
    queue.park(bench.wait_guest_event(caller, 1).unwrap().pending());
    let (_, wake) = push(&events, GuestEventKind::GuestReleasing);
    assert!(wake.is_some());
    queue.cancel();
    queue.wake(wake.unwrap()); // finds nothing
    assert_eq!(queue.take(), [Err(STATUS_CANCELLED)]);
    let again = bench.wait_guest_event(caller, 1).unwrap().event();
    assert_eq!(
        (again.sequence(), again.kind()),
        (2, GuestEventKind::GuestReleasing)
    );
    // And a late, stale wake of that cancelled request only requeues the newer one.
    queue.park(bench.wait_guest_event(caller, 2).unwrap().pending());
    queue.wake(wake.unwrap());
    assert!(queue.take().is_empty());
    assert!(queue.parked.is_some());
}

#[test]
fn an_event_arriving_while_the_glue_parks_the_request_is_not_lost() {
    let (mut bench, caller, events) = session();
    let mut queue = ManualQueue::default();
    let pending = bench.wait_guest_event(caller, 0).unwrap().pending();
    // Between begin (pend) and the request reaching the manual queue, the guest reports.
    assert_eq!(push(&events, GuestEventKind::GuestReady).1, None);
    queue.park(pending);
    assert_eq!(sequences(&queue.take()), [1]);
}

/// The glue's table: the control device behind a RefCell, recording the wakes `serve` hands it.
struct Table {
    control: RefCell<ControlDevice<SimPlatform>>,
    wakes: RefCell<Vec<Wake>>,
}

impl TableLock<SimPlatform> for Table {
    fn locked<R>(&self, f: impl FnOnce(&mut ControlDevice<SimPlatform>) -> R) -> Option<R> {
        Some(f(&mut self.control.borrow_mut()))
    }

    fn wake(&self, wake: Wake) {
        self.wakes.borrow_mut().push(wake);
    }
}

#[test]
fn device_host_exit_with_one_pending_leaks_nothing_and_consumes_nothing() {
    let (mut bench, caller, events) = session();
    push(&events, GuestEventKind::GuestReport);
    assert_eq!(
        bench
            .wait_guest_event(caller, 0)
            .unwrap()
            .event()
            .sequence(),
        1
    );
    let mut queue = ManualQueue::default();
    queue.park(bench.wait_guest_event(caller, 1).unwrap().pending());
    push(&events, GuestEventKind::GuestReady);
    // The wake is lost (the process is exiting): event 2 is delivered to nobody.
    let pending = queue.parked.take().unwrap();

    // Exit: file cleanup through the glue's sequence, which hands the pending wait back.
    let Bench {
        sim,
        kernel,
        control,
    } = bench;
    let table = Table {
        control: RefCell::new(control),
        wakes: RefCell::new(Vec::new()),
    };
    let rundown = Rundown::new();
    let guard = rundown.acquire().unwrap();
    serve::file_cleanup(&guard, &table, caller.file());
    drop(guard);
    assert_eq!(
        *table.wakes.borrow(),
        [Wake {
            file: caller.file()
        }]
    );
    // The glue retrieves the request and the delivery says: cancel it.
    let mut output = vec![0u8; IoctlCode::WaitGuestEvent.reply_size()];
    assert_eq!(
        pending.deliver(&mut output),
        Delivered::Failed(vmbmmio_core::control::ControlError::Cancelled)
    );
    // Event 2 was never acknowledged: still in the (now closed) queue.
    assert_eq!(events.inspect(|q| (q.newest(), q.len())), (2, 1));
    assert!(!events.inspect(|q| q.has_waiter()));
    assert_eq!(
        events.push(GuestEventKind::GuestReady, 0, snapshot(9)),
        Err(PushError::Closed)
    );
    drop(pending);
    drop(events);
    let bench = Bench {
        sim,
        kernel,
        control: table.control.into_inner(),
    };
    bench.assert_nothing_left();
}

#[test]
fn close_session_cancels_the_pending_request() {
    let (bench, caller, events) = session();
    let table = Table {
        control: RefCell::new(bench.control),
        wakes: RefCell::new(Vec::new()),
    };
    let mut output = vec![0u8; 200];
    let input = WaitGuestEventRequest::new(0);
    let mut bytes = vec![0u8; WaitGuestEventRequest::SIZE];
    input.encode(&mut bytes).unwrap();
    let rundown = Rundown::new();
    let guard = rundown.acquire().unwrap();
    bench
        .kernel
        .set_current_process(bench.kernel.process_id_of(caller.process()).unwrap());
    let handled = serve::handle(
        &guard,
        &table,
        caller,
        IoctlCode::WaitGuestEvent.code(),
        &bytes,
        &mut output,
    )
    .unwrap();
    let vmbmmio_core::control::Handled::Pending(pending) = handled else {
        panic!("expected to pend");
    };
    assert_eq!(pending.parked(), None);
    let close = control_support::encode(&vmbmmio_proto::ioctl::CloseSessionRequest::new());
    let written = bench
        .sim
        .in_process(
            bench.kernel.process_id_of(caller.process()).unwrap(),
            || {
                serve::dispatch(
                    &guard,
                    &table,
                    caller,
                    IoctlCode::CloseSession.code(),
                    &close,
                    &mut output,
                )
            },
        )
        .unwrap();
    assert_eq!(written, 16);
    assert_eq!(
        *table.wakes.borrow(),
        [Wake {
            file: caller.file()
        }]
    );
    assert_eq!(
        pending.deliver(&mut output),
        Delivered::Failed(vmbmmio_core::control::ControlError::Cancelled)
    );
    assert!(events.inspect(|q| !q.has_waiter()));
}

#[test]
fn a_full_queue_refuses_the_push() {
    let (mut bench, caller, events) = session();
    for expected in 1..=EVENT_CAPACITY as u64 {
        assert_eq!(push(&events, GuestEventKind::GuestReport).0, expected);
    }
    assert_eq!(
        events.push(GuestEventKind::GuestReady, 0, snapshot(1)),
        Err(PushError::Full)
    );
    // Delivering does not make room; acknowledging does.
    assert_eq!(
        bench
            .wait_guest_event(caller, 0)
            .unwrap()
            .event()
            .sequence(),
        1
    );
    assert_eq!(
        events.push(GuestEventKind::GuestReady, 0, snapshot(1)),
        Err(PushError::Full)
    );
    assert_eq!(
        bench
            .wait_guest_event(caller, 1)
            .unwrap()
            .event()
            .sequence(),
        2
    );
    assert_eq!(push(&events, GuestEventKind::GuestReady).0, 33);
}

#[test]
fn a_second_pending_request_is_refused_and_changes_nothing() {
    let (mut bench, caller, events) = session();
    let mut queue = ManualQueue::default();
    queue.park(bench.wait_guest_event(caller, 0).unwrap().pending());
    let before = bench.status(caller).unwrap().counters.protocol_errors;
    assert_eq!(
        bench.wait_guest_event(caller, 0).err(),
        Some(STATUS_DEVICE_BUSY)
    );
    // Counted as a rejected request, nothing else changed: the first one still gets event 1.
    assert_eq!(
        bench.status(caller).unwrap().counters.protocol_errors,
        before + 1
    );
    let (_, wake) = push(&events, GuestEventKind::GuestReady);
    queue.wake(wake.unwrap());
    assert_eq!(sequences(&queue.take()), [1]);
}

#[test]
fn last_seen_beyond_the_newest_event_is_refused() {
    let (mut bench, caller, events) = session();
    assert_eq!(
        bench.wait_guest_event(caller, 1).err(),
        Some(STATUS_INVALID_PARAMETER)
    );
    push(&events, GuestEventKind::GuestReady);
    assert_eq!(
        bench.wait_guest_event(caller, 2).err(),
        Some(STATUS_INVALID_PARAMETER)
    );
    assert_eq!(
        bench.wait_guest_event(caller, u64::MAX).err(),
        Some(STATUS_INVALID_PARAMETER)
    );
    // Nothing was acknowledged by the refusals.
    assert_eq!(
        bench
            .wait_guest_event(caller, 0)
            .unwrap()
            .event()
            .sequence(),
        1
    );
}

#[test]
fn a_last_seen_older_than_acknowledged_gets_a_resync() {
    let (mut bench, caller, events) = session();
    for _ in 0..3 {
        push(&events, GuestEventKind::GuestReport);
    }
    assert_eq!(
        bench
            .wait_guest_event(caller, 2)
            .unwrap()
            .event()
            .sequence(),
        3
    );
    // Events 1 and 2 are gone: asking from 1 (or 0) is a device host that lost track.
    for last_seen in [0, 1] {
        let resync = bench.wait_guest_event(caller, last_seen).unwrap().event();
        assert_eq!(resync.kind(), GuestEventKind::Resync);
        assert_eq!(resync.sequence(), 3);
        assert_eq!(*resync.snapshot(), snapshot(3));
    }
    // A RESYNC acknowledges nothing: from 2, event 3 comes again.
    assert_eq!(
        bench
            .wait_guest_event(caller, 2)
            .unwrap()
            .event()
            .sequence(),
        3
    );
}

#[test]
fn without_a_session_or_with_a_short_output_it_is_refused() {
    let mut bench = Bench::new();
    let (process, _vm) = bench.device_host_with_vm();
    let caller = bench.open_file(process, 1);
    assert_eq!(
        bench.wait_guest_event(caller, 0).err(),
        Some(STATUS_INVALID_DEVICE_STATE)
    );
    assert!(bench.control.guest_events(caller.file()).is_none());
    let input = control_support::encode(&WaitGuestEventRequest::new(0));
    assert_eq!(
        bench
            .ioctl(caller, IoctlCode::WaitGuestEvent.code(), &input, 135)
            .err(),
        Some(STATUS_BUFFER_TOO_SMALL)
    );
}

#[test]
fn the_all_in_one_dispatch_cancels_instead_of_pending() {
    let (mut bench, caller, events) = session();
    let input = control_support::encode(&WaitGuestEventRequest::new(0));
    assert_eq!(
        bench
            .ioctl(
                caller,
                IoctlCode::WaitGuestEvent.code(),
                &input,
                IoctlCode::WaitGuestEvent.reply_size()
            )
            .err(),
        Some(STATUS_CANCELLED)
    );
    assert!(!events.inspect(|q| q.has_waiter()));
    push(&events, GuestEventKind::GuestReady);
    let reply = bench
        .ioctl(
            caller,
            IoctlCode::WaitGuestEvent.code(),
            &input,
            IoctlCode::WaitGuestEvent.reply_size(),
        )
        .unwrap();
    assert_eq!(parse_wait_guest_event_reply(&reply).unwrap().sequence(), 1);
}
