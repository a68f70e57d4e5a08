//! Model-checked interleavings of one session's guest state (`loom`): the device-host event
//! queue's pending-request protocol (`begin_wait`, `parked`, `deliver`, `cancel`, `close`,
//! `Wake`) and the guest engine's one held `WAIT_EVENT`, driven from several threads the way the
//! driver drives them on Windows: the KMCL packet callback pushes, the IOCTL path begins, parks
//! and delivers, WDF's `EvtIoCanceledOnQueue` cancels, session close and file cleanup close.
//!
//! The platform's `EventLock` is a `loom::sync::Mutex`; the glue's side (`src/glue/guest_waits.rs`)
//! is modelled step for step by [`Glue`]: the manual WDF queue keyed by file object, the
//! forward-then-park sequence, `handle_wake`'s retrieve → deliver → complete / requeue / cancel
//! loop, and WDF's cancellation (a request in the queue is taken out and cancelled; one the driver
//! holds is cancelled when it goes back into the queue).
//!
//! Run with `scripts/loom.sh` (`RUSTFLAGS="--cfg loom" cargo test --release -p vmbmmio-core
//! --test loom_guest_events`). Without `--cfg loom` this file is empty.
#![cfg(loom)]

use std::collections::VecDeque;

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

use vmbmmio_core::control::FileKey;
use vmbmmio_core::guest::limits::LARGEST_MESSAGE;
use vmbmmio_core::guest::{Action, Engine, GuestShared, HeldReply, SessionContext};
use vmbmmio_core::guest_events::{
    Delivery, EventLock, GuestEventQueue, GuestEvents, PushError, Ticket, WaitError, WaitStart,
    Wake,
};
use vmbmmio_core::mmio_plan::MmioPlan;
use vmbmmio_proto::guest::{
    BarPlacement, DeviceReport, EventKind, GuestClient, ReplyBody, RequestBody, encode_request,
    parse_reply,
};
use vmbmmio_proto::ioctl::{GuestEventKind, GuestSnapshot, MappingState, WireGuid};

/// The platform's event lock as a loom mutex: every acquisition is a scheduling point.
struct LoomLock(Mutex<GuestShared>);

impl EventLock for LoomLock {
    fn new(shared: GuestShared) -> Option<Self> {
        Some(Self(Mutex::new(shared)))
    }

    fn with<R>(&self, f: impl FnOnce(&mut GuestShared) -> R) -> R {
        f(&mut self.0.lock().unwrap())
    }

    fn wake(&self, _wake: Wake) {
        // Only the channel port calls this; these models hand every wake to `Glue` directly.
        unreachable!("the models deliver their wakes themselves");
    }
}

const FILE: FileKey = FileKey(7);

fn session() -> GuestEvents<LoomLock> {
    let plan = MmioPlan::new(&[4096]).unwrap();
    let context = SessionContext::new(WireGuid::from_u128(1), &plan, &[true]);
    GuestEvents::new(FILE, context).unwrap()
}

/// How a request ended, as the device host sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Completion {
    /// Completed with the event of this sequence.
    Event(u64),
    /// Completed with `STATUS_CANCELLED`.
    Cancelled,
}

/// One WDF request carrying a pending WAIT_GUEST_EVENT (its context's `PendingWait`).
struct Request {
    id: u32,
    events: GuestEvents<LoomLock>,
    ticket: Ticket,
    /// The device host cancelled it (`CancelIoEx`) while the driver held it: WDF cancels it as
    /// soon as it is back in a queue.
    cancel_requested: Arc<AtomicBool>,
}

/// The glue's side: the manual queue (one file, so "retrieve by file object" is "the first"),
/// and every completion made.
#[derive(Clone)]
struct Glue {
    manual: Arc<Mutex<VecDeque<Request>>>,
    completions: Arc<Mutex<Vec<(u32, Completion)>>>,
}

