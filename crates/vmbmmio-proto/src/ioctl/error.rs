//! What can be wrong with an IOCTL buffer, said precisely.
//!
//! [`ProtoError`] names the field and, where it helps, the expected and the received value, so
//! a device-host author reading a log line knows what to fix. It deliberately knows nothing about
//! NTSTATUS (this crate does not depend on the kernel's types): the driver maps errors through
//! [`ProtoError::class`], a small enum it can match exhaustively. `docs/ioctl.md` lists the
//! NTSTATUS of each class.

use super::header::MessageKind;
use super::report_mapping::MappingState;
use crate::guest::NameError;

/// Everything a parser, builder or encoder of this interface can reject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtoError {
    /// The input is shorter than the message it must hold.
    TooShort {
        /// Exact size of the message.
        expected: usize,
        /// Bytes received.
        got: usize,
    },
    /// The output buffer cannot hold the reply.
    OutputTooSmall {
        /// Size of the reply.
        needed: usize,
        /// Bytes available.
        got: usize,
    },
    /// The input is longer than the message it must hold (no trailing bytes are allowed).
    TooLong {
        /// Exact size of the message.
        expected: usize,
        /// Bytes received.
        got: usize,
    },
    /// The header's `size` field does not state this message's exact size.
    SizeFieldMismatch {
        /// Exact size of the message.
        expected: u32,
        /// Value of the field.
        got: u32,
    },
    /// The header's `version` is not the one this crate speaks.
    UnsupportedVersion {
        /// [`VERSION`](super::VERSION).
        expected: u16,
        /// Value of the field.
        got: u16,
    },
    /// The header's `magic` is not `b"VMBM"`.
    BadMagic {
        /// [`MAGIC`](super::MAGIC).
        expected: u32,
        /// Value of the field.
        got: u32,
    },
    /// The header's `kind` is not the message this IOCTL (or reply) carries.
    WrongKind {
        /// The kind this parser accepts.
        expected: MessageKind,
        /// Value of the field.
        got: u16,
    },
    /// A reserved field is not zero.
    ReservedNotZero {
        /// Which reserved field.
        field: ReservedField,
        /// Its value (widened to 64 bits).
        got: u64,
    },
    /// OPEN_SESSION `target_kind` is neither VMBus handle (1) nor loopback (2).
    BadTargetKind {
        /// Value of the field.
        got: u32,
    },
    /// OPEN_SESSION with the loopback target carries a non-zero `vmbus_handle`.
    HandleWithLoopback {
        /// Value of the field.
        got: u64,
    },
    /// OPEN_SESSION with the VMBus-handle target carries `vmbus_handle` = 0.
    MissingVmbusHandle,
    /// An interface GUID of OPEN_SESSION is the nil GUID.
    NilGuid {
        /// Which GUID.
        field: GuidField,
    },
    /// `region_count` is 0; a session shares at least one region.
    NoRegions,
    /// `region_count` exceeds [`MAX_REGIONS`](super::MAX_REGIONS).
    TooManyRegions {
        /// [`MAX_REGIONS`](super::MAX_REGIONS).
        max: u32,
        /// Value of the field.
        got: u32,
    },
    /// A used region has size 0.
    EmptyRegion {
        /// Index of the region.
        index: u32,
    },
    /// Rounding a region's size up to whole pages would overflow `u64`.
    RegionSizeOverflow {
        /// Index of the region.
        index: u32,
        /// Size in bytes as sent.
        got: u64,
    },
    /// A region is larger than [`MAX_REGION_SIZE`](super::MAX_REGION_SIZE) after page rounding.
    RegionTooLarge {
        /// Index of the region.
        index: u32,
        /// [`MAX_REGION_SIZE`](super::MAX_REGION_SIZE).
        max: u64,
        /// Page-rounded size.
        got: u64,
    },
    /// The page-rounded regions together exceed [`MAX_TOTAL_SIZE`](super::MAX_TOTAL_SIZE).
    TotalTooLarge {
        /// Index of the region that crossed the limit.
        index: u32,
        /// [`MAX_TOTAL_SIZE`](super::MAX_TOTAL_SIZE).
        max: u64,
        /// Sum of the page-rounded sizes up to and including that region.
        got: u64,
    },
    /// A region's `flags` has a reserved bit set (only bit 0, guest may write, is defined).
    RegionFlagsReserved {
        /// Index of the region.
        index: u32,
        /// Value of the field.
        got: u32,
    },
    /// A region array entry past `region_count` is not all zero.
    UnusedRegionNotZero {
        /// Index of the entry.
        index: u32,
    },
    /// A region index is not below [`MAX_REGIONS`](super::MAX_REGIONS). Whether a smaller index
    /// names a region of the session is for the driver to check against its session.
    RegionIndexOutOfRange {
        /// Indexes must be below this.
        limit: u32,
        /// Value of the field.
        got: u32,
    },
    /// GET_REGION_SECTION `access` has a bit other than map-read (bit 0) and map-write (bit 1).
    AccessReservedBits {
        /// Value of the field.
        got: u32,
    },
    /// GET_REGION_SECTION `access` lacks map-read (bit 0); every mapping needs it.
    AccessWithoutRead {
        /// Value of the field.
        got: u32,
    },
    /// REPORT_MAPPING `state` is not 0..=3.
    BadMappingState {
        /// Value of the field.
        got: u32,
    },
    /// REPORT_MAPPING `hresult` contradicts `state`: a section-backed mapping needs a success
    /// HRESULT, a failed one a failure HRESULT.
    HresultContradictsState {
        /// The state reported.
        state: MappingState,
        /// The HRESULT reported.
        hresult: i32,
    },
    /// A reply's session `state` is not a known [`SessionState`](super::SessionState).
    BadSessionState {
        /// Value of the field.
        got: u32,
    },
    /// A reply carries section handle 0.
    NullSectionHandle,
    /// A reply carries `mmio_megabytes` = 0 (KMCL needs it non-zero, kmcl.md §5).
    ZeroMmioMegabytes,
    /// A reply's BAR size is zero, not a power of two or above
    /// [`MAX_BAR_SIZE`](super::MAX_BAR_SIZE).
    BadBarSize {
        /// Value of the field.
        got: u64,
    },
    /// A reply's offset or size is not a whole number of pages.
    NotPageAligned {
        /// Which field.
        field: PagedField,
        /// Its value.
        got: u64,
    },
    /// An OPEN_SESSION reply's region does not lie inside the BAR (or its end overflows).
    RegionOutsideBar {
        /// Index of the region.
        index: u32,
    },
    /// A GET_REGION_SECTION reply has `size` = 0.
    EmptySection,
    /// A GET_REGION_SECTION reply's `offset_in_bar + size` exceeds
    /// [`MAX_BAR_SIZE`](super::MAX_BAR_SIZE) (or overflows).
    SectionOutsideBar {
        /// Value of `offset_in_bar`.
        offset: u64,
        /// Value of `size`.
        size: u64,
    },
    /// A reply's region starts before the previous one ends: regions must be in ascending BAR
    /// order and must not overlap.
    RegionsOverlap {
        /// Index of the later region.
        index: u32,
    },
    /// A QUERY_DRIVER reply's `kmcl_entries` exceeds
    /// [`MAX_KMCL_ENTRIES`](super::MAX_KMCL_ENTRIES), the width of its bit set.
    TooManyKmclEntries {
        /// [`MAX_KMCL_ENTRIES`](super::MAX_KMCL_ENTRIES).
        max: u32,
        /// Value of the field.
        got: u32,
    },
    /// A QUERY_DRIVER reply's `kmcl_missing_optional` has bits at or above `kmcl_entries`:
    /// it names entries the driver's table does not have.
    KmclBitsBeyondTable {
        /// Value of `kmcl_entries`.
        entries: u32,
        /// The offending bits (those at or above `entries`).
        bits: u32,
    },
    /// A WAIT_GUEST_EVENT reply's `sequence` is 0 (sequences start at 1).
    ZeroEventSequence,
    /// A WAIT_GUEST_EVENT reply's `event` is not a known
    /// [`GuestEventKind`](super::GuestEventKind).
    BadGuestEvent {
        /// Value of the field.
        got: u32,
    },
    /// A WAIT_GUEST_EVENT reply's `flags` has a bit other than the reservation (bit 0) and
    /// device (bit 1) report bits.
    EventFlagsReserved {
        /// Value of the field.
        got: u32,
    },
    /// A WAIT_GUEST_EVENT reply's `flags` contradict its `event`: a guest report names no
    /// report, or another event names one.
    EventFlagsMismatch {
        /// Value of `event`.
        event: u32,
        /// Value of `flags`.
        got: u32,
    },
    /// A WAIT_GUEST_EVENT reply's `reservation_flags` has a bit other than `PRESENT` (bit 0).
    ReservationFlagsReserved {
        /// Value of the field.
        got: u32,
    },
    /// A WAIT_GUEST_EVENT reply's `device_flags` has a bit other than bits 0..=3.
    DeviceFlagsReserved {
        /// Value of the field.
        got: u32,
    },
    /// A report the reply marks absent has non-zero fields.
    AbsentReportNotZero {
        /// Which report.
        report: AbsentReport,
    },
    /// A reported reservation breaks its rules: base or size zero or not page-aligned, or
    /// `base + size` beyond 2^52 (or overflowing).
    BadGuestReservation {
        /// Value of `reservation_base`.
        base: u64,
        /// Value of `reservation_size`.
        size: u64,
    },
    /// A reported device's flags contradict each other: READY without DECODE_ON, or READY
    /// with RELEASING.
    DeviceFlagsContradict {
        /// Value of `device_flags`.
        got: u32,
    },
    /// A reported device's `bar_index` is above 5.
    BadBarIndex {
        /// Value of the field.
        got: u8,
    },
    /// A reported BAR breaks its rules: size not a power of two or above
    /// [`MAX_BAR_SIZE`](super::MAX_BAR_SIZE), base zero or not aligned to the size with decode
    /// on, or `base + size` beyond 2^52 (or overflowing).
    BadGuestBar {
        /// Value of `bar_base`.
        base: u64,
        /// Value of `bar_size`.
        size: u64,
    },
    /// A region's name breaks the rules of named regions (OPEN_SESSION version 2 request,
    /// LIST_SESSIONS reply): 1..=32 bytes of UTF-8, NUL-padded, no ASCII control character.
    BadRegionName {
        /// Index of the region.
        index: u32,
        /// What is wrong with it.
        fault: NameError,
    },
    /// Two used regions of one session have the same name (compared bytewise).
    DuplicateRegionName {
        /// Index of the later region.
        index: u32,
        /// Index of the earlier region with that name.
        first: u32,
    },
    /// ATTACH_REGION `name` breaks the rules of named regions.
    BadAttachName {
        /// What is wrong with it.
        fault: NameError,
    },
    /// An attachment id is 0 (the driver never hands out 0).
    ZeroAttachment,
    /// A LIST_SESSIONS reply's `index` is not below its `total`.
    ListIndexBeyondTotal {
        /// Value of `index`.
        index: u32,
        /// Value of `total`.
        total: u32,
    },
    /// A LIST_SESSIONS reply's region `state` is not 0..=2.
    BadListedRegionState {
        /// Index of the region.
        index: u32,
        /// Value of the field.
        got: u32,
    },
    /// A reply carries a size that is zero, not page-aligned or above
    /// [`MAX_REGION_SIZE`](super::MAX_REGION_SIZE) for a region (LIST_SESSIONS,
    /// ATTACH_REGION).
    BadRegionSize {
        /// Index of the region (LIST_SESSIONS) or its `region_index` (ATTACH_REGION).
        index: u32,
        /// Value of the field.
        got: u64,
    },
    /// The IOCTL code is not one of [`IoctlCode`](super::IoctlCode).
    UnknownIoctl {
        /// The code received.
        code: u32,
    },
}

