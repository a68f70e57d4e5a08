//! The 16-byte header every message starts with, the message kinds, and the trait every wire
//! struct implements.
//!
//! The header is the same in both directions: `kind` (a reply sets bit 15), `flags` (0),
//! `size` (the whole message, equal to the packet length) and the guest's `request_id`, which
//! the reply echoes. Every kind has exactly one size ([`Kind::size`]), so a packet whose length,
//! `size` field and kind disagree is refused before its body is looked at.

use zerocopy::byteorder::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::error::EncodeError;

/// Size of [`Header`] in bytes.
pub const HEADER_SIZE: usize = 16;

/// Bit set in the kind of every reply.
pub const REPLY_BIT: u16 = 0x8000;

/// The header that starts every message.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct Header {
    /// A [`Kind`].
    pub kind: U16,
    /// Must be 0.
    pub flags: U16,
    /// The whole message in bytes, header included; equals the packet length.
    pub size: U32,
    /// Chosen by the guest, strictly increasing on a channel; the reply echoes it.
    pub request_id: U64,
}

const _: () = assert!(size_of::<Header>() == HEADER_SIZE);
const _: () = assert!(core::mem::offset_of!(Header, kind) == 0);
const _: () = assert!(core::mem::offset_of!(Header, flags) == 2);
const _: () = assert!(core::mem::offset_of!(Header, size) == 4);
const _: () = assert!(core::mem::offset_of!(Header, request_id) == 8);

impl Header {
    /// The header of a message of `kind` answering (or carrying) `request_id`.
    pub const fn new(kind: Kind, request_id: u64) -> Self {
        Self {
            kind: U16::new(kind.to_u16()),
            flags: U16::new(0),
            size: U32::new(kind.size_u32()),
            request_id: U64::new(request_id),
        }
    }
}

/// What a message is; carried in the header's `kind`.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `HELLO` request.
    Hello = 0x0001,
    /// `SELECT_VERSION` request.
    SelectVersion = 0x0002,
    /// `REPORT_RESERVATION` request.
    ReportReservation = 0x0003,
    /// `REPORT_DEVICE` request.
    ReportDevice = 0x0004,
    /// `READY` request.
    Ready = 0x0005,
    /// `RELEASING` request.
    Releasing = 0x0006,
    /// `GET_LAYOUT` request.
    GetLayout = 0x0007,
    /// `WAIT_EVENT` request.
    WaitEvent = 0x0008,
    /// `DOORBELL` request (version 1.1).
    Doorbell = 0x0009,
    /// `HELLO_REPLY`.
    HelloReply = 0x8001,
    /// `ACK`.
    Ack = 0x8000,
    /// `LAYOUT`.
    Layout = 0x8007,
    /// `EVENT`.
    Event = 0x8008,
    /// `ERROR`.
    Error = 0x80FF,
}

impl Kind {
    /// Every kind, in the order of the document's table.
    pub const ALL: [Self; 14] = [
        Self::Hello,
        Self::SelectVersion,
        Self::ReportReservation,
        Self::ReportDevice,
        Self::Ready,
        Self::Releasing,
        Self::GetLayout,
        Self::WaitEvent,
        Self::Doorbell,
        Self::HelloReply,
        Self::Ack,
        Self::Layout,
        Self::Event,
        Self::Error,
    ];

    /// The value of the header's `kind`.
    pub const fn to_u16(self) -> u16 {
        self as u16
    }

    /// The kind with this value, if any.
    pub const fn from_u16(value: u16) -> Option<Self> {
        Some(match value {
            0x0001 => Self::Hello,
            0x0002 => Self::SelectVersion,
            0x0003 => Self::ReportReservation,
            0x0004 => Self::ReportDevice,
            0x0005 => Self::Ready,
            0x0006 => Self::Releasing,
            0x0007 => Self::GetLayout,
            0x0008 => Self::WaitEvent,
            0x0009 => Self::Doorbell,
            0x8001 => Self::HelloReply,
            0x8000 => Self::Ack,
            0x8007 => Self::Layout,
            0x8008 => Self::Event,
            0x80FF => Self::Error,
            _ => return None,
        })
    }

    /// The protocol version that introduced this kind: 1.1 for `DOORBELL`, 1.0 for the rest.
    /// In an older conversation the kind does not exist (`UNKNOWN_KIND`).
    pub const fn since(self) -> u32 {
        match self {
            Self::Doorbell => super::limits::PROTOCOL_VERSION_1_1,
            _ => super::limits::PROTOCOL_VERSION_1_0,
        }
    }

