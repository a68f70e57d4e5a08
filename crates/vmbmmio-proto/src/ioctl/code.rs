//! The IOCTL codes of the driver's control device.
//!
//! Codes are built like the Windows `CTL_CODE` macro:
//! `(device_type << 16) | (access << 14) | (function << 2) | method`. All of them use
//! `FILE_DEVICE_UNKNOWN`, `METHOD_BUFFERED` (the I/O manager copies both buffers, so the driver
//! never touches user memory directly) and `FILE_READ_DATA | FILE_WRITE_DATA` access (the I/O
//! manager refuses the request unless the caller opened the device for reading and writing).
//! Functions start at 0x900: values below 0x800 are reserved for Microsoft.

use super::attach_region::{AttachRegionReply, AttachRegionRequest};
use super::close_session::{CloseSessionReply, CloseSessionRequest};
use super::detach_region::{DetachRegionReply, DetachRegionRequest};
use super::doorbell_event::{SetDoorbellEventReply, SetDoorbellEventRequest};
use super::error::{ProtoError, ProtoResult};
use super::header::{MessageKind, WireMessage};
use super::list_sessions::{ListSessionsReply, ListSessionsRequest};
use super::open_session::OpenSessionRequest;
use super::open_session_reply::OpenSessionReply;
use super::open_session_v2::OpenSessionV2Request;
use super::query_driver::{QueryDriverReply, QueryDriverRequest};
use super::query_status::{QueryStatusReply, QueryStatusRequest};
use super::region_section::{GetRegionSectionReply, GetRegionSectionRequest};
use super::report_mapping::{ReportMappingReply, ReportMappingRequest, ReportMappingV2Request};
use super::ring_guest::{RingGuestReply, RingGuestRequest};
use super::take_doorbells::{TakeDoorbellsReply, TakeDoorbellsRequest};
use super::wait_guest_event::{WaitGuestEventReply, WaitGuestEventRequest};

/// `FILE_DEVICE_UNKNOWN`.
pub const FILE_DEVICE_UNKNOWN: u32 = 0x22;
/// `METHOD_BUFFERED`.
pub const METHOD_BUFFERED: u32 = 0;
/// `FILE_READ_DATA`, as an IOCTL access bit.
pub const FILE_READ_DATA: u32 = 1;
/// `FILE_WRITE_DATA`, as an IOCTL access bit.
pub const FILE_WRITE_DATA: u32 = 2;
/// First function number of this interface.
pub const FIRST_FUNCTION: u32 = 0x900;

/// The Windows `CTL_CODE` macro.
pub const fn ctl_code(device_type: u32, function: u32, method: u32, access: u32) -> u32 {
    (device_type << 16) | (access << 14) | (function << 2) | method
}

/// This interface's code for `function`.
const fn vmbmmio_code(function: u32) -> u32 {
    ctl_code(
        FILE_DEVICE_UNKNOWN,
        function,
        METHOD_BUFFERED,
        FILE_READ_DATA | FILE_WRITE_DATA,
    )
}

/// IOCTL code of OPEN_SESSION (function 0x900).
pub const IOCTL_VMBMMIO_OPEN_SESSION: u32 = vmbmmio_code(FIRST_FUNCTION);
/// IOCTL code of GET_REGION_SECTION (function 0x901).
pub const IOCTL_VMBMMIO_GET_REGION_SECTION: u32 = vmbmmio_code(FIRST_FUNCTION + 1);
/// IOCTL code of REPORT_MAPPING (function 0x902).
pub const IOCTL_VMBMMIO_REPORT_MAPPING: u32 = vmbmmio_code(FIRST_FUNCTION + 2);
/// IOCTL code of QUERY_STATUS (function 0x903).
pub const IOCTL_VMBMMIO_QUERY_STATUS: u32 = vmbmmio_code(FIRST_FUNCTION + 3);
/// IOCTL code of CLOSE_SESSION (function 0x904).
pub const IOCTL_VMBMMIO_CLOSE_SESSION: u32 = vmbmmio_code(FIRST_FUNCTION + 4);
/// IOCTL code of QUERY_DRIVER (function 0x905).
pub const IOCTL_VMBMMIO_QUERY_DRIVER: u32 = vmbmmio_code(FIRST_FUNCTION + 5);

