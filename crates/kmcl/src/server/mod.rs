//! Safe server-channel wrapper: create in the reference's order, dispatch callbacks to a trait,
//! tear down once.
//!
//! - [`ServerChannel`]: the owner. `create` performs the Init calls in the order kmcl.md §4
//!   records for host VSPs, then Enable and Start; any failure cleans up exactly once. Dropping
//!   it disables (blocking until Closed) and cleans up.
//! - [`ChannelHandler`]: what the driver implements; one method per callback, each with its
//!   IRQL. The trampolines find it through `VmbChannelGetPointer`.
//! - [`ChannelRef`]: all a callback can reach (no Disable, Pause or Start; see [`handler`]).
//! - [`IncomingPacket`]: one guest packet, completed exactly once, inline or (through
//!   [`IncomingPacket::hold`] and a `Send` [`HeldPacket`]) later.

pub mod handler;

mod context;
mod held;
mod name;
mod owner;
mod packet;
mod params;
mod trampolines;

pub use handler::{ChannelHandler, ChannelRef, MmioSpace};
pub use held::HeldPacket;
pub use name::MAX_NAME_UNITS;
pub use owner::ServerChannel;
pub use packet::IncomingPacket;
pub use params::{ParentDevice, ServerChannelParams};
