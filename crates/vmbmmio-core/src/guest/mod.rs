//! The host side of the guest control protocol (docs/protocol.md): the engine that answers
//! every packet a guest sends over the session's channel, and its wiring into the channel's
//! callbacks and the session's event queue.
//!
//! # Why it exists
//! VMBus never tells the host where the guest placed the channel's reservation or the paired
//! function's BAR; the guest says so in this protocol, and the device host must hear it to map
//! at the right time (WAIT_GUEST_EVENT, docs/ioctl.md). The channel is also the guest's only
//! path into the host kernel, so every byte is treated as an attack.
//!
//! # The pieces
//! - [`engine`]: sans-IO: a packet's bytes in, the reply (or "hold it") and the device host's
//!   event out; REPORT_MAPPING and the channel's state changes in, the guest's `EVENT`s out.
//! - [`conversation`]: one channel open's state (version, last accepted id, reports, allowance,
//!   the guest's events, the held wait); [`context`]: the session as the engine sees it
//!   (instance GUID, BAR size, regions and their states); [`limits`]: the bounds.
//! - [`shared`]: [`GuestShared`], everything both sides touch, behind the session's one event
//!   lock ([`crate::guest_events::EventLock`]), and the [`crate::channel::GuestPort`] the
//!   channel's handler calls.
//!
//! # IRQL and locks
//! | Entry point | IRQL | Lock |
//! |---|---|---|
//! | ProcessPacket → [`Engine::packet`] | PASSIVE_LEVEL (incoming at passive) | event lock only (a spin lock in the driver: DISPATCH_LEVEL inside) |
//! | Opened / Started / Suspend / Closed → [`Engine::opened`] … | PASSIVE_LEVEL | event lock only |
//! | REPORT_MAPPING → [`Engine::mapping`] | PASSIVE_LEVEL | table lock, then event lock |
//! | QUERY_STATUS → [`Engine::counters`] | PASSIVE_LEVEL | table lock, then event lock |
//!
//! **No KMCL callback takes the table lock** (module docs of [`crate::control`]): the engine
//! keeps its own copy of what it needs from the session. Under the event lock nothing blocks,
//! allocates or touches paged memory; the one call out is `VmbChannelPacketComplete` of the
//! held packet (module [`shared`] says why it is made there). The device host's wake is handed
//! to the platform ([`crate::guest_events::EventLock::wake`]) after the lock is released.

pub mod context;
pub mod conversation;
pub mod engine;
pub mod limits;
pub mod shared;

pub use context::{Backing, SessionContext};
pub use conversation::{Conversation, EventRing, HeldWait, Reports};
pub use engine::{Action, Engine, EngineCounters, GuestDoorbell, HeldReply, Outcome};
pub use shared::{ActedBeyondNewest, GuestPacket, GuestShared, HeldCompletion, RingRefused};

#[cfg(test)]
mod tests;
