//! The library's one error type: what went wrong, in words a person can act on, with a stable
//! kind (the CLI's `error.kind`), a C ABI code and whether it is a setup problem (CLI exit 2)
//! or a failed operation (exit 1).

use std::fmt;

use crate::failure::{Condition, DriverFailure};
use crate::vm_id::VmId;

/// Why an operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The driver exists only on Windows and no other [`crate::Driver`] was given.
    Unsupported,
    /// The control device `\\.\vmbmmio` does not exist: the driver is not installed or not
    /// running.
    DriverNotFound,
    /// Opening the control device was refused: only Administrators and SYSTEM may open it.
    NotPermitted,
    /// The driver does not know the request: it is older than this library.
    DriverTooOld {
        /// The request.
        request: &'static str,
    },
    /// No running VM with this id has a version-2 session (an attachable one).
    VmNotFound {
        /// The VM id asked for.
        vm_id: VmId,
    },
    /// The VM has no region of this name.
    RegionNotFound {
        /// The VM id.
        vm_id: VmId,
        /// The name asked for.
        name: String,
    },
    /// The driver refused the access: write asked for a region consumers may only read.
    AccessDenied {
        /// The request.
        request: &'static str,
    },
    /// The VM's session closed (the device host stopped or the VM went away). The attachment
    /// can only be detached; a mapping stays valid memory holding the last data.
    SessionClosed,
    /// A doorbell to the guest was refused by the rate limit (counted); try again later.
    RateLimited,
    /// Too many attachments (per handle, per session or driver-wide).
    QuotaExceeded,
    /// The guest's program speaks guest protocol 1.0, which has no doorbells.
    NotSupported {
        /// The request.
        request: &'static str,
    },
    /// The driver refused a handle this library passed (the doorbell event).
    InvalidHandle {
        /// The request.
        request: &'static str,
    },
    /// An argument this library checks before anything is sent (a region name, a GUID, a
    /// null pointer in the C ABI).
    InvalidArgument {
        /// What is wrong.
        what: String,
    },
    /// An access outside the region.
    OutOfBounds {
        /// Offset in the region.
        offset: u64,
        /// Bytes accessed.
        len: u64,
        /// The region's size.
        size: u64,
    },
    /// An atomic access at an offset not aligned to its width.
    Misaligned {
        /// Offset in the region.
        offset: u64,
        /// The alignment required.
        align: u64,
    },
    /// A write (or an atomic) on a read-only attachment.
    ReadOnly,
    /// The driver's reply broke the interface's rules; nothing of it was used.
    MalformedReply {
        /// The request.
        request: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// Any other driver refusal.
    Driver {
        /// The request.
        request: &'static str,
        /// How it failed.
        failure: DriverFailure,
    },
    /// An operating-system call failed (mapping the section, the event, waiting).
    Os {
        /// The call.
        call: &'static str,
        /// How it failed.
        failure: DriverFailure,
    },
}

impl Error {
    /// The error for `request` failing with `failure`, per docs/host-library.md's table.
    /// `vm_id` and `name` are the attach arguments (for its messages), if any.
    pub(crate) fn from_driver(
        request: &'static str,
        failure: DriverFailure,
        target: Option<(VmId, &str)>,
    ) -> Self {
        match (failure.condition(), target) {
            (Condition::NotFound, Some((vm_id, _))) => Self::VmNotFound { vm_id },
            (Condition::NameNotFound, Some((vm_id, name))) => Self::RegionNotFound {
                vm_id,
                name: name.to_owned(),
            },
            (Condition::AccessDenied, _) => Self::AccessDenied { request },
            (Condition::SessionClosed, _) => Self::SessionClosed,
            (Condition::Retry, _) => Self::RateLimited,
            (Condition::QuotaExceeded, _) => Self::QuotaExceeded,
            (Condition::NotSupported, _) => Self::NotSupported { request },
            (Condition::UnknownRequest, _) => Self::DriverTooOld { request },
            (Condition::InvalidHandle, _) => Self::InvalidHandle { request },
            _ => Self::Driver { request, failure },
        }
    }

