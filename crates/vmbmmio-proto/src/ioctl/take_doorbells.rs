//! TAKE_DOORBELLS: what the guest rang for an attached region since the last take.
//!
//! Doorbells are interrupts, not a queue: the driver keeps a saturating count and the latest
//! value per attachment and resets the count when it is taken; data goes through the shared
//! memory. The refused counters say how many rings the rate limits dropped (docs/ioctl.md).

use zerocopy::byteorder::little_endian::U64;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::attachment::{AttachmentId, attachment_request};
use super::error::ProtoResult;
use super::header::{MessageHeader, MessageKind, WireMessage, unframe};

attachment_request!(
    /// TAKE_DOORBELLS request, 32 bytes: `attachment`, reserved `u64`.
    TakeDoorbellsRequest,
    TakeDoorbellsRequest,
    parse_take_doorbells,
    TakeDoorbells,
    "TAKE_DOORBELLS"
);

/// TAKE_DOORBELLS reply, 56 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct TakeDoorbellsReply {
    /// Kind [`MessageKind::TakeDoorbellsReply`].
    pub header: MessageHeader,
    /// The attachment; non-zero.
    pub attachment: U64,
    /// Guest doorbells for this region since the last take (saturating; reset by the take).
    pub count: U64,
    /// Value of the latest guest doorbell for this region; 0 if there was none ever.
    pub last_value: U64,
    /// Guest doorbells the rate limit refused, whole session.
    pub refused_from_guest: U64,
    /// This attachment's RING_GUEST requests the rate limit refused.
    pub refused_to_guest: U64,
}

const _: () = assert!(size_of::<TakeDoorbellsReply>() == 56);

impl WireMessage for TakeDoorbellsReply {
    const KIND: MessageKind = MessageKind::TakeDoorbellsReply;
}

/// The content of a TAKE_DOORBELLS reply. Every counter value is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DoorbellTally {
    /// The attachment.
    pub attachment: AttachmentId,
    /// Guest doorbells for this region since the last take.
    pub count: u64,
    /// Value of the latest guest doorbell; 0 if there was none ever.
    pub last_value: u64,
    /// Guest doorbells refused by the rate limit, whole session.
    pub refused_from_guest: u64,
    /// This attachment's RING_GUEST requests refused by the rate limit.
    pub refused_to_guest: u64,
}

impl DoorbellTally {
    /// The wire reply.
    pub fn to_reply(&self) -> TakeDoorbellsReply {
        TakeDoorbellsReply {
            header: TakeDoorbellsReply::header_for_kind(),
            attachment: U64::new(self.attachment.get()),
            count: U64::new(self.count),
            last_value: U64::new(self.last_value),
            refused_from_guest: U64::new(self.refused_from_guest),
            refused_to_guest: U64::new(self.refused_to_guest),
        }
    }

    /// Writes the reply to the start of `out`; returns its length or
    /// [`ProtoError::OutputTooSmall`](super::ProtoError::OutputTooSmall).
    pub fn encode(&self, out: &mut [u8]) -> ProtoResult<usize> {
        self.to_reply().encode(out)
    }
}

/// Validates a TAKE_DOORBELLS output buffer (consumer side): framing, then `attachment`
/// non-zero.
pub fn parse_take_doorbells_reply(bytes: &[u8]) -> ProtoResult<DoorbellTally> {
    let reply = unframe::<TakeDoorbellsReply>(bytes)?;
    Ok(DoorbellTally {
        attachment: AttachmentId::from_wire(reply.attachment.get())?,
        count: reply.count.get(),
        last_value: reply.last_value.get(),
        refused_from_guest: reply.refused_from_guest.get(),
        refused_to_guest: reply.refused_to_guest.get(),
    })
}
