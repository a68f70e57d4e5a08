//! The session state both the channel's callbacks and the IOCTL path touch, behind the one
//! per-session event lock, and the channel-side port that feeds it.
//!
//! [`GuestShared`] holds the device host's event queue, the [`Engine`] and the one held
//! `WAIT_EVENT` packet. Keeping them under **one** lock makes every step atomic: a packet is
//! parsed, answered, its device-host event queued and (for a `WAIT_EVENT`) its completion held
//! in one lock section, so REPORT_MAPPING or Suspend can never find the engine waiting on a
//! packet that is not stored yet, nor a stored packet the engine forgot.
//!
//! Each lock section is a method of [`GuestShared`] ([`GuestShared::packet`], `opened`,
//! `started`, `suspend`, `closed`, `mapping_changed`, and the device host's `begin_wait` …
//! `close_queue`), called with the lock held by [`SessionPort`] and [`GuestEvents`]. They are
//! generic over the held completion ([`HeldCompletion`]: KMCL's `HeldPacket` in the driver)
//! so that the model checker runs these very sections with a stand-in for the KMCL packet
//! (`tests/loom_guest_events.rs`).
//!
//! # Lock rules
//! - Order: table lock, then the event lock (REPORT_MAPPING takes both); KMCL callbacks and the
//!   device host's cancellation take only the event lock. Never the other way round.
//! - Under the lock: bounded, allocation-free work on fixed arrays, and two calls out:
//!   `VmbChannelPacketComplete` of the held packet ([`HeldPacket::complete`]), which is allowed
//!   at IRQL <= DISPATCH_LEVEL and does not block; and `KeSetEvent(.., FALSE)` of the events of
//!   the host consumers a guest DOORBELL reaches (<= DISPATCH_LEVEL, does not block, does not
//!   re-enter the driver). Event references are never released under the lock. It is made under the lock on purpose: taking
//!   the packet out and completing it after unlocking would let Suspend return while another
//!   thread still holds an uncompleted packet (KMCL requires every delivered packet completed
//!   by the end of Suspend; the simulator flags `PacketsOutstandingAtSuspend`). Completing does
//!   not re-enter the driver: incoming packets are delivered at PASSIVE_LEVEL on KMCL's own
//!   thread, never from inside a completion.
//! - The packet being processed is completed **after** the lock is released (it belongs to the
//!   running callback alone), and so is the device host's [`Wake`](crate::guest_events::Wake)
//!   ([`EventLock::wake`]), which retrieves and completes a
//!   WDF request.
//!
//! # IRQL
//! | Path | IRQL |
//! |---|---|
//! | the port's `packet` (ProcessPacket) | PASSIVE_LEVEL (incoming processing at passive); DISPATCH_LEVEL under a spin lock |
//! | the port's `opened`, `started`, `suspend`, `closed` | PASSIVE_LEVEL (KMCL state callbacks) |
//! | [`GuestEvents::mapping_changed`], [`GuestEvents::counters`] | <= DISPATCH_LEVEL, under the table lock |

use alloc::boxed::Box;

use kmcl::fallible::{AllocError, try_box};
use kmcl::server::{HeldPacket, IncomingPacket};
use vmbmmio_proto::ioctl::{ActedOn, MappingState};

use super::context::SessionContext;
use super::engine::{Action, Engine, EngineCounters, GuestDoorbell, HeldReply};
use super::limits::LARGEST_MESSAGE;
use crate::channel::GuestPort;
use crate::consumers::{Clock, DoorbellHub, EventRef, HubError, UserEvents};
use crate::control::FileKey;
use crate::guest_events::{
    Delivery, EventLock, GuestEventQueue, GuestEvents, Ticket, WaitError, WaitStart, Wake,
};

/// A guest packet's completion kept past its callback: KMCL's [`HeldPacket`] in the driver, a
/// stand-in in the model-checked scenarios (`tests/loom_guest_events.rs`), which cannot make a
/// KMCL completion. Completing it consumes it: exactly once.
pub trait HeldCompletion: Send {
    /// Completes it with `reply`.
    ///
    /// IRQL: <= DISPATCH_LEVEL (called under the event lock).
    fn complete(self, reply: &[u8]);

    /// Completes it without a payload.
    ///
    /// IRQL: <= DISPATCH_LEVEL (called under the event lock).
    fn complete_empty(self);
}