impl Glue {
    fn new() -> Self {
        Self {
            manual: Arc::new(Mutex::new(VecDeque::new())),
            completions: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// `handle_wake` (src/glue/guest_waits.rs): retrieve **every** request of the file (a wake
    /// names only the file, and after CLOSE_SESSION + OPEN_SESSION on one handle two sessions'
    /// requests can share the manual queue), ask each its own `deliver`, then requeue and
    /// re-park those with nothing for them. (The glue takes at most `WAKE_BATCH` = 4 per wake;
    /// the model never has more than two.)
    fn handle_wake(&self, wake: Wake) {
        assert_eq!(wake.file, FILE);
        let mut back = Vec::new();
        loop {
            let Some(request) = self.manual.lock().unwrap().pop_front() else {
                break;
            };
            match request.events.deliver(request.ticket) {
                Delivery::Complete(event) => {
                    self.complete(request.id, Completion::Event(event.sequence()))
                }
                Delivery::Requeue => back.push(request),
                Delivery::Cancel => {
                    self.complete(request.id, Completion::Cancelled);
                    request.events.cancel(request.ticket);
                }
            }
        }
        for request in back {
            let (events, ticket) = self.enqueue(request, true);
            if let Some(wake) = events.parked(ticket) {
                self.handle_wake(wake);
            }
        }
    }

    fn complete(&self, id: u32, completion: Completion) {
        self.completions.lock().unwrap().push((id, completion));
    }

    /// `EvtIoCanceledOnQueue`, then the context cleanup (`cancel` once more, a no-op).
    fn canceled_on_queue(&self, request: Request) {
        request.events.cancel(request.ticket);
        self.complete(request.id, Completion::Cancelled);
        request.events.cancel(request.ticket);
    }

    /// `WdfRequestForwardToIoQueue` / `WdfRequestRequeue`: into the manual queue, unless the
    /// device host cancelled it meanwhile (then WDF cancels it there at once). Returns the
    /// `PendingWait` clone the glue keeps.
    fn enqueue(&self, request: Request, front: bool) -> (GuestEvents<LoomLock>, Ticket) {
        let kept = (request.events.clone(), request.ticket);
        if request.cancel_requested.load(Ordering::SeqCst) {
            self.canceled_on_queue(request);
        } else {
            let mut manual = self.manual.lock().unwrap();
            if front {
                manual.push_front(request);
            } else {
                manual.push_back(request);
            }
        }
        kept
    }

    /// `evt_io_device_control` → `forward_to_wait_queue`: forward, then park; a wake is handled.
    fn forward(&self, request: Request) {
        let (events, ticket) = self.enqueue(request, false);
        if let Some(wake) = events.parked(ticket) {
            self.handle_wake(wake);
        }
    }

    /// The device host's `CancelIoEx` on request `id`: WDF takes it out of the manual queue and
    /// calls `EvtIoCanceledOnQueue`; a request the driver holds is cancelled when requeued.
    fn device_host_cancels(&self, id: u32, flag: &AtomicBool) {
        flag.store(true, Ordering::SeqCst);
        let removed = {
            let mut manual = self.manual.lock().unwrap();
            let position = manual.iter().position(|request| request.id == id);
            position.and_then(|position| manual.remove(position))
        };
        if let Some(request) = removed {
            self.canceled_on_queue(request);
        }
    }

    /// `cancel_file_waits` (file cleanup): every request of the file still queued is cancelled.
    fn cancel_file_waits(&self) {
        loop {
            let Some(request) = self.manual.lock().unwrap().pop_front() else {
                return;
            };
            self.canceled_on_queue(request);
        }
    }

    /// The IOCTL path: `begin_wait` (under the table lock), then either complete at once or
    /// pend → forward → park. `None` when the core refused the request.
    fn wait(
        &self,
        events: &GuestEvents<LoomLock>,
        id: u32,
        last_seen: u64,
        cancel_requested: &Arc<AtomicBool>,
    ) -> Option<Ticket> {
        match events.begin_wait(last_seen) {
            Ok(WaitStart::Complete(event)) => {
                self.complete(id, Completion::Event(event.sequence()));
                None
            }
            Ok(WaitStart::Pend(ticket)) => {
                self.forward(Request {
                    id,
                    events: events.clone(),
                    ticket,
                    cancel_requested: Arc::clone(cancel_requested),
                });
                Some(ticket)
            }
            Err(WaitError::Closed) => {
                self.complete(id, Completion::Cancelled);
                None
            }
            Err(error) => panic!("request {id} refused: {error:?}"),
        }
    }

    fn completions_of(&self, id: u32) -> Vec<Completion> {
        let completions = self.completions.lock().unwrap();
        completions
            .iter()
            .filter(|(of, _)| *of == id)
            .map(|(_, completion)| *completion)
            .collect()
    }

    fn queued(&self) -> usize {
        self.manual.lock().unwrap().len()
    }
}

/// The packet callback's push: the engine queues a device-host event and hands the wake to the
/// glue after the lock is released (`SessionPort::packet`).
fn push(events: &GuestEvents<LoomLock>, glue: &Glue) -> Result<u64, PushError> {
    let (sequence, wake) = events.push(GuestEventKind::GuestReady, 0, GuestSnapshot::default())?;
    if let Some(wake) = wake {
        glue.handle_wake(wake);
    }
    Ok(sequence)
}

/// Runs `f` under loom, every interleaving up to `LOOM_MAX_PREEMPTIONS` (5 unless set), and
/// prints how many executions loom explored.
fn model(name: &str, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(5);
    }
    let bound = builder.preemption_bound;
    let executions = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&executions);
    builder.check(move || {
        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f();
    });
    let executions = executions.load(std::sync::atomic::Ordering::Relaxed);
    println!("loom: {name}: {executions} executions (preemption bound {bound:?})");
}

