//! The kernel section calls behind `vmbmmio_core::sections::SectionBackend`, with wdk-sys.
//!
//! Mechanical: every decision (sizes, quotas, who may get a handle, when to release) is in
//! `vmbmmio_core::sections`. Calls and types follow windows-drivers-rs.md §3.
//!
//! # The kernel reference is an object pointer, not a kernel handle
//! `create_section` calls `ZwCreateSection` with `OBJ_KERNEL_HANDLE` (so the handle is never in
//! the table of whatever process the call happens to run in, and user mode cannot use it),
//! takes an object reference with `ObReferenceObjectByHandle`, and closes the kernel handle
//! at once. The driver then holds only the pointer: it is what `ObOpenObjectByPointer` (user
//! handles) and `MmMapViewInSystemSpace` (the driver's own view) take, it is valid in every
//! process context, and it occupies no handle-table slot. `close_section` releases it with
//! `ObfDereferenceObject` (`ObDereferenceObject` is a macro, windows-drivers-rs.md §3).
//!
//! # User handles
//! `open_user_handle` calls `ObOpenObjectByPointer` with no handle attributes (not a kernel
//! handle, not inheritable) and `UserMode`, so the handle lands in the **current** process's
//! table with exactly the requested access. The portable manager checks beforehand that the
//! current process is the requester; the IOCTL that asks for a handle must therefore be
//! handled from `EvtIoInCallerContext`. The handle is never closed here (see
//! `vmbmmio_core::sections::backend`).

use core::ffi::c_void;
use core::ptr::{NonNull, null_mut};

use kmcl::raw::{
    NT_SUCCESS, NTSTATUS, STATUS_INVALID_PARAMETER, STATUS_NOT_SUPPORTED, STATUS_UNSUCCESSFUL,
};
use wdk_sys::ntddk::{
    MmGetSystemRoutineAddress, ObOpenObjectByPointer, ObReferenceObjectByHandle,
    ObfDereferenceObject, ZwClose, ZwCreateSection,
};
use wdk_sys::{
    _MODE, HANDLE, KPROCESSOR_MODE, LARGE_INTEGER, OBJ_KERNEL_HANDLE, OBJECT_ATTRIBUTES,
    PAGE_READWRITE, POBJECT_TYPE, PVOID, SEC_COMMIT, ULONG,
};

use super::driver::wdf_size;
use super::strings::{unicode, utf16};

use vmbmmio_core::sections::{
    ProcessKey, SECTION_MAP_READ, SECTION_MAP_WRITE, SECTION_QUERY, SectionBackend, UserHandle,
};

// The portable module spells the winnt.h access rights itself; they must be the WDK's.
const _: () = assert!(
    wdk_sys::SECTION_QUERY == SECTION_QUERY
        && wdk_sys::SECTION_MAP_WRITE == SECTION_MAP_WRITE
        && wdk_sys::SECTION_MAP_READ == SECTION_MAP_READ
);

/// `OBJECT_ATTRIBUTES.Length`, range-checked at compile time.
const OBJECT_ATTRIBUTES_LENGTH: ULONG = wdf_size::<OBJECT_ATTRIBUTES>();

/// Access of the short-lived kernel handle: what the driver's own uses need, nothing more.
const KERNEL_HANDLE_ACCESS: u32 = SECTION_MAP_READ | SECTION_MAP_WRITE | SECTION_QUERY;

/// `*MmSectionObjectType`, looked up at run time: exported kernel data does not link reliably
/// through wdk-sys (windows-drivers-rs.md §3, issue #338; option (b), MmGetSystemRoutineAddress).
///
/// IRQL: PASSIVE_LEVEL.
fn section_object_type() -> Option<POBJECT_TYPE> {
    let mut name = unicode(utf16!("MmSectionObjectType"));
    // SAFETY: `name` is a valid counted string for the call; the routine only reads it and
    // returns the address of the exported variable, or NULL.
    let address = unsafe { MmGetSystemRoutineAddress(&raw mut name) };
    if address.is_null() {
        return None;
    }
    // SAFETY: the export `MmSectionObjectType` is a `POBJECT_TYPE` variable that the kernel
    // sets at boot and never changes; `address` points at it.
    let object_type = unsafe { address.cast::<POBJECT_TYPE>().read() };
    (!object_type.is_null()).then_some(object_type)
}

/// The Windows section backend. Stateless.
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelSections;

/// The driver's referenced pointer to one section object.
#[derive(Debug)]
pub struct SectionObject(NonNull<c_void>);

