//! The consumer requests of docs/ioctl.md, built and parsed with `vmbmmio-proto`: the one place
//! that knows their byte layouts. Every reply is parsed strictly (exact size, header, reserved
//! fields zero, the attachment id echoed), and a broken rule is a message naming it.

use core::num::NonZeroU64;

use vmbmmio_proto::guest::{RegionName, RegionState as WireState};
use vmbmmio_proto::ioctl::{
    self as proto, AttachRegionRequest, AttachmentId, DetachRegionRequest, IoctlCode,
    ListSessionsRequest, ProtoResult, RingGuestRequest, SectionAccess, SetDoorbellEventRequest,
    TakeDoorbellsRequest, WireGuid, WireMessage,
};

use crate::attachment::Doorbells;
use crate::error::{Error, Result};
use crate::host::{Access, RegionInfo, RegionState, VmSession};
use crate::vm_id::VmId;

/// One request ready to send.
pub(crate) struct Call {
    /// The IOCTL code.
    pub code: u32,
    /// Its name in docs/ioctl.md, for messages.
    pub request: &'static str,
    /// The encoded request.
    pub input: Vec<u8>,
    /// The reply's exact size (the output buffer's).
    pub reply_size: usize,
}

/// One LIST_SESSIONS reply.
pub(crate) struct ListEntry {
    /// Attachable sessions now.
    pub total: u32,
    /// The cursor it answers.
    pub index: u32,
    /// The session.
    pub session: VmSession,
}

/// An ATTACH_REGION reply.
pub(crate) struct Attached {
    pub attachment: AttachmentId,
    pub section_handle: u64,
    pub size: u64,
    pub write: bool,
    pub region_index: u32,
}

/// The name docs/ioctl.md gives the request of `code`, for messages.
const fn request_name(code: IoctlCode) -> &'static str {
    match code {
        IoctlCode::ListSessions => "LIST_SESSIONS",
        IoctlCode::AttachRegion => "ATTACH_REGION",
        IoctlCode::DetachRegion => "DETACH_REGION",
        IoctlCode::SetDoorbellEvent => "SET_DOORBELL_EVENT",
        IoctlCode::TakeDoorbells => "TAKE_DOORBELLS",
        IoctlCode::RingGuest => "RING_GUEST",
        _ => "IOCTL",
    }
}

/// The call of `code` carrying `message`.
fn call<M: WireMessage>(code: IoctlCode, message: &M) -> Call {
    Call {
        code: code.code(),
        request: request_name(code),
        input: message.as_bytes().to_vec(),
        reply_size: code.reply_size(),
    }
}

/// `result`'s value, or the proto error as a message.
fn checked<T>(result: ProtoResult<T>) -> std::result::Result<T, String> {
    result.map_err(|error| format!("{error:?}"))
}

/// The reply's attachment must be the one asked about.
fn echo(got: AttachmentId, asked: AttachmentId) -> std::result::Result<(), String> {
    if got == asked {
        Ok(())
    } else {
        Err(format!(
            "answers attachment {} instead of {}",
            got.get(),
            asked.get()
        ))
    }
}

/// LIST_SESSIONS for position `cursor`.
pub(crate) fn list_sessions(cursor: u32) -> Call {
    call(IoctlCode::ListSessions, &ListSessionsRequest::build(cursor))
}

/// Parses a LIST_SESSIONS reply.
pub(crate) fn parse_list_sessions_reply(bytes: &[u8]) -> std::result::Result<ListEntry, String> {
    let listing = checked(proto::parse_list_sessions_reply(bytes))?;
    let regions = (0u32..)
        .zip(listing.regions())
        .map(|(index, region)| RegionInfo {
            index,
            name: region.name.as_str().to_owned(),
            size: region.size,
            guest_writable: region.guest_writable,
            consumer_writable: region.consumer_writable,
            state: match region.state {
                WireState::Unmapped => RegionState::Unmapped,
                WireState::Mapped => RegionState::Mapped,
                WireState::Intercepted => RegionState::Intercepted,
            },
        })
        .collect();
    Ok(ListEntry {
        total: listing.total(),
        index: listing.index(),
        session: VmSession {
            vm_id: VmId::from_u128(listing.vm_id().to_u128()),
            session_id: listing.session_id(),
            regions,
        },
    })
}