/// Names a reserved field, for [`ProtoError::ReservedNotZero`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReservedField {
    /// `header.reserved`.
    Header,
    /// OPEN_SESSION request `reserved[index]`.
    OpenSession {
        /// Index in the array.
        index: u32,
    },
    /// `regions[index].reserved` of the OPEN_SESSION request.
    RegionSpec {
        /// Index of the region.
        index: u32,
    },
    /// GET_REGION_SECTION request `reserved`.
    GetRegionSection,
    /// REPORT_MAPPING request `reserved`.
    ReportMapping,
    /// QUERY_STATUS reply `reserved0` (after `state`).
    QueryStatusPad,
    /// QUERY_STATUS reply `reserved[index]`.
    QueryStatusTail {
        /// Index in the array.
        index: u32,
    },
    /// QUERY_DRIVER reply `reserved[index]`.
    QueryDriverTail {
        /// Index in the array.
        index: u32,
    },
    /// WAIT_GUEST_EVENT reply `reserved0` and `reserved1` (the three bytes after `bar_index`;
    /// `got` is `reserved0 | reserved1 << 8`).
    GuestEventPad,
    /// WAIT_GUEST_EVENT reply `reserved2` (after `errors_left`).
    GuestEventPad2,
    /// WAIT_GUEST_EVENT reply `reserved[index]`.
    GuestEventTail {
        /// Index in the array.
        index: u32,
    },
    /// LIST_SESSIONS request `reserved[index]` (0: the `u32` after `cursor`, 1: the `u64`).
    ListSessions {
        /// Index of the reserved field.
        index: u32,
    },
    /// LIST_SESSIONS reply `reserved` (after `region_count`).
    ListSessionsReply,
    /// ATTACH_REGION request `reserved[index]` (0: the `u32` after `access`, 1: the `u64`).
    AttachRegion {
        /// Index of the reserved field.
        index: u32,
    },
    /// DETACH_REGION request `reserved`.
    DetachRegion,
    /// TAKE_DOORBELLS request `reserved`.
    TakeDoorbells,
}

