//! `ZwClose` for the kernel VMBus handles the channels own.

use wdk_sys::ntddk::ZwClose;

use vmbmmio_core::channel::{KernelHandleCloser, KernelHandleValue};

/// Closes kernel handles with `ZwClose`.
pub struct ZwCloseHandles;

impl KernelHandleCloser for ZwCloseHandles {
    /// IRQL: PASSIVE_LEVEL.
    unsafe fn close(handle: KernelHandleValue) {
        // SAFETY: the caller owns `handle`, a kernel handle (OBJ_KERNEL_HANDLE, from
        // VmbConvertVmbusHandleToKernelHandle), and never uses it again after this call.
        let _ = unsafe { ZwClose(handle.as_handle()) };
    }
}
