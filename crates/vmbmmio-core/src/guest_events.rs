//! The per-session queue of guest events for the device host (WAIT_GUEST_EVENT, docs/ioctl.md).
//!
//! # What it does
//! The guest reports over the channel (docs/protocol.md) where things are and when it is ready
//! or releasing; the host engine that parses those packets **pushes** an event here
//! ([`GuestEvents::push`] for tests; the engine, [`crate::guest::Engine`], pushes under the same
//! lock), and the device host learns it through the one WAIT_GUEST_EVENT request it keeps
//! pending.
//!
//! - Bounded: at most [`EVENT_CAPACITY`] unacknowledged events; a push beyond that is refused
//!   ([`PushError::Full`]; the host engine answers the guest `BUSY`).
//! - Sequences 1, 2, 3, … without gaps.
//! - **Not removed when delivered**: an event stays until a later request's `last_seen`
//!   acknowledges it, so a completion lost to cancellation or to the device host's exit loses
//!   nothing. A request gets the **first** event after its `last_seen`: exactly once, in order.
//! - One pending request per session ([`WaitError::AlreadyPending`]).
//!
//! # Sans-IO: the glue owns the request
//! This module never sees a WDF request. It records that one is pending (its `last_seen` and a
//! [`Ticket`]) and says what to do with it:
//!
//! 1. [`GuestEvents::begin_wait`] → complete at once with an event, or [`WaitStart::Pend`] with
//!    a ticket. The waiter is now *held* by the glue (not yet in its manual queue).
//! 2. Once the glue put the request in its manual queue: [`GuestEvents::parked`]. If an event
//!    arrived meanwhile, it answers with a [`Wake`] (the request stays *held*).
//! 3. A push while the waiter is *parked* answers with a [`Wake`] and marks it *held*; a push
//!    while it is held answers nothing (the holder re-checks at step 2 or 4).
//! 4. On a [`Wake`], the glue retrieves the file's request from its manual queue and asks
//!    [`GuestEvents::deliver`] with the request's ticket: complete with this event, put it back
//!    (then step 2 again), or cancel it (the session closed).
//! 5. Cancellation of a queued request (the device host's `CancelIoEx`, its exit) or its
//!    completion by anyone else: [`GuestEvents::cancel`] with its ticket. A stale ticket (of a
//!    request already gone) changes nothing, so a late cancellation can never drop a newer
//!    request's registration.
//!
//! A [`Wake`] may be stale (its request was cancelled and a newer one took its place): step 4
//! decides with the retrieved request's own ticket and `last_seen`, so a stale wake completes
//! nothing wrongly; at worst the request goes back to the queue.
//!
//! # Locking
//! The queue lives in the session's [`GuestShared`] (with the host engine's conversation and the
//! held guest packet) behind the platform's [`EventLock`], shared ([`TryArc`], an `Arc`
//! allocated fallibly: module `kmcl::fallible`) between the session
//! (IOCTL side, under the table lock) and the channel's callbacks (which must **never** take the
//! table lock, module docs of [`crate::control`]). Lock order: table lock, then event lock;
//! never the other way round. Everything under the event lock is bounded, allocation-free work
//! on fixed arrays; the one call out is the completion of a held guest packet
//! (`VmbChannelPacketComplete`, <= DISPATCH_LEVEL, module [`crate::guest::shared`]). The lock is
//! released before any [`Wake`] reaches the glue, so the glue may complete, requeue or cancel a
//! request (and be re-entered by WDF's cancellation callback, which takes the lock again)
//! without deadlock. The glue's lock is a WDF spin lock: `EvtIoCanceledOnQueue` and request
//! cleanup run at IRQL <= DISPATCH_LEVEL, where a wait lock cannot be taken.

use kmcl::fallible::TryArc;
use vmbmmio_proto::ioctl::{GuestEvent, GuestEventKind, GuestSnapshot, ProtoError};

use crate::control::FileKey;
use crate::guest::{GuestShared, SessionContext};

/// Most unacknowledged events one session keeps: the protocol's documented queue size
/// (`vmbmmio_proto::guest::EVENT_QUEUE`, docs/protocol.md "Misbehaviour").
pub const EVENT_CAPACITY: usize = vmbmmio_proto::guest::EVENT_QUEUE;

/// [`EVENT_CAPACITY`] as the sequence arithmetic's type (32 fits any `u64`).
#[allow(clippy::cast_possible_truncation)]
pub(crate) const CAPACITY_U64: u64 = EVENT_CAPACITY as u64;