/// A push from the packet callback races the IOCTL path's begin_wait → forward → parked →
/// handle_wake: the request gets event 1 exactly once, nothing stays queued (no lost wake).
#[test]
fn push_races_begin_park_deliver() {
    model("push_races_begin_park_deliver", || {
        let events = session();
        let glue = Glue::new();
        let callback = {
            let (events, glue) = (events.clone(), glue.clone());
            thread::spawn(move || push(&events, &glue).unwrap())
        };
        let flag = Arc::new(AtomicBool::new(false));
        glue.wait(&events, 1, 0, &flag);
        assert_eq!(callback.join().unwrap(), 1);
        assert_eq!(glue.completions_of(1), [Completion::Event(1)]);
        assert_eq!(
            glue.queued(),
            0,
            "a request stayed parked with an event for it"
        );
        assert!(!events.inspect(|queue| queue.has_waiter()));
    });
}

/// Two pushes race a device host that waits twice (last_seen 0, then the sequence it got):
/// events 1 and 2, each exactly once and in order.
#[test]
fn two_pushes_race_two_waits_in_order() {
    model("two_pushes_race_two_waits_in_order", || {
        let events = session();
        let glue = Glue::new();
        let callback = {
            let (events, glue) = (events.clone(), glue.clone());
            thread::spawn(move || {
                push(&events, &glue).unwrap();
                push(&events, &glue).unwrap();
            })
        };
        let flag = Arc::new(AtomicBool::new(false));
        glue.wait(&events, 1, 0, &flag);
        // The device host's next wait follows the first completion; model it by waiting for the
        // callback (the first request must be complete once both pushes were handled).
        callback.join().unwrap();
        assert_eq!(glue.completions_of(1), [Completion::Event(1)]);
        let flag = Arc::new(AtomicBool::new(false));
        glue.wait(&events, 2, 1, &flag);
        assert_eq!(glue.completions_of(2), [Completion::Event(2)]);
        assert_eq!(glue.queued(), 0);
    });
}

