//! Model-checked interleavings of the sessions' guest state (`loom`): the device-host event
//! queue's pending-request protocol (`begin_wait`, `parked`, `deliver`, `cancel`, `close`,
//! `Wake`), the guest engine's one held `WAIT_EVENT` against REPORT_MAPPING and the channel's
//! state callbacks (Suspend, Closed, a reopen), and two sessions under one table lock, driven
//! from several threads the way the driver drives them on Windows: the KMCL packet and state
//! callbacks, the IOCTL path (begin, park, deliver; REPORT_MAPPING under the table lock), WDF's
//! `EvtIoCanceledOnQueue`, session close and file cleanup.
//!
//! The platform's `EventLock` is a `loom::sync::Mutex`; the lock sections are the driver's own
//! (`GuestEvents`'s methods and `GuestShared`'s, which `SessionPort` calls), with the held guest
//! packet a stand-in ([`ModelHeld`]: a real one is a KMCL completion). The glue's side
//! (`src/glue/guest_waits.rs`) is modelled step for step by [`Glue`]: the manual WDF queue
//! retrieved by file object, the forward-then-park sequence, `handle_wake`'s retrieve → deliver
//! → complete / requeue / cancel loop, and WDF's cancellation (a request in the queue is taken
//! out and cancelled; one the driver holds is cancelled when it goes back into the queue). The
//! control device's table lock is a loom mutex too, and every acquisition of a table or event
//! lock is checked against the lock order (table, then event; never two event locks, never the
//! table under an event lock): [`Tracked`].
//!
//! Run with `scripts/loom.sh` (`RUSTFLAGS="--cfg loom" cargo test --release -p vmbmmio-core
//! --test loom_guest_events`). Without `--cfg loom` this file is empty.
#![cfg(loom)]

use std::cell::RefCell;
use std::collections::VecDeque;

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::{Arc, Mutex, MutexGuard};
use loom::thread;

use vmbmmio_core::control::FileKey;
use vmbmmio_core::guest::limits::LARGEST_MESSAGE;
use vmbmmio_core::guest::{GuestPacket, GuestShared, HeldCompletion, SessionContext};
use vmbmmio_core::guest_events::{
    Delivery, EventLock, GuestEvents, PushError, Ticket, WaitError, WaitStart, Wake,
};
use vmbmmio_core::mmio_plan::MmioPlan;
use vmbmmio_proto::guest::{
    BarPlacement, DeviceReport, ErrorCode, Event, EventKind, GuestClient, RegionState, ReplyBody,
    RequestBody, encode_request, parse_reply,
};
use vmbmmio_proto::ioctl::{ActedOn, GuestEventKind, GuestSnapshot, MappingState, WireGuid};

/// A lock of the driver's lock order: the control device's table lock, then a session's event
/// lock (docs/architecture.md, "Locking and removal").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Table,
    Event,
}

loom::thread_local! {
    /// The locks this (loom) thread holds, in acquisition order.
    static HELD: RefCell<Vec<Level>> = RefCell::new(Vec::new());
    /// How often this thread took an event lock under the table lock.
    static NESTED: RefCell<usize> = RefCell::new(0);
}

/// A loom mutex of one [`Level`]: every acquisition is a scheduling point and is checked
/// against the lock order before it blocks, so an inversion is found in every interleaving
/// that reaches it, not only in the one that deadlocks.
struct Tracked<T> {
    level: Level,
    mutex: Mutex<T>,
}

struct TrackedGuard<'a, T> {
    guard: MutexGuard<'a, T>,
}

impl<T> Tracked<T> {
    fn new(level: Level, value: T) -> Self {
        Self {
            level,
            mutex: Mutex::new(value),
        }
    }

    fn lock(&self) -> TrackedGuard<'_, T> {
        let level = self.level;
        HELD.with(|held| {
            let held = held.borrow();
            let allowed = match level {
                Level::Table => held.is_empty(),
                Level::Event => held.iter().all(|h| *h == Level::Table),
            };
            assert!(
                allowed,
                "lock order: {level:?} taken while holding {held:?}"
            );
        });
        let guard = self.mutex.lock().unwrap();
        HELD.with(|held| {
            let mut held = held.borrow_mut();
            if level == Level::Event && held.contains(&Level::Table) {
                NESTED.with(|nested| *nested.borrow_mut() += 1);
            }
            held.push(level);
        });
        TrackedGuard { guard }
    }
}

impl<T> Drop for TrackedGuard<'_, T> {
    fn drop(&mut self) {
        HELD.with(|held| held.borrow_mut().pop());
    }
}

impl<T> std::ops::Deref for TrackedGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> std::ops::DerefMut for TrackedGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

/// How often this thread took an event lock under the table lock.
fn nested_acquisitions() -> usize {
    NESTED.with(|nested| *nested.borrow())
}

/// The platform's event lock as a loom mutex: every acquisition is a scheduling point.
struct LoomLock(Tracked<GuestShared>);

impl EventLock for LoomLock {
    fn new(shared: GuestShared) -> Option<Self> {
        Some(Self(Tracked::new(Level::Event, shared)))
    }

