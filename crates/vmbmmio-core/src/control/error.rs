//! Why a control-device request was refused, and the NTSTATUS it completes with.

use kmcl::raw::{
    NTSTATUS, STATUS_ACCESS_DENIED, STATUS_BUFFER_TOO_SMALL, STATUS_CANCELLED,
    STATUS_DEVICE_NOT_READY, STATUS_DEVICE_REMOVED, STATUS_INSUFFICIENT_RESOURCES,
    STATUS_INVALID_BUFFER_SIZE, STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_DEVICE_STATE,
    STATUS_INVALID_PARAMETER, STATUS_REVISION_MISMATCH, STATUS_UNSUCCESSFUL,
};
use vmbmmio_proto::ioctl::{ErrorClass, ProtoError};

use crate::channel::ChannelError;
use crate::mmio_plan::PlanError;
use crate::sections::SectionError;

/// `STATUS_TOO_MANY_OPENED_FILES` (ntstatus.h).
pub const STATUS_TOO_MANY_OPENED_FILES: NTSTATUS = 0xC000_011F_u32 as i32;

/// `STATUS_NOT_FOUND` (ntstatus.h): ATTACH_REGION names no open VM.
pub const STATUS_NOT_FOUND: NTSTATUS = 0xC000_0225_u32 as i32;
/// `STATUS_OBJECT_NAME_NOT_FOUND` (ntstatus.h): the VM has no region of that name.
pub const STATUS_OBJECT_NAME_NOT_FOUND: NTSTATUS = 0xC000_0034_u32 as i32;
/// `STATUS_OBJECT_NAME_COLLISION` (ntstatus.h): OPEN_SESSION for a VM id that already has a
/// live session.
pub const STATUS_OBJECT_NAME_COLLISION: NTSTATUS = 0xC000_0035_u32 as i32;
/// `STATUS_QUOTA_EXCEEDED` (ntstatus.h): an attachment quota is used up.
pub const STATUS_QUOTA_EXCEEDED: NTSTATUS = 0xC000_0044_u32 as i32;
/// `STATUS_VIRTUAL_CIRCUIT_CLOSED` (ntstatus.h; Win32 `ERROR_VC_DISCONNECTED`, 240): the
/// attachment's session closed.
pub const STATUS_VIRTUAL_CIRCUIT_CLOSED: NTSTATUS = 0xC000_00D6_u32 as i32;
/// `STATUS_NOT_SUPPORTED` (ntstatus.h): RING_GUEST to a guest whose conversation did not select
/// protocol 1.1 or later.
pub const STATUS_NOT_SUPPORTED: NTSTATUS = 0xC000_00BB_u32 as i32;
/// `STATUS_RETRY` (ntstatus.h): RING_GUEST beyond the attachment's rate.
pub const STATUS_RETRY: NTSTATUS = 0xC000_022D_u32 as i32;
/// `STATUS_NO_MORE_ENTRIES` (ntstatus.h; a warning): LIST_SESSIONS past the last session.
pub const STATUS_NO_MORE_ENTRIES: NTSTATUS = 0x8000_001A_u32 as i32;

/// `STATUS_DEVICE_BUSY` (ntstatus.h; a warning-severity status, so `NT_SUCCESS` is false and
/// `DeviceIoControl` fails with `ERROR_BUSY`).
pub const STATUS_DEVICE_BUSY: NTSTATUS = 0x8000_0011_u32 as i32;

