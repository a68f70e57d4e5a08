//! The IOCTL interface between the driver's control device and the user-mode device host.
//!
//! # Why it looks like this
//! The device host (`vmbmmio-devhost`) is privileged but may be buggy, and a bad buffer must not
//! take the host down or leave half-made objects behind. So every message is one fixed-size,
//! `#[repr(C)]` struct of little-endian, alignment-1 fields ([`zerocopy`]), and every parser
//! accepts a buffer only if it is exactly one well-formed message: right length, magic, version,
//! kind, size field, zero reserved fields, known enum values, counts within the explicit limits
//! and page arithmetic that cannot overflow. The first broken rule comes back as a
//! [`ProtoError`] naming the field; the driver acts only on the validated values the parsers
//! return, so a rejected request changes nothing.
//!
//! The flow of one session (one per file handle of the control device):
//! 1. [`IoctlCode::OpenSession`]: target VM, offer GUIDs, regions → session id, MMIO
//!    reservation, BAR layout.
//! 2. [`IoctlCode::GetRegionSection`] per region → a section handle valid in the caller's
//!    process only, for `HdvCreateSectionBackedMmioRange` (hdv.md §3.3).
//! 3. [`IoctlCode::ReportMapping`] per region → what HDV did with it (version 2 of the request
//!    also says which guest event the mapping answers: module `report_mapping`).
//! 4. [`IoctlCode::QueryStatus`] at any time; [`IoctlCode::CloseSession`] at the end.
//!
//! [`IoctlCode::WaitGuestEvent`] is the one request the driver may keep pending: the device host
//! keeps one outstanding per session and the driver completes it with the next thing the guest
//! reported over the channel (module `wait_guest_event`).
//!
//! [`IoctlCode::QueryDriver`] is about the driver, not a session: which optional KMCL entries it
//! runs without, and how many file handles and sessions it has. It works on any file handle.
//!
//! Each message has a builder or constructor (for the side that sends it), a parser (for the side
//! that receives it) and an encoder into a caller-provided buffer ([`WireMessage::encode`]).
//! Nothing allocates. The byte layouts, the NTSTATUS of each [`ErrorClass`] and the versioning
//! policy are in `docs/ioctl.md`.

mod attach_region;
mod attachment;
mod close_session;
mod code;
mod detach_region;
mod doorbell_event;
mod error;
mod guid;
mod header;
mod limits;
mod list_sessions;
mod open_session;
mod open_session_reply;
mod open_session_v2;
mod query_driver;
mod query_status;
mod region_section;
mod report_mapping;
mod ring_guest;
mod take_doorbells;
mod wait_guest_event;

pub use attach_region::{
    AttachRegionParams, AttachRegionReply, AttachRegionRequest, RegionAttached,
    parse_attach_region, parse_attach_region_reply,
};
pub use attachment::AttachmentId;
pub use detach_region::{
    DetachRegionReply, DetachRegionRequest, parse_detach_region, parse_detach_region_reply,
};
pub use doorbell_event::{
    DoorbellEventParams, SetDoorbellEventReply, SetDoorbellEventRequest, parse_set_doorbell_event,
    parse_set_doorbell_event_reply,
};
pub use list_sessions::{
    ListSessionsReply, ListSessionsRequest, ListedRegion, SessionListing, WireListedRegion,
    parse_list_sessions, parse_list_sessions_reply,
};
pub use open_session_v2::{
    NamedRegionRequest, OpenSessionV2Request, WireNamedRegionSpec, parse_open_session_any,
    parse_open_session_v2,
};
pub use ring_guest::{
    RingGuestParams, RingGuestReply, RingGuestRequest, parse_ring_guest, parse_ring_guest_reply,
};
pub use take_doorbells::{
    DoorbellTally, TakeDoorbellsReply, TakeDoorbellsRequest, parse_take_doorbells,
    parse_take_doorbells_reply,
};