    fn with<R>(&self, f: impl FnOnce(&mut GuestShared) -> R) -> R {
        f(&mut self.0.lock())
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

/// A session's side of the pending-request protocol, as the glue reaches it: `GuestEvents`
/// (the queue scenarios) or a [`Session`] (the engine scenarios, same lock sections).
trait Waits: Clone + Send + Sync + 'static {
    /// The session's file (what a wake names and the glue retrieves by).
    fn file(&self) -> FileKey;
    fn begin_wait(&self, last_seen: u64) -> Result<WaitStart, WaitError>;
    fn parked(&self, ticket: Ticket) -> Option<Wake>;
    fn deliver(&self, ticket: Ticket) -> Delivery;
    fn cancel(&self, ticket: Ticket) -> bool;
}

impl Waits for GuestEvents<LoomLock> {
    fn file(&self) -> FileKey {
        FILE
    }
    fn begin_wait(&self, last_seen: u64) -> Result<WaitStart, WaitError> {
        GuestEvents::begin_wait(self, last_seen)
    }
    fn parked(&self, ticket: Ticket) -> Option<Wake> {
        GuestEvents::parked(self, ticket)
    }
    fn deliver(&self, ticket: Ticket) -> Delivery {
        GuestEvents::deliver(self, ticket)
    }
    fn cancel(&self, ticket: Ticket) -> bool {
        GuestEvents::cancel(self, ticket)
    }
}

/// One WDF request carrying a pending WAIT_GUEST_EVENT (its context's `PendingWait`).
struct Request<S: Waits> {
    id: u32,
    events: S,
    ticket: Ticket,
    /// The device host cancelled it (`CancelIoEx`) while the driver held it: WDF cancels it as
    /// soon as it is back in a queue.
    cancel_requested: Arc<AtomicBool>,
}

/// The glue's side: the manual queue (shared by every file; a wake retrieves by file object),
/// and every completion made, with the event's kind.
struct Glue<S: Waits> {
    manual: Arc<Mutex<VecDeque<Request<S>>>>,
    completions: Arc<Mutex<Vec<Record>>>,
}

/// One completion: the request's id, how it ended, the event's kind.
type Record = (u32, Completion, Option<GuestEventKind>);

impl<S: Waits> Clone for Glue<S> {
    fn clone(&self) -> Self {
        Self {
            manual: Arc::clone(&self.manual),
            completions: Arc::clone(&self.completions),
        }
    }
}

impl<S: Waits> Glue<S> {
    fn new() -> Self {
        Self {
            manual: Arc::new(Mutex::new(VecDeque::new())),
            completions: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// `WdfIoQueueRetrieveRequestByFileObject`: the first request of `file`.
    fn retrieve(&self, file: FileKey) -> Option<Request<S>> {
        let mut manual = self.manual.lock().unwrap();
        let position = manual.iter().position(|r| r.events.file() == file)?;
        manual.remove(position)
    }

    /// `handle_wake` (src/glue/guest_waits.rs): retrieve **every** request of the file (a wake
    /// names only the file, and after CLOSE_SESSION + OPEN_SESSION on one handle two sessions'
    /// requests can share the manual queue), ask each its own `deliver`, then requeue and
    /// re-park those with nothing for them. (The glue takes at most `WAKE_BATCH` = 4 per wake;
    /// the model never has more than two.)
    fn handle_wake(&self, wake: Wake) {
        let mut back = Vec::new();
        while let Some(request) = self.retrieve(wake.file) {
            match request.events.deliver(request.ticket) {
                Delivery::Complete(event) => self.complete(
                    request.id,
                    Completion::Event(event.sequence()),
                    Some(event.kind()),
                ),
                Delivery::Requeue => back.push(request),
                Delivery::Cancel => {
                    self.complete(request.id, Completion::Cancelled, None);
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

    fn complete(&self, id: u32, completion: Completion, kind: Option<GuestEventKind>) {
        self.completions
            .lock()
            .unwrap()
            .push((id, completion, kind));
    }

    /// `EvtIoCanceledOnQueue`, then the context cleanup (`cancel` once more, a no-op).
    fn canceled_on_queue(&self, request: Request<S>) {
        request.events.cancel(request.ticket);
        self.complete(request.id, Completion::Cancelled, None);
        request.events.cancel(request.ticket);
    }

    /// `WdfRequestForwardToIoQueue` / `WdfRequestRequeue`: into the manual queue, unless the
    /// device host cancelled it meanwhile (then WDF cancels it there at once). Returns the
    /// `PendingWait` clone the glue keeps.
    fn enqueue(&self, request: Request<S>, front: bool) -> (S, Ticket) {
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
    fn forward(&self, request: Request<S>) {
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
    fn cancel_file_waits(&self, file: FileKey) {
        while let Some(request) = self.retrieve(file) {
            self.canceled_on_queue(request);
        }
    }

    /// The IOCTL path after `begin_wait`: complete at once, or pend → forward → park. `None`
    /// when the core refused the request.
    fn after_begin(
        &self,
        begun: Result<WaitStart, WaitError>,
        events: &S,
        id: u32,
        cancel_requested: &Arc<AtomicBool>,
    ) -> Option<Ticket> {
        match begun {
            Ok(WaitStart::Complete(event)) => {
                self.complete(id, Completion::Event(event.sequence()), Some(event.kind()));
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
                self.complete(id, Completion::Cancelled, None);
                None
            }
            Err(error) => panic!("request {id} refused: {error:?}"),
        }
    }

    /// The IOCTL path: `begin_wait` (under the table lock in the driver), then
    /// [`Glue::after_begin`].
    fn wait(
        &self,
        events: &S,
        id: u32,
        last_seen: u64,
        cancel_requested: &Arc<AtomicBool>,
    ) -> Option<Ticket> {
        let begun = events.begin_wait(last_seen);
        self.after_begin(begun, events, id, cancel_requested)
    }

    fn completions_of(&self, id: u32) -> Vec<Completion> {
        let completions = self.completions.lock().unwrap();
        completions
            .iter()
            .filter(|(of, _, _)| *of == id)
            .map(|(_, completion, _)| *completion)
            .collect()
    }

    /// Request `id`'s completions, with the kind of each event.
    fn events_of(&self, id: u32) -> Vec<(Completion, Option<GuestEventKind>)> {
        let completions = self.completions.lock().unwrap();
        completions
            .iter()
            .filter(|(of, _, _)| *of == id)
            .map(|(_, completion, kind)| (*completion, *kind))
            .collect()
    }

    fn queued(&self) -> usize {
        self.manual.lock().unwrap().len()
    }
}

/// The packet callback's push: the engine queues a device-host event and hands the wake to the
/// glue after the lock is released (`SessionPort::packet`).
fn push(
    events: &GuestEvents<LoomLock>,
    glue: &Glue<GuestEvents<LoomLock>>,
) -> Result<u64, PushError> {
    let (sequence, wake) = events.push(GuestEventKind::GuestReady, 0, GuestSnapshot::default())?;
    if let Some(wake) = wake {
        glue.handle_wake(wake);
    }
    Ok(sequence)
}

/// Runs `f` under loom, every interleaving up to `LOOM_MAX_PREEMPTIONS` (5 unless set), and
/// prints how many executions loom explored.
fn model(name: &str, f: impl Fn() + Sync + Send + 'static) {
    model_capped(name, usize::MAX, f);
}

/// [`model`] with at most `cap` preemptions, for a scenario too heavy for the default bound
/// (its doc says so).
fn model_capped(name: &str, cap: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    let bound = builder.preemption_bound.unwrap_or(5).min(cap);
    builder.preemption_bound = Some(bound);
    let executions = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&executions);
    builder.check(move || {
        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f();
    });
    let executions = executions.load(std::sync::atomic::Ordering::Relaxed);
    println!("loom: {name}: {executions} executions (preemption bound {bound})");
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
                glue.cancel_file_waits(FILE);
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

/// Every completion of one session's guest packets, in order: (request id, reply bytes; empty
/// for an empty completion). A `std` mutex: it is only pushed to and read, never held across a
/// scheduling point, so it adds no interleavings of its own.
type Sink = std::sync::Arc<std::sync::Mutex<Vec<(u64, Vec<u8>)>>>;

/// A guest `EVENT` a REPORT_MAPPING recorded, seen inside its lock section: which channel open
/// it went to (how many Opened callbacks had run), the event, and the report's `acted_on`. A
/// `std` mutex, like [`Sink`].
#[derive(Clone, Copy, Debug)]
struct Announcement {
    open: usize,
    event: Event,
    acted_on: u64,
}

type Announcements = std::sync::Arc<std::sync::Mutex<Vec<Announcement>>>;

/// The held guest packet's stand-in: completing it records the reply; dropping it uncompleted
/// records an empty completion, as KMCL's `HeldPacket` completes empty on drop.
struct ModelHeld {
    id: u64,
    sink: Sink,
    done: bool,
}

impl ModelHeld {
    fn finish(&mut self, reply: &[u8]) {
        self.done = true;
        self.sink.lock().unwrap().push((self.id, reply.to_vec()));
    }
}

impl HeldCompletion for ModelHeld {
    fn complete(mut self, reply: &[u8]) {
        self.finish(reply);
    }

    fn complete_empty(mut self) {
        self.finish(&[]);
    }
}

impl Drop for ModelHeld {
    fn drop(&mut self) {
        if !self.done {
            self.finish(&[]);
        }
    }
}

/// A guest packet as ProcessPacket delivers it (`IncomingPacket`'s stand-in).
struct ModelPacket {
    id: u64,
    bytes: Vec<u8>,
    sink: Sink,
}

impl GuestPacket for ModelPacket {
    type Held = ModelHeld;

    fn data(&self) -> &[u8] {
        &self.bytes
    }

    fn hold(self) -> ModelHeld {
        ModelHeld {
            id: self.id,
            sink: self.sink,
            done: false,
        }
    }
}

/// One session's guest state behind its event lock, driven through the driver's own lock
/// sections (`GuestShared`'s methods); each method below is the `SessionPort` callback or the
/// `GuestEvents` call of the same name, with the wake handed to the glue after unlocking.
#[derive(Clone)]
struct Session {
    file: FileKey,
    shared: Arc<Tracked<GuestShared<ModelHeld>>>,
    sink: Sink,
    /// Opened callbacks so far (counted inside their lock sections).
    opens: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    announcements: Announcements,
}

const INSTANCE: WireGuid = WireGuid::from_u128(0x1234);

impl Session {
    /// A session on `file` with two regions (512 KiB writable, 256 KiB read-only).
    fn new(file: FileKey) -> Self {
        let plan = MmioPlan::new(&[512 << 10, 256 << 10]).unwrap();
        let context = SessionContext::new(INSTANCE, &plan, &[true, false]);
        Self {
            file,
            shared: Arc::new(Tracked::new(Level::Event, GuestShared::new(file, context))),
            sink: Sink::default(),
            opens: std::sync::Arc::default(),
            announcements: Announcements::default(),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut GuestShared<ModelHeld>) -> R) -> R {
        f(&mut self.shared.lock())
    }

    /// `SessionPort::packet` of request `id` with `body`.
    fn packet(&self, glue: &Glue<Session>, id: u64, body: RequestBody) {
        let mut bytes = [0u8; LARGEST_MESSAGE];
        let len = encode_request(&mut bytes, id, &body).unwrap();
        self.packet_bytes(glue, id, &bytes[..len]);
    }

    /// `SessionPort::packet`: the lock section, then the inline completion, then the wake.
    fn packet_bytes(&self, glue: &Glue<Session>, id: u64, bytes: &[u8]) {
        let packet = ModelPacket {
            id,
            bytes: bytes.to_vec(),
            sink: self.sink.clone(),
        };
        let mut reply = [0u8; LARGEST_MESSAGE];
        let (now, wake) = self.with(|shared| shared.packet(packet, &mut reply));
        if let Some((packet, len)) = now {
            self.sink
                .lock()
                .unwrap()
                .push((packet.id, reply[..len].to_vec()));
        }
        if let Some(wake) = wake {
            glue.handle_wake(wake);
        }
    }

    fn opened(&self) {
        self.with(|shared| {
            shared.opened();
            self.opens
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
    }

    fn started(&self) {
        self.with(GuestShared::started);
    }

    fn suspend(&self) {
        self.with(GuestShared::suspend);
    }

    fn closed(&self, glue: &Glue<Session>) {
        if let Some(wake) = self.with(GuestShared::closed) {
            glue.handle_wake(wake);
        }
    }

    /// REPORT_MAPPING's event-lock section (`GuestEvents::mapping_changed`), version 2: the
    /// device host decided it after applying its events up to `acted_on`. Whatever guest
    /// `EVENT` it recorded is logged ([`Announcement`]).
    fn mapping_changed(&self, index: usize, state: MappingState, acted_on: u64) {
        self.with(|shared| {
            let before = shared.engine().conversation().events.newest();
            shared
                .mapping_changed(index, state, ActedOn::Sequence(acted_on))
                .expect("acted_on within the session's events");
            let events = shared.engine().conversation().events;
            if events.newest() > before
                && let Some(event) = events.first_after(before)
            {
                self.announcements.lock().unwrap().push(Announcement {
                    open: self.opens.load(std::sync::atomic::Ordering::Relaxed),
                    event,
                    acted_on,
                });
            }
        });
    }

    /// The model device host's look and report: it applies every event queued so far (the
    /// newest snapshot, as a `RESYNC` would give it) and reports both regions mapped if the
    /// guest is ready, unmapped otherwise, with `acted_on` the newest sequence. Two lock
    /// sections for the look and the reports, as on Windows (WAIT_GUEST_EVENT, then
    /// REPORT_MAPPING per region).
    fn device_host_step(&self) {
        let (acted_on, ready) = self.with(|shared| {
            let queue = shared.queue();
            let ready = queue.current().device.is_some_and(|device| device.ready);
            (queue.newest(), ready)
        });
        let state = if ready {
            MappingState::SectionBacked
        } else {
            MappingState::Unmapped
        };
        for index in 0..2 {
            self.mapping_changed(index, state, acted_on);
        }
    }

    /// Every announcement made so far.
    fn announced(&self) -> Vec<Announcement> {
        self.announcements.lock().unwrap().clone()
    }

    /// Session close (`GuestEvents::close`, `Teardown::run`'s first step).
    fn close(&self) -> Option<Wake> {
        self.with(GuestShared::close_queue)
    }

    fn held(&self) -> bool {
        self.with(|shared| shared.has_held_packet())
    }

    /// Newest sequence in the device host's queue.
    fn newest(&self) -> u64 {
        self.with(|shared| shared.queue().newest())
    }

    /// Completions of guest packets made so far.
    fn completions(&self) -> usize {
        self.sink.lock().unwrap().len()
    }

    /// Every completion of request `id`, in order.
    fn answers(&self, id: u64) -> Vec<Vec<u8>> {
        let sink = self.sink.lock().unwrap();
        sink.iter()
            .filter(|(of, _)| *of == id)
            .map(|(_, bytes)| bytes.clone())
            .collect()
    }

    /// The one answer to request `id` (panics on none or several).
    fn answer(&self, id: u64) -> ReplyBody {
        let answers = self.answers(id);
        assert_eq!(answers.len(), 1, "request {id} answered {answers:?}");
        let reply = parse_reply(&answers[0]).unwrap();
        assert_eq!(reply.request_id, id);
        reply.body
    }
}

impl Waits for Session {
    fn file(&self) -> FileKey {
        self.file
    }
    fn begin_wait(&self, last_seen: u64) -> Result<WaitStart, WaitError> {
        self.with(|shared| shared.begin_wait(last_seen))
    }
    fn parked(&self, ticket: Ticket) -> Option<Wake> {
        self.with(|shared| shared.parked(ticket))
    }
    fn deliver(&self, ticket: Ticket) -> Delivery {
        self.with(|shared| shared.deliver(ticket))
    }
    fn cancel(&self, ticket: Ticket) -> bool {
        self.with(|shared| shared.cancel(ticket))
    }
}

/// A session on `file` whose channel is open and started and whose guest has said HELLO,
/// SELECT_VERSION, REPORT_RESERVATION (none), REPORT_DEVICE (decode on) and READY (the device
/// host's queue holds events 1 to 3), and the guest's next request id.
fn ready_session(glue: &Glue<Session>, file: FileKey) -> (Session, u64) {
    const BAR: u64 = 1 << 20;
    let session = Session::new(file);
    session.opened();
    session.started();
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
        session.packet_bytes(glue, sent.request_id, &buf[..sent.len]);
        let answers = session.answers(sent.request_id);
        assert_eq!(answers.len(), 1, "step {step} held");
        client.on_reply(&answers[0]).unwrap();
    }
    assert_eq!(session.newest(), 3);
    (session, client.next_request_id())
}

/// The one answer to a guest `WAIT_EVENT` that was held when the channel went away: an `EVENT`
/// of `kind`, or `ERROR` `CHANNEL_CLOSING`.
fn event_or_closing(body: ReplyBody, kind: EventKind) {
    match body {
        ReplyBody::Event(event) => assert_eq!(event.kind, kind),
        ReplyBody::Error(error) => assert_eq!(error.code, ErrorCode::ChannelClosing),
        other => panic!("the wait got {other:?}"),
    }
}

/// A guest's `WAIT_EVENT` (the packet callback) races the device host's REPORT_MAPPING of both
/// regions (the IOCTL path, `mapping_changed` twice): the wait is answered exactly once, with the
/// `REGIONS_MAPPED` event, whether it was held first or came after the mapping.
#[test]
fn held_wait_event_races_mapping_changed() {
    model("held_wait_event_races_mapping_changed", || {
        let glue = Glue::new();
        let (session, next_id) = ready_session(&glue, FILE);
        let guest = {
            let (session, glue) = (session.clone(), glue.clone());
            thread::spawn(move || {
                session.packet(&glue, next_id, RequestBody::WaitEvent { last_seen: 0 })
            })
        };
        for index in 0..2 {
            session.mapping_changed(index, MappingState::SectionBacked, 3);
        }
        guest.join().unwrap();
        assert!(!session.held(), "the wait is still held");
        match session.answer(next_id) {
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
        let glue = Glue::new();
        let (session, next_id) = ready_session(&glue, FILE);
        let guest = {
            let (session, glue) = (session.clone(), glue.clone());
            thread::spawn(move || {
                session.packet(&glue, next_id, RequestBody::WaitEvent { last_seen: 0 });
                session.suspend();
                assert!(!session.held(), "a packet is still held after Suspend");
            })
        };
        for index in 0..2 {
            session.mapping_changed(index, MappingState::SectionBacked, 3);
        }
        guest.join().unwrap();
        assert!(!session.held());
        event_or_closing(session.answer(next_id), EventKind::RegionsMapped);
    });
}

/// The guest closes the channel while its `WAIT_EVENT` is held: KMCL's thread runs the packet,
/// then (with `suspend`) Suspend, then Closed, against the device host's REPORT_MAPPING of both
/// regions and its WAIT_GUEST_EVENT (begin → park, having seen events 1 to 3).
///
/// Checked: the wait is answered exactly once (`REGIONS_MAPPED` or `CHANNEL_CLOSING`), nothing
/// is held after Suspend or after Closed, the device host hears `CHANNEL_CLOSED` exactly once
/// (its request completes with it, nothing else is queued), and afterwards a late
/// REPORT_MAPPING and a second Closed (Disable after the guest's close) change nothing for
/// either side, and a packet (which KMCL would not deliver now) is refused at once, never held.
fn closed_races_held_wait_mapping_and_device_host_wait(suspend: bool) {
    let glue = Glue::new();
    let (session, next_id) = ready_session(&glue, FILE);
    let host = {
        let (session, glue) = (session.clone(), glue.clone());
        thread::spawn(move || {
            let flag = Arc::new(AtomicBool::new(false));
            glue.wait(&session, 1, 3, &flag);
        })
    };
    let kmcl = {
        let (session, glue) = (session.clone(), glue.clone());
        thread::spawn(move || {
            session.packet(&glue, next_id, RequestBody::WaitEvent { last_seen: 0 });
            if suspend {
                session.suspend();
                assert!(!session.held(), "a packet is still held after Suspend");
            }
            session.closed(&glue);
            assert!(!session.held(), "a packet is still held after Closed");
        })
    };
    for index in 0..2 {
        session.mapping_changed(index, MappingState::SectionBacked, 3);
    }
    host.join().unwrap();
    kmcl.join().unwrap();
    event_or_closing(session.answer(next_id), EventKind::RegionsMapped);
    assert_eq!(session.newest(), 4, "CHANNEL_CLOSED queued once");
    assert_eq!(
        glue.events_of(1),
        [(Completion::Event(4), Some(GuestEventKind::ChannelClosed))]
    );
    assert_eq!(glue.queued(), 0);
    // Later inputs are harmless.
    let completions = session.completions();
    session.mapping_changed(0, MappingState::Unmapped, 3);
    session.closed(&glue);
    assert_eq!(session.completions(), completions);
    assert_eq!(session.newest(), 4, "a second CHANNEL_CLOSED");
    session.packet(&glue, next_id + 1, RequestBody::WaitEvent { last_seen: 0 });
    match session.answer(next_id + 1) {
        ReplyBody::Error(error) => assert_eq!(error.code, ErrorCode::ChannelClosing),
        other => panic!("a packet after Closed got {other:?}"),
    }
    assert!(!session.held());
}

/// [`closed_races_held_wait_mapping_and_device_host_wait`] with Suspend, then Closed: the
/// guest closing a running channel.
#[test]
fn suspend_then_closed_races_held_wait_mapping_and_device_host_wait() {
    model(
        "suspend_then_closed_races_held_wait_mapping_and_device_host_wait",
        || closed_races_held_wait_mapping_and_device_host_wait(true),
    );
}

/// [`closed_races_held_wait_mapping_and_device_host_wait`] with Closed and no Suspend. KMCL runs
/// Suspend when "the peer closes a running channel" (Microsoft's `EVT_VMB_CHANNEL_SUSPEND`
/// docs), which leaves Closed alone for a channel that was not running; whether one between
/// Started and PostStarted counts as running is not documented, so the strictest reading is
/// modelled: a packet may be held when Closed comes, and Closed must answer it.
#[test]
fn closed_without_suspend_races_held_wait_mapping_and_device_host_wait() {
    model(
        "closed_without_suspend_races_held_wait_mapping_and_device_host_wait",
        || closed_races_held_wait_mapping_and_device_host_wait(false),
    );
}

/// The guest opens the channel and closes it before Started (no packet can have arrived, so
/// Closed comes without Suspend), against REPORT_MAPPING of both regions and the device host's
/// wait: the device host hears `CHANNEL_CLOSED` exactly once, the guest's conversation is
/// gone, no guest packet was completed and nothing is held.
#[test]
fn closed_before_started_races_mapping_and_device_host_wait() {
    model(
        "closed_before_started_races_mapping_and_device_host_wait",
        || {
            let glue = Glue::new();
            let session = Session::new(FILE);
            session.opened();
            let host = {
                let (session, glue) = (session.clone(), glue.clone());
                thread::spawn(move || {
                    let flag = Arc::new(AtomicBool::new(false));
                    glue.wait(&session, 1, 0, &flag);
                })
            };
            let kmcl = {
                let (session, glue) = (session.clone(), glue.clone());
                thread::spawn(move || session.closed(&glue))
            };
            for index in 0..2 {
                session.mapping_changed(index, MappingState::SectionBacked, 0);
            }
            host.join().unwrap();
            kmcl.join().unwrap();
            assert_eq!(
                glue.events_of(1),
                [(Completion::Event(1), Some(GuestEventKind::ChannelClosed))]
            );
            assert_eq!(session.newest(), 1);
            assert_eq!(session.completions(), 0);
            assert!(!session.held());
            assert!(session.with(|shared| !shared.engine().conversation().open));
        },
    );
}

/// The guest closes the channel with its `WAIT_EVENT` held and reopens it (Suspend, Closed,
/// Opened, Started, then a new HELLO, SELECT_VERSION and `WAIT_EVENT` with ids of its own), while
/// the device host parks a WAIT_GUEST_EVENT and reports the mapping the old conversation's READY
/// asked for (both regions section-backed, `acted_on` 3: it had applied events 1 to 3).
///
/// What the engine promises, and what is checked:
/// - the old `WAIT_EVENT` is answered exactly once, before the reopen (`REGIONS_MAPPED` or
///   `CHANNEL_CLOSING`), and nothing answers an old request id after it;
/// - the new conversation starts clean: its `HELLO` and `SELECT_VERSION` are answered, and its
///   `WAIT_EVENT` is never refused `BUSY` for the old held one;
/// - the old conversation's mapping is never announced to the new one: the report was decided
///   before `CHANNEL_CLOSED` (event 4), so the new `WAIT_EVENT` stays held whatever the order
///   (a later Suspend answers it, with its own id), and no `EVENT` of the new channel open is
///   recorded;
/// - the regions' states are the session's, not the conversation's: the device host's last
///   report stands across the reopen (both regions mapped);
/// - the device host hears `CHANNEL_CLOSED` exactly once and nothing else (a fresh `HELLO`
///   pushes nothing);
/// - and once the device host applied `CHANNEL_CLOSED` (unmapping, `acted_on` 4: the held new
///   `WAIT_EVENT` hears `REGIONS_UNMAPPED`, always said) and the new guest reported its BAR,
///   said READY (events 5 and 6) and waited again, the device host's mapping with `acted_on` 6
///   answers that wait with `REGIONS_MAPPED`.
///
/// [`reopened_guest_hears_mapped_only_after_its_ready_was_applied`] races the new conversation's
/// READY against the device host's reports too.
#[test]
fn reopen_races_old_mapping_and_device_host_wait() {
    model("reopen_races_old_mapping_and_device_host_wait", || {
        let glue = Glue::new();
        let (session, old_wait) = ready_session(&glue, FILE);
        session.packet(&glue, old_wait, RequestBody::WaitEvent { last_seen: 0 });
        assert!(session.held());
        let host = {
            let (session, glue) = (session.clone(), glue.clone());
            thread::spawn(move || {
                let flag = Arc::new(AtomicBool::new(false));
                glue.wait(&session, 1, 3, &flag);
            })
        };
        let kmcl = {
            let (session, glue) = (session.clone(), glue.clone());
            thread::spawn(move || {
                session.suspend();
                session.closed(&glue);
                let reopened = session.completions();
                session.opened();
                session.started();
                session.packet(&glue, 101, RequestBody::Hello);
                let version = match session.answer(101) {
                    ReplyBody::HelloReply(host) => host.max_version,
                    other => panic!("HELLO got {other:?}"),
                };
                session.packet(&glue, 102, RequestBody::SelectVersion { version });
                assert!(matches!(session.answer(102), ReplyBody::Ack(_)));
                session.packet(&glue, 103, RequestBody::WaitEvent { last_seen: 0 });
                reopened
            })
        };
        for index in 0..2 {
            session.mapping_changed(index, MappingState::SectionBacked, 3);
        }
        host.join().unwrap();
        let reopened = kmcl.join().unwrap();
        // The old wait: once, before the reopen.
        event_or_closing(session.answer(old_wait), EventKind::RegionsMapped);
        let sink = session.sink.lock().unwrap().clone();
        assert!(
            sink[reopened..].iter().all(|(id, _)| *id > 100),
            "an old request answered after the reopen: {sink:?}"
        );
        // The new wait: held, whatever the order; nothing was announced to the new channel open.
        assert!(
            session.answers(103).is_empty() && session.held(),
            "the old mapping reached the new conversation: {:?}",
            session.answers(103)
        );
        let generation = session.with(|shared| shared.engine().generation());
        assert_eq!(generation, 3);
        assert!(
            session.announced().iter().all(|a| a.open == 1),
            "announced to the new channel open: {:?}",
            session.announced()
        );
        // The session's regions: as the device host last reported them.
        session.with(|shared| {
            let regions = shared.engine().context().regions();
            assert!(regions.iter().all(|r| r.state == RegionState::Mapped));
        });
        // The device host: CHANNEL_CLOSED, once, and nothing else.
        assert_eq!(
            glue.events_of(1),
            [(Completion::Event(4), Some(GuestEventKind::ChannelClosed))]
        );
        assert_eq!(session.newest(), 4);
        assert_eq!(glue.queued(), 0);
        // Then, in order: the device host applies CHANNEL_CLOSED and unmaps (the regions stop
        // being backed: the held new wait hears REGIONS_UNMAPPED, which is always said), the new
        // guest reports its BAR, says READY and waits again, the device host maps for it: that
        // wait hears REGIONS_MAPPED.
        for index in 0..2 {
            session.mapping_changed(index, MappingState::Unmapped, 4);
        }
        match session.answer(103) {
            ReplyBody::Event(event) => {
                assert_eq!(event.kind, EventKind::RegionsUnmapped);
                assert_eq!(event.sequence, 1);
            }
            other => panic!("the new wait got {other:?}"),
        }
        new_guest_ready(&session, &glue, 104);
        assert_eq!(session.newest(), 6);
        session.packet(&glue, 106, RequestBody::WaitEvent { last_seen: 1 });
        assert!(session.held());
        for index in 0..2 {
            session.mapping_changed(index, MappingState::SectionBacked, 6);
        }
        match session.answer(106) {
            ReplyBody::Event(event) => {
                assert_eq!(event.kind, EventKind::RegionsMapped);
                assert_eq!(event.sequence, 2);
            }
            other => panic!("the new wait got {other:?}"),
        }
        assert!(!session.held());
    });
}

/// The reopened guest's `REPORT_DEVICE` (decode on) and `READY` with request ids from `first`,
/// each answered `ACK` (the device host's events `GUEST_REPORT` and `GUEST_READY`).
fn new_guest_ready(session: &Session, glue: &Glue<Session>, first: u64) {
    let device = DeviceReport {
        instance: INSTANCE,
        segment: 0,
        bus: 0,
        devfn: 0,
        bar_index: 0,
        bar: BarPlacement {
            base: 0xF810_0000,
            size: 1 << 20,
            memory_decode: true,
        },
    };
    session.packet(glue, first, RequestBody::ReportDevice(device));
    assert!(matches!(session.answer(first), ReplyBody::Ack(_)));
    session.packet(glue, first + 1, RequestBody::Ready);
    assert!(matches!(session.answer(first + 1), ReplyBody::Ack(_)));
}

/// The guest closes and reopens the channel and, in the new conversation, reports its BAR,
/// says READY and waits (KMCL's thread: Suspend, Closed, Opened, Started, HELLO,
/// SELECT_VERSION, REPORT_DEVICE, READY, `WAIT_EVENT`), while the device host looks at its
/// events twice and each time reports both regions as that look decides (mapped if the guest
/// is ready, unmapped otherwise, `acted_on` the newest event it applied). After both threads,
/// the device host looks once more (it always catches up).
///
/// The promise checked, in every interleaving: a `REGIONS_MAPPED` recorded for the new
/// conversation was made by a report decided after the device host applied the new `READY`
/// (event 6): `acted_on` ≥ 6, never the old conversation's mapping (`acted_on` 3) nor one
/// decided between the close and the new `READY`. And the fresh report is announced: the new
/// `WAIT_EVENT` is answered exactly once, with `REGIONS_MAPPED` or (the regions stopped being
/// backed first) `REGIONS_UNMAPPED`, after which the guest's next `WAIT_EVENT` gets
/// `REGIONS_MAPPED`; nothing is held.
#[test]
fn reopened_guest_hears_mapped_only_after_its_ready_was_applied() {
    model(
        "reopened_guest_hears_mapped_only_after_its_ready_was_applied",
        || {
            let glue = Glue::new();
            let (session, _) = ready_session(&glue, FILE);
            let kmcl = {
                let (session, glue) = (session.clone(), glue.clone());
                thread::spawn(move || {
                    session.suspend();
                    session.closed(&glue);
                    session.opened();
                    session.started();
                    session.packet(&glue, 101, RequestBody::Hello);
                    let version = match session.answer(101) {
                        ReplyBody::HelloReply(host) => host.max_version,
                        other => panic!("HELLO got {other:?}"),
                    };
                    session.packet(&glue, 102, RequestBody::SelectVersion { version });
                    new_guest_ready(&session, &glue, 103);
                    session.packet(&glue, 105, RequestBody::WaitEvent { last_seen: 0 });
                })
            };
            session.device_host_step();
            session.device_host_step();
            kmcl.join().unwrap();
            assert_eq!(
                session.newest(),
                6,
                "CHANNEL_CLOSED, GUEST_REPORT, GUEST_READY"
            );
            session.device_host_step();
            for announcement in session.announced() {
                if announcement.open == 2 && announcement.event.kind == EventKind::RegionsMapped {
                    assert!(
                        announcement.acted_on >= 6,
                        "REGIONS_MAPPED for the new conversation from a report decided at event \
                         {}: {:?}",
                        announcement.acted_on,
                        session.announced()
                    );
                }
            }
            // The guest's waits, until it hears REGIONS_MAPPED (each answered exactly once).
            let mut id = 105;
            loop {
                let event = match session.answer(id) {
                    ReplyBody::Event(event) => event,
                    other => panic!("wait {id} got {other:?}"),
                };
                if event.kind == EventKind::RegionsMapped {
                    break;
                }
                assert_eq!(event.kind, EventKind::RegionsUnmapped, "wait {id}");
                assert!(id < 107, "too many events: {:?}", session.announced());
                id += 1;
                session.packet(
                    &glue,
                    id,
                    RequestBody::WaitEvent {
                        last_seen: event.sequence,
                    },
                );
            }
            assert!(!session.held());
        },
    );
}

/// The control device's table: the sessions by file, and the close in progress. Behind the
/// table lock ([`Level::Table`]).
struct Table {
    sessions: Vec<(FileKey, Session)>,
    /// A file marked closing (its requests fail with `STATUS_DEVICE_BUSY`).
    closing: Option<FileKey>,
}

impl Table {
    /// The session on `file`, unless there is none or it is closing.
    fn session(&self, file: FileKey) -> Option<Session> {
        if self.closing == Some(file) {
            return None;
        }
        let (_, session) = self.sessions.iter().find(|(of, _)| *of == file)?;
        Some(session.clone())
    }
}

const FILE_A: FileKey = FileKey(7);
const FILE_B: FileKey = FileKey(8);

/// Two sessions (two files, two channels, two event locks, one table lock). Session A's guest
/// holds a `WAIT_EVENT` and its device host a parked WAIT_GUEST_EVENT; CLOSE_SESSION of A
/// (under the table lock: mark closing; without it: close A's queue, then `VmbChannelDisable`,
/// which runs A's Suspend and Closed; under the table lock again: remove A; then hand the wake
/// to the glue) races B's guest (a `WAIT_EVENT`, then `RELEASING`) and B's device host
/// (WAIT_GUEST_EVENT under the table lock, then park; REPORT_MAPPING of A, refused while A is
/// closing or gone, and of B, under the table lock).
///
/// Checked: every table or event lock is taken in the order table → event, never an event lock
/// under another or the table under an event lock ([`Tracked`], at every acquisition; and the
/// table → event nesting did happen); A ends cleanly (its guest's wait answered once with
/// `CHANNEL_CLOSING`, its device host's request cancelled once, no
/// `CHANNEL_CLOSED` for a session being closed); B is untouched by it (its device host gets
/// `GUEST_RELEASING` once, its guest's wait stays held, its queue holds only its own events).
///
/// At most **4** preemptions (`LOOM_MAX_PREEMPTIONS` if lower): with 5, loom explores about
/// 300,000 executions (some 50 s here) against about 50,000 (6 s) with 4, which would take the
/// whole run past its one-minute budget.
#[test]
fn two_sessions_close_one_races_the_other() {
    model_capped("two_sessions_close_one_races_the_other", 4, || {
        let glue = Glue::new();
        let (a, a_next) = ready_session(&glue, FILE_A);
        let (b, b_next) = ready_session(&glue, FILE_B);
        a.packet(&glue, a_next, RequestBody::WaitEvent { last_seen: 0 });
        let a_flag = Arc::new(AtomicBool::new(false));
        glue.wait(&a, 1, 3, &a_flag).expect("A's request pends");
        let table = Arc::new(Tracked::new(
            Level::Table,
            Table {
                sessions: vec![(FILE_A, a.clone()), (FILE_B, b.clone())],
                closing: None,
            },
        ));
        let closer = {
            let (table, glue) = (Arc::clone(&table), glue.clone());
            thread::spawn(move || {
                // CLOSE_SESSION of A: under the table lock, mark it closing.
                let a = {
                    let mut table = table.lock();
                    let a = table.session(FILE_A).expect("A is open");
                    table.closing = Some(FILE_A);
                    a
                };
                // Without the lock: the queue, then Disable (Suspend and Closed run inside).
                let wake = a.close();
                a.suspend();
                a.closed(&glue);
                // Under the lock: the entry leaves the table; then the wake goes to the glue.
                {
                    let mut table = table.lock();
                    table.sessions.retain(|(file, _)| *file != FILE_A);
                    table.closing = None;
                }
                if let Some(wake) = wake {
                    glue.handle_wake(wake);
                }
            })
        };
        let b_guest = {
            let (b, glue) = (b.clone(), glue.clone());
            thread::spawn(move || {
                b.packet(&glue, b_next, RequestBody::WaitEvent { last_seen: 0 });
                b.packet(&glue, b_next + 1, RequestBody::Releasing);
            })
        };
        // B's device host: WAIT_GUEST_EVENT (begin_wait under the table lock, park without it).
        let b_flag = Arc::new(AtomicBool::new(false));
        let begun = {
            let table = table.lock();
            table.session(FILE_B).expect("B is open").begin_wait(3)
        };
        glue.after_begin(begun, &b, 2, &b_flag);
        // REPORT_MAPPING of A (the closing session: refused) and of B, under the table lock.
        for file in [FILE_A, FILE_B] {
            let table = table.lock();
            if let Some(session) = table.session(file) {
                session.mapping_changed(0, MappingState::SectionBacked, 3);
            }
        }
        assert!(nested_acquisitions() >= 2, "table → event never exercised");
        closer.join().unwrap();
        b_guest.join().unwrap();
        // A: closed cleanly (one region mapped at most: no event for its guest).
        match a.answer(a_next) {
            ReplyBody::Error(error) => assert_eq!(error.code, ErrorCode::ChannelClosing),
            other => panic!("A's wait got {other:?}"),
        }
        assert!(!a.held());
        assert_eq!(glue.completions_of(1), [Completion::Cancelled]);
        assert_eq!(
            a.newest(),
            3,
            "CHANNEL_CLOSED pushed to a closed session's queue"
        );
        // B: untouched.
        assert_eq!(
            glue.events_of(2),
            [(Completion::Event(4), Some(GuestEventKind::GuestReleasing))]
        );
        assert!(matches!(b.answer(b_next + 1), ReplyBody::Ack(_)));
        assert!(
            b.answers(b_next).is_empty() && b.held(),
            "B's wait was answered"
        );
        assert_eq!(b.newest(), 4);
        assert!(b.with(|shared| !shared.queue().is_closed()));
        assert_eq!(glue.queued(), 0);
        assert_eq!(table.lock().sessions.len(), 1);
    });
}

/// The lock-order check itself: an event lock held while the table lock is taken (the
/// inversion a KMCL callback taking the table lock would make) is caught in the first
/// execution that reaches it.
#[test]
#[should_panic(expected = "lock order")]
fn lock_order_check_detects_an_inversion() {
    model("lock_order_check_detects_an_inversion", || {
        let session = Session::new(FILE);
        let table = Tracked::new(Level::Table, ());
        session.with(|_| drop(table.lock()));
    });
}