    /// Whether this kind exists in a conversation of `version`.
    pub const fn exists_in(self, version: u32) -> bool {
        self.since() <= version
    }

    /// Whether this kind goes host → guest.
    pub const fn is_reply(self) -> bool {
        self.to_u16() & REPLY_BIT != 0
    }

    /// Whether this kind goes guest → host.
    pub const fn is_request(self) -> bool {
        !self.is_reply()
    }

    /// The name the document uses.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Hello => "HELLO",
            Self::SelectVersion => "SELECT_VERSION",
            Self::ReportReservation => "REPORT_RESERVATION",
            Self::ReportDevice => "REPORT_DEVICE",
            Self::Ready => "READY",
            Self::Releasing => "RELEASING",
            Self::GetLayout => "GET_LAYOUT",
            Self::WaitEvent => "WAIT_EVENT",
            Self::Doorbell => "DOORBELL",
            Self::HelloReply => "HELLO_REPLY",
            Self::Ack => "ACK",
            Self::Layout => "LAYOUT",
            Self::Event => "EVENT",
            Self::Error => "ERROR",
        }
    }

    /// The exact size of a message of this kind, header included.
    pub const fn size(self) -> usize {
        match self {
            Self::Hello | Self::Ready | Self::Releasing | Self::GetLayout => 16,
            Self::SelectVersion | Self::WaitEvent => 24,
            Self::ReportReservation => 40,
            Self::ReportDevice => 56,
            Self::HelloReply | Self::Event => 48,
            Self::Ack | Self::Error | Self::Doorbell => 32,
            Self::Layout => 1064,
        }
    }

    /// [`Self::size`] as the header's `u32`.
    pub const fn size_u32(self) -> u32 {
        // Every size is at most 1064 bytes (the largest message, `LAYOUT`), so the conversion is
        // exact; one table (`size`) keeps the two from drifting.
        #[allow(clippy::cast_possible_truncation)]
        let size = self.size() as u32;
        size
    }

    /// The reply a request of this kind normally gets (any request may get `ERROR` instead);
    /// `None` for a reply kind.
    pub const fn reply_kind(self) -> Option<Self> {
        match self {
            Self::Hello => Some(Self::HelloReply),
            Self::SelectVersion
            | Self::ReportReservation
            | Self::ReportDevice
            | Self::Ready
            | Self::Releasing
            | Self::Doorbell => Some(Self::Ack),
            Self::GetLayout => Some(Self::Layout),
            Self::WaitEvent => Some(Self::Event),
            Self::HelloReply | Self::Ack | Self::Layout | Self::Event | Self::Error => None,
        }
    }
}

/// A complete message: a fixed-layout struct that starts with a [`Header`].
///
/// Received bytes go through [`parse_request`](super::parse_request) or
/// [`parse_reply`](super::parse_reply), which return checked values; reading the raw struct
/// with zerocopy would skip every check.
pub trait GuestMessage:
    FromBytes + IntoBytes + KnownLayout + Immutable + Unaligned + Sized
{
    /// The kind this message carries in its header.
    const KIND: Kind;

    /// Writes the message to the start of `out` and returns the number of bytes written, or
    /// [`EncodeError::OutputTooSmall`] (writing nothing).
    fn encode(&self, out: &mut [u8]) -> Result<usize, EncodeError> {
        let got = out.len();
        match self.write_to_prefix(out) {
            Ok(()) => Ok(size_of::<Self>()),
            Err(_) => Err(EncodeError::OutputTooSmall {
                needed: size_of::<Self>(),
                got,
            }),
        }
    }
}

/// Asserts at compile time that `T`'s size is its kind's size.
macro_rules! kind_size {
    ($t:ty) => {
        const _: () = assert!(size_of::<$t>() == <$t as $crate::guest::GuestMessage>::KIND.size());
    };
}
pub(crate) use kind_size;

// Compile-time only: a bad index or overflow here fails the build, it cannot panic at run time.
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
const _: () = {
    let mut i = 0;
    while i < Kind::ALL.len() {
        let kind = Kind::ALL[i];
        assert!(kind.size() == kind.size_u32() as usize);
        assert!(kind.size() >= HEADER_SIZE);
        assert!(kind.size() <= super::limits::LARGEST_MESSAGE);
        i += 1;
    }
};
