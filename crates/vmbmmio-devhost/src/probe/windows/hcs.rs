//! The two HCS queries of the VM checks, with computecore.dll loaded at run time: the list of
//! compute systems (`HcsEnumerateComputeSystems`) and one system's properties
//! (`HcsGetComputeSystemProperties`, no query document: the default properties, `State`
//! among them). Microsoft Learn, "HCS API reference" (virtualization/api/hcs/Reference). The
//! device host's `platform::HcsApi` has neither call; both only read.

use std::ffi::c_void;
use std::ptr::{null, null_mut};

use windows_sys::Win32::Foundation::{GENERIC_ALL, LocalFree};
use windows_sys::Win32::System::HostComputeSystem::{
    HCS_OPERATION, HCS_OPERATION_COMPLETION, HCS_SYSTEM,
};
use windows_sys::core::{HRESULT, PCWSTR, PWSTR};

use super::dynamic::{Library, resolve};
use super::{from_wide, wide};
use crate::guid::Guid;
use crate::probe::facts::{Collected, OsError};

type CreateOperation =
    unsafe extern "system" fn(*const c_void, HCS_OPERATION_COMPLETION) -> HCS_OPERATION;
type CloseOperation = unsafe extern "system" fn(HCS_OPERATION);
type WaitForOperationResult = unsafe extern "system" fn(HCS_OPERATION, u32, *mut PWSTR) -> HRESULT;
type EnumerateComputeSystems = unsafe extern "system" fn(PCWSTR, HCS_OPERATION) -> HRESULT;
type OpenComputeSystem = unsafe extern "system" fn(PCWSTR, u32, *mut HCS_SYSTEM) -> HRESULT;
type GetComputeSystemProperties =
    unsafe extern "system" fn(HCS_SYSTEM, HCS_OPERATION, PCWSTR) -> HRESULT;
type CloseComputeSystem = unsafe extern "system" fn(HCS_SYSTEM);

/// How long one query may take.
const TIMEOUT_MS: u32 = 30_000;

struct Operations {
    create: CreateOperation,
    close: CloseOperation,
    wait: WaitForOperationResult,
}

fn computecore() -> Result<(Library, Operations), OsError> {
    let library = Library::load("computecore.dll")?;
    let operations = Operations {
        create: resolve!(library, "HcsCreateOperation", CreateOperation)?,
        close: resolve!(library, "HcsCloseOperation", CloseOperation)?,
        wait: resolve!(library, "HcsWaitForOperationResult", WaitForOperationResult)?,
    };
    Ok((library, operations))
}

/// Creates an operation, starts it with `start`, waits for its result document and closes it.
fn run_operation(
    operations: &Operations,
    name: &str,
    start: impl FnOnce(HCS_OPERATION) -> HRESULT,
) -> Collected<String> {
    // SAFETY: no context and no callback: the operation is waited on synchronously.
    let operation = unsafe { (operations.create)(null(), None) };
    if operation.is_null() {
        return Err(OsError::new("HcsCreateOperation", 0x8007_000E));
    }
    let started = start(operation);
    let result = if started < 0 {
        Err(OsError::new(name, started as u32))
    } else {
        let mut document: PWSTR = null_mut();
        // SAFETY: `operation` is live and started; `document` is a valid out pointer.
        let waited = unsafe { (operations.wait)(operation, TIMEOUT_MS, &mut document) };
        let text = if document.is_null() {
            String::new()
        } else {
            let mut len = 0usize;
            // SAFETY: the HCS returns a NUL-terminated string it allocated: every unit up to
            // and including the NUL is readable.
            while unsafe { document.wrapping_add(len).read() } != 0 {
                len += 1;
            }
            // SAFETY: the `len` units before the NUL were just read.
            let text = from_wide(unsafe { std::slice::from_raw_parts(document, len) });
            // SAFETY: the result document is allocated by the HCS for the caller to free with
            // LocalFree (HcsWaitForOperationResult's documentation).
            unsafe { LocalFree(document.cast()) };
            text
        };
        if waited < 0 {
            Err(OsError::new(
                format!("HcsWaitForOperationResult({name}) [{text}]"),
                waited as u32,
            ))
        } else {
            Ok(text)
        }
    };
    // SAFETY: `operation` was created above and is closed exactly once.
    unsafe { (operations.close)(operation) };
    result
}

/// The JSON list of compute systems (every owner, every type).
pub fn enumerate_compute_systems() -> Collected<String> {
    let (library, operations) = computecore()?;
    let enumerate = resolve!(
        library,
        "HcsEnumerateComputeSystems",
        EnumerateComputeSystems
    )?;
    run_operation(&operations, "HcsEnumerateComputeSystems", |operation| {
        // SAFETY: a null query lists every compute system; `operation` is live.
        unsafe { enumerate(null(), operation) }
    })
}

/// The default properties document of compute system `id`.
pub fn compute_system_properties(id: Guid) -> Collected<String> {
    let (library, operations) = computecore()?;
    let open = resolve!(library, "HcsOpenComputeSystem", OpenComputeSystem)?;
    let get = resolve!(
        library,
        "HcsGetComputeSystemProperties",
        GetComputeSystemProperties
    )?;
    let close = resolve!(library, "HcsCloseComputeSystem", CloseComputeSystem)?;
    let id_text = wide(&id.to_string());
    let mut system: HCS_SYSTEM = null_mut();
    // SAFETY: `id_text` is NUL-terminated and outlives the call; `system` is a valid out
    // pointer; GENERIC_ALL is the documented requested access (the device host uses the same).
    let opened = unsafe { open(id_text.as_ptr(), GENERIC_ALL, &mut system) };
    if opened < 0 {
        return Err(OsError::new("HcsOpenComputeSystem", opened as u32));
    }
    let result = run_operation(&operations, "HcsGetComputeSystemProperties", |operation| {
        // SAFETY: `system` is open; `operation` is live; a null query asks for the defaults.
        unsafe { get(system, operation, null()) }
    });
    // SAFETY: `system` was opened above and is closed once.
    unsafe { close(system) };
    result
}