impl HeldCompletion for HeldPacket {
    /// IRQL: <= DISPATCH_LEVEL.
    fn complete(self, reply: &[u8]) {
        // A 48-byte payload always fits; on the impossible error KMCL got an empty completion,
        // so exactly-once holds either way.
        let _ = Self::complete(self, reply);
    }

    /// IRQL: <= DISPATCH_LEVEL.
    fn complete_empty(self) {
        Self::complete_empty(self);
    }
}

/// A guest packet being processed: its bytes, and the way to keep its completion
/// ([`IncomingPacket`] in the driver, a stand-in in the model-checked scenarios).
pub trait GuestPacket {
    /// What holding it gives.
    type Held: HeldCompletion;

    /// The packet's payload (guest-controlled).
    fn data(&self) -> &[u8];

    /// Keeps its completion past the callback.
    fn hold(self) -> Self::Held;
}

impl GuestPacket for IncomingPacket<'_> {
    type Held = HeldPacket;

    fn data(&self) -> &[u8] {
        IncomingPacket::data(self)
    }

    fn hold(self) -> HeldPacket {
        IncomingPacket::hold(self)
    }
}

/// One session's guest-facing state: the device host's event queue, the engine, the held
/// packet (`H`: KMCL's [`HeldPacket`] in the driver). Plain data behind the platform's
/// [`EventLock`]; each method below is one lock section of the driver, called with the lock
/// held.
#[derive(Debug)]
pub struct GuestShared<H = HeldPacket> {
    pub(crate) queue: GuestEventQueue,
    pub(crate) engine: Engine,
    held: Option<H>,
    /// The host consumers' doorbells (module [`crate::consumers::hub`]).
    pub(crate) doorbells: DoorbellHub,
}

impl<H> GuestShared<H> {
    /// The state of a new session on `file`, laid out as `context`.
    pub const fn new(file: FileKey, context: SessionContext) -> Self {
        Self {
            queue: GuestEventQueue::new(file),
            engine: Engine::new(context),
            held: None,
            doorbells: DoorbellHub::new(),
        }
    }

    /// The host consumers' doorbells.
    pub const fn doorbells(&self) -> &DoorbellHub {
        &self.doorbells
    }

    /// The device host's event queue.
    pub const fn queue(&self) -> &GuestEventQueue {
        &self.queue
    }

    /// The engine.
    pub const fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Whether a guest packet is held.
    pub const fn has_held_packet(&self) -> bool {
        self.held.is_some()
    }

    /// WAIT_GUEST_EVENT's lock section ([`GuestEvents::begin_wait`]).
    pub fn begin_wait(&mut self, last_seen: u64) -> Result<WaitStart, WaitError> {
        self.queue.begin_wait(last_seen)
    }

    /// [`GuestEvents::parked`]'s lock section.
    pub fn parked(&mut self, ticket: Ticket) -> Option<Wake> {
        self.queue.parked(ticket)
    }

    /// [`GuestEvents::deliver`]'s lock section.
    pub fn deliver(&mut self, ticket: Ticket) -> Delivery {
        self.queue.deliver(ticket)
    }

    /// [`GuestEvents::cancel`]'s lock section.
    pub fn cancel(&mut self, ticket: Ticket) -> bool {
        self.queue.cancel(ticket)
    }

    /// [`GuestEvents::close`]'s lock section (the session closes; not the channel's Closed).
    pub fn close_queue(&mut self) -> Option<Wake> {
        self.queue.close()
    }
}

impl<H: HeldCompletion> GuestShared<H> {
    /// Completes the held packet with `reply`, under the lock (module docs).
    fn complete_held(&mut self, reply: Option<HeldReply>) {
        if let Some(reply) = reply
            && let Some(packet) = self.held.take()
        {
            packet.complete(reply.bytes());
        }
    }

    /// Completes whatever is still held, empty (never in practice: the engine hands back a
    /// reply for every wait it forgets).
    fn drop_held(&mut self) {
        if let Some(packet) = self.held.take() {
            packet.complete_empty();
        }
    }

