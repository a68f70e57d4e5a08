//! QUERY_STATUS: the session's state and counters, for the device host's logs and for tests.
//!
//! The counters let a test (or an operator) compare what happened with what should have: every
//! section created should be handed out and mapped, and protocol errors should stay at zero. The
//! reply keeps eight reserved 64-bit words so later counters can be added without a new version
//! (a version-1 reader requires them to be zero; a writer of a later version may fill them only
//! after a version bump, see `docs/ioctl.md`).

use zerocopy::byteorder::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::error::{ProtoError, ProtoResult, ReservedField};
use super::header::{MessageHeader, MessageKind, WireMessage, check_zero, unframe};

/// Number of reserved 64-bit words at the end of the reply.
pub const STATUS_RESERVED_WORDS: usize = 8;

/// QUERY_STATUS request: the header alone, 16 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct QueryStatusRequest {
    /// Kind [`MessageKind::QueryStatusRequest`].
    pub header: MessageHeader,
}

/// QUERY_STATUS reply, 128 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct QueryStatusReply {
    /// Kind [`MessageKind::QueryStatusReply`].
    pub header: MessageHeader,
    /// A [`SessionState`] value.
    pub state: U32,
    /// Must be zero.
    pub reserved0: U32,
    /// Sections the driver created for this session.
    pub sections_created: U64,
    /// Section handles the driver opened in the device host's process (GET_REGION_SECTION).
    pub section_handles_issued: U64,
    /// Regions the device host reported as mapped section-backed (REPORT_MAPPING).
    pub regions_mapped: U64,
    /// Packets received from the guest on the session's channel.
    pub guest_packets: U64,
    /// Malformed guest packets and rejected requests of this session.
    pub protocol_errors: U64,
    /// Must be zero: room for later counters.
    pub reserved: [U64; STATUS_RESERVED_WORDS],
}

const _: () = assert!(size_of::<QueryStatusRequest>() == 16);
const _: () = assert!(size_of::<QueryStatusReply>() == 128);

impl WireMessage for QueryStatusRequest {
    const KIND: MessageKind = MessageKind::QueryStatusRequest;
}

impl WireMessage for QueryStatusReply {
    const KIND: MessageKind = MessageKind::QueryStatusReply;
}

/// The session's state as the driver reports it.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SessionState {
    /// The file handle has no session (before OPEN_SESSION or after CLOSE_SESSION).
    NoSession = 0,
    /// The channel is offered; the guest has not opened it yet.
    Offered = 1,
    /// The guest opened the channel.
    Open = 2,
    /// The session is being torn down.
    Closing = 3,
    /// The session failed; only CLOSE_SESSION is useful now.
    Failed = 4,
}

impl SessionState {
    /// The state with this wire value, if any.
    pub const fn from_u32(value: u32) -> Option<Self> {
        Some(match value {
            0 => Self::NoSession,
            1 => Self::Offered,
            2 => Self::Open,
            3 => Self::Closing,
            4 => Self::Failed,
            _ => return None,
        })
    }

    /// The wire value.
    pub const fn to_u32(self) -> u32 {
        self as u32
    }
}

/// The counters of a QUERY_STATUS reply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatusCounters {
    /// Sections the driver created for this session.
    pub sections_created: u64,
    /// Section handles opened in the device host's process.
    pub section_handles_issued: u64,
    /// Regions reported as mapped section-backed.
    pub regions_mapped: u64,
    /// Packets received from the guest.
    pub guest_packets: u64,
    /// Malformed guest packets and rejected requests.
    pub protocol_errors: u64,
}

/// The content of a QUERY_STATUS reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionStatus {
    /// State of the session.
    pub state: SessionState,
    /// Its counters.
    pub counters: StatusCounters,
}

impl SessionStatus {
    /// The wire reply.
    pub fn to_reply(&self) -> QueryStatusReply {
        let c = &self.counters;
        QueryStatusReply {
            header: QueryStatusReply::header_for_kind(),
            state: U32::new(self.state.to_u32()),
            reserved0: U32::new(0),
            sections_created: U64::new(c.sections_created),
            section_handles_issued: U64::new(c.section_handles_issued),
            regions_mapped: U64::new(c.regions_mapped),
            guest_packets: U64::new(c.guest_packets),
            protocol_errors: U64::new(c.protocol_errors),
            reserved: [U64::new(0); STATUS_RESERVED_WORDS],
        }
    }

    /// Writes the reply to the start of `out`; returns its length or
    /// [`ProtoError::OutputTooSmall`].
    pub fn encode(&self, out: &mut [u8]) -> ProtoResult<usize> {
        self.to_reply().encode(out)
    }
}

impl QueryStatusRequest {
    /// The request.
    pub fn new() -> Self {
        Self {
            header: Self::header_for_kind(),
        }
    }
}

impl Default for QueryStatusRequest {
    fn default() -> Self {
        Self::new()
    }
}

/// Validates a QUERY_STATUS input buffer: framing only.
pub fn parse_query_status(bytes: &[u8]) -> ProtoResult<()> {
    unframe::<QueryStatusRequest>(bytes).map(|_| ())
}

/// Validates a QUERY_STATUS output buffer (device-host side): framing, then `state`,
/// `reserved0`, and the reserved tail.
pub fn parse_query_status_reply(bytes: &[u8]) -> ProtoResult<SessionStatus> {
    let reply = unframe::<QueryStatusReply>(bytes)?;
    let raw_state = reply.state.get();
    let state =
        SessionState::from_u32(raw_state).ok_or(ProtoError::BadSessionState { got: raw_state })?;
    check_zero(ReservedField::QueryStatusPad, reply.reserved0.get().into())?;
    for (index, word) in (0u32..).zip(reply.reserved.iter()) {
        check_zero(ReservedField::QueryStatusTail { index }, word.get())?;
    }
    Ok(SessionStatus {
        state,
        counters: StatusCounters {
            sections_created: reply.sections_created.get(),
            section_handles_issued: reply.section_handles_issued.get(),
            regions_mapped: reply.regions_mapped.get(),
            guest_packets: reply.guest_packets.get(),
            protocol_errors: reply.protocol_errors.get(),
        },
    })
}
