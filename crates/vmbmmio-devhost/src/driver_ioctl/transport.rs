//! How IOCTL bytes reach the driver: one trait, so the client is the same on Windows
//! (`DeviceIoControl`), in the simulator (a call into the driver's dispatch) and in tests (a
//! fake).

use std::fmt;

/// Why an IOCTL failed, as the transport saw it.
///
/// On Windows the driver completes a refused request with an NTSTATUS, and user mode never sees
/// that value: `DeviceIoControl` returns FALSE and `GetLastError` gives the Win32 error the
/// system translated it to (for example `STATUS_INVALID_PARAMETER` arrives as
/// `ERROR_INVALID_PARAMETER`, 87). So the Windows transport reports [`IoctlFailure::Win32`]. A
/// transport that calls the driver's portable dispatch directly (the simulator, tests) sees the
/// NTSTATUS itself and reports [`IoctlFailure::NtStatus`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IoctlFailure {
    /// A Win32 error code (`GetLastError()` after `DeviceIoControl` failed).
    Win32(u32),
    /// The NTSTATUS the driver completed the request with (in-process transports only).
    NtStatus(i32),
}

impl IoctlFailure {
    /// The symbolic name of the codes the control device's requests are expected to fail with
    /// (docs/ioctl.md, docs/devhost.md), for messages.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::Win32(code) => match code {
                1 => "ERROR_INVALID_FUNCTION",
                2 => "ERROR_FILE_NOT_FOUND",
                4 => "ERROR_TOO_MANY_OPEN_FILES",
                5 => "ERROR_ACCESS_DENIED",
                6 => "ERROR_INVALID_HANDLE",
                22 => "ERROR_BAD_COMMAND",
                87 => "ERROR_INVALID_PARAMETER",
                122 => "ERROR_INSUFFICIENT_BUFFER",
                1306 => "ERROR_REVISION_MISMATCH",
                1450 => "ERROR_NO_SYSTEM_RESOURCES",
                1617 => "ERROR_DEVICE_REMOVED",
                1784 => "ERROR_INVALID_USER_BUFFER",
                _ => return None,
            },
            Self::NtStatus(status) => match status as u32 {
                0xC000_000D => "STATUS_INVALID_PARAMETER",
                0xC000_0010 => "STATUS_INVALID_DEVICE_REQUEST",
                0xC000_0022 => "STATUS_ACCESS_DENIED",
                0xC000_0023 => "STATUS_BUFFER_TOO_SMALL",
                0xC000_0059 => "STATUS_REVISION_MISMATCH",
                0xC000_009A => "STATUS_INSUFFICIENT_RESOURCES",
                0xC000_011F => "STATUS_TOO_MANY_OPENED_FILES",
                0xC000_0184 => "STATUS_INVALID_DEVICE_STATE",
                0xC000_0206 => "STATUS_INVALID_BUFFER_SIZE",
                0xC000_02B6 => "STATUS_DEVICE_REMOVED",
                _ => return None,
            },
        })
    }
}

impl fmt::Display for IoctlFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Win32(code) => write!(f, "Win32 error {code}")?,
            Self::NtStatus(status) => write!(f, "NTSTATUS 0x{:08X}", *status as u32)?,
        }
        match self.name() {
            Some(name) => write!(f, " ({name})"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for IoctlFailure {}

/// One open handle to the driver's control device.
///
/// Ownership: the transport owns the handle to the control device; the driver's session lives
/// as long as that handle (closing it is the driver's cleanup path, docs/ioctl.md), so dropping
/// the transport ends the session even if CLOSE_SESSION was never sent.
pub trait IoctlTransport {
    /// Sends one `METHOD_BUFFERED` IOCTL with `code`, `input` as the input buffer and `output`
    /// as the output buffer. Returns how many bytes of `output` the driver wrote, or the status
    /// it failed with.
    fn ioctl(&mut self, code: u32, input: &[u8], output: &mut [u8]) -> Result<usize, IoctlFailure>;

    /// Closes a section handle that the driver opened in this process and the client refuses
    /// (a GET_REGION_SECTION reply that contradicts the session's layout), so it is not leaked.
    /// Windows: `CloseHandle`. Handles the client accepts are owned and closed by the device
    /// host's `SectionMapper` instead.
    fn close_handle(&mut self, handle: u64);

    /// Another transport on the same handle (the same file object, hence the same driver
    /// session) for the thread that keeps WAIT_GUEST_EVENT pending, and how to cancel that
    /// thread's pending request from another thread. `None` (the default): this transport
    /// cannot; the device host then does without the guest's events. The Windows transport
    /// shares its overlapped handle and cancels with `CancelIoEx`.
    fn waiter(&self) -> Option<TransportWaiter> {
        None
    }
}

/// What [`IoctlTransport::waiter`] returns.
pub struct TransportWaiter {
    /// The waiting thread's transport; the shared handle closes when the last user drops it.
    pub transport: Box<dyn IoctlTransport + Send>,
    /// Cancels the waiting thread's pending request; callable from any thread.
    pub cancel: Box<dyn Fn() + Send + Sync>,
}

impl<T: IoctlTransport + ?Sized> IoctlTransport for &mut T {
    fn ioctl(&mut self, code: u32, input: &[u8], output: &mut [u8]) -> Result<usize, IoctlFailure> {
        (**self).ioctl(code, input, output)
    }

    fn close_handle(&mut self, handle: u64) {
        (**self).close_handle(handle);
    }

    fn waiter(&self) -> Option<TransportWaiter> {
        (**self).waiter()
    }
}

impl<T: IoctlTransport + ?Sized> IoctlTransport for Box<T> {
    fn ioctl(&mut self, code: u32, input: &[u8], output: &mut [u8]) -> Result<usize, IoctlFailure> {
        (**self).ioctl(code, input, output)
    }

    fn close_handle(&mut self, handle: u64) {
        (**self).close_handle(handle);
    }

    fn waiter(&self) -> Option<TransportWaiter> {
        (**self).waiter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_print_code_and_name() {
        assert_eq!(
            IoctlFailure::Win32(87).to_string(),
            "Win32 error 87 (ERROR_INVALID_PARAMETER)"
        );
        assert_eq!(IoctlFailure::Win32(9999).to_string(), "Win32 error 9999");
        assert_eq!(
            IoctlFailure::NtStatus(0xC000_0184_u32 as i32).to_string(),
            "NTSTATUS 0xC0000184 (STATUS_INVALID_DEVICE_STATE)"
        );
    }
}