/// IOCTL code of WAIT_GUEST_EVENT (function 0x906).
pub const IOCTL_VMBMMIO_WAIT_GUEST_EVENT: u32 = vmbmmio_code(FIRST_FUNCTION + 6);
/// IOCTL code of LIST_SESSIONS (function 0x907).
pub const IOCTL_VMBMMIO_LIST_SESSIONS: u32 = vmbmmio_code(FIRST_FUNCTION + 7);
/// IOCTL code of ATTACH_REGION (function 0x908).
pub const IOCTL_VMBMMIO_ATTACH_REGION: u32 = vmbmmio_code(FIRST_FUNCTION + 8);
/// IOCTL code of DETACH_REGION (function 0x909).
pub const IOCTL_VMBMMIO_DETACH_REGION: u32 = vmbmmio_code(FIRST_FUNCTION + 9);
/// IOCTL code of SET_DOORBELL_EVENT (function 0x90A).
pub const IOCTL_VMBMMIO_SET_DOORBELL_EVENT: u32 = vmbmmio_code(FIRST_FUNCTION + 10);
/// IOCTL code of TAKE_DOORBELLS (function 0x90B).
pub const IOCTL_VMBMMIO_TAKE_DOORBELLS: u32 = vmbmmio_code(FIRST_FUNCTION + 11);
/// IOCTL code of RING_GUEST (function 0x90C).
pub const IOCTL_VMBMMIO_RING_GUEST: u32 = vmbmmio_code(FIRST_FUNCTION + 12);

/// The requests of the control device, one per IOCTL code.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IoctlCode {
    /// Create the session of this file handle: a channel offer and its regions' sections.
    OpenSession = IOCTL_VMBMMIO_OPEN_SESSION,
    /// Get a handle, in the caller's process, to one region's section.
    GetRegionSection = IOCTL_VMBMMIO_GET_REGION_SECTION,
    /// Tell the driver what became of one region's BAR mapping.
    ReportMapping = IOCTL_VMBMMIO_REPORT_MAPPING,
    /// Read the session's state and counters.
    QueryStatus = IOCTL_VMBMMIO_QUERY_STATUS,
    /// Tear the session down.
    CloseSession = IOCTL_VMBMMIO_CLOSE_SESSION,
    /// Read driver-wide facts: the optional KMCL entries the driver runs without, open file
    /// handles and sessions. Needs no session.
    QueryDriver = IOCTL_VMBMMIO_QUERY_DRIVER,
    /// Wait for the next thing the guest reported over the channel; the driver keeps the
    /// request pending until there is one (docs/ioctl.md).
    WaitGuestEvent = IOCTL_VMBMMIO_WAIT_GUEST_EVENT,
    /// List the attachable (version-2) sessions, one per call (consumer side).
    ListSessions = IOCTL_VMBMMIO_LIST_SESSIONS,
    /// Attach one named region of a VM: a section handle in the caller's process (consumer side).
    AttachRegion = IOCTL_VMBMMIO_ATTACH_REGION,
    /// End an attachment (consumer side).
    DetachRegion = IOCTL_VMBMMIO_DETACH_REGION,
    /// Register (or unregister) the event the driver signals on the guest's doorbells for an attachment.
    SetDoorbellEvent = IOCTL_VMBMMIO_SET_DOORBELL_EVENT,
    /// Read and reset an attachment's guest doorbell count.
    TakeDoorbells = IOCTL_VMBMMIO_TAKE_DOORBELLS,
    /// Ring the guest's doorbell for an attachment's region.
    RingGuest = IOCTL_VMBMMIO_RING_GUEST,
}

impl IoctlCode {
    /// Every code, in function order.
    pub const ALL: [Self; 13] = [
        Self::OpenSession,
        Self::GetRegionSection,
        Self::ReportMapping,
        Self::QueryStatus,
        Self::CloseSession,
        Self::QueryDriver,
        Self::WaitGuestEvent,
        Self::ListSessions,
        Self::AttachRegion,
        Self::DetachRegion,
        Self::SetDoorbellEvent,
        Self::TakeDoorbells,
        Self::RingGuest,
    ];

