//! CLOSE_SESSION: the device host ends the session of its file handle.
//!
//! Both messages are the header alone. Closing the file handle ends the session too (the driver's
//! cleanup path); this request exists so the device host can tear down in a known order, after it
//! removed its BAR mappings, and see the result.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::error::ProtoResult;
use super::header::{MessageHeader, MessageKind, WireMessage, unframe};

/// CLOSE_SESSION request: the header alone, 16 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct CloseSessionRequest {
    /// Kind [`MessageKind::CloseSessionRequest`].
    pub header: MessageHeader,
}

/// CLOSE_SESSION reply: the header alone, 16 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct CloseSessionReply {
    /// Kind [`MessageKind::CloseSessionReply`].
    pub header: MessageHeader,
}

const _: () = assert!(size_of::<CloseSessionRequest>() == 16);
const _: () = assert!(size_of::<CloseSessionReply>() == 16);

impl WireMessage for CloseSessionRequest {
    const KIND: MessageKind = MessageKind::CloseSessionRequest;
}

impl WireMessage for CloseSessionReply {
    const KIND: MessageKind = MessageKind::CloseSessionReply;
}

impl CloseSessionRequest {
    /// The request.
    pub fn new() -> Self {
        Self {
            header: Self::header_for_kind(),
        }
    }
}

impl Default for CloseSessionRequest {
    fn default() -> Self {
        Self::new()
    }
}

impl CloseSessionReply {
    /// The reply.
    pub fn new() -> Self {
        Self {
            header: Self::header_for_kind(),
        }
    }
}

impl Default for CloseSessionReply {
    fn default() -> Self {
        Self::new()
    }
}

/// Validates a CLOSE_SESSION input buffer: framing only.
pub fn parse_close_session(bytes: &[u8]) -> ProtoResult<()> {
    unframe::<CloseSessionRequest>(bytes).map(|_| ())
}

/// Validates a CLOSE_SESSION output buffer (device-host side): framing only.
pub fn parse_close_session_reply(bytes: &[u8]) -> ProtoResult<()> {
    unframe::<CloseSessionReply>(bytes).map(|_| ())
}