/// A parked request; a push wakes it while the device host cancels it (`EvtIoCanceledOnQueue`):
/// it completes exactly once; a cancelled request consumed nothing (the next wait with the same
/// `last_seen` gets event 1); its stale ticket cannot touch the next request's registration.
#[test]
fn cancel_races_wake() {
    model("cancel_races_wake", || {
        let events = session();
        let glue = Glue::new();
        let flag = Arc::new(AtomicBool::new(false));
        let first = glue
            .wait(&events, 1, 0, &flag)
            .expect("pends: no event yet");
        let callback = {
            let (events, glue) = (events.clone(), glue.clone());
            thread::spawn(move || push(&events, &glue).unwrap())
        };
        let canceller = {
            let (glue, flag) = (glue.clone(), Arc::clone(&flag));
            thread::spawn(move || glue.device_host_cancels(1, &flag))
        };
        callback.join().unwrap();
        canceller.join().unwrap();
        let done = glue.completions_of(1);
        assert_eq!(done.len(), 1, "request 1 completed {done:?}");
        assert_eq!(glue.queued(), 0);
        // The device host's next request: the same last_seen if it was cancelled.
        let last_seen = match done[0] {
            Completion::Cancelled => 0,
            Completion::Event(sequence) => sequence,
        };
        let flag = Arc::new(AtomicBool::new(false));
        let second = glue.wait(&events, 2, last_seen, &flag);
        match done[0] {
            Completion::Cancelled => {
                assert_eq!(
                    glue.completions_of(2),
                    [Completion::Event(1)],
                    "cancel consumed it"
                );
                assert_eq!(second, None);
            }
            Completion::Event(_) => {
                let second = second.expect("nothing new: pends");
                // The first request's stale ticket changes nothing.
                assert!(!events.cancel(first));
                assert_eq!(events.deliver(first), Delivery::Cancel);
                assert!(events.inspect(|queue| queue.has_waiter()));
                assert_ne!(first, second);
                assert!(glue.completions_of(2).is_empty());
            }
        }
    });
}

/// A push's wake becomes stale: the device host cancels the woken request, gets the event with a
/// new request, then waits again with last_seen 1; the stale wake retrieves that newest request
/// and must put it back (nothing for it), never complete it.
#[test]
fn stale_wake_never_completes_a_newer_request() {
    model("stale_wake_never_completes_a_newer_request", || {
        let events = session();
        let glue = Glue::new();
        let flag1 = Arc::new(AtomicBool::new(false));
        glue.wait(&events, 1, 0, &flag1).expect("pends");
        // The push's wake is taken now, handled later (the callback thread is slow).
        let (_, wake) = events
            .push(GuestEventKind::GuestReady, 0, GuestSnapshot::default())
            .unwrap();
        let wake = wake.expect("request 1 was parked");
        let stale = {
            let glue = glue.clone();
            thread::spawn(move || glue.handle_wake(wake))
        };
        let host = {
            let (events, glue) = (events.clone(), glue.clone());
            thread::spawn(move || {
                glue.device_host_cancels(1, &flag1);
                // CancelIoEx is asynchronous: the device host waits for request 1 to complete.
                while glue.completions_of(1).is_empty() {
                    thread::yield_now();
                }
                let last_seen = match glue.completions_of(1).as_slice() {
                    [Completion::Event(sequence)] => *sequence,
                    _ => {
                        // Cancelled: wait again from 0, and get event 1 at once.
                        let flag = Arc::new(AtomicBool::new(false));
                        glue.wait(&events, 2, 0, &flag);
                        1
                    }
                };
                let flag = Arc::new(AtomicBool::new(false));
                glue.wait(&events, 3, last_seen, &flag);
            })
        };
        stale.join().unwrap();
        host.join().unwrap();
        assert_eq!(glue.completions_of(1).len(), 1);
        let delivered: Vec<_> = [1, 2]
            .iter()
            .flat_map(|id| glue.completions_of(*id))
            .filter(|completion| *completion == Completion::Event(1))
            .collect();
        assert_eq!(
            delivered.len(),
            1,
            "event 1 delivered once to the device host"
        );
        // Request 3 waits after event 1: nothing for it, it stays pending.
        assert!(
            glue.completions_of(3).is_empty(),
            "{:?}",
            glue.completions_of(3)
        );
        assert_eq!(glue.queued(), 1);
        assert!(events.inspect(|queue| queue.has_waiter()));
    });
}

