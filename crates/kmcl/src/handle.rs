//! Converting the VM worker process's VMBus handle into a kernel handle (kmcl.md §6).

use core::ptr;

use crate::error::{KmclError, KmclFunction};
use crate::provider::KmclProvider;
use crate::raw::{HANDLE, STATUS_INVALID_HANDLE};

/// `VmbConvertVmbusHandleToKernelHandle(user_handle, &kernel)`.
///
/// `user_handle` is the handle's numeric value (as a user-mode caller passes it in an IOCTL
/// buffer); a handle is a table index, not a pointer, so it travels as an integer.
///
/// Returns the kernel handle, which the caller now owns: it must be closed (`ZwClose`) after
/// every channel bound to it has been cleaned up (kmcl.md §4 "Teardown": closing after Cleanup
/// is the safe order).
///
/// IRQL: PASSIVE_LEVEL. **Must run in the context of the user-mode process that owns
/// `user_handle`** (the target VM's worker process, kmcl.md §6): in a KMDF driver that means an
/// `EvtIoInCallerContext` callback, never a queue callback, which may run in another process.
/// In the wrong process the same number names a different handle table entry or none.
///
/// A success status with a NULL kernel handle is reported as `STATUS_INVALID_HANDLE` (there is
/// nothing to own or close).
pub fn convert_vmbus_handle<P: KmclProvider>(user_handle: usize) -> Result<HANDLE, KmclError> {
    let user_handle: HANDLE = ptr::without_provenance_mut(user_handle);
    let mut kernel: HANDLE = ptr::null_mut();
    // SAFETY: the user handle is passed by value (KMCL validates it against the current
    // process's handle table); `kernel` is a writable local for the out-parameter.
    let status =
        unsafe { (P::api().VmbConvertVmbusHandleToKernelHandle)(user_handle, &raw mut kernel) };
    KmclError::check(KmclFunction::VmbConvertVmbusHandleToKernelHandle, status)?;
    if kernel.is_null() {
        return Err(KmclError {
            call: KmclFunction::VmbConvertVmbusHandleToKernelHandle,
            status: STATUS_INVALID_HANDLE,
        });
    }
    Ok(kernel)
}
