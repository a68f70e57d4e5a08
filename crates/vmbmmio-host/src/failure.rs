//! How a request failed as the transport saw it, and what that failure means.
//!
//! On Windows the driver completes a refused request with an NTSTATUS, which user mode never
//! sees: `DeviceIoControl` returns FALSE and `GetLastError` gives the Win32 error the system
//! translated it to (`RtlNtStatusToDosError`; for example `STATUS_VIRTUAL_CIRCUIT_CLOSED`
//! arrives as `ERROR_VC_DISCONNECTED`, 240). An in-process transport (the simulator running the
//! driver's core, the scripted fake) sees the NTSTATUS itself. Both spellings are normalised to
//! one [`Condition`], so the client's error mapping does not depend on the transport.

use std::fmt;

/// Why a driver call (or an OS call of a [`crate::Driver`]) failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DriverFailure {
    /// A Win32 error code (`GetLastError()` after the call failed).
    Win32(u32),
    /// The NTSTATUS the driver completed the request with (in-process transports only).
    NtStatus(i32),
}

/// What a failure means for the client: the statuses docs/ioctl.md gives the consumer requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Condition {
    /// `STATUS_NO_MORE_ENTRIES` / `ERROR_NO_MORE_ITEMS`: LIST_SESSIONS past the end.
    NoMoreEntries,
    /// `STATUS_NOT_FOUND` / `ERROR_NOT_FOUND`: no version-2 session with that VM id.
    NotFound,
    /// `STATUS_OBJECT_NAME_NOT_FOUND` / `ERROR_FILE_NOT_FOUND`: no region of that name (and, at
    /// open, no control device: the driver is not running).
    NameNotFound,
    /// `STATUS_ACCESS_DENIED` / `ERROR_ACCESS_DENIED`.
    AccessDenied,
    /// `STATUS_INVALID_DEVICE_STATE` / `ERROR_BAD_COMMAND`: the handle owns a session.
    InvalidDeviceState,
    /// `STATUS_QUOTA_EXCEEDED` / `ERROR_NOT_ENOUGH_QUOTA`: too many attachments.
    QuotaExceeded,
    /// `STATUS_VIRTUAL_CIRCUIT_CLOSED` / `ERROR_VC_DISCONNECTED`: the owning session closed.
    SessionClosed,
    /// `STATUS_RETRY` / `ERROR_RETRY`: the rate limit refused the doorbell.
    Retry,
    /// `STATUS_NOT_SUPPORTED` / `ERROR_NOT_SUPPORTED`: the guest speaks protocol 1.0 only.
    NotSupported,
    /// `STATUS_INVALID_DEVICE_REQUEST` / `ERROR_INVALID_FUNCTION`: a driver older than the
    /// request.
    UnknownRequest,
    /// `STATUS_INVALID_HANDLE`, `STATUS_OBJECT_TYPE_MISMATCH` / `ERROR_INVALID_HANDLE`.
    InvalidHandle,
    /// `STATUS_INVALID_PARAMETER` / `ERROR_INVALID_PARAMETER`.
    InvalidParameter,
    /// `STATUS_REVISION_MISMATCH` / `ERROR_REVISION_MISMATCH`.
    RevisionMismatch,
    /// `STATUS_INSUFFICIENT_RESOURCES` / `ERROR_NO_SYSTEM_RESOURCES`, `ERROR_NOT_ENOUGH_MEMORY`.
    Resources,
    /// Anything else.
    Other,
}

/// `STATUS_NO_MORE_ENTRIES` (a warning status: `DeviceIoControl` still fails with it).
pub const STATUS_NO_MORE_ENTRIES: u32 = 0x8000_001A;
/// `STATUS_VIRTUAL_CIRCUIT_CLOSED`.
pub const STATUS_VIRTUAL_CIRCUIT_CLOSED: u32 = 0xC000_00D6;
/// `ERROR_VC_DISCONNECTED`, what `STATUS_VIRTUAL_CIRCUIT_CLOSED` becomes in user mode.
pub const ERROR_VC_DISCONNECTED: u32 = 240;
/// `STATUS_RETRY`.
pub const STATUS_RETRY: u32 = 0xC000_022D;
/// `ERROR_RETRY`, what `STATUS_RETRY` becomes in user mode.
pub const ERROR_RETRY: u32 = 1237;

impl DriverFailure {
    /// The NTSTATUS `status` (given as its unsigned spelling, `0xC000_0022`).
    pub const fn nt(status: u32) -> Self {
        Self::NtStatus(i32::from_ne_bytes(status.to_ne_bytes()))
    }

    /// The condition this failure stands for.
    pub const fn condition(self) -> Condition {
        match self {
            Self::Win32(code) => match code {
                259 => Condition::NoMoreEntries,
                1168 => Condition::NotFound,
                2 | 3 => Condition::NameNotFound,
                5 => Condition::AccessDenied,
                22 => Condition::InvalidDeviceState,
                1816 => Condition::QuotaExceeded,
                ERROR_VC_DISCONNECTED => Condition::SessionClosed,
                ERROR_RETRY => Condition::Retry,
                50 => Condition::NotSupported,
                1 => Condition::UnknownRequest,
                6 => Condition::InvalidHandle,
                87 => Condition::InvalidParameter,
                1306 => Condition::RevisionMismatch,
                8 | 14 | 1450 => Condition::Resources,
                _ => Condition::Other,
            },
            Self::NtStatus(status) => match u32::from_ne_bytes(status.to_ne_bytes()) {
                STATUS_NO_MORE_ENTRIES => Condition::NoMoreEntries,
                0xC000_0225 => Condition::NotFound,
                0xC000_0034 => Condition::NameNotFound,
                0xC000_0022 => Condition::AccessDenied,
                0xC000_0184 => Condition::InvalidDeviceState,
                0xC000_0044 => Condition::QuotaExceeded,
                STATUS_VIRTUAL_CIRCUIT_CLOSED => Condition::SessionClosed,
                STATUS_RETRY => Condition::Retry,
                0xC000_00BB => Condition::NotSupported,
                0xC000_0010 => Condition::UnknownRequest,
                0xC000_0008 | 0xC000_0024 => Condition::InvalidHandle,
                0xC000_000D => Condition::InvalidParameter,
                0xC000_0059 => Condition::RevisionMismatch,
                0xC000_009A => Condition::Resources,
                _ => Condition::Other,
            },
        }
    }

