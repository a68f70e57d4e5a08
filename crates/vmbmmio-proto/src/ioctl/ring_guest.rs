//! RING_GUEST: a host consumer rings the guest's doorbell for its attached region.
//!
//! The guest hears it as an `EVENT` of kind `DOORBELL` (guest protocol 1.1, docs/protocol.md)
//! carrying the region and `value`; rings the guest has not fetched yet coalesce (the latest
//! value wins). Whether the guest speaks 1.1 and the rate limit are the driver's to check.

use zerocopy::byteorder::little_endian::U64;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::attachment::{AttachmentId, attachment_reply};
use super::error::ProtoResult;
use super::header::{MessageHeader, MessageKind, WireMessage, unframe};

/// RING_GUEST request, 32 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct RingGuestRequest {
    /// Kind [`MessageKind::RingGuestRequest`].
    pub header: MessageHeader,
    /// The attachment; non-zero.
    pub attachment: U64,
    /// The value the guest's doorbell event carries (any).
    pub value: U64,
}

const _: () = assert!(size_of::<RingGuestRequest>() == 32);

impl WireMessage for RingGuestRequest {
    const KIND: MessageKind = MessageKind::RingGuestRequest;
}

/// A validated RING_GUEST request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingGuestParams {
    /// The attachment.
    pub attachment: AttachmentId,
    /// The value to deliver.
    pub value: u64,
}

impl RingGuestRequest {
    /// The request ringing the guest with `value` for `attachment`.
    pub fn build(attachment: AttachmentId, value: u64) -> Self {
        Self {
            header: Self::header_for_kind(),
            attachment: U64::new(attachment.get()),
            value: U64::new(value),
        }
    }
}

/// Validates a RING_GUEST input buffer: framing, then `attachment` non-zero.
pub fn parse_ring_guest(bytes: &[u8]) -> ProtoResult<RingGuestParams> {
    let request = unframe::<RingGuestRequest>(bytes)?;
    Ok(RingGuestParams {
        attachment: AttachmentId::from_wire(request.attachment.get())?,
        value: request.value.get(),
    })
}

attachment_reply!(
    /// RING_GUEST reply, 24 bytes: the attachment.
    RingGuestReply,
    RingGuestReply,
    parse_ring_guest_reply,
    "RING_GUEST"
);