    /// ProcessPacket's lock section: the engine answers `packet`; a `WAIT_EVENT` with nothing
    /// newer is held here, anything else comes back with its reply's length in `reply`, to be
    /// completed by the caller **after** unlocking; and the device host's wake, to hand on
    /// after unlocking too.
    pub fn packet<P: GuestPacket<Held = H>>(
        &mut self,
        packet: P,
        reply: &mut [u8; LARGEST_MESSAGE],
    ) -> (Option<(P, usize)>, Option<Wake>) {
        self.packet_at(packet, 0, |_| {}, reply)
    }

    /// [`Self::packet`] at time `now` (the platform's clock, read before the lock), with
    /// `signal` (`KeSetEvent(.., FALSE)`, <= DISPATCH_LEVEL) for the events of the consumers a
    /// guest DOORBELL reaches. [`Self::packet`] is this at time 0 with no signal (tests and
    /// benchmarks).
    pub fn packet_at<P: GuestPacket<Held = H>>(
        &mut self,
        packet: P,
        now: u64,
        signal: impl Fn(&EventRef),
        reply: &mut [u8; LARGEST_MESSAGE],
    ) -> (Option<(P, usize)>, Option<Wake>) {
        let outcome = self
            .engine
            .packet_at(&mut self.queue, packet.data(), reply, now);
        match outcome.doorbell {
            Some(GuestDoorbell::Rang { region, value }) => {
                let _heard = self.doorbells.guest_rang(region, value, signal);
            }
            Some(GuestDoorbell::Refused) => self.doorbells.guest_refused(),
            None => {}
        }
        self.complete_held(outcome.held);
        match outcome.action {
            Action::Reply(len) => (Some((packet, len)), outcome.wake),
            Action::Hold => {
                self.drop_held();
                self.held = Some(packet.hold());
                (None, outcome.wake)
            }
        }
    }

    /// RING_GUEST's lock section: a consumer rings the guest with `value` for its attachment's
    /// region at time `now`. Refused without consuming a token if the guest cannot hear it;
    /// then the attachment's rate limit; then the engine records (or coalesces) the guest's
    /// `DOORBELL` event and completes a held `WAIT_EVENT` with it, under the lock.
    pub fn ring_guest(&mut self, attachment: u64, value: u64, now: u64) -> Result<(), RingRefused> {
        if !self.engine.doorbells_supported() {
            return Err(RingRefused::NotSupported);
        }
        let region = self
            .doorbells
            .ring_allowed(attachment, now)
            .map_err(RingRefused::Hub)?;
        let reply = self.engine.doorbell_event(region, value);
        self.complete_held(reply);
        Ok(())
    }

    /// The Opened callback's lock section.
    pub fn opened(&mut self) {
        self.drop_held();
        self.engine.opened();
    }

    /// The Started callback's lock section.
    pub fn started(&mut self) {
        self.engine.started();
    }

    /// The Suspend callback's lock section: the held `WAIT_EVENT` is completed before it
    /// returns (KMCL waits for it).
    pub fn suspend(&mut self) {
        let reply = self.engine.suspend();
        self.complete_held(reply);
        self.drop_held();
    }

    /// The Closed callback's lock section; the device host's wake (`CHANNEL_CLOSED`), to hand
    /// on after unlocking.
    pub fn closed(&mut self) -> Option<Wake> {
        let (reply, wake) = self.engine.closed(&mut self.queue);
        self.complete_held(reply);
        self.drop_held();
        wake
    }

    /// REPORT_MAPPING's lock section ([`GuestEvents::mapping_changed`]): refused, changing
    /// nothing, if `acted_on` names an event the session never queued (the device host cannot
    /// have applied it).
    pub fn mapping_changed(
        &mut self,
        index: usize,
        state: MappingState,
        acted_on: ActedOn,
    ) -> Result<(), ActedBeyondNewest> {
        let newest = self.queue.newest();
        if let ActedOn::Sequence(acted_on) = acted_on
            && acted_on > newest
        {
            return Err(ActedBeyondNewest { acted_on, newest });
        }
        let reply = self.engine.mapping(index, state, acted_on);
        self.complete_held(reply);
        Ok(())
    }
}

/// Why RING_GUEST was refused ([`GuestShared::ring_guest`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingRefused {
    /// The guest's conversation did not select protocol 1.1 or later (or the channel is not
    /// open): there is nobody to tell.
    NotSupported,
    /// The doorbell table refused (closed session, rate limit).
    Hub(HubError),
}

