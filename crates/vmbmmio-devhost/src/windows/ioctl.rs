//! The IOCTL transport on Windows: `CreateFileW` on the control device, `DeviceIoControl`,
//! `CloseHandle` on drop.
//!
//! Errors are Win32 codes from `GetLastError`: the driver completes a refused request with an
//! NTSTATUS, which the system translates before `DeviceIoControl` returns FALSE
//! (`IoctlFailure`).

use std::ptr::{null, null_mut};

use windows_sys::Win32::Foundation::{
    CloseHandle, GENERIC_READ, GENERIC_WRITE, GetLastError, HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_ATTRIBUTE_NORMAL, FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_EXISTING,
};
use windows_sys::Win32::System::IO::DeviceIoControl;

use super::wide::to_wide;
use crate::driver_ioctl::{IoctlFailure, IoctlTransport};
use crate::platform::SectionHandle;

/// Path of the driver's control device (its `\DosDevices\vmbmmio` symbolic link).
pub const CONTROL_DEVICE_PATH: &str = r"\\.\vmbmmio";

fn last_error() -> u32 {
    // SAFETY: no preconditions.
    unsafe { GetLastError() }
}

/// An open handle to the control device; closed on drop, which also ends the driver session
/// opened through it (the driver's file-cleanup path).
#[derive(Debug)]
pub struct DeviceIoControlTransport {
    handle: HANDLE,
}

impl DeviceIoControlTransport {
    /// Opens [`CONTROL_DEVICE_PATH`] for reading and writing (the IOCTLs require both access
    /// bits, docs/ioctl.md). `ERROR_FILE_NOT_FOUND` (2) means the driver is not running.
    pub fn open() -> Result<Self, IoctlFailure> {
        Self::open_path(CONTROL_DEVICE_PATH)
    }

    /// Opens the control device at `path`.
    pub fn open_path(path: &str) -> Result<Self, IoctlFailure> {
        let wide = to_wide(path);
        // SAFETY: `wide` is a NUL-terminated UTF-16 string that outlives the call; no security
        // attributes and no template handle are passed.
        let handle = unsafe {
            CreateFileW(
                wide.as_ptr(),
                GENERIC_READ | GENERIC_WRITE,
                FILE_SHARE_READ | FILE_SHARE_WRITE,
                null(),
                OPEN_EXISTING,
                FILE_ATTRIBUTE_NORMAL,
                null_mut(),
            )
        };
        if handle == INVALID_HANDLE_VALUE || handle.is_null() {
            return Err(IoctlFailure::Win32(last_error()));
        }
        Ok(Self { handle })
    }
}

impl IoctlTransport for DeviceIoControlTransport {
    fn ioctl(&mut self, code: u32, input: &[u8], output: &mut [u8]) -> Result<usize, IoctlFailure> {
        let input_len = u32::try_from(input.len()).map_err(|_| IoctlFailure::Win32(87))?;
        let output_len = u32::try_from(output.len()).map_err(|_| IoctlFailure::Win32(87))?;
        let mut returned: u32 = 0;
        // SAFETY: `self.handle` is an open handle to the control device (owned, closed only in
        // drop). The input and output pointers are valid for the lengths passed and outlive
        // this synchronous call (the handle is not opened for overlapped I/O, so the call
        // completes before it returns); `returned` is a valid u32 to write.
        let ok = unsafe {
            DeviceIoControl(
                self.handle,
                code,
                input.as_ptr().cast(),
                input_len,
                output.as_mut_ptr().cast(),
                output_len,
                &mut returned,
                null_mut(),
            )
        };
        if ok == 0 {
            return Err(IoctlFailure::Win32(last_error()));
        }
        Ok(returned as usize)
    }

    fn close_handle(&mut self, handle: u64) {
        // A section handle the driver opened in this process and the client refused: nothing
        // else owns it.
        super::sections::close_section_handle(SectionHandle(handle));
    }
}

impl Drop for DeviceIoControlTransport {
    fn drop(&mut self) {
        // SAFETY: `self.handle` came from CreateFileW and is closed exactly once, here.
        unsafe { CloseHandle(self.handle) };
    }
}