/// Which report of a WAIT_GUEST_EVENT reply is absent but has non-zero fields, for
/// [`ProtoError::AbsentReportNotZero`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbsentReport {
    /// `reservation_base` / `reservation_size` without `RESERVATION_PRESENT`.
    Reservation,
    /// Device flags, `bar_index`, `bar_base` or `bar_size` without `DEVICE_PRESENT`.
    Device,
}

/// Names a GUID field, for [`ProtoError::NilGuid`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuidField {
    /// OPEN_SESSION `interface_type`.
    InterfaceType,
    /// OPEN_SESSION `interface_instance`.
    InterfaceInstance,
    /// `vm_id` of OPEN_SESSION version 2, LIST_SESSIONS reply or ATTACH_REGION.
    VmId,
}

/// Names a field that must be a whole number of pages, for [`ProtoError::NotPageAligned`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagedField {
    /// OPEN_SESSION reply `regions[index].offset`.
    RegionOffset {
        /// Index of the region.
        index: u32,
    },
    /// OPEN_SESSION reply `regions[index].size`.
    RegionSize {
        /// Index of the region.
        index: u32,
    },
    /// GET_REGION_SECTION reply `size`.
    SectionSize,
    /// GET_REGION_SECTION reply `offset_in_bar`.
    SectionOffset,
}

