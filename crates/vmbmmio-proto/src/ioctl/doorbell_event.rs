//! SET_DOORBELL_EVENT: a host consumer registers an event the driver signals on guest doorbells.
//!
//! The handle is one in the consumer's process to an event object it may modify; the driver
//! references the object (so the consumer may close its handle) and releases it at detach,
//! re-registration, session close (after a final signal) or file cleanup. Handle 0 unregisters.
//! Whether the handle names such an event is the driver's to check; the bytes decide nothing
//! about it.

use core::num::NonZeroU64;

use zerocopy::byteorder::little_endian::U64;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::attachment::{AttachmentId, attachment_reply};
use super::error::ProtoResult;
use super::header::{MessageHeader, MessageKind, WireMessage, unframe};

/// SET_DOORBELL_EVENT request, 32 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct SetDoorbellEventRequest {
    /// Kind [`MessageKind::SetDoorbellEventRequest`].
    pub header: MessageHeader,
    /// The attachment; non-zero.
    pub attachment: U64,
    /// Event handle in the caller's process (`EVENT_MODIFY_STATE`); 0 unregisters.
    pub event_handle: U64,
}

const _: () = assert!(size_of::<SetDoorbellEventRequest>() == 32);

impl WireMessage for SetDoorbellEventRequest {
    const KIND: MessageKind = MessageKind::SetDoorbellEventRequest;
}

/// A validated SET_DOORBELL_EVENT request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DoorbellEventParams {
    /// The attachment.
    pub attachment: AttachmentId,
    /// The event handle to register, or `None` to unregister.
    pub event_handle: Option<NonZeroU64>,
}

impl SetDoorbellEventRequest {
    /// The request registering `event_handle` (`None`: unregister) for `attachment`.
    pub fn build(attachment: AttachmentId, event_handle: Option<NonZeroU64>) -> Self {
        Self {
            header: Self::header_for_kind(),
            attachment: U64::new(attachment.get()),
            event_handle: U64::new(event_handle.map_or(0, NonZeroU64::get)),
        }
    }
}

/// Validates a SET_DOORBELL_EVENT input buffer: framing, then `attachment` non-zero (any
/// `event_handle` value is well-formed).
pub fn parse_set_doorbell_event(bytes: &[u8]) -> ProtoResult<DoorbellEventParams> {
    let request = unframe::<SetDoorbellEventRequest>(bytes)?;
    Ok(DoorbellEventParams {
        attachment: AttachmentId::from_wire(request.attachment.get())?,
        event_handle: NonZeroU64::new(request.event_handle.get()),
    })
}

attachment_reply!(
    /// SET_DOORBELL_EVENT reply, 24 bytes: the attachment.
    SetDoorbellEventReply,
    SetDoorbellEventReply,
    parse_set_doorbell_event_reply,
    "SET_DOORBELL_EVENT"
);