/// The lock around one session's guest-facing state ([`GuestShared`]: this queue, the host
/// engine's conversation and the held guest packet), supplied by the platform: a WDF spin lock
/// in the driver, a `std` mutex in the simulator.
pub trait EventLock: Send + Sync + Sized + 'static {
    /// A lock holding `shared`, or `None` if the platform cannot make one (out of memory).
    ///
    /// IRQL: PASSIVE_LEVEL.
    fn new(shared: GuestShared) -> Option<Self>;

    /// Runs `f` with the lock held. `f` is bounded, allocates nothing and calls out only to
    /// complete a held guest packet (`VmbChannelPacketComplete`, <= DISPATCH_LEVEL, module
    /// [`crate::guest::shared`]).
    ///
    /// IRQL: <= DISPATCH_LEVEL (a spin lock raises to DISPATCH_LEVEL while held).
    fn with<R>(&self, f: impl FnOnce(&mut GuestShared) -> R) -> R;

    /// A push from the channel's packet handler (or its Closed callback) woke the session's
    /// parked WAIT_GUEST_EVENT: the platform retrieves and delivers it, as it does for any
    /// other [`Wake`]. Called **without** this lock and without the table lock, from a KMCL
    /// callback, which must never take the table lock (module docs of [`crate::control`]).
    ///
    /// IRQL: PASSIVE_LEVEL.
    fn wake(&self, wake: Wake);
}

/// Identifies one pending WAIT_GUEST_EVENT request of a session (never reused within it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ticket(pub u64);

/// "Retrieve the pending request of `file` from the manual queue and ask
/// [`GuestEvents::deliver`] what to do with it."
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use = "a wake that is dropped leaves a request pending with an event available"]
pub struct Wake {
    /// The file whose request to retrieve.
    pub file: FileKey,
}

/// What [`GuestEvents::begin_wait`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStart {
    /// Complete the request now with this event (or a [`GuestEventKind::Resync`]).
    Complete(GuestEvent),
    /// Keep the request pending: put it in the manual queue, then call
    /// [`GuestEvents::parked`] with this ticket.
    Pend(Ticket),
}

/// What to do with a request retrieved on a [`Wake`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Complete it with this event.
    Complete(GuestEvent),
    /// Nothing for it yet (a stale wake): put it back, then call [`GuestEvents::parked`].
    Requeue,
    /// It is no longer registered (the session closed, or it is not the registered request):
    /// complete it with `STATUS_CANCELLED`.
    Cancel,
}

/// Why WAIT_GUEST_EVENT was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitError {
    /// Another request of the session is pending.
    AlreadyPending,
    /// `last_seen` is beyond the newest event (the device host cannot have seen it).
    BeyondNewest {
        /// The request's `last_seen`.
        last_seen: u64,
        /// The newest sequence (0: no event yet).
        newest: u64,
    },
    /// The session is closing.
    Closed,
}

/// Why a push was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushError {
    /// [`EVENT_CAPACITY`] events are unacknowledged (the host engine answers the guest `BUSY`).
    Full,
    /// The session is closing.
    Closed,
    /// The event breaks the wire rules (flags against kind, the snapshot's rules), or is a
    /// [`GuestEventKind::Resync`], which only the queue itself makes.
    Invalid(ProtoError),
    /// The sequence numbers are exhausted (2^64 events; never in practice).
    Exhausted,
}

/// Where the session's pending request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Waiter {
    /// None is pending.
    None,
    /// The glue holds it (between `begin_wait` and `parked`, or between a wake and the
    /// delivery's end): pushes do not wake it, the holder re-checks.
    Held { ticket: Ticket, last_seen: u64 },
    /// It sits in the glue's manual queue: the next push wakes it.
    Parked { ticket: Ticket, last_seen: u64 },
}

impl Waiter {
    fn ticket(self) -> Option<(Ticket, u64)> {
        match self {
            Self::None => None,
            Self::Held { ticket, last_seen } | Self::Parked { ticket, last_seen } => {
                Some((ticket, last_seen))
            }
        }
    }
}

/// The queue itself: plain data behind the [`EventLock`]. Every method is bounded and
/// allocation-free.
#[derive(Debug)]
pub struct GuestEventQueue {
    file: FileKey,
    /// Event `s` sits at index `(s - 1) % EVENT_CAPACITY` while `acked < s <= newest`.
    slots: [Option<GuestEvent>; EVENT_CAPACITY],
    /// Sequence of the newest event pushed (0: none yet).
    newest: u64,
    /// Highest `last_seen` the device host sent: every event up to it is dropped.
    acked: u64,
    /// The newest snapshot (for [`GuestEventKind::Resync`]).
    current: GuestSnapshot,
    waiter: Waiter,
    next_ticket: u64,
    closed: bool,
}

impl GuestEventQueue {
    /// An empty queue of the session on `file`.
    pub const fn new(file: FileKey) -> Self {
        Self {
            file,
            slots: [None; EVENT_CAPACITY],
            newest: 0,
            acked: 0,
            current: GuestSnapshot {
                reservation: None,
                device: None,
                protocol_version: 0,
                guest_packets: 0,
                counted_errors: 0,
                errors_left: 0,
            },
            waiter: Waiter::None,
            next_ticket: 1,
            closed: false,
        }
    }