/// Stable classification of [`ProtoError`] that the driver maps to NTSTATUS (table in
/// `docs/ioctl.md`). New error variants join one of these classes; the classes themselves only
/// change with a new interface version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Input shorter than the message, or output too small for the reply
    /// (`STATUS_BUFFER_TOO_SMALL`).
    BufferTooSmall,
    /// Input longer than the message, or a header `size` that is not the message's size
    /// (`STATUS_INVALID_BUFFER_SIZE`).
    BadSize,
    /// A header `version` this crate does not speak (`STATUS_REVISION_MISMATCH`).
    BadVersion,
    /// Any field with a wrong value (`STATUS_INVALID_PARAMETER`).
    BadField,
    /// An IOCTL code that is not part of the interface (`STATUS_INVALID_DEVICE_REQUEST`).
    UnknownRequest,
}

impl ProtoError {
    /// The class the driver maps to an NTSTATUS.
    pub const fn class(&self) -> ErrorClass {
        match self {
            Self::TooShort { .. } | Self::OutputTooSmall { .. } => ErrorClass::BufferTooSmall,
            Self::TooLong { .. } | Self::SizeFieldMismatch { .. } => ErrorClass::BadSize,
            Self::UnsupportedVersion { .. } => ErrorClass::BadVersion,
            Self::BadMagic { .. }
            | Self::WrongKind { .. }
            | Self::ReservedNotZero { .. }
            | Self::BadTargetKind { .. }
            | Self::HandleWithLoopback { .. }
            | Self::MissingVmbusHandle
            | Self::NilGuid { .. }
            | Self::NoRegions
            | Self::TooManyRegions { .. }
            | Self::EmptyRegion { .. }
            | Self::RegionSizeOverflow { .. }
            | Self::RegionTooLarge { .. }
            | Self::TotalTooLarge { .. }
            | Self::RegionFlagsReserved { .. }
            | Self::UnusedRegionNotZero { .. }
            | Self::RegionIndexOutOfRange { .. }
            | Self::AccessReservedBits { .. }
            | Self::AccessWithoutRead { .. }
            | Self::BadMappingState { .. }
            | Self::HresultContradictsState { .. }
            | Self::BadSessionState { .. }
            | Self::NullSectionHandle
            | Self::ZeroMmioMegabytes
            | Self::BadBarSize { .. }
            | Self::NotPageAligned { .. }
            | Self::RegionOutsideBar { .. }
            | Self::EmptySection
            | Self::SectionOutsideBar { .. }
            | Self::RegionsOverlap { .. }
            | Self::TooManyKmclEntries { .. }
            | Self::KmclBitsBeyondTable { .. }
            | Self::ZeroEventSequence
            | Self::BadGuestEvent { .. }
            | Self::EventFlagsReserved { .. }
            | Self::EventFlagsMismatch { .. }
            | Self::ReservationFlagsReserved { .. }
            | Self::DeviceFlagsReserved { .. }
            | Self::AbsentReportNotZero { .. }
            | Self::BadGuestReservation { .. }
            | Self::DeviceFlagsContradict { .. }
            | Self::BadBarIndex { .. }
            | Self::BadGuestBar { .. }
            | Self::BadRegionName { .. }
            | Self::DuplicateRegionName { .. }
            | Self::BadAttachName { .. }
            | Self::ZeroAttachment
            | Self::ListIndexBeyondTotal { .. }
            | Self::BadListedRegionState { .. }
            | Self::BadRegionSize { .. } => ErrorClass::BadField,
            Self::UnknownIoctl { .. } => ErrorClass::UnknownRequest,
        }
    }
}

/// Result type of this interface's parsers, builders and encoders.
pub type ProtoResult<T> = Result<T, ProtoError>;
