//! The IOCTL transport on Windows: `CreateFileW` on the control device, `DeviceIoControl`,
//! `CloseHandle` on drop.
//!
//! Errors are Win32 codes from `GetLastError`: the driver completes a refused request with an
//! NTSTATUS, which the system translates before `DeviceIoControl` returns FALSE
//! (`IoctlFailure`).
//!
//! # Overlapped, so one request may stay pending
//! WAIT_GUEST_EVENT stays pending in the driver until the guest reports something
//! (docs/ioctl.md), on a thread of its own, while the device host's main thread keeps sending
//! IOCTLs on the same handle (the session is per file object). The I/O manager serialises every
//! request on a file object opened for synchronous I/O, so the handle is opened with
//! `FILE_FLAG_OVERLAPPED` and each call waits for its own `OVERLAPPED` event
//! (`GetOverlappedResult`): every call still looks synchronous to its caller. The waiting
//! thread's request is cancelled with `CancelIoEx`; it then fails with `ERROR_OPERATION_ABORTED`
//! and consumes nothing. The waiting thread's transport ([`IoctlTransport::waiter`]) publishes
//! the `OVERLAPPED` of the request it has in flight, and its canceller passes exactly that one
//! to `CancelIoEx` (Microsoft Learn, "CancelIoEx function": a non-NULL `lpOverlapped` cancels
//! only the requests issued with it), so a cancel from another thread (the Ctrl-C handler)
//! never hits a request the device host's main thread has in flight on the same handle.

use std::ptr::{null, null_mut};
use std::sync::{Arc, Mutex, PoisonError};

use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_IO_PENDING, GENERIC_READ, GENERIC_WRITE, GetLastError, HANDLE,
    INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_ATTRIBUTE_NORMAL, FILE_FLAG_OVERLAPPED, FILE_SHARE_READ, FILE_SHARE_WRITE,
    OPEN_EXISTING,
};
use windows_sys::Win32::System::IO::{
    CancelIoEx, DeviceIoControl, GetOverlappedResult, OVERLAPPED,
};
use windows_sys::Win32::System::Threading::CreateEventW;

use super::wide::to_wide;
use crate::driver_ioctl::{IoctlFailure, IoctlTransport, TransportWaiter};
use crate::platform::SectionHandle;

/// Path of the driver's control device (its `\DosDevices\vmbmmio` symbolic link).
pub const CONTROL_DEVICE_PATH: &str = r"\\.\vmbmmio";

fn last_error() -> u32 {
    // SAFETY: no preconditions.
    unsafe { GetLastError() }
}

/// The control device's handle, closed when the last transport sharing it is dropped.
#[derive(Debug)]
struct OwnedDevice(HANDLE);

// SAFETY: a kernel handle may be used and closed from any thread; it is closed once, in drop.
unsafe impl Send for OwnedDevice {}
// SAFETY: every use (DeviceIoControl, CancelIoEx) is thread-safe on the same handle.
unsafe impl Sync for OwnedDevice {}

impl Drop for OwnedDevice {
    fn drop(&mut self) {
        // SAFETY: the handle came from CreateFileW and is closed exactly once, here.
        unsafe { CloseHandle(self.0) };
    }
}

/// The address of the `OVERLAPPED` a waiting transport has in flight (`None` between calls).
/// The lock is held while the canceller passes it to `CancelIoEx` and while the call clears it
/// after completion, so the address is never used once the call returned.
#[derive(Debug, Default)]
struct InFlight(Mutex<Option<usize>>);

impl InFlight {
    fn set(&self, overlapped: Option<usize>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = overlapped;
    }
}

/// An open handle to the control device; closed when the last transport sharing it is dropped
/// ([`Self::share`]), which also ends the driver session opened through it (the driver's
/// file-cleanup path).
#[derive(Debug)]
pub struct DeviceIoControlTransport {
    device: Arc<OwnedDevice>,
    /// Set on a waiting transport (`waiter`): where its in-flight request is published.
    in_flight: Option<Arc<InFlight>>,
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
                FILE_ATTRIBUTE_NORMAL | FILE_FLAG_OVERLAPPED,
                null_mut(),
            )
        };
        if handle == INVALID_HANDLE_VALUE || handle.is_null() {
            return Err(IoctlFailure::Win32(last_error()));
        }
        Ok(Self {
            device: Arc::new(OwnedDevice(handle)),
            in_flight: None,
        })
    }

    /// Another transport on the same handle (the same file object, hence the same driver
    /// session), for the thread that keeps WAIT_GUEST_EVENT pending. The handle closes when
    /// the last of them is dropped.
    pub fn share(&self) -> Self {
        Self {
            device: Arc::clone(&self.device),
            in_flight: None,
        }
    }

    /// Cancels every request of this process on the handle (`CancelIoEx` with no
    /// `OVERLAPPED`), including one another thread has in flight. The device host uses the
    /// targeted canceller of [`IoctlTransport::waiter`] instead, which cancels the waiting
    /// thread's request only; this one is for a last resort. Safe to call from any thread.
    pub fn canceller(&self) -> impl Fn() + Send + Sync + 'static {
        let device = Arc::clone(&self.device);
        move || {
            // SAFETY: the handle is open while `device` lives (this closure holds it); a NULL
            // OVERLAPPED cancels all of this process's I/O on it. Nothing pending: a no-op
            // (ERROR_NOT_FOUND), which is fine.
            unsafe { CancelIoEx(device.0, null()) };
        }
    }
}

