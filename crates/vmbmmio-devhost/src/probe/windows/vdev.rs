//! The second open of the VM's VMBus vdev path, and (only with `--experimental`) the two
//! IOCTLs on it, each bounded and cancelled when it does not complete.

use std::ptr::{null, null_mut};

use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_IO_PENDING, GetLastError, HANDLE, INVALID_HANDLE_VALUE, WAIT_TIMEOUT,
};
use windows_sys::Win32::Storage::FileSystem::{CreateFileW, FILE_FLAG_OVERLAPPED, OPEN_EXISTING};
use windows_sys::Win32::System::IO::{
    CancelIoEx, DeviceIoControl, GetOverlappedResultEx, OVERLAPPED,
};
use windows_sys::Win32::System::Threading::CreateEventW;

use super::wide;
use crate::guid::Guid;
use crate::probe::facts::{IoctlFacts, IoctlResult, VdevFacts};
use crate::probe::vdev::{
    IOCTL_TIMEOUT, VDEV_DESIRED_ACCESS, VDEV_SHARE_MODE, experimental_ioctls, hex, vdev_path,
};

fn last_error() -> u32 {
    // SAFETY: no preconditions.
    unsafe { GetLastError() }
}

/// One request's memory: it must outlive the I/O, so a request that never completes is
/// leaked rather than freed under the driver.
struct Request {
    overlapped: OVERLAPPED,
    input: Vec<u8>,
    output: Vec<u8>,
}

fn send(
    file: HANDLE,
    code: u32,
    name: &'static str,
    input: Vec<u8>,
    output_len: u32,
) -> IoctlFacts {
    let input_len = input.len() as u32;
    let facts = |result| IoctlFacts {
        code,
        name,
        input_len,
        output_len,
        result,
    };
    // SAFETY: manual-reset, initially non-signalled, unnamed event.
    let event = unsafe { CreateEventW(null(), 1, 0, null()) };
    if event.is_null() {
        return facts(IoctlResult::Failed {
            win32: last_error(),
        });
    }
    let mut request = Box::new(Request {
        // SAFETY: OVERLAPPED is plain data; all-zero is its documented initial state.
        overlapped: unsafe { std::mem::zeroed() },
        input,
        output: vec![0u8; output_len as usize],
    });
    request.overlapped.hEvent = event;
    let mut returned = 0u32;
    let input_ptr = if request.input.is_empty() {
        null()
    } else {
        request.input.as_ptr().cast()
    };
    let output_ptr = if request.output.is_empty() {
        null_mut()
    } else {
        request.output.as_mut_ptr().cast()
    };
    // SAFETY: `file` is open for overlapped I/O; the buffers and the OVERLAPPED live in
    // `request`, which is freed only after the I/O completed (or leaked, below).
    let ok = unsafe {
        DeviceIoControl(
            file,
            code,
            input_ptr,
            input_len,
            output_ptr,
            output_len,
            &mut returned,
            &mut request.overlapped,
        )
    };
    if ok == 0 {
        let error = last_error();
        if error != ERROR_IO_PENDING {
            // SAFETY: the event was created above and is closed once; the I/O never started.
            unsafe { CloseHandle(event) };
            return facts(IoctlResult::Failed { win32: error });
        }
    }
    let timeout = IOCTL_TIMEOUT.as_millis() as u32;
    // SAFETY: `request.overlapped` is the OVERLAPPED of this I/O, alive.
    let done =
        unsafe { GetOverlappedResultEx(file, &request.overlapped, &mut returned, timeout, 0) };
    let result = if done != 0 {
        let len = (returned as usize).min(request.output.len());
        IoctlResult::Completed {
            bytes_returned: returned,
            output_hex: hex(request.output.get(..len).unwrap_or_default()),
        }
    } else {
        let error = last_error();
        if error != WAIT_TIMEOUT {
            IoctlResult::Failed { win32: error }
        } else {
            // SAFETY: cancels this I/O only.
            let cancelled = unsafe { CancelIoEx(file, &request.overlapped) } != 0;
            // SAFETY: as above: wait (bounded) for the cancelled I/O to finish.
            let finished = unsafe {
                GetOverlappedResultEx(file, &request.overlapped, &mut returned, timeout, 0)
            } != 0
                || last_error() != WAIT_TIMEOUT;
            if !finished {
                // The I/O may still write into the request and signal the event: leave both.
                Box::leak(request);
                return facts(IoctlResult::TimedOut { cancelled });
            }
            IoctlResult::TimedOut { cancelled }
        }
    };
    // SAFETY: the I/O is over; the event was created above and is closed once.
    unsafe { CloseHandle(event) };
    facts(result)
}

/// Opens `\\.\VMBus\vdev\{vm_id}` a second time; with `experimental`, sends the two IOCTLs;
/// closes it.
pub fn collect(vm_id: Guid, vm_name: &str, experimental: bool) -> VdevFacts {
    let path = vdev_path(vm_id);
    let wide_path = wide(&path);
    // SAFETY: the path is NUL-terminated; no security attributes, no template.
    let file = unsafe {
        CreateFileW(
            wide_path.as_ptr(),
            VDEV_DESIRED_ACCESS,
            VDEV_SHARE_MODE,
            null(),
            OPEN_EXISTING,
            FILE_FLAG_OVERLAPPED,
            null_mut(),
        )
    };
    let mut facts = VdevFacts {
        path,
        desired_access: VDEV_DESIRED_ACCESS,
        share_mode: VDEV_SHARE_MODE,
        open: Ok(()),
        ioctls: Vec::new(),
    };
    if file == INVALID_HANDLE_VALUE {
        facts.open = Err(last_error());
        return facts;
    }
    if experimental {
        for (code, name, input, output_len) in experimental_ioctls(vm_name) {
            facts.ioctls.push(send(file, code, name, input, output_len));
        }
    }
    // SAFETY: opened above, closed once.
    unsafe { CloseHandle(file) };
    facts
}
