//! `ACK`: the reply to every request that only needs a yes (`SELECT_VERSION`, the reports,
//! `READY`, `RELEASING`).
//!
//! It names the request's kind, so a guest can tell which of its requests was acknowledged
//! even if it misfiled the id, and the layout generation at the time of the reply, so a guest
//! knows whether its cached layout is current without asking.

use core::mem::offset_of;

use zerocopy::byteorder::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::header::{GuestMessage, Header, Kind, kind_size};

/// `ACK`, 32 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct AckReply {
    /// Kind [`Kind::Ack`]; echoes the request's id.
    pub header: Header,
    /// The request's kind.
    pub acked_kind: U16,
    /// Must be 0.
    pub reserved0: U16,
    /// Must be 0.
    pub reserved1: U32,
    /// The layout generation at the time of the reply.
    pub generation: U64,
}

impl GuestMessage for AckReply {
    const KIND: Kind = Kind::Ack;
}
kind_size!(AckReply);
const _: () = assert!(offset_of!(AckReply, acked_kind) == 16);
const _: () = assert!(offset_of!(AckReply, reserved0) == 18);
const _: () = assert!(offset_of!(AckReply, reserved1) == 20);
const _: () = assert!(offset_of!(AckReply, generation) == 24);

/// The content of an `ACK`, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ack {
    /// The acknowledged request's kind (one whose reply is `ACK`).
    pub acked_kind: Kind,
    /// The layout generation at the time of the reply.
    pub generation: u64,
}

impl Ack {
    /// Whether `kind` is answered with `ACK`.
    pub const fn acks(kind: Kind) -> bool {
        matches!(kind.reply_kind(), Some(Kind::Ack))
    }

    /// The wire message answering `request_id`.
    pub const fn to_wire(&self, request_id: u64) -> AckReply {
        AckReply {
            header: Header::new(Kind::Ack, request_id),
            acked_kind: U16::new(self.acked_kind.to_u16()),
            reserved0: U16::new(0),
            reserved1: U32::new(0),
            generation: U64::new(self.generation),
        }
    }
}