/// Session close (CLOSE_SESSION / file cleanup) races a request being pended and parked, and a
/// push: the request completes exactly once (an event only if the push was accepted before the
/// close); pushes and waits after the close are refused; nothing stays registered or queued.
#[test]
fn close_races_park_and_push() {
    model("close_races_park_and_push", || {
        let events = session();
        let glue = Glue::new();
        let callback = {
            let (events, glue) = (events.clone(), glue.clone());
            thread::spawn(move || push(&events, &glue))
        };
        let closer = {
            let (events, glue) = (events.clone(), glue.clone());
            thread::spawn(move || {
                if let Some(wake) = events.close() {
                    glue.handle_wake(wake);
                }
            })
        };
        let flag = Arc::new(AtomicBool::new(false));
        glue.wait(&events, 1, 0, &flag);
        let pushed = callback.join().unwrap();
        closer.join().unwrap();
        let done = glue.completions_of(1);
        match (pushed, done.as_slice()) {
            (Ok(1), [Completion::Event(1)] | [Completion::Cancelled]) => {}
            (Err(PushError::Closed), [Completion::Cancelled]) => {}
            other => panic!("push and request ended as {other:?}"),
        }
        assert_eq!(
            glue.queued(),
            0,
            "a request of the closed session stayed queued"
        );
        assert!(!events.inspect(|queue| queue.has_waiter()));
        assert_eq!(push(&events, &glue), Err(PushError::Closed));
        assert_eq!(events.begin_wait(0), Err(WaitError::Closed));
    });
}

/// File cleanup: the session closes while its request is parked and a push races; then
/// `cancel_file_waits` empties the manual queue. Exactly one completion, nothing left.
#[test]
fn file_cleanup_races_parked_request_and_push() {
    model("file_cleanup_races_parked_request_and_push", || {
        let events = session();
        let glue = Glue::new();
        let flag = Arc::new(AtomicBool::new(false));
        glue.wait(&events, 1, 0, &flag).expect("pends");
        let callback = {
            let (events, glue) = (events.clone(), glue.clone());
            thread::spawn(move || push(&events, &glue))
        };
        let cleanup = {
            let (events, glue) = (events.clone(), glue.clone());
            thread::spawn(move || {
                if let Some(wake) = events.close() {
                    glue.handle_wake(wake);
                }
                glue.cancel_file_waits();
            })
        };
        let pushed = callback.join().unwrap();
        cleanup.join().unwrap();
        let done = glue.completions_of(1);
        assert_eq!(done.len(), 1, "{done:?}");
        if pushed.is_err() {
            assert_eq!(done, [Completion::Cancelled]);
        }
        assert_eq!(glue.queued(), 0);
        assert!(!events.inspect(|queue| queue.has_waiter()));
    });
}

/// The engine's side of the shared state as `GuestShared` composes it (the engine, the device
/// host's queue, the one held `WAIT_EVENT`), with the held packet played by an id: the real one
/// is a KMCL completion, which needs a KMCL table. The lock sections below are those of
/// `SessionPort::packet` and `GuestEvents::mapping_changed`.
struct EngineState {
    engine: Engine,
    queue: GuestEventQueue,
    held: Option<u64>,
    /// Every completion of a guest packet: (request id, reply bytes).
    completed: Vec<(u64, Vec<u8>)>,
}

impl EngineState {
    /// `GuestShared::complete_held`.
    fn complete_held(&mut self, reply: Option<HeldReply>) {
        if let Some(reply) = reply
            && let Some(id) = self.held.take()
        {
            self.completed.push((id, reply.bytes().to_vec()));
        }
    }

