//! The host consumers' doorbell events and the rate limits' clock, with wdk-sys
//! (`vmbmmio_core::consumers::{UserEvents, Clock}`).
//!
//! Mechanical: when to reference, signal and release is decided in `vmbmmio_core`.
//!
//! # Events
//! - reference: `ObReferenceObjectByHandle(handle, EVENT_MODIFY_STATE, *ExEventObjectType,
//!   UserMode, &object, NULL)` (Microsoft, "ObReferenceObjectByHandle function (wdm.h)"): the
//!   handle is looked up in the **current** process's table (the IOCTL runs in
//!   `EvtIoInCallerContext`), `UserMode` checks the handle's granted access for
//!   `EVENT_MODIFY_STATE`, and the object type must be an event; each refusal comes back as
//!   that call's NTSTATUS. PASSIVE_LEVEL.
//! - signal: `KeSetEvent(object, IO_NO_INCREMENT, FALSE)` (Microsoft, "KeSetEvent function
//!   (wdm.h)": <= DISPATCH_LEVEL with `Wait` FALSE; it does not block).
//! - release: `ObfDereferenceObject` (`ObDereferenceObject` is a macro), <= DISPATCH_LEVEL.
//!
//! # Clock
//! `KeQueryInterruptTime` (Microsoft, "KeQueryInterruptTime function (wdm.h)": 100-nanosecond
//! units, any IRQL). On x64 wdm.h defines it as a macro that reads the interrupt time from the
//! shared user data page (`*(volatile ULONG64 *)SharedInterruptTime`), so there is no function
//! to call: the glue makes the same volatile read, at wdk-sys's `SharedInterruptTime`.

use core::ffi::c_void;
use core::ptr::null_mut;

use kmcl::raw::{NT_SUCCESS, NTSTATUS, STATUS_INVALID_HANDLE, STATUS_UNSUCCESSFUL};
use wdk_sys::ntddk::{KeSetEvent, ObReferenceObjectByHandle, ObfDereferenceObject};
use wdk_sys::{
    _MODE, ExEventObjectType, HANDLE, IO_NO_INCREMENT, KPRIORITY, KPROCESSOR_MODE, PVOID,
    SharedInterruptTime,
};

use vmbmmio_core::consumers::{Clock, EVENT_MODIFY_STATE, EventRef, UserEvents};

// The portable module spells the winnt.h right itself; it must be the WDK's.
const _: () = assert!(wdk_sys::EVENT_MODIFY_STATE == EVENT_MODIFY_STATE);

/// The Windows event backend. Stateless; an [`EventRef`] holds the object pointer.
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelEvents;

/// The object pointer an [`EventRef`] holds.
fn object(event: &EventRef) -> PVOID {
    core::ptr::with_exposed_provenance_mut::<c_void>(
        usize::try_from(event.raw()).unwrap_or_default(),
    )
}

impl UserEvents for KernelEvents {
    /// IRQL: PASSIVE_LEVEL, in the requesting process's context.
    fn reference(&self, handle: u64) -> Result<EventRef, NTSTATUS> {
        if handle == 0 {
            return Err(STATUS_INVALID_HANDLE);
        }
        let handle: HANDLE = core::ptr::with_exposed_provenance_mut::<c_void>(
            usize::try_from(handle).map_err(|_| STATUS_INVALID_HANDLE)?,
        );
        let mut referenced: PVOID = null_mut();
        // SAFETY: `ExEventObjectType` is the kernel's exported variable, set before any driver
        // loads and never written afterwards; reading it by value is a plain load.
        let type_slot = unsafe { ExEventObjectType };
        // SAFETY: it points to the kernel's `POBJECT_TYPE` of events (wdm.h declares it
        // `extern POBJECT_TYPE *ExEventObjectType`), valid for the system's lifetime.
        let event_type = unsafe { *type_slot };
        // SAFETY: `handle` is a value from the caller, looked up by the object manager in the
        // current process's table with UserMode checks (a stale or foreign value fails with an
        // NTSTATUS, it is never dereferenced by us); `referenced` is a live local;
        // HandleInformation is optional; the trait requires PASSIVE_LEVEL.
        let status = unsafe {
            ObReferenceObjectByHandle(
                handle,
                EVENT_MODIFY_STATE,
                event_type,
                _MODE::UserMode as KPROCESSOR_MODE,
                &raw mut referenced,
                null_mut(),
            )
        };
        if !NT_SUCCESS(status) {
            return Err(status);
        }
        if referenced.is_null() {
            return Err(STATUS_UNSUCCESSFUL);
        }
        Ok(EventRef::from_raw(referenced.expose_provenance() as u64))
    }

    /// IRQL: <= DISPATCH_LEVEL.
    fn signal(&self, event: &EventRef) {
        // SAFETY: `event` holds a reference taken by `reference` on an object of the event
        // type, so the pointer is a live KEVENT until `release`; Wait FALSE never blocks, so
        // this is allowed at DISPATCH_LEVEL under the session's spin lock.
        let _ = unsafe { KeSetEvent(object(event).cast(), IO_NO_INCREMENT as KPRIORITY, 0) };
    }

    /// IRQL: <= DISPATCH_LEVEL.
    fn release(&self, event: EventRef) {
        // SAFETY: `event` owns the one reference `reference` took; consuming it releases that
        // reference exactly once.
        let _ = unsafe { ObfDereferenceObject(object(&event)) };
    }
}

/// `KeQueryInterruptTime`. Stateless.
#[derive(Clone, Copy, Debug, Default)]
pub struct InterruptTime;

impl Clock for InterruptTime {
    /// IRQL: any.
    fn now(&self) -> u64 {
        let address = core::ptr::with_exposed_provenance::<u64>(SharedInterruptTime as usize);
        // SAFETY: wdm.h's x64 `KeQueryInterruptTime` macro is exactly this volatile 64-bit
        // read: the shared user data page is mapped read-only at `KI_USER_SHARED_DATA` in
        // every address space for the system's lifetime, and its interrupt time is 8-aligned.
        unsafe { address.read_volatile() }
    }
}