/// Every way a control-device request fails. A request that fails changed nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlError {
    /// The IOCTL code, the buffers or a field of the message were rejected by the wire-format
    /// rules (docs/ioctl.md).
    Proto(ProtoError),
    /// The region layout cannot be reserved (`mmio_plan`).
    Plan(PlanError),
    /// The section manager refused (quota, isolation, wrong process, kernel failure).
    Section(SectionError),
    /// The channel could not be offered, or the VMBus handle not converted.
    Channel(ChannelError),
    /// OPEN_SESSION on a file handle that already has a session.
    SessionExists,
    /// A request that needs a session on a file handle without one.
    NoSession,
    /// A region index past the session's regions.
    RegionOutOfRange {
        /// The index asked for.
        index: u32,
    },
    /// The request came from a process other than the one that opened the file handle.
    WrongProcess,
    /// The request's requestor mode is not user mode: refused before any lock or state is
    /// touched (a kernel-mode sender must never obtain a user handle in the System process).
    KernelModeRequest,
    /// The request came through a file handle the control device does not know.
    UnknownFile,
    /// The same file handle was announced twice.
    FileAlreadyOpen,
    /// Too many file handles are open.
    TooManyFiles,
    /// The driver is unloading, or the device is being removed (the request came after removal
    /// started: it touched nothing).
    ShuttingDown,
    /// The file's session is being opened or closed by another request, whose channel work
    /// (`VmbChannelEnable`, `VmbChannelDisable`, the VMBus handle conversion) runs outside the
    /// table lock. Refused without any change; retry once that request completed.
    SessionBusy,
    /// A query-remove while sessions exist: vetoed (the administrator closes the device hosts
    /// first).
    SessionsOpen {
        /// How many sessions were open, opening or closing.
        sessions: usize,
    },
    /// The control device's state does not exist (yet, or any more): a request raced device
    /// creation or removal.
    NotReady,
    /// The I/O manager handed over no buffer although the request declared one.
    BufferUnavailable,
    /// An allocation failed.
    OutOfMemory,
    /// WAIT_GUEST_EVENT while another WAIT_GUEST_EVENT of the session is pending (one per
    /// session). Nothing changed (no event was acknowledged); the pending one stays.
    WaitPending,
    /// WAIT_GUEST_EVENT whose `last_seen`, or a version-2 REPORT_MAPPING whose `acted_on`, is
    /// beyond the newest event the session has: the device host cannot have seen it. Nothing
    /// changed.
    EventNotYetSent {
        /// The request's `last_seen` (or `acted_on`).
        last_seen: u64,
        /// The newest sequence (0: no event yet).
        newest: u64,
    },
    /// A pending WAIT_GUEST_EVENT was cancelled (by the device host, its exit, the session's
    /// close, or a caller that cannot keep a request pending): nothing was consumed.
    Cancelled,
    /// ATTACH_REGION through a file handle that owns (or is opening or closing) a session:
    /// device-host handles never attach.
    DeviceHostCannotAttach,
    /// OPEN_SESSION through a file handle that holds attachments: a consumer never hosts.
    ConsumerCannotHost,
    /// OPEN_SESSION (version 2) for a VM id that already has a live (or opening) session.
    VmIdInUse,
    /// ATTACH_REGION: no version-2 session with that VM id.
    NoSuchVm,
    /// ATTACH_REGION: the VM has no region of that name.
    NoSuchRegion,
    /// ATTACH_REGION asked for write access to a region without `CONSUMER_WRITABLE`.
    ConsumerWriteDenied,
    /// An attachment quota (per file, per session, driver-wide) is used up.
    AttachmentQuota {
        /// The limit reached.
        limit: usize,
    },
    /// An attachment id the file does not own.
    UnknownAttachment,
    /// The attachment's session closed (any request but DETACH_REGION).
    SessionClosed,
    /// SET_DOORBELL_EVENT: the event handle was refused by the object manager (this status).
    EventRefused(NTSTATUS),
    /// RING_GUEST: the guest's conversation did not select protocol 1.1 or later.
    GuestLacksDoorbells,
    /// RING_GUEST beyond the attachment's rate (counted).
    RateLimited,
    /// LIST_SESSIONS: the cursor is past the last attachable session.
    NoMoreEntries,
}