// SAFETY: a referenced object pointer is not tied to a thread or process; the object manager's
// reference counting is thread-safe, and the pointer is only passed to Ob*/Mm* calls.
unsafe impl Send for SectionObject {}

impl SectionBackend for KernelSections {
    type Section = SectionObject;

    /// IRQL: PASSIVE_LEVEL.
    fn create_section(&self, size: u64) -> Result<SectionObject, NTSTATUS> {
        let quad_part = i64::try_from(size).map_err(|_| STATUS_INVALID_PARAMETER)?;
        // InitializeObjectAttributes(&attributes, NULL, OBJ_KERNEL_HANDLE, NULL, NULL), by hand.
        let mut attributes = OBJECT_ATTRIBUTES {
            Length: OBJECT_ATTRIBUTES_LENGTH,
            Attributes: OBJ_KERNEL_HANDLE,
            ..OBJECT_ATTRIBUTES::default()
        };
        let mut maximum_size = LARGE_INTEGER {
            QuadPart: quad_part,
        };
        let mut handle: HANDLE = null_mut();
        // SAFETY: every pointer argument is a live local for the whole call; `attributes` is a
        // fully initialised OBJECT_ATTRIBUTES with no name, root or security descriptor; a NULL
        // FileHandle makes the section pagefile-backed; the trait requires PASSIVE_LEVEL.
        let status = unsafe {
            ZwCreateSection(
                &raw mut handle,
                KERNEL_HANDLE_ACCESS,
                &raw mut attributes,
                &raw mut maximum_size,
                PAGE_READWRITE,
                SEC_COMMIT,
                null_mut(),
            )
        };
        if !NT_SUCCESS(status) {
            return Err(status);
        }
        let mut object: PVOID = null_mut();
        // SAFETY: `handle` is the kernel handle ZwCreateSection just returned, so KernelMode is
        // the right access mode; a NULL ObjectType is allowed and avoids linking the exported
        // MmSectionObjectType (windows-drivers-rs.md §3, option (c)); `object` is a live local;
        // HandleInformation is optional.
        let referenced = unsafe {
            ObReferenceObjectByHandle(
                handle,
                KERNEL_HANDLE_ACCESS,
                null_mut(),
                _MODE::KernelMode as KPROCESSOR_MODE,
                &raw mut object,
                null_mut(),
            )
        };
        // SAFETY: `handle` is our kernel handle and is closed exactly once, here, whether or
        // not the reference was taken; when it was, the reference keeps the object alive.
        let _closed = unsafe { ZwClose(handle) };
        if !NT_SUCCESS(referenced) {
            return Err(referenced);
        }
        NonNull::new(object)
            .map(SectionObject)
            .ok_or(STATUS_UNSUCCESSFUL)
    }

    /// The current process's **object** identity (`PsGetCurrentProcess`), not its id: ids are
    /// reused, objects referenced by the control device are not (`super::process`).
    ///
    /// IRQL: any.
    fn current_process(&self) -> ProcessKey {
        super::process::current_process_key()
    }

    /// IRQL: PASSIVE_LEVEL, in the requesting process's context.
    fn open_user_handle(
        &self,
        section: &SectionObject,
        access_mask: u32,
    ) -> Result<UserHandle, NTSTATUS> {
        // A UserMode open must name the object type (the WDK's ObOpenObjectByPointer page:
        // ObjectType may be NULL only for KernelMode).
        let object_type = section_object_type().ok_or(STATUS_NOT_SUPPORTED)?;
        let mut handle: HANDLE = null_mut();
        // SAFETY: `section` holds a reference, so the object is alive for the call; attributes
        // 0 deliberately make a user handle (not OBJ_KERNEL_HANDLE), non-inheritable, in the
        // current process's table; no access state; `object_type` is the section object type,
        // required for a UserMode open; UserMode applies the access check a user-mode open
        // would get; `handle` is a live local.
        let status = unsafe {
            ObOpenObjectByPointer(
                section.0.as_ptr(),
                0,
                null_mut(),
                access_mask,
                object_type,
                _MODE::UserMode as KPROCESSOR_MODE,
                &raw mut handle,
            )
        };
        if !NT_SUCCESS(status) {
            return Err(status);
        }
        Ok(UserHandle(handle.addr() as u64))
    }

    /// IRQL: PASSIVE_LEVEL (the last dereference deletes the section).
    fn close_section(&self, section: SectionObject) {
        // SAFETY: `section` owns the one reference create_section took; consuming it here
        // releases that reference exactly once.
        unsafe { ObfDereferenceObject(section.0.as_ptr()) };
    }
}
