//! [`HcsApi`] over computecore.dll (hdv.md §4): the pause/resume calls start an operation and
//! wait for its result. The functions come from the run-time table [`HcsEntries`]
//! (`super::hyperv`), never from the import table.

use std::ptr::{null, null_mut};

use windows_sys::Win32::Foundation::{GENERIC_ALL, LocalFree};
use windows_sys::Win32::System::HostComputeSystem::{HCS_OPERATION, HCS_SYSTEM};
use windows_sys::core::{HRESULT, PWSTR};

use super::hyperv::HcsEntries;
use super::wide::to_wide;
use crate::guid::Guid;
use crate::hresult::HResult;
use crate::platform::{ComputeSystem, HcsApi};

/// The HCS backend.
#[derive(Debug)]
pub struct WinHcs {
    /// How long to wait for a pause or resume to complete, in milliseconds.
    pub operation_timeout_ms: u32,
    /// The resolved computecore.dll functions.
    hcs: &'static HcsEntries,
}

impl WinHcs {
    /// The backend over the resolved functions (`super::hyperv::hyperv()`), with a 60 s
    /// operation timeout.
    pub fn new(hcs: &'static HcsEntries) -> Self {
        Self {
            operation_timeout_ms: 60_000,
            hcs,
        }
    }
}

fn system_ptr(system: ComputeSystem) -> HCS_SYSTEM {
    system.0 as HCS_SYSTEM
}

impl WinHcs {
    /// Creates an operation, starts it with `start`, waits for its result and closes it.
    fn run(&self, start: impl FnOnce(HCS_OPERATION) -> HRESULT) -> Result<(), HResult> {
        // SAFETY: no context and no callback: the operation is waited on synchronously.
        let operation = unsafe { (self.hcs.create_operation)(null(), None) };
        if operation.is_null() {
            return Err(HResult::E_OUTOFMEMORY);
        }
        let mut result = HResult(start(operation));
        if result.is_success() {
            let mut document: PWSTR = null_mut();
            // SAFETY: `operation` is the live operation just started; `document` is a valid
            // out pointer.
            let waited = unsafe {
                (self.hcs.wait_for_operation_result)(
                    operation,
                    self.operation_timeout_ms,
                    &mut document,
                )
            };
            result = HResult(waited);
            if !document.is_null() {
                // SAFETY: the result document is allocated by the HCS for the caller to free
                // with LocalFree (hdv.md §4).
                unsafe { LocalFree(document.cast()) };
            }
        }
        // SAFETY: `operation` was created above and is closed exactly once.
        unsafe { (self.hcs.close_operation)(operation) };
        result.ok()
    }
}

impl HcsApi for WinHcs {
    fn open_compute_system(&mut self, vm_id: Guid) -> Result<ComputeSystem, HResult> {
        let id = to_wide(&vm_id.to_string());
        let mut system: HCS_SYSTEM = null_mut();
        // SAFETY: `id` is NUL-terminated and outlives the call; `system` is a valid out
        // pointer. GENERIC_ALL is the documented requested access (hdv.md §4).
        let hr = unsafe { (self.hcs.open_compute_system)(id.as_ptr(), GENERIC_ALL, &mut system) };
        HResult(hr).ok()?;
        Ok(ComputeSystem(system as usize))
    }

    fn pause(&mut self, system: ComputeSystem) -> Result<(), HResult> {
        let pause = self.hcs.pause_compute_system;
        self.run(|operation| {
            // SAFETY: `system` is an open compute system; `operation` is live; no options.
            unsafe { pause(system_ptr(system), operation, null()) }
        })
    }

    fn resume(&mut self, system: ComputeSystem) -> Result<(), HResult> {
        let resume = self.hcs.resume_compute_system;
        self.run(|operation| {
            // SAFETY: as for pause.
            unsafe { resume(system_ptr(system), operation, null()) }
        })
    }

    fn close_compute_system(&mut self, system: ComputeSystem) {
        // SAFETY: `system` was opened by `open_compute_system` and is closed once (the
        // sequence owns it).
        unsafe { (self.hcs.close_compute_system)(system_ptr(system)) };
    }
}