pub use close_session::{
    CloseSessionReply, CloseSessionRequest, parse_close_session, parse_close_session_reply,
};
pub use code::{
    FILE_DEVICE_UNKNOWN, FILE_READ_DATA, FILE_WRITE_DATA, FIRST_FUNCTION,
    IOCTL_VMBMMIO_ATTACH_REGION, IOCTL_VMBMMIO_CLOSE_SESSION, IOCTL_VMBMMIO_DETACH_REGION,
    IOCTL_VMBMMIO_GET_REGION_SECTION, IOCTL_VMBMMIO_LIST_SESSIONS, IOCTL_VMBMMIO_OPEN_SESSION,
    IOCTL_VMBMMIO_QUERY_DRIVER, IOCTL_VMBMMIO_QUERY_STATUS, IOCTL_VMBMMIO_REPORT_MAPPING,
    IOCTL_VMBMMIO_RING_GUEST, IOCTL_VMBMMIO_SET_DOORBELL_EVENT, IOCTL_VMBMMIO_TAKE_DOORBELLS,
    IOCTL_VMBMMIO_WAIT_GUEST_EVENT, IoctlCode, MAX_REQUEST_SIZE, METHOD_BUFFERED, ctl_code,
};
pub use error::{
    AbsentReport, ErrorClass, GuidField, PagedField, ProtoError, ProtoResult, ReservedField,
};
pub use guid::WireGuid;
pub use header::{HEADER_SIZE, MAGIC, MessageHeader, MessageKind, VERSION, VERSION_2, WireMessage};
pub use limits::{
    MAX_BAR_SIZE, MAX_REGION_SIZE, MAX_REGIONS, MAX_REGIONS_U32, MAX_TOTAL_SIZE, MIB,
    is_page_aligned, round_up_to_page,
};
pub use open_session::{
    OPEN_SESSION_RESERVED_WORDS, OpenSessionParams, OpenSessionRequest,
    REGION_FLAG_CONSUMER_WRITABLE, REGION_FLAG_GUEST_WRITABLE, RegionRequest, TARGET_LOOPBACK,
    TARGET_VMBUS_HANDLE, Target, ValidRegion, WireRegionSpec, parse_open_session,
};
pub use open_session_reply::{
    BarRegion, OpenSessionReply, SessionOpened, WireBarRegion, parse_open_session_reply,
};
pub use query_driver::{
    DRIVER_RESERVED_WORDS, DriverFacts, MAX_KMCL_ENTRIES, QueryDriverReply, QueryDriverRequest,
    parse_query_driver, parse_query_driver_reply,
};
pub use query_status::{
    QueryStatusReply, QueryStatusRequest, STATUS_RESERVED_WORDS, SessionState, SessionStatus,
    StatusCounters, parse_query_status, parse_query_status_reply,
};
pub use region_section::{
    ACCESS_MAP_READ, ACCESS_MAP_WRITE, GetRegionSectionParams, GetRegionSectionReply,
    GetRegionSectionRequest, RegionSection, SectionAccess, parse_get_region_section,
    parse_get_region_section_reply,
};
pub use report_mapping::{
    ActedOn, ActedReport, MappingState, ReportMappingParams, ReportMappingReply,
    ReportMappingRequest, ReportMappingV2Request, parse_report_mapping, parse_report_mapping_any,
    parse_report_mapping_reply, parse_report_mapping_v2,
};
pub use wait_guest_event::{
    DEVICE_DECODE_ON, DEVICE_PRESENT, DEVICE_READY, DEVICE_RELEASING, EVENT_FLAG_DEVICE,
    EVENT_FLAG_RESERVATION, GUEST_EVENT_RESERVED_WORDS, GUEST_PHYSICAL_LIMIT, GuestDevice,
    GuestEvent, GuestEventKind, GuestReservation, GuestSnapshot, MAX_BAR_INDEX,
    RESERVATION_PRESENT, WaitGuestEventReply, WaitGuestEventRequest, parse_wait_guest_event,
    parse_wait_guest_event_reply,
};
