//! The host engine's bounds: everything it keeps per session and per channel open is a fixed
//! array sized here, so no guest can make the host allocate or loop longer.
//!
//! The protocol's own numbers (`ERROR_LIMIT`, `MAX_REGIONS`, the largest message) live in
//! `vmbmmio_proto::guest`; these are the host's choices on top of them (docs/protocol.md,
//! "Misbehaviour" and `WAIT_EVENT`).

use crate::guest_events::EVENT_CAPACITY;

pub use vmbmmio_proto::guest::{ERROR_LIMIT, LARGEST_MESSAGE, MAX_REGIONS};

/// Guest `EVENT`s kept per channel open for `WAIT_EVENT`: a guest further behind gets the
/// oldest one kept (its layout is always one `GET_LAYOUT` away).
pub const GUEST_EVENT_RING: usize = 16;

/// Device-host queue slots only the terminal events (`GUEST_STOPPED`, `CHANNEL_CLOSED`) may use:
/// a report, `READY`, `RELEASING` or a new `HELLO` is refused with `BUSY` once fewer than this
/// many slots are free, so a flooding guest cannot keep the device host from hearing that the
/// host stopped answering it or that the channel closed.
pub const TERMINAL_HEADROOM: u64 = 2;

/// The size of the replies a held `WAIT_EVENT` is completed with (`EVENT`, 48 bytes, or
/// `ERROR`, 32 bytes).
pub const HELD_REPLY_SIZE: usize = 48;

const _: () = assert!(TERMINAL_HEADROOM < EVENT_CAPACITY as u64);
const _: () = assert!(HELD_REPLY_SIZE == vmbmmio_proto::guest::Kind::Event.size());
const _: () = assert!(HELD_REPLY_SIZE >= vmbmmio_proto::guest::Kind::Error.size());
