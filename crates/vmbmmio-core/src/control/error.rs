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