    /// The numeric IOCTL code.
    pub const fn code(self) -> u32 {
        self as u32
    }

    /// The request with this IOCTL code, if any.
    pub const fn from_code(code: u32) -> Option<Self> {
        match code {
            IOCTL_VMBMMIO_OPEN_SESSION => Some(Self::OpenSession),
            IOCTL_VMBMMIO_GET_REGION_SECTION => Some(Self::GetRegionSection),
            IOCTL_VMBMMIO_REPORT_MAPPING => Some(Self::ReportMapping),
            IOCTL_VMBMMIO_QUERY_STATUS => Some(Self::QueryStatus),
            IOCTL_VMBMMIO_CLOSE_SESSION => Some(Self::CloseSession),
            IOCTL_VMBMMIO_QUERY_DRIVER => Some(Self::QueryDriver),
            IOCTL_VMBMMIO_WAIT_GUEST_EVENT => Some(Self::WaitGuestEvent),
            IOCTL_VMBMMIO_LIST_SESSIONS => Some(Self::ListSessions),
            IOCTL_VMBMMIO_ATTACH_REGION => Some(Self::AttachRegion),
            IOCTL_VMBMMIO_DETACH_REGION => Some(Self::DetachRegion),
            IOCTL_VMBMMIO_SET_DOORBELL_EVENT => Some(Self::SetDoorbellEvent),
            IOCTL_VMBMMIO_TAKE_DOORBELLS => Some(Self::TakeDoorbells),
            IOCTL_VMBMMIO_RING_GUEST => Some(Self::RingGuest),
            _ => None,
        }
    }

    /// Like [`Self::from_code`], with [`ProtoError::UnknownIoctl`] for an unknown code.
    pub const fn parse(code: u32) -> ProtoResult<Self> {
        match Self::from_code(code) {
            Some(request) => Ok(request),
            None => Err(ProtoError::UnknownIoctl { code }),
        }
    }

    /// The function number inside the code.
    pub const fn function(self) -> u32 {
        (self.code() >> 2) & 0xFFF
    }

    /// Kind of the request message this code carries in its input buffer.
    pub const fn request_kind(self) -> MessageKind {
        match self {
            Self::OpenSession => MessageKind::OpenSessionRequest,
            Self::GetRegionSection => MessageKind::GetRegionSectionRequest,
            Self::ReportMapping => MessageKind::ReportMappingRequest,
            Self::QueryStatus => MessageKind::QueryStatusRequest,
            Self::CloseSession => MessageKind::CloseSessionRequest,
            Self::QueryDriver => MessageKind::QueryDriverRequest,
            Self::WaitGuestEvent => MessageKind::WaitGuestEventRequest,
            Self::ListSessions => MessageKind::ListSessionsRequest,
            Self::AttachRegion => MessageKind::AttachRegionRequest,
            Self::DetachRegion => MessageKind::DetachRegionRequest,
            Self::SetDoorbellEvent => MessageKind::SetDoorbellEventRequest,
            Self::TakeDoorbells => MessageKind::TakeDoorbellsRequest,
            Self::RingGuest => MessageKind::RingGuestRequest,
        }
    }

    /// Kind of the reply message the driver writes to the output buffer.
    pub const fn reply_kind(self) -> MessageKind {
        match self {
            Self::OpenSession => MessageKind::OpenSessionReply,
            Self::GetRegionSection => MessageKind::GetRegionSectionReply,
            Self::ReportMapping => MessageKind::ReportMappingReply,
            Self::QueryStatus => MessageKind::QueryStatusReply,
            Self::CloseSession => MessageKind::CloseSessionReply,
            Self::QueryDriver => MessageKind::QueryDriverReply,
            Self::WaitGuestEvent => MessageKind::WaitGuestEventReply,
            Self::ListSessions => MessageKind::ListSessionsReply,
            Self::AttachRegion => MessageKind::AttachRegionReply,
            Self::DetachRegion => MessageKind::DetachRegionReply,
            Self::SetDoorbellEvent => MessageKind::SetDoorbellEventReply,
            Self::TakeDoorbells => MessageKind::TakeDoorbellsReply,
            Self::RingGuest => MessageKind::RingGuestReply,
        }
    }

