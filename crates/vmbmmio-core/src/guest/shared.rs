//! The session state both the channel's callbacks and the IOCTL path touch, behind the one
//! per-session event lock, and the channel-side port that feeds it.
//!
//! [`GuestShared`] holds the device host's event queue, the [`Engine`] and the one held
//! `WAIT_EVENT` packet. Keeping them under **one** lock makes every step atomic: a packet is
//! parsed, answered, its device-host event queued and (for a `WAIT_EVENT`) its completion held
//! in one lock section, so REPORT_MAPPING or Suspend can never find the engine waiting on a
//! packet that is not stored yet, nor a stored packet the engine forgot.
//!
//! # Lock rules
//! - Order: table lock, then the event lock (REPORT_MAPPING takes both); KMCL callbacks and the
//!   device host's cancellation take only the event lock. Never the other way round.
//! - Under the lock: bounded, allocation-free work on fixed arrays, and **one** call out:
//!   `VmbChannelPacketComplete` of the held packet ([`HeldPacket::complete`]), which is allowed
//!   at IRQL <= DISPATCH_LEVEL and does not block. It is made under the lock on purpose: taking
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
use vmbmmio_proto::ioctl::MappingState;

use super::context::SessionContext;
use super::engine::{Action, Engine, EngineCounters, HeldReply};
use super::limits::LARGEST_MESSAGE;
use crate::channel::GuestPort;
use crate::control::FileKey;
use crate::guest_events::{EventLock, GuestEventQueue, GuestEvents};

/// One session's guest-facing state: the device host's event queue, the engine, the held
/// packet. Plain data behind the platform's [`EventLock`].
#[derive(Debug)]
pub struct GuestShared {
    pub(crate) queue: GuestEventQueue,
    pub(crate) engine: Engine,
    held: Option<HeldPacket>,
}

impl GuestShared {
    /// The state of a new session on `file`, laid out as `context`.
    pub const fn new(file: FileKey, context: SessionContext) -> Self {
        Self {
            queue: GuestEventQueue::new(file),
            engine: Engine::new(context),
            held: None,
        }
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

    /// Completes the held packet with `reply`, under the lock (module docs).
    fn complete_held(&mut self, reply: Option<HeldReply>) {
        if let Some(reply) = reply
            && let Some(packet) = self.held.take()
        {
            // A 48-byte payload always fits; on the impossible error KMCL got an empty
            // completion, so exactly-once holds either way.
            let _ = packet.complete(reply.bytes());
        }
    }

    /// Completes whatever is still held, empty (never in practice: the engine hands back a
    /// reply for every wait it forgets).
    fn drop_held(&mut self) {
        if let Some(packet) = self.held.take() {
            packet.complete_empty();
        }
    }
}

/// The channel's view of a session: the [`GuestPort`] the channel's handler routes its
/// callbacks to.
pub(crate) struct SessionPort<L: EventLock> {
    events: GuestEvents<L>,
}

impl<L: EventLock> GuestPort for SessionPort<L> {
    /// IRQL: PASSIVE_LEVEL (raised to DISPATCH_LEVEL inside a spin lock).
    fn packet(&self, packet: IncomingPacket<'_>) {
        let mut reply = [0u8; LARGEST_MESSAGE];
        let (now, wake) = self.events.shared().with(|shared| {
            let outcome = shared
                .engine
                .packet(&mut shared.queue, packet.data(), &mut reply);
            shared.complete_held(outcome.held);
            match outcome.action {
                Action::Reply(len) => (Some((packet, len)), outcome.wake),
                Action::Hold => {
                    shared.drop_held();
                    shared.held = Some(packet.hold());
                    (None, outcome.wake)
                }
            }
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
        self.events.shared().with(|shared| {
            shared.drop_held();
            shared.engine.opened();
        });
    }

    /// IRQL: PASSIVE_LEVEL.
    fn started(&self) {
        self.events.shared().with(|shared| shared.engine.started());
    }

    /// IRQL: PASSIVE_LEVEL. Completes the held `WAIT_EVENT` before returning (KMCL waits for it).
    fn suspend(&self) {
        self.events.shared().with(|shared| {
            let reply = shared.engine.suspend();
            shared.complete_held(reply);
            shared.drop_held();
        });
    }

    /// IRQL: PASSIVE_LEVEL.
    fn closed(&self) {
        let wake = self.events.shared().with(|shared| {
            let (reply, wake) = shared.engine.closed(&mut shared.queue);
            shared.complete_held(reply);
            shared.drop_held();
            wake
        });
        if let Some(wake) = wake {
            self.events.shared().wake(wake);
        }
    }
}

impl<L: EventLock> GuestEvents<L> {
    /// The channel-side port of this session, for the channel's handler (given at offer time);
    /// [`AllocError`] when there is no memory for it.
    ///
    /// IRQL: PASSIVE_LEVEL (allocates).
    pub fn port(&self) -> Result<Box<dyn GuestPort>, AllocError> {
        Ok(try_box(SessionPort {
            events: self.clone(),
        })?)
    }

    /// The device host reported region `index` as `state` (REPORT_MAPPING): the engine's copy
    /// follows, and a held `WAIT_EVENT` is completed if the change made an event for it.
    ///
    /// IRQL: <= DISPATCH_LEVEL; under the table lock (the order: table, then event lock).
    pub fn mapping_changed(&self, index: usize, state: MappingState) {
        self.shared().with(|shared| {
            let reply = shared.engine.mapping(index, state);
            shared.complete_held(reply);
        });
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
