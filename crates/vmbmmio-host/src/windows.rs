//! The Windows backend: the control device through `CreateFileW` and `DeviceIoControl`, the
//! section through `MapViewOfFile`, doorbell events through `CreateEventW` and
//! `WaitForSingleObject`, `CloseHandle` for every handle.
//!
//! Every function here is a kernel32 export present on every supported Windows (Server 2022
//! and later), so the library links them directly and loads nothing at run time (unlike the
//! device host, which loads the Hyper-V libraries `vmdevicehost.dll` and `computecore.dll` when
//! it runs). Whether the driver is there shows at [`ControlDevice::open`]: `CreateFileW` on
//! `\\.\vmbmmio` fails with `ERROR_FILE_NOT_FOUND` (the driver's symbolic link
//! `\DosDevices\vmbmmio`, created by `src/glue/control.rs`, does not exist).
//!
//! The handle is opened for synchronous I/O: no consumer request stays pending in the driver
//! (the doorbell wait is on an event, not an IOCTL), so the I/O manager's serialisation of
//! requests on one file object costs nothing noticeable.

use std::ptr::{NonNull, null, null_mut};
use std::time::Duration;

use windows_sys::Win32::Foundation::{
    CloseHandle, GENERIC_READ, GENERIC_WRITE, GetLastError, HANDLE, INVALID_HANDLE_VALUE,
    WAIT_FAILED, WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_ATTRIBUTE_NORMAL, FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_EXISTING,
};
use windows_sys::Win32::System::IO::DeviceIoControl;
use windows_sys::Win32::System::Memory::{
    FILE_MAP_READ, FILE_MAP_WRITE, MEMORY_MAPPED_VIEW_ADDRESS, MapViewOfFile, UnmapViewOfFile,
};
use windows_sys::Win32::System::Threading::{CreateEventW, INFINITE, WaitForSingleObject};

use crate::driver::{Driver, Mapping};
use crate::failure::DriverFailure;

/// Path of the driver's control device (its `\DosDevices\vmbmmio` symbolic link).
pub const CONTROL_DEVICE_PATH: &str = r"\\.\vmbmmio";

fn last_error() -> DriverFailure {
    // SAFETY: no preconditions.
    DriverFailure::Win32(unsafe { GetLastError() })
}

/// A handle of this process as the `u64` the IOCTL interface carries.
fn handle_of(value: u64) -> HANDLE {
    value as usize as HANDLE
}

/// An open handle to the control device, closed on drop (the driver then releases every
/// attachment still open through it).
#[derive(Debug)]
pub struct ControlDevice(HANDLE);

// SAFETY: a kernel handle may be used from any thread; it is closed once, in drop.
unsafe impl Send for ControlDevice {}
// SAFETY: DeviceIoControl, MapViewOfFile, CreateEventW, WaitForSingleObject and CloseHandle
// are thread-safe; the handle itself is never changed after open.
unsafe impl Sync for ControlDevice {}

impl ControlDevice {
    /// Opens [`CONTROL_DEVICE_PATH`] for reading and writing (the IOCTLs require both access
    /// bits). `ERROR_FILE_NOT_FOUND`: the driver is not running; `ERROR_ACCESS_DENIED`: not
    /// Administrator.
    pub fn open() -> Result<Self, DriverFailure> {
        let wide: Vec<u16> = CONTROL_DEVICE_PATH
            .encode_utf16()
            .chain(std::iter::once(0))
            .collect();
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
            return Err(last_error());
        }
        Ok(Self(handle))
    }
}

impl Drop for ControlDevice {
    fn drop(&mut self) {
        // SAFETY: the handle came from CreateFileW and is closed exactly once, here.
        unsafe { CloseHandle(self.0) };
    }
}

impl Driver for ControlDevice {
    fn ioctl(&self, code: u32, input: &[u8], output: &mut [u8]) -> Result<usize, DriverFailure> {
        let input_len = u32::try_from(input.len()).map_err(|_| DriverFailure::Win32(87))?;
        let output_len = u32::try_from(output.len()).map_err(|_| DriverFailure::Win32(87))?;
        let mut returned: u32 = 0;
        // SAFETY: the handle is open (owned by `self`); the buffers outlive the synchronous
        // call; no OVERLAPPED (the handle is synchronous).
        let ok = unsafe {
            DeviceIoControl(
                self.0,
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
            return Err(last_error());
        }
        Ok(returned as usize)
    }

    fn map_section(
        &self,
        section: u64,
        size: u64,
        writable: bool,
    ) -> Result<Mapping, DriverFailure> {
        let bytes = usize::try_from(size).map_err(|_| DriverFailure::Win32(8))?;
        let desired = if writable {
            FILE_MAP_READ | FILE_MAP_WRITE
        } else {
            FILE_MAP_READ
        };
        // SAFETY: `section` is a section handle of this process (from ATTACH_REGION); the
        // view is owned by the returned Mapping until `unmap`.
        let view = unsafe { MapViewOfFile(handle_of(section), desired, 0, 0, bytes) };
        let base = NonNull::new(view.Value.cast::<u8>()).ok_or_else(last_error)?;
        // SAFETY: MapViewOfFile returned a view of `bytes` bytes, page-aligned (hence aligned
        // to 8), readable and (with FILE_MAP_WRITE) writable, valid until UnmapViewOfFile in
        // `unmap`; nothing in this process makes references to it.
        Ok(unsafe { Mapping::new(base, bytes) })
    }

    fn unmap(&self, mapping: Mapping) {
        let address = MEMORY_MAPPED_VIEW_ADDRESS {
            Value: mapping.base().as_ptr().cast(),
        };
        // SAFETY: the address MapViewOfFile returned, unmapped exactly once (Mapping is not
        // Clone and is consumed here).
        unsafe { UnmapViewOfFile(address) };
    }

    fn close_handle(&self, handle: u64) {
        // SAFETY: the caller owns `handle`, a handle of this process, and closes it once.
        unsafe { CloseHandle(handle_of(handle)) };
    }

    fn create_event(&self) -> Result<u64, DriverFailure> {
        // SAFETY: no security attributes, auto-reset (bManualReset = FALSE), not signalled,
        // unnamed.
        let event = unsafe { CreateEventW(null(), 0, 0, null()) };
        if event.is_null() {
            return Err(last_error());
        }
        Ok(event as usize as u64)
    }

    fn wait_event(&self, event: u64, timeout: Option<Duration>) -> Result<bool, DriverFailure> {
        // Milliseconds, capped below INFINITE (a long finite wait stays finite).
        let millis = match timeout {
            None => INFINITE,
            Some(timeout) => u32::try_from(timeout.as_millis())
                .unwrap_or(INFINITE - 1)
                .min(INFINITE - 1),
        };
        // SAFETY: `event` is an event handle of this process owned by the caller.
        match unsafe { WaitForSingleObject(handle_of(event), millis) } {
            WAIT_OBJECT_0 => Ok(true),
            WAIT_TIMEOUT => Ok(false),
            WAIT_FAILED => Err(last_error()),
            other => Err(DriverFailure::Win32(other)),
        }
    }
}