    /// Exact input buffer length of this request in version 1 ([`VERSION`](super::VERSION)).
    /// REPORT_MAPPING and OPEN_SESSION also have a longer version 2
    /// ([`Self::max_request_size`]).
    pub const fn request_size(self) -> usize {
        match self {
            Self::OpenSession => OpenSessionRequest::SIZE,
            Self::GetRegionSection => GetRegionSectionRequest::SIZE,
            Self::ReportMapping => ReportMappingRequest::SIZE,
            Self::QueryStatus => QueryStatusRequest::SIZE,
            Self::CloseSession => CloseSessionRequest::SIZE,
            Self::QueryDriver => QueryDriverRequest::SIZE,
            Self::WaitGuestEvent => WaitGuestEventRequest::SIZE,
            Self::ListSessions => ListSessionsRequest::SIZE,
            Self::AttachRegion => AttachRegionRequest::SIZE,
            Self::DetachRegion => DetachRegionRequest::SIZE,
            Self::SetDoorbellEvent => SetDoorbellEventRequest::SIZE,
            Self::TakeDoorbells => TakeDoorbellsRequest::SIZE,
            Self::RingGuest => RingGuestRequest::SIZE,
        }
    }

    /// The longest input this request has in any version the crate speaks: version 2's 40 bytes
    /// for REPORT_MAPPING and 864 bytes for OPEN_SESSION, [`Self::request_size`] for every other
    /// request.
    pub const fn max_request_size(self) -> usize {
        match self {
            Self::ReportMapping => ReportMappingV2Request::SIZE,
            Self::OpenSession => OpenSessionV2Request::SIZE,
            other => other.request_size(),
        }
    }

    /// Size of the reply; the output buffer must be at least this long.
    pub const fn reply_size(self) -> usize {
        match self {
            Self::OpenSession => OpenSessionReply::SIZE,
            Self::GetRegionSection => GetRegionSectionReply::SIZE,
            Self::ReportMapping => ReportMappingReply::SIZE,
            Self::QueryStatus => QueryStatusReply::SIZE,
            Self::CloseSession => CloseSessionReply::SIZE,
            Self::QueryDriver => QueryDriverReply::SIZE,
            Self::WaitGuestEvent => WaitGuestEventReply::SIZE,
            Self::ListSessions => ListSessionsReply::SIZE,
            Self::AttachRegion => AttachRegionReply::SIZE,
            Self::DetachRegion => DetachRegionReply::SIZE,
            Self::SetDoorbellEvent => SetDoorbellEventReply::SIZE,
            Self::TakeDoorbells => TakeDoorbellsReply::SIZE,
            Self::RingGuest => RingGuestReply::SIZE,
        }
    }

    /// [`ProtoError::TooLong`] if an input of `len` bytes cannot be this request: longer than
    /// its longest version ([`Self::max_request_size`]). (Other wrong lengths are rejected by
    /// the request's parser.) The driver calls this before it copies the input, so it never
    /// needs a buffer larger than [`MAX_REQUEST_SIZE`].
    pub const fn check_input_len(self, len: usize) -> ProtoResult<()> {
        let expected = self.max_request_size();
        if len > expected {
            Err(ProtoError::TooLong { expected, got: len })
        } else {
            Ok(())
        }
    }

    /// [`ProtoError::OutputTooSmall`] unless an output buffer of `len` bytes holds the reply.
    ///
    /// The driver calls this before it acts on a request, so a request whose reply could not be
    /// delivered changes nothing.
    pub const fn check_output_len(self, len: usize) -> ProtoResult<()> {
        let needed = self.reply_size();
        if len < needed {
            Err(ProtoError::OutputTooSmall { needed, got: len })
        } else {
            Ok(())
        }
    }
}

/// The largest request of any IOCTL, in bytes: the input buffer the driver copies a request
/// into never needs to be larger (see [`IoctlCode::check_input_len`]).
pub const MAX_REQUEST_SIZE: usize = {
    let mut max = 0;
    let mut rest: &[IoctlCode] = &IoctlCode::ALL;
    while let [code, tail @ ..] = rest {
        if code.max_request_size() > max {
            max = code.max_request_size();
        }
        rest = tail;
    }
    max
};
