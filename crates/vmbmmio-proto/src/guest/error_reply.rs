//! `ERROR`: the reply any request may get instead of its own, and the codes it carries.
//!
//! The code tells the guest what to do (fix the sender, negotiate, send the missing step,
//! retry later, stop); `errors_left` tells it how close it is to the misbehaviour threshold.
//! [`ErrorCode::counted`] says which codes count against that threshold.

use core::fmt;
use core::mem::offset_of;

use zerocopy::byteorder::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::header::{GuestMessage, Header, Kind, kind_size};

/// The code of an `ERROR` reply.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Length, `size`, `flags`, a reserved field or a field value refused.
    Malformed = 1,
    /// Not a request kind of this version.
    UnknownKind = 2,
    /// `SELECT_VERSION` outside the host's range.
    UnsupportedVersion = 3,
    /// Not allowed in the conversation's current state.
    OutOfOrder = 4,
    /// `request_id` not greater than the last accepted one.
    Replayed = 5,
    /// `REPORT_DEVICE` names another channel's instance GUID.
    NotPaired = 6,
    /// The reported BAR or reservation is impossible.
    BadPlacement = 7,
    /// A `WAIT_EVENT` is already outstanding, or the device host has not yet taken the
    /// previous report.
    Busy = 8,
    /// The channel is suspending or closing, or the host stopped answering this guest.
    ChannelClosing = 9,
    /// Version 1.1: a `DOORBELL` refused by the host's rate limit (not counted).
    RateLimited = 10,
}

impl ErrorCode {
    /// Every code, in order.
    pub const ALL: [Self; 10] = [
        Self::Malformed,
        Self::UnknownKind,
        Self::UnsupportedVersion,
        Self::OutOfOrder,
        Self::Replayed,
        Self::NotPaired,
        Self::BadPlacement,
        Self::Busy,
        Self::ChannelClosing,
        Self::RateLimited,
    ];

    /// The wire value.
    pub const fn to_u32(self) -> u32 {
        self as u32
    }

    /// The code with this wire value, if any.
    pub const fn from_u32(value: u32) -> Option<Self> {
        Some(match value {
            1 => Self::Malformed,
            2 => Self::UnknownKind,
            3 => Self::UnsupportedVersion,
            4 => Self::OutOfOrder,
            5 => Self::Replayed,
            6 => Self::NotPaired,
            7 => Self::BadPlacement,
            8 => Self::Busy,
            9 => Self::ChannelClosing,
            10 => Self::RateLimited,
            _ => return None,
        })
    }

    /// Whether this error counts as misbehaviour (every code but `BUSY`, `CHANNEL_CLOSING`
    /// and `RATE_LIMITED`).
    pub const fn counted(self) -> bool {
        !matches!(self, Self::Busy | Self::ChannelClosing | Self::RateLimited)
    }

    /// The protocol version that introduced this code: 1.1 for `RATE_LIMITED`, 1.0 for the
    /// rest. A reply in an older conversation never carries it.
    pub const fn since(self) -> u32 {
        match self {
            Self::RateLimited => super::limits::PROTOCOL_VERSION_1_1,
            _ => super::limits::PROTOCOL_VERSION_1_0,
        }
    }

    /// The name the document uses.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Malformed => "MALFORMED",
            Self::UnknownKind => "UNKNOWN_KIND",
            Self::UnsupportedVersion => "UNSUPPORTED_VERSION",
            Self::OutOfOrder => "OUT_OF_ORDER",
            Self::Replayed => "REPLAYED",
            Self::NotPaired => "NOT_PAIRED",
            Self::BadPlacement => "BAD_PLACEMENT",
            Self::Busy => "BUSY",
            Self::ChannelClosing => "CHANNEL_CLOSING",
            Self::RateLimited => "RATE_LIMITED",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `ERROR`, 32 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct ErrorReply {
    /// Kind [`Kind::Error`]; echoes the request's id.
    pub header: Header,
    /// An [`ErrorCode`].
    pub code: U32,
    /// The kind the guest sent, as received.
    pub request_kind: U16,
    /// Must be 0.
    pub reserved0: U16,
    /// How many more counted errors before the host stops answering; 0 once closed.
    pub errors_left: U32,
    /// Must be 0.
    pub reserved1: U32,
}

impl GuestMessage for ErrorReply {
    const KIND: Kind = Kind::Error;
}
kind_size!(ErrorReply);
const _: () = assert!(offset_of!(ErrorReply, code) == 16);
const _: () = assert!(offset_of!(ErrorReply, request_kind) == 20);
const _: () = assert!(offset_of!(ErrorReply, reserved0) == 22);
const _: () = assert!(offset_of!(ErrorReply, errors_left) == 24);
const _: () = assert!(offset_of!(ErrorReply, reserved1) == 28);

/// The content of an `ERROR` reply, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ErrorInfo {
    /// What went wrong.
    pub code: ErrorCode,
    /// The kind the guest sent, as the host received it (possibly not a known kind).
    pub request_kind: u16,
    /// Counted errors left before the host stops answering.
    pub errors_left: u32,
}

impl ErrorInfo {
    /// The wire message answering `request_id`.
    pub const fn to_wire(&self, request_id: u64) -> ErrorReply {
        ErrorReply {
            header: Header::new(Kind::Error, request_id),
            code: U32::new(self.code.to_u32()),
            request_kind: U16::new(self.request_kind),
            reserved0: U16::new(0),
            errors_left: U32::new(self.errors_left),
            reserved1: U32::new(0),
        }
    }
}