    fn slot_index(sequence: u64) -> Option<usize> {
        let index = sequence.checked_sub(1)?.checked_rem(CAPACITY_U64)?;
        usize::try_from(index).ok()
    }

    fn event(&self, sequence: u64) -> Option<GuestEvent> {
        let event = *self.slots.get(Self::slot_index(sequence)?)?;
        event.filter(|event| event.sequence() == sequence)
    }

    /// The first event after `last_seen`, if there is one.
    fn next_after(&self, last_seen: u64) -> Option<GuestEvent> {
        if self.newest > last_seen {
            self.event(last_seen.checked_add(1)?)
        } else {
            None
        }
    }

    /// Unacknowledged events.
    pub fn len(&self) -> u64 {
        self.newest.saturating_sub(self.acked)
    }

    /// Whether every event is acknowledged.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sequence of the newest event (0: none yet).
    pub fn newest(&self) -> u64 {
        self.newest
    }

    /// The newest snapshot pushed.
    pub fn current(&self) -> GuestSnapshot {
        self.current
    }

    /// Whether a request is pending (held or parked).
    pub fn has_waiter(&self) -> bool {
        self.waiter != Waiter::None
    }

    /// Whether the session closed (pushes and waits are refused).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    pub(crate) fn push(
        &mut self,
        kind: GuestEventKind,
        flags: u32,
        snapshot: GuestSnapshot,
    ) -> Result<(u64, Option<Wake>), PushError> {
        if self.closed {
            return Err(PushError::Closed);
        }
        if kind == GuestEventKind::Resync {
            return Err(PushError::Invalid(ProtoError::BadGuestEvent {
                got: kind.to_u32(),
            }));
        }
        if self.len() >= CAPACITY_U64 {
            return Err(PushError::Full);
        }
        let sequence = self.newest.checked_add(1).ok_or(PushError::Exhausted)?;
        let event = GuestEvent::new(sequence, kind, flags, snapshot).map_err(PushError::Invalid)?;
        let slot = Self::slot_index(sequence)
            .and_then(|index| self.slots.get_mut(index))
            .ok_or(PushError::Exhausted)?;
        *slot = Some(event);
        self.newest = sequence;
        self.current = snapshot;
        let wake = match self.waiter {
            Waiter::Parked { ticket, last_seen } => {
                self.waiter = Waiter::Held { ticket, last_seen };
                Some(Wake { file: self.file })
            }
            Waiter::None | Waiter::Held { .. } => None,
        };
        Ok((sequence, wake))
    }

    fn acknowledge(&mut self, last_seen: u64) {
        while self.acked < last_seen {
            let Some(next) = self.acked.checked_add(1) else {
                return;
            };
            if let Some(slot) = Self::slot_index(next).and_then(|index| self.slots.get_mut(index)) {
                *slot = None;
            }
            self.acked = next;
        }
    }

    pub(crate) fn begin_wait(&mut self, last_seen: u64) -> Result<WaitStart, WaitError> {
        if self.closed {
            return Err(WaitError::Closed);
        }
        if self.waiter != Waiter::None {
            return Err(WaitError::AlreadyPending);
        }
        if last_seen > self.newest {
            return Err(WaitError::BeyondNewest {
                last_seen,
                newest: self.newest,
            });
        }
        if last_seen < self.acked {
            // The device host acknowledged more before: it lost track. The current state, and
            // the newest sequence to go on from (acked >= 1 here, so newest >= 1).
            return GuestEvent::new(self.newest, GuestEventKind::Resync, 0, self.current)
                .map(WaitStart::Complete)
                .map_err(|_| WaitError::Closed);
        }
        // At most CAPACITY events lie between acked and newest, so this loop is bounded.
        self.acknowledge(last_seen);
        if let Some(event) = self.next_after(last_seen) {
            return Ok(WaitStart::Complete(event));
        }
        let ticket = Ticket(self.next_ticket);
        self.next_ticket = self.next_ticket.saturating_add(1);
        self.waiter = Waiter::Held { ticket, last_seen };
        Ok(WaitStart::Pend(ticket))
    }

    pub(crate) fn parked(&mut self, ticket: Ticket) -> Option<Wake> {
        match self.waiter.ticket() {
            Some((registered, last_seen)) if registered == ticket => {
                if self.next_after(last_seen).is_some() {
                    self.waiter = Waiter::Held { ticket, last_seen };
                    Some(Wake { file: self.file })
                } else {
                    self.waiter = Waiter::Parked { ticket, last_seen };
                    None
                }
            }
            // Not (any more) registered: the session closed or the request was cancelled
            // while the glue held it. Have the glue take it out of the queue again.
            _ => Some(Wake { file: self.file }),
        }
    }

    pub(crate) fn deliver(&mut self, ticket: Ticket) -> Delivery {
        match self.waiter.ticket() {
            Some((registered, last_seen)) if registered == ticket => {
                match self.next_after(last_seen) {
                    Some(event) => {
                        self.waiter = Waiter::None;
                        Delivery::Complete(event)
                    }
                    None => {
                        self.waiter = Waiter::Held { ticket, last_seen };
                        Delivery::Requeue
                    }
                }
            }
            _ => Delivery::Cancel,
        }
    }

    pub(crate) fn cancel(&mut self, ticket: Ticket) -> bool {
        match self.waiter.ticket() {
            Some((registered, _)) if registered == ticket => {
                self.waiter = Waiter::None;
                true
            }
            _ => false,
        }
    }

    pub(crate) fn close(&mut self) -> Option<Wake> {
        self.closed = true;
        match core::mem::replace(&mut self.waiter, Waiter::None) {
            Waiter::None => None,
            Waiter::Held { .. } | Waiter::Parked { .. } => Some(Wake { file: self.file }),
        }
    }
}