impl ControlError {
    /// The NTSTATUS the request completes with.
    pub const fn to_ntstatus(self) -> NTSTATUS {
        match self {
            Self::Proto(error) => proto_error_to_ntstatus(error),
            Self::Plan(error) => error.to_ntstatus(),
            Self::Section(error) => error.to_ntstatus(),
            Self::Channel(error) => error.to_ntstatus(),
            Self::SessionExists | Self::NoSession => STATUS_INVALID_DEVICE_STATE,
            Self::RegionOutOfRange { .. } => STATUS_INVALID_PARAMETER,
            Self::WrongProcess | Self::KernelModeRequest => STATUS_ACCESS_DENIED,
            Self::UnknownFile | Self::FileAlreadyOpen => STATUS_INVALID_DEVICE_REQUEST,
            Self::TooManyFiles => STATUS_TOO_MANY_OPENED_FILES,
            Self::ShuttingDown => STATUS_DEVICE_REMOVED,
            Self::SessionBusy => STATUS_DEVICE_BUSY,
            Self::SessionsOpen { .. } => STATUS_UNSUCCESSFUL,
            Self::NotReady => STATUS_DEVICE_NOT_READY,
            Self::BufferUnavailable => STATUS_INVALID_DEVICE_REQUEST,
            Self::OutOfMemory => STATUS_INSUFFICIENT_RESOURCES,
            Self::WaitPending => STATUS_DEVICE_BUSY,
            Self::EventNotYetSent { .. } => STATUS_INVALID_PARAMETER,
            Self::Cancelled => STATUS_CANCELLED,
            Self::DeviceHostCannotAttach | Self::ConsumerCannotHost => STATUS_INVALID_DEVICE_STATE,
            Self::VmIdInUse => STATUS_OBJECT_NAME_COLLISION,
            Self::NoSuchVm => STATUS_NOT_FOUND,
            Self::NoSuchRegion => STATUS_OBJECT_NAME_NOT_FOUND,
            Self::ConsumerWriteDenied => STATUS_ACCESS_DENIED,
            Self::AttachmentQuota { .. } => STATUS_QUOTA_EXCEEDED,
            Self::UnknownAttachment => STATUS_INVALID_PARAMETER,
            Self::SessionClosed => STATUS_VIRTUAL_CIRCUIT_CLOSED,
            // A success status would complete a refused request successfully: never.
            Self::EventRefused(status) if status >= 0 => STATUS_UNSUCCESSFUL,
            Self::EventRefused(status) => status,
            Self::GuestLacksDoorbells => STATUS_NOT_SUPPORTED,
            Self::RateLimited => STATUS_RETRY,
            Self::NoMoreEntries => STATUS_NO_MORE_ENTRIES,
        }
    }
}

/// The NTSTATUS an IOCTL completes with when `vmbmmio-proto` rejects it (docs/ioctl.md).
pub const fn proto_error_to_ntstatus(error: ProtoError) -> NTSTATUS {
    match error.class() {
        ErrorClass::BufferTooSmall => STATUS_BUFFER_TOO_SMALL,
        ErrorClass::BadSize => STATUS_INVALID_BUFFER_SIZE,
        ErrorClass::BadVersion => STATUS_REVISION_MISMATCH,
        ErrorClass::BadField => STATUS_INVALID_PARAMETER,
        ErrorClass::UnknownRequest => STATUS_INVALID_DEVICE_REQUEST,
    }
}

impl From<ProtoError> for ControlError {
    fn from(error: ProtoError) -> Self {
        Self::Proto(error)
    }
}

impl From<PlanError> for ControlError {
    fn from(error: PlanError) -> Self {
        Self::Plan(error)
    }
}

impl From<SectionError> for ControlError {
    fn from(error: SectionError) -> Self {
        Self::Section(error)
    }
}

impl From<ChannelError> for ControlError {
    fn from(error: ChannelError) -> Self {
        Self::Channel(error)
    }
}