    /// The symbolic name of the codes the consumer requests are expected to fail with.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::Win32(code) => match code {
                1 => "ERROR_INVALID_FUNCTION",
                2 => "ERROR_FILE_NOT_FOUND",
                3 => "ERROR_PATH_NOT_FOUND",
                5 => "ERROR_ACCESS_DENIED",
                6 => "ERROR_INVALID_HANDLE",
                8 => "ERROR_NOT_ENOUGH_MEMORY",
                14 => "ERROR_OUTOFMEMORY",
                22 => "ERROR_BAD_COMMAND",
                50 => "ERROR_NOT_SUPPORTED",
                87 => "ERROR_INVALID_PARAMETER",
                ERROR_VC_DISCONNECTED => "ERROR_VC_DISCONNECTED",
                259 => "ERROR_NO_MORE_ITEMS",
                1168 => "ERROR_NOT_FOUND",
                ERROR_RETRY => "ERROR_RETRY",
                1306 => "ERROR_REVISION_MISMATCH",
                1450 => "ERROR_NO_SYSTEM_RESOURCES",
                1816 => "ERROR_NOT_ENOUGH_QUOTA",
                _ => return None,
            },
            Self::NtStatus(status) => match u32::from_ne_bytes(status.to_ne_bytes()) {
                STATUS_NO_MORE_ENTRIES => "STATUS_NO_MORE_ENTRIES",
                0xC000_0008 => "STATUS_INVALID_HANDLE",
                0xC000_000D => "STATUS_INVALID_PARAMETER",
                0xC000_0010 => "STATUS_INVALID_DEVICE_REQUEST",
                0xC000_0022 => "STATUS_ACCESS_DENIED",
                0xC000_0024 => "STATUS_OBJECT_TYPE_MISMATCH",
                0xC000_0034 => "STATUS_OBJECT_NAME_NOT_FOUND",
                0xC000_0044 => "STATUS_QUOTA_EXCEEDED",
                0xC000_0059 => "STATUS_REVISION_MISMATCH",
                0xC000_009A => "STATUS_INSUFFICIENT_RESOURCES",
                0xC000_00BB => "STATUS_NOT_SUPPORTED",
                STATUS_VIRTUAL_CIRCUIT_CLOSED => "STATUS_VIRTUAL_CIRCUIT_CLOSED",
                0xC000_0184 => "STATUS_INVALID_DEVICE_STATE",
                0xC000_0225 => "STATUS_NOT_FOUND",
                STATUS_RETRY => "STATUS_RETRY",
                _ => return None,
            },
        })
    }
}

impl fmt::Display for DriverFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Win32(code) => write!(f, "Win32 error {code}")?,
            Self::NtStatus(status) => {
                write!(
                    f,
                    "NTSTATUS 0x{:08X}",
                    u32::from_ne_bytes(status.to_ne_bytes())
                )?;
            }
        }
        match self.name() {
            Some(name) => write!(f, " ({name})"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for DriverFailure {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_of_each_status_mean_the_same() {
        let pairs = [
            (STATUS_NO_MORE_ENTRIES, 259, Condition::NoMoreEntries),
            (0xC000_0225, 1168, Condition::NotFound),
            (0xC000_0034, 2, Condition::NameNotFound),
            (0xC000_0022, 5, Condition::AccessDenied),
            (0xC000_0184, 22, Condition::InvalidDeviceState),
            (0xC000_0044, 1816, Condition::QuotaExceeded),
            (STATUS_VIRTUAL_CIRCUIT_CLOSED, 240, Condition::SessionClosed),
            (STATUS_RETRY, 1237, Condition::Retry),
            (0xC000_00BB, 50, Condition::NotSupported),
            (0xC000_0010, 1, Condition::UnknownRequest),
            (0xC000_0008, 6, Condition::InvalidHandle),
            (0xC000_0024, 6, Condition::InvalidHandle),
            (0xC000_000D, 87, Condition::InvalidParameter),
        ];
        for (status, win32, condition) in pairs {
            assert_eq!(
                DriverFailure::nt(status).condition(),
                condition,
                "{status:#x}"
            );
            assert_eq!(
                DriverFailure::Win32(win32).condition(),
                condition,
                "{win32}"
            );
            assert!(DriverFailure::nt(status).name().is_some());
            assert!(DriverFailure::Win32(win32).name().is_some());
        }
        assert_eq!(DriverFailure::Win32(9999).condition(), Condition::Other);
    }

    #[test]
    fn failures_print_code_and_name() {
        assert_eq!(
            DriverFailure::Win32(240).to_string(),
            "Win32 error 240 (ERROR_VC_DISCONNECTED)"
        );
        assert_eq!(
            DriverFailure::nt(0xC000_022D).to_string(),
            "NTSTATUS 0xC000022D (STATUS_RETRY)"
        );
        assert_eq!(DriverFailure::Win32(9999).to_string(), "Win32 error 9999");
    }
}