/// A REPORT_MAPPING whose `acted_on` is beyond the newest event the session queued for the
/// device host: refused (`STATUS_INVALID_PARAMETER`), nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActedBeyondNewest {
    /// The report's `acted_on`.
    pub acted_on: u64,
    /// The newest event's sequence (0: none yet).
    pub newest: u64,
}

/// The channel's view of a session: the [`GuestPort`] the channel's handler routes its
/// callbacks to.
pub(crate) struct SessionPort<L: EventLock, E: UserEvents, C: Clock> {
    events: GuestEvents<L>,
    /// Signals the consumers' events a guest DOORBELL reaches (`KeSetEvent`).
    backend: E,
    /// The guest's doorbell rate limit's clock, read before the lock.
    clock: C,
}

impl<L: EventLock, E: UserEvents, C: Clock> GuestPort for SessionPort<L, E, C> {
    /// IRQL: PASSIVE_LEVEL (raised to DISPATCH_LEVEL inside a spin lock).
    fn packet(&self, packet: IncomingPacket<'_>) {
        let mut reply = [0u8; LARGEST_MESSAGE];
        let time = self.clock.now();
        let backend = &self.backend;
        let (now, wake) = self.events.shared().with(|shared| {
            shared.packet_at(packet, time, |event| backend.signal(event), &mut reply)
        });
        if let Some((packet, len)) = now {
            // Replies are at most LARGEST_MESSAGE bytes: this cannot fail, and on the impossible
            // error KMCL got an empty completion.
            let _ = packet.complete(reply.get(..len).unwrap_or(&[]));
        }
        if let Some(wake) = wake {
            self.events.shared().wake(wake);
        }
    }

    /// IRQL: PASSIVE_LEVEL.
    fn opened(&self) {
        self.events.shared().with(GuestShared::opened);
    }

    /// IRQL: PASSIVE_LEVEL.
    fn started(&self) {
        self.events.shared().with(GuestShared::started);
    }

    /// IRQL: PASSIVE_LEVEL. Completes the held `WAIT_EVENT` before returning (KMCL waits for it).
    fn suspend(&self) {
        self.events.shared().with(GuestShared::suspend);
    }

    /// IRQL: PASSIVE_LEVEL.
    fn closed(&self) {
        let wake = self.events.shared().with(GuestShared::closed);
        if let Some(wake) = wake {
            self.events.shared().wake(wake);
        }
    }
}

impl<L: EventLock> GuestEvents<L> {
    /// The channel-side port of this session, for the channel's handler (given at offer time),
    /// with the consumers' event backend and the clock it uses from the channel's callbacks;
    /// [`AllocError`] when there is no memory for it.
    ///
    /// IRQL: PASSIVE_LEVEL (allocates).
    pub fn port<E: UserEvents, C: Clock>(
        &self,
        backend: E,
        clock: C,
    ) -> Result<Box<dyn GuestPort>, AllocError> {
        Ok(try_box(SessionPort {
            events: self.clone(),
            backend,
            clock,
        })?)
    }

    /// The device host reported region `index` as `state`, decided after applying its events up
    /// to `acted_on` (REPORT_MAPPING): the engine's copy follows, and a held `WAIT_EVENT` is
    /// completed if the change made an event for it (module docs of
    /// [`crate::guest::engine`]: which reports may say "backed"). Refused, changing nothing,
    /// for an `acted_on` beyond the newest event.
    ///
    /// IRQL: <= DISPATCH_LEVEL; under the table lock (the order: table, then event lock).
    pub fn mapping_changed(
        &self,
        index: usize,
        state: MappingState,
        acted_on: ActedOn,
    ) -> Result<(), ActedBeyondNewest> {
        self.shared()
            .with(|shared| shared.mapping_changed(index, state, acted_on))
    }

    /// The engine's counters (QUERY_STATUS).
    ///
    /// IRQL: <= DISPATCH_LEVEL.
    pub fn counters(&self) -> EngineCounters {
        self.shared().with(|shared| shared.engine.counters())
    }

    /// Reads the whole shared state (tests, diagnostics).
    ///
    /// IRQL: <= DISPATCH_LEVEL.
    pub fn inspect_shared<R>(&self, f: impl FnOnce(&GuestShared) -> R) -> R {
        self.shared().with(|shared| f(shared))
    }
}
