//! The driver's reference on a process object: how the portable control device identifies the
//! process that opened a file handle (`vmbmmio_core::control::ProcessReference`).
//!
//! `PsGetCurrentProcess` is a wdm.h macro for `IoGetCurrentProcess` (Microsoft docs:
//! "PsGetCurrentProcess", "IoGetCurrentProcess function (ntddk.h)"); it returns the current
//! thread's process object without taking a reference. `ObReferenceObject` is a macro for
//! `ObfReferenceObject` ("ObReferenceObject function (wdm.h)"): while the reference is held
//! the object is not deleted, so its address cannot name another process. Dropping the
//! reference is `ObfDereferenceObject` ("ObDereferenceObject macro (wdm.h)"). Both run at
//! IRQL <= DISPATCH_LEVEL; the glue takes the reference at PASSIVE_LEVEL in
//! `EvtDeviceFileCreate` (the opening process's context) and the control device drops it at
//! PASSIVE_LEVEL in `EvtFileCleanup` or device cleanup.
//!
//! The identity is the object's address, the same value `KernelSections::current_process`
//! returns for the current thread, so the portable code compares like with like.

use core::ffi::c_void;

use wdk_sys::ntddk::{IoGetCurrentProcess, ObfDereferenceObject, ObfReferenceObject};

use vmbmmio_core::control::ProcessReference;
use vmbmmio_core::sections::ProcessKey;

/// The identity of the current thread's process object (its address; never dereferenced).
///
/// IRQL: any (`IoGetCurrentProcess` reads the current thread).
pub fn current_process_key() -> ProcessKey {
    // SAFETY: IoGetCurrentProcess has no preconditions; it returns the current thread's
    // process, which cannot go away while this thread runs in it.
    let process = unsafe { IoGetCurrentProcess() };
    ProcessKey(process.addr() as u64)
}

/// A counted reference on one process object, released on drop. NULL only if the kernel
/// returned no process, which it does not for a running thread; then nothing is held.
#[derive(Debug)]
pub struct ReferencedProcess(*mut c_void);

// SAFETY: a referenced object pointer is not tied to a thread; the object manager's reference
// count is thread-safe and the pointer is only compared and passed to ObfDereferenceObject.
unsafe impl Send for ReferencedProcess {}

impl ReferencedProcess {
    /// `ObReferenceObject(PsGetCurrentProcess())`.
    ///
    /// IRQL: <= DISPATCH_LEVEL.
    pub fn current() -> Self {
        // SAFETY: as in `current_process_key`.
        let process = unsafe { IoGetCurrentProcess() }.cast::<c_void>();
        if !process.is_null() {
            // SAFETY: `process` is the current thread's live process object; taking a pointer
            // reference on a live object is always allowed and cannot fail.
            let _ = unsafe { ObfReferenceObject(process) };
        }
        Self(process)
    }
}

impl ProcessReference for ReferencedProcess {
    fn key(&self) -> ProcessKey {
        ProcessKey(self.0.addr() as u64)
    }
}

impl Drop for ReferencedProcess {
    /// IRQL: <= DISPATCH_LEVEL (the control device drops it at PASSIVE_LEVEL).
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: `self` owns the one reference `current` took on this non-NULL object;
            // dropping releases it exactly once.
            let _ = unsafe { ObfDereferenceObject(self.0) };
        }
    }
}