    /// The error for opening the control device failing with `failure`.
    #[cfg_attr(not(windows), allow(dead_code))]
    pub(crate) fn from_open(failure: DriverFailure) -> Self {
        match failure.condition() {
            Condition::NameNotFound => Self::DriverNotFound,
            Condition::AccessDenied => Self::NotPermitted,
            _ => Self::Os {
                call: "CreateFileW",
                failure,
            },
        }
    }

    /// A stable snake_case name (the CLI's `error.kind`, docs/host-library.md).
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Unsupported => "unsupported",
            Self::DriverNotFound => "driver_not_found",
            Self::NotPermitted => "not_permitted",
            Self::DriverTooOld { .. } => "driver_too_old",
            Self::VmNotFound { .. } => "vm_not_found",
            Self::RegionNotFound { .. } => "region_not_found",
            Self::AccessDenied { .. } => "access_denied",
            Self::SessionClosed => "session_closed",
            Self::RateLimited => "rate_limited",
            Self::QuotaExceeded => "quota_exceeded",
            Self::NotSupported { .. } => "not_supported",
            Self::InvalidHandle { .. } => "invalid_handle",
            Self::InvalidArgument { .. } => "invalid_argument",
            Self::OutOfBounds { .. } => "out_of_bounds",
            Self::Misaligned { .. } => "misaligned",
            Self::ReadOnly => "read_only",
            Self::MalformedReply { .. } => "malformed_reply",
            Self::Driver { .. } => "driver",
            Self::Os { .. } => "os",
        }
    }

    /// The C ABI's code (`VMBMMIO_E_*`, negative).
    pub const fn code(&self) -> i32 {
        match self {
            Self::InvalidArgument { .. } => -1,
            Self::Unsupported => -2,
            Self::DriverNotFound => -3,
            Self::NotPermitted => -4,
            Self::DriverTooOld { .. } => -5,
            Self::VmNotFound { .. } => -6,
            Self::RegionNotFound { .. } => -7,
            Self::AccessDenied { .. } => -8,
            Self::SessionClosed => -9,
            Self::RateLimited => -10,
            Self::QuotaExceeded => -11,
            Self::NotSupported { .. } => -12,
            Self::InvalidHandle { .. } => -13,
            Self::OutOfBounds { .. } => -14,
            Self::Misaligned { .. } => -15,
            Self::ReadOnly => -16,
            Self::MalformedReply { .. } => -17,
            Self::Driver { .. } => -18,
            Self::Os { .. } => -19,
        }
    }

    /// Whether this is something to fix before the operation can work (the CLI's exit code
    /// 2): platform, driver, permissions, arguments. Otherwise the operation itself failed
    /// (exit 1): the session closed, a rate limit, a malformed reply.
    pub const fn is_setup(&self) -> bool {
        matches!(
            self,
            Self::Unsupported
                | Self::DriverNotFound
                | Self::NotPermitted
                | Self::DriverTooOld { .. }
                | Self::VmNotFound { .. }
                | Self::RegionNotFound { .. }
                | Self::AccessDenied { .. }
                | Self::InvalidArgument { .. }
                | Self::OutOfBounds { .. }
                | Self::Misaligned { .. }
                | Self::ReadOnly
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unsupported => f.write_str(
                "the vmbmmio driver exists only on Windows (Hyper-V hosts); \
                 on this system the library works only with a test double",
            ),
            Self::DriverNotFound => f.write_str(
                "the vmbmmio control device \\\\.\\vmbmmio does not exist: \
                 the driver is not installed or not running (scripts/Install-VmbmmioDriver.ps1)",
            ),
            Self::NotPermitted => {
                f.write_str("opening \\\\.\\vmbmmio was refused: run as Administrator (or SYSTEM)")
            }
            Self::DriverTooOld { request } => write!(
                f,
                "{request}: the running vmbmmio driver does not know this request; \
                 install the driver that matches this library"
            ),
            Self::VmNotFound { vm_id } => write!(
                f,
                "no running VM {vm_id} has a vmbmmio session with named regions \
                 (is its device host running with a version-2 configuration?)"
            ),
            Self::RegionNotFound { vm_id, name } => {
                write!(
                    f,
                    "VM {vm_id} has no region named `{name}` (see `vmbmmio-host list`)"
                )
            }
            Self::AccessDenied { request } => write!(
                f,
                "{request}: access denied (write asked for a region host consumers may only \
                 read, or not Administrator)"
            ),
            Self::SessionClosed => f.write_str(
                "the VM's vmbmmio session closed: the region is no longer shared \
                 (a mapping still holds the last data); detach and attach again",
            ),
            Self::RateLimited => f.write_str(
                "the doorbell was refused by the rate limit (burst 64, 10000 per second); \
                 it was counted, try again later",
            ),
            Self::QuotaExceeded => f.write_str(
                "too many attachments (64 per handle, 64 per session, 1024 in all): detach some",
            ),
            Self::NotSupported { request } => write!(
                f,
                "{request}: not supported by the guest (its program speaks guest protocol 1.0, \
                 which has no doorbells)"
            ),
            Self::InvalidHandle { request } => {
                write!(f, "{request}: the driver refused the event handle")
            }
            Self::InvalidArgument { what } => f.write_str(what),
            Self::OutOfBounds { offset, len, size } => write!(
                f,
                "{len} bytes at offset {offset} are outside the region ({size} bytes)"
            ),
            Self::Misaligned { offset, align } => {
                write!(f, "offset {offset} is not aligned to {align} bytes")
            }
            Self::ReadOnly => f.write_str("the attachment is read-only (attach with read-write)"),
            Self::MalformedReply { request, why } => {
                write!(f, "{request}: the driver's reply is malformed: {why}")
            }
            Self::Driver { request, failure } => write!(f, "{request} failed: {failure}"),
            Self::Os { call, failure } => write!(f, "{call} failed: {failure}"),
        }
    }
}