/// Cancels the request a waiting transport has in flight, if any (a no-op otherwise).
fn cancel_in_flight(device: &OwnedDevice, in_flight: &InFlight) {
    let guard = in_flight.0.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(overlapped) = *guard {
        // SAFETY: the handle is open while `device` lives. `overlapped` is the address of the
        // OVERLAPPED of a call still inside `ioctl` (it clears the address under this lock
        // before its OVERLAPPED goes away); CancelIoEx only marks the request issued with it.
        // Already completed: a no-op (ERROR_NOT_FOUND).
        unsafe { CancelIoEx(device.0, overlapped as *const OVERLAPPED) };
    }
}

/// A manual-reset event for one overlapped call, closed on drop.
struct CallEvent(HANDLE);

impl CallEvent {
    fn new() -> Result<Self, IoctlFailure> {
        // SAFETY: no security attributes, manual reset, initially non-signalled, unnamed.
        let event = unsafe { CreateEventW(null(), 1, 0, null()) };
        if event.is_null() {
            return Err(IoctlFailure::Win32(last_error()));
        }
        Ok(Self(event))
    }
}

impl Drop for CallEvent {
    fn drop(&mut self) {
        // SAFETY: created in `new`, closed once.
        unsafe { CloseHandle(self.0) };
    }
}

impl DeviceIoControlTransport {
    /// One request: `DeviceIoControl` with `overlapped`, then, if it pends,
    /// `GetOverlappedResult` waiting for its completion (or cancellation).
    fn call(
        &self,
        code: u32,
        input: &[u8],
        output: &mut [u8],
        overlapped: &mut OVERLAPPED,
    ) -> Result<usize, IoctlFailure> {
        let input_len = u32::try_from(input.len()).map_err(|_| IoctlFailure::Win32(87))?;
        let output_len = u32::try_from(output.len()).map_err(|_| IoctlFailure::Win32(87))?;
        let mut returned: u32 = 0;
        // SAFETY: the handle is open (held by `self.device`). The input and output buffers,
        // `overlapped` and its event outlive the request: if it pends, GetOverlappedResult below
        // waits for its completion (or cancellation) before any of them is released.
        let ok = unsafe {
            DeviceIoControl(
                self.device.0,
                code,
                input.as_ptr().cast(),
                input_len,
                output.as_mut_ptr().cast(),
                output_len,
                &mut returned,
                overlapped,
            )
        };
        if ok == 0 {
            let error = last_error();
            if error != ERROR_IO_PENDING {
                return Err(IoctlFailure::Win32(error));
            }
            // SAFETY: `overlapped` is the structure of the pending request on this handle;
            // bWait = TRUE blocks until it completed, so the buffers stay valid throughout.
            let done = unsafe { GetOverlappedResult(self.device.0, overlapped, &mut returned, 1) };
            if done == 0 {
                return Err(IoctlFailure::Win32(last_error()));
            }
        }
        Ok(returned as usize)
    }
}

impl IoctlTransport for DeviceIoControlTransport {
    fn ioctl(&mut self, code: u32, input: &[u8], output: &mut [u8]) -> Result<usize, IoctlFailure> {
        let event = CallEvent::new()?;
        // SAFETY: OVERLAPPED is plain data; all-zero is its documented initial state.
        let mut overlapped: OVERLAPPED = unsafe { std::mem::zeroed() };
        overlapped.hEvent = event.0;
        let Some(in_flight) = self.in_flight.clone() else {
            return self.call(code, input, output, &mut overlapped);
        };
        // A waiting transport publishes its OVERLAPPED before the request exists (a cancel
        // cannot miss it once it pends) and withdraws it before the OVERLAPPED goes away.
        in_flight.set(Some(std::ptr::addr_of!(overlapped) as usize));
        let result = self.call(code, input, output, &mut overlapped);
        in_flight.set(None);
        result
    }

    /// [`Self::share`] with its in-flight request published, and a canceller that passes that
    /// request's `OVERLAPPED` to `CancelIoEx`: the waiting thread's requests go out on the same
    /// file object, each with its own `OVERLAPPED`, so they never queue behind the main
    /// thread's, and cancelling them never touches the main thread's.
    fn waiter(&self) -> Option<TransportWaiter> {
        let in_flight = Arc::new(InFlight::default());
        let device = Arc::clone(&self.device);
        let published = Arc::clone(&in_flight);
        Some(TransportWaiter {
            transport: Box::new(Self {
                device: Arc::clone(&self.device),
                in_flight: Some(in_flight),
            }),
            cancel: Box::new(move || cancel_in_flight(&device, &published)),
        })
    }

    fn close_handle(&mut self, handle: u64) {
        // A section handle the driver opened in this process and the client refused: nothing
        // else owns it.
        super::sections::close_section_handle(SectionHandle(handle));
    }
}