/// One session's event queue, shared between the session and the channel's packet handler.
pub struct GuestEvents<L: EventLock> {
    shared: TryArc<L>,
}

impl<L: EventLock> Clone for GuestEvents<L> {
    fn clone(&self) -> Self {
        Self {
            shared: TryArc::clone(&self.shared),
        }
    }
}

impl<L: EventLock> GuestEvents<L> {
    /// An empty queue for the session on `file`, whose guest engine sees the session as
    /// `context`; `None` if the platform's lock cannot be made or there is no memory for it.
    ///
    /// IRQL: PASSIVE_LEVEL (allocates).
    pub fn new(file: FileKey, context: SessionContext) -> Option<Self> {
        let lock = L::new(GuestShared::new(file, context))?;
        Some(Self {
            shared: TryArc::try_new(lock).ok()?,
        })
    }

    /// The platform's lock around the shared state (the simulator's records its wakes).
    pub fn shared(&self) -> &L {
        &self.shared
    }

    /// Appends an event (the host engine, from the packet callback; never under the table
    /// lock). Returns its sequence and, if a request is parked, the [`Wake`] to hand to the glue
    /// **after** this returns.
    ///
    /// IRQL: <= DISPATCH_LEVEL (takes only the event lock).
    pub fn push(
        &self,
        kind: GuestEventKind,
        flags: u32,
        snapshot: GuestSnapshot,
    ) -> Result<(u64, Option<Wake>), PushError> {
        self.shared
            .with(|shared| shared.queue.push(kind, flags, snapshot))
    }

    /// WAIT_GUEST_EVENT(`last_seen`): acknowledges every event up to `last_seen`, then answers
    /// with the first event after it, a RESYNC, or [`WaitStart::Pend`].
    ///
    /// IRQL: <= DISPATCH_LEVEL.
    pub fn begin_wait(&self, last_seen: u64) -> Result<WaitStart, WaitError> {
        self.shared.with(|shared| shared.begin_wait(last_seen))
    }

    /// The pending request `ticket` is in the glue's manual queue now; a [`Wake`] if it must be
    /// taken out again at once (an event came, or it was cancelled meanwhile).
    ///
    /// IRQL: <= DISPATCH_LEVEL.
    pub fn parked(&self, ticket: Ticket) -> Option<Wake> {
        self.shared.with(|shared| shared.parked(ticket))
    }

    /// The glue retrieved request `ticket` from its manual queue: what to do with it.
    ///
    /// IRQL: <= DISPATCH_LEVEL.
    pub fn deliver(&self, ticket: Ticket) -> Delivery {
        self.shared.with(|shared| shared.deliver(ticket))
    }

    /// Request `ticket` was cancelled (or completed by someone else) without a delivery.
    /// Nothing is consumed. Returns whether it was the registered one.
    ///
    /// IRQL: <= DISPATCH_LEVEL.
    pub fn cancel(&self, ticket: Ticket) -> bool {
        self.shared.with(|shared| shared.cancel(ticket))
    }

    /// The session is closing: later pushes and waits are refused; a pending request must be
    /// cancelled (the [`Wake`], whose delivery says [`Delivery::Cancel`]).
    ///
    /// IRQL: <= DISPATCH_LEVEL.
    pub fn close(&self) -> Option<Wake> {
        self.shared.with(|shared| shared.close_queue())
    }

    /// Reads the queue's state (tests, QUERY_STATUS).
    ///
    /// IRQL: <= DISPATCH_LEVEL.
    pub fn inspect<R>(&self, f: impl FnOnce(&GuestEventQueue) -> R) -> R {
        self.shared.with(|shared| f(&shared.queue))
    }
}

#[cfg(test)]
mod tests;