    /// `SessionPort::packet`'s lock section, then the inline completion.
    fn packet(&mut self, id: u64, body: RequestBody) {
        let mut bytes = [0u8; LARGEST_MESSAGE];
        let len = encode_request(&mut bytes, id, &body).unwrap();
        let mut reply = [0u8; LARGEST_MESSAGE];
        let outcome = self
            .engine
            .packet(&mut self.queue, &bytes[..len], &mut reply);
        self.complete_held(outcome.held);
        match outcome.action {
            Action::Reply(len) => self.completed.push((id, reply[..len].to_vec())),
            Action::Hold => {
                assert!(self.held.is_none(), "a second packet held");
                self.held = Some(id);
            }
        }
    }
}

/// An engine whose guest has said HELLO, SELECT_VERSION, REPORT_RESERVATION (none),
/// REPORT_DEVICE (decode on) and READY, and the guest's next request id.
fn ready_engine() -> (EngineState, u64) {
    const INSTANCE: WireGuid = WireGuid::from_u128(0x1234);
    const BAR: u64 = 1 << 20;
    let plan = MmioPlan::new(&[512 << 10, 256 << 10]).unwrap();
    let mut state = EngineState {
        engine: Engine::new(SessionContext::new(INSTANCE, &plan, &[true, false])),
        queue: GuestEventQueue::new(FILE),
        held: None,
        completed: Vec::new(),
    };
    state.engine.opened();
    state.engine.started();
    // The guest's conversation up to READY (the client library builds the packets).
    let mut client = GuestClient::new();
    let mut buf = [0u8; LARGEST_MESSAGE];
    let device = DeviceReport {
        instance: INSTANCE,
        segment: 0,
        bus: 0,
        devfn: 0,
        bar_index: 0,
        bar: BarPlacement {
            base: 0xF800_0000,
            size: BAR,
            memory_decode: true,
        },
    };
    for step in 0..5 {
        let sent = match step {
            0 => client.hello(&mut buf),
            1 => client.select_version(&mut buf),
            2 => client.report_reservation(&mut buf, None),
            3 => client.report_device(&mut buf, &device),
            _ => client.ready(&mut buf),
        }
        .unwrap();
        let mut reply = [0u8; LARGEST_MESSAGE];
        let outcome = state
            .engine
            .packet(&mut state.queue, &buf[..sent.len], &mut reply);
        let Action::Reply(len) = outcome.action else {
            panic!("step {step} held");
        };
        client.on_reply(&reply[..len]).unwrap();
    }
    (state, client.next_request_id())
}

/// A guest's `WAIT_EVENT` (the packet callback) races the device host's REPORT_MAPPING of both
/// regions (the IOCTL path, `mapping_changed` twice): the wait is answered exactly once, with the
/// `REGIONS_MAPPED` event, whether it was held first or came after the mapping.
#[test]
fn held_wait_event_races_mapping_changed() {
    model("held_wait_event_races_mapping_changed", || {
        let (state, next_id) = ready_engine();
        let shared = Arc::new(Mutex::new(state));
        let guest = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || {
                shared
                    .lock()
                    .unwrap()
                    .packet(next_id, RequestBody::WaitEvent { last_seen: 0 });
            })
        };
        for index in 0..2 {
            let mut state = shared.lock().unwrap();
            let reply = state.engine.mapping(index, MappingState::SectionBacked);
            state.complete_held(reply);
        }
        guest.join().unwrap();
        let state = shared.lock().unwrap();
        assert!(state.held.is_none(), "the wait is still held");
        let answers: Vec<_> = state
            .completed
            .iter()
            .filter(|(id, _)| *id == next_id)
            .collect();
        assert_eq!(
            answers.len(),
            1,
            "the wait answered {} times",
            answers.len()
        );
        match parse_reply(&answers[0].1).unwrap().body {
            ReplyBody::Event(event) => {
                assert_eq!(event.kind, EventKind::RegionsMapped);
                assert_eq!(event.sequence, 1);
            }
            other => panic!("the wait got {other:?}"),
        }
    });
}