impl std::error::Error for Error {}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_driver_condition_has_its_error() {
        let vm = VmId::from_u128(1);
        let target = Some((vm, "frames"));
        let cases = [
            (0xC000_0225, "vm_not_found"),
            (0xC000_0034, "region_not_found"),
            (0xC000_0022, "access_denied"),
            (0xC000_00D6, "session_closed"),
            (0xC000_022D, "rate_limited"),
            (0xC000_0044, "quota_exceeded"),
            (0xC000_00BB, "not_supported"),
            (0xC000_0010, "driver_too_old"),
            (0xC000_0024, "invalid_handle"),
            (0xC000_0184, "driver"),
        ];
        for (status, kind) in cases {
            let error = Error::from_driver("ATTACH_REGION", DriverFailure::nt(status), target);
            assert_eq!(error.kind(), kind, "{status:#x}");
        }
        let closed = Error::from_driver("RING_GUEST", DriverFailure::Win32(240), None);
        assert_eq!(closed, Error::SessionClosed);
        assert_eq!(
            Error::from_driver("RING_GUEST", DriverFailure::Win32(1237), None),
            Error::RateLimited
        );
        assert_eq!(
            Error::from_open(DriverFailure::Win32(2)),
            Error::DriverNotFound
        );
        assert_eq!(
            Error::from_open(DriverFailure::Win32(5)),
            Error::NotPermitted
        );
    }

    #[test]
    fn codes_are_distinct_and_negative() {
        let vm = VmId::from_u128(1);
        let all = [
            Error::Unsupported,
            Error::DriverNotFound,
            Error::NotPermitted,
            Error::DriverTooOld { request: "X" },
            Error::VmNotFound { vm_id: vm },
            Error::RegionNotFound {
                vm_id: vm,
                name: "a".into(),
            },
            Error::AccessDenied { request: "X" },
            Error::SessionClosed,
            Error::RateLimited,
            Error::QuotaExceeded,
            Error::NotSupported { request: "X" },
            Error::InvalidHandle { request: "X" },
            Error::InvalidArgument { what: "x".into() },
            Error::OutOfBounds {
                offset: 0,
                len: 1,
                size: 0,
            },
            Error::Misaligned {
                offset: 1,
                align: 4,
            },
            Error::ReadOnly,
            Error::MalformedReply {
                request: "X",
                why: "y".into(),
            },
            Error::Driver {
                request: "X",
                failure: DriverFailure::Win32(9999),
            },
            Error::Os {
                call: "X",
                failure: DriverFailure::Win32(9999),
            },
        ];
        let mut codes: Vec<i32> = all.iter().map(Error::code).collect();
        assert!(codes.iter().all(|&code| code < 0));
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
        assert!(all.iter().all(|error| !error.to_string().is_empty()));
    }
}