/// ATTACH_REGION for `name` of `vm_id`; the name and the id are checked here first.
pub(crate) fn attach_region(vm_id: VmId, name: &str, access: Access) -> Result<Call> {
    if vm_id.is_nil() {
        return Err(Error::InvalidArgument {
            what: "the nil GUID is not a VM id".into(),
        });
    }
    let wire_name = RegionName::required(name).map_err(|fault| Error::InvalidArgument {
        what: format!(
            "`{name}` is not a region name (1 to 32 bytes of UTF-8, no NUL or control \
             characters): {fault:?}"
        ),
    })?;
    let access = match access {
        Access::Read => SectionAccess::Read,
        Access::ReadWrite => SectionAccess::ReadWrite,
    };
    let request =
        AttachRegionRequest::build(WireGuid::from_u128(vm_id.to_u128()), &wire_name, access)
            .map_err(|error| Error::InvalidArgument {
                what: format!("ATTACH_REGION cannot carry this request: {error:?}"),
            })?;
    Ok(call(IoctlCode::AttachRegion, &request))
}

/// Parses an ATTACH_REGION reply.
pub(crate) fn parse_attach_region_reply(bytes: &[u8]) -> std::result::Result<Attached, String> {
    let attached = checked(proto::parse_attach_region_reply(bytes))?;
    Ok(Attached {
        attachment: attached.attachment(),
        section_handle: attached.section_handle(),
        size: attached.size(),
        write: attached.access().writes(),
        region_index: attached.region_index(),
    })
}

/// DETACH_REGION of `attachment`.
pub(crate) fn detach_region(attachment: AttachmentId) -> Call {
    call(
        IoctlCode::DetachRegion,
        &DetachRegionRequest::build(attachment),
    )
}

/// Parses a DETACH_REGION reply for `attachment`.
pub(crate) fn parse_detach_region_reply(
    bytes: &[u8],
    attachment: AttachmentId,
) -> std::result::Result<(), String> {
    echo(
        checked(proto::parse_detach_region_reply(bytes))?,
        attachment,
    )
}

/// SET_DOORBELL_EVENT registering `event` (0: unregister) for `attachment`.
pub(crate) fn set_doorbell_event(attachment: AttachmentId, event: u64) -> Call {
    call(
        IoctlCode::SetDoorbellEvent,
        &SetDoorbellEventRequest::build(attachment, NonZeroU64::new(event)),
    )
}

/// Parses a SET_DOORBELL_EVENT reply for `attachment`.
pub(crate) fn parse_set_doorbell_event_reply(
    bytes: &[u8],
    attachment: AttachmentId,
) -> std::result::Result<(), String> {
    echo(
        checked(proto::parse_set_doorbell_event_reply(bytes))?,
        attachment,
    )
}

/// TAKE_DOORBELLS of `attachment`.
pub(crate) fn take_doorbells(attachment: AttachmentId) -> Call {
    call(
        IoctlCode::TakeDoorbells,
        &TakeDoorbellsRequest::build(attachment),
    )
}

/// Parses a TAKE_DOORBELLS reply for `attachment`.
pub(crate) fn parse_take_doorbells_reply(
    bytes: &[u8],
    attachment: AttachmentId,
) -> std::result::Result<Doorbells, String> {
    let tally = checked(proto::parse_take_doorbells_reply(bytes))?;
    echo(tally.attachment, attachment)?;
    Ok(Doorbells {
        count: tally.count,
        last_value: tally.last_value,
        refused_from_guest: tally.refused_from_guest,
        refused_to_guest: tally.refused_to_guest,
    })
}

/// RING_GUEST with `value` for `attachment`.
pub(crate) fn ring_guest(attachment: AttachmentId, value: u64) -> Call {
    call(
        IoctlCode::RingGuest,
        &RingGuestRequest::build(attachment, value),
    )
}

/// Parses a RING_GUEST reply for `attachment`.
pub(crate) fn parse_ring_guest_reply(
    bytes: &[u8],
    attachment: AttachmentId,
) -> std::result::Result<(), String> {
    echo(checked(proto::parse_ring_guest_reply(bytes))?, attachment)
}