/// CLOSE_SESSION while the session's request is between `begin_wait` and the forward, then a new
/// session on the same file handle whose request parks: the old request must end cancelled and
/// the new one stay pending (a wake of the old session, which names only the file, must neither
/// complete the new request nor leave the old one stranded in the manual queue).
#[test]
fn close_then_reopen_on_the_same_file() {
    model("close_then_reopen_on_the_same_file", || {
        let old = session();
        let glue = Glue::new();
        let flag1 = Arc::new(AtomicBool::new(false));
        let ticket = match old.begin_wait(0).unwrap() {
            WaitStart::Pend(ticket) => ticket,
            other => panic!("{other:?}"),
        };
        let forwarder = {
            let (old, glue, flag1) = (old.clone(), glue.clone(), Arc::clone(&flag1));
            thread::spawn(move || {
                glue.forward(Request {
                    id: 1,
                    events: old,
                    ticket,
                    cancel_requested: flag1,
                })
            })
        };
        if let Some(wake) = old.close() {
            glue.handle_wake(wake);
        }
        let new = session();
        let flag2 = Arc::new(AtomicBool::new(false));
        glue.wait(&new, 2, 0, &flag2).expect("pends");
        forwarder.join().unwrap();
        assert_eq!(
            glue.completions_of(1),
            [Completion::Cancelled],
            "request 1 stranded: queued {:?}, completions {:?}",
            glue.manual
                .lock()
                .unwrap()
                .iter()
                .map(|r| r.id)
                .collect::<Vec<_>>(),
            glue.completions.lock().unwrap()
        );
        assert!(glue.completions_of(2).is_empty());
        assert_eq!(glue.queued(), 1);
    });
}

/// The guest's `WAIT_EVENT` then the channel's Suspend (KMCL runs Suspend only after the packet
/// callback returned: "no ProcessPacket calls are running", Microsoft's KMCL docs) race the
/// device host's REPORT_MAPPING of both regions: the wait is answered exactly once — with
/// `REGIONS_MAPPED` if the mapping came first, else with `CHANNEL_CLOSING` at Suspend — and
/// nothing is held after Suspend (KMCL waits there for every delivered packet).
#[test]
fn held_wait_event_races_mapping_changed_and_suspend() {
    model("held_wait_event_races_mapping_changed_and_suspend", || {
        let (state, next_id) = ready_engine();
        let shared = Arc::new(Mutex::new(state));
        let guest = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || {
                shared
                    .lock()
                    .unwrap()
                    .packet(next_id, RequestBody::WaitEvent { last_seen: 0 });
                let mut state = shared.lock().unwrap();
                let reply = state.engine.suspend();
                state.complete_held(reply);
                assert!(state.held.is_none(), "a packet is still held after Suspend");
            })
        };
        for index in 0..2 {
            let mut state = shared.lock().unwrap();
            let reply = state.engine.mapping(index, MappingState::SectionBacked);
            state.complete_held(reply);
        }
        guest.join().unwrap();
        let state = shared.lock().unwrap();
        assert!(state.held.is_none());
        let answers: Vec<_> = state
            .completed
            .iter()
            .filter(|(id, _)| *id == next_id)
            .collect();
        assert_eq!(
            answers.len(),
            1,
            "the wait answered {} times",
            answers.len()
        );
        match parse_reply(&answers[0].1).unwrap().body {
            ReplyBody::Event(event) => assert_eq!(event.kind, EventKind::RegionsMapped),
            ReplyBody::Error(error) => {
                assert_eq!(error.code, vmbmmio_proto::guest::ErrorCode::ChannelClosing)
            }
            other => panic!("the wait got {other:?}"),
        }
    });
}
