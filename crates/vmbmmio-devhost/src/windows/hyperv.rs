//! `computecore.dll` and `vmdevicehost.dll` loaded at run time, their entry points resolved once
//! into typed tables ([`HyperV`]), so that the device host starts, prints `--help` and reports a
//! missing Hyper-V component itself on any Windows (see `hyperv_components` for why).
//!
//! Both DLLs are loaded with `LoadLibraryExW(name, NULL, LOAD_LIBRARY_SEARCH_SYSTEM32)`: System32
//! only, never the application directory or the current directory (Microsoft Learn,
//! "LoadLibraryExW function", "Dynamic-Link Library Security"). Each entry point is resolved with
//! `GetProcAddress` and transmuted to its prototype as `windows-sys` 0.61 declares it (generated
//! from the SDK's `computecore.h` / `vmdevicehost.h` metadata; Microsoft Learn, "Host Compute
//! System API Reference" and the HDV reference pages). The table is built once per process
//! ([`hyperv`], a `OnceLock`); the modules are never freed, so the pointers stay valid.
//!
//! The field lists are checked at compile time against `hyperv_components::COMPONENTS`, the one
//! list the probe reports from ([`component_statuses`]).

use std::ffi::c_void;
use std::ptr::null_mut;
use std::sync::OnceLock;

use windows_sys::Win32::Foundation::{FreeLibrary, HANDLE, HMODULE};
use windows_sys::Win32::System::HostComputeSystem::{
    HCS_OPERATION, HCS_OPERATION_COMPLETION, HCS_SYSTEM,
};
use windows_sys::Win32::System::Hypervisor::{
    HDV_DEVICE_HOST_FLAGS, HDV_DEVICE_TYPE, HDV_MMIO_MAPPING_FLAGS, HDV_PCI_BAR_SELECTOR,
};
use windows_sys::Win32::System::LibraryLoader::{
    GetProcAddress, LOAD_LIBRARY_SEARCH_SYSTEM32, LoadLibraryExW,
};
use windows_sys::core::{GUID, HRESULT, PCWSTR, PWSTR};

use super::wide::to_wide;
use crate::hyperv_components::{
    ComponentError, ComponentStatus, HCS, HDV, check_components, same_names,
};

/// What `GetProcAddress` returns when it finds the name (`FARPROC` without its `Option`).
type RawProc = unsafe extern "system" fn() -> isize;

/// The calling thread's last Win32 error, read right after a failed call.
fn last_error() -> u32 {
    // `raw_os_error` is `GetLastError()` on Windows; it is always Some for `last_os_error`.
    std::io::Error::last_os_error()
        .raw_os_error()
        .map_or(0, |code| code as u32)
}

/// A DLL loaded from System32; freed on drop unless [`Library::keep`] is called.
struct Library {
    module: HMODULE,
}

impl Library {
    /// `LoadLibraryExW(dll, NULL, LOAD_LIBRARY_SEARCH_SYSTEM32)`, or the OS error.
    fn load(dll: &str) -> Result<Self, u32> {
        let name = to_wide(dll);
        // SAFETY: `name` is a NUL-terminated UTF-16 file name that outlives the call; the file
        // handle is the documented reserved NULL; LOAD_LIBRARY_SEARCH_SYSTEM32 is a documented
        // flag (Microsoft Learn, "LoadLibraryExW function").
        let module =
            unsafe { LoadLibraryExW(name.as_ptr(), null_mut(), LOAD_LIBRARY_SEARCH_SYSTEM32) };
        if module.is_null() {
            Err(last_error())
        } else {
            Ok(Self { module })
        }
    }

    /// `GetProcAddress(module, entry)`, or the OS error.
    fn entry(&self, entry: &str) -> Result<RawProc, u32> {
        let name: Vec<u8> = entry.bytes().chain(std::iter::once(0)).collect();
        // SAFETY: `module` is a module this process loaded and has not freed (it is freed only
        // on drop); `name` is a NUL-terminated ANSI name that outlives the call.
        let proc = unsafe { GetProcAddress(self.module, name.as_ptr()) };
        proc.ok_or_else(last_error)
    }

    /// Keeps the module loaded for the rest of the process (the resolved pointers point into
    /// it).
    fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for Library {
    fn drop(&mut self) {
        // SAFETY: `module` came from a successful LoadLibraryExW and is released once, here;
        // no pointer resolved from this instance outlives it (the cached table calls `keep`).
        unsafe { FreeLibrary(self.module) };
    }
}

/// Declares a typed entry-point table: one `unsafe extern "system" fn` field per entry point,
/// with its exported name; `resolve` looks each up once; a constant assertion ties the names
/// to the component's list in `hyperv_components`.
macro_rules! entry_table {
    (
        $(#[$meta:meta])*
        $table:ident from $component:path {
            $( $(#[$field_meta:meta])* $field:ident = $name:literal : $prototype:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug)]
        pub struct $table {
            $( $(#[$field_meta])* pub $field: $prototype, )*
        }

        impl $table {
            /// The exported names, in field order.
            const NAMES: &'static [&'static str] = &[$($name),*];

            /// Resolves every field from `library` (`dll` names it in the error).
            fn resolve(library: &Library, dll: &'static str) -> Result<Self, ComponentError> {
                Ok(Self {
                    $( $field: {
                        let raw = library.entry($name).map_err(|os_error| {
                            ComponentError::EntryMissing { dll, entry: $name, os_error }
                        })?;
                        // SAFETY: `raw` is the address of the export `$name` of the DLL loaded
                        // from System32, whose documented prototype (SDK header, as
                        // windows-sys 0.61 declares it for this name) is exactly the field's
                        // `unsafe extern "system" fn` type; both are non-null function pointers
                        // of the same size, and the module is kept loaded for the process.
                        unsafe { std::mem::transmute::<RawProc, $prototype>(raw) }
                    }, )*
                })
            }
        }

        const _: () = assert!(
            same_names($table::NAMES, $component.entries),
            "the typed table and hyperv_components list different entry points"
        );
    };
}

entry_table! {
    /// The HCS functions of `computecore.dll` the device host calls (`super::hcs`).
    HcsEntries from HCS {
        /// `HcsCreateOperation`.
        create_operation = "HcsCreateOperation":
            unsafe extern "system" fn(*const c_void, HCS_OPERATION_COMPLETION) -> HCS_OPERATION,
        /// `HcsCloseOperation`.
        close_operation = "HcsCloseOperation":
            unsafe extern "system" fn(HCS_OPERATION),
        /// `HcsWaitForOperationResult`.
        wait_for_operation_result = "HcsWaitForOperationResult":
            unsafe extern "system" fn(HCS_OPERATION, u32, *mut PWSTR) -> HRESULT,
        /// `HcsOpenComputeSystem`.
        open_compute_system = "HcsOpenComputeSystem":
            unsafe extern "system" fn(PCWSTR, u32, *mut HCS_SYSTEM) -> HRESULT,
        /// `HcsPauseComputeSystem`.
        pause_compute_system = "HcsPauseComputeSystem":
            unsafe extern "system" fn(HCS_SYSTEM, HCS_OPERATION, PCWSTR) -> HRESULT,
        /// `HcsResumeComputeSystem`.
        resume_compute_system = "HcsResumeComputeSystem":
            unsafe extern "system" fn(HCS_SYSTEM, HCS_OPERATION, PCWSTR) -> HRESULT,
        /// `HcsCloseComputeSystem`.
        close_compute_system = "HcsCloseComputeSystem":
            unsafe extern "system" fn(HCS_SYSTEM),
    }
}

entry_table! {
    /// The HDV functions of `vmdevicehost.dll` the device host calls (`super::hdv`).
    HdvEntries from HDV {
        /// `HdvInitializeDeviceHostEx`.
        initialize_device_host_ex = "HdvInitializeDeviceHostEx":
            unsafe extern "system" fn(
                HCS_SYSTEM,
                HDV_DEVICE_HOST_FLAGS,
                *mut *mut c_void,
            ) -> HRESULT,
        /// `HdvCreateDeviceInstance`.
        create_device_instance = "HdvCreateDeviceInstance":
            unsafe extern "system" fn(
                *const c_void,
                HDV_DEVICE_TYPE,
                *const GUID,
                *const GUID,
                *const c_void,
                *const c_void,
                *mut *mut c_void,
            ) -> HRESULT,
        /// `HdvCreateSectionBackedMmioRange`.
        create_section_backed_mmio_range = "HdvCreateSectionBackedMmioRange":
            unsafe extern "system" fn(
                *const c_void,
                HDV_PCI_BAR_SELECTOR,
                u64,
                u64,
                HDV_MMIO_MAPPING_FLAGS,
                HANDLE,
                u64,
            ) -> HRESULT,
        /// `HdvDestroySectionBackedMmioRange`.
        destroy_section_backed_mmio_range = "HdvDestroySectionBackedMmioRange":
            unsafe extern "system" fn(*const c_void, HDV_PCI_BAR_SELECTOR, u64) -> HRESULT,
        /// `HdvTeardownDeviceHost`.
        teardown_device_host = "HdvTeardownDeviceHost":
            unsafe extern "system" fn(*const c_void) -> HRESULT,
    }
}

/// Every HCS and HDV entry point the device host uses, resolved.
#[derive(Clone, Copy, Debug)]
pub struct HyperV {
    /// From `computecore.dll`.
    pub hcs: HcsEntries,
    /// From `vmdevicehost.dll`.
    pub hdv: HdvEntries,
}

/// Loads one component's DLL and resolves its table; the DLL stays loaded on success.
fn load_table<T>(
    dll: &'static str,
    resolve: fn(&Library, &'static str) -> Result<T, ComponentError>,
) -> Result<T, ComponentError> {
    let library =
        Library::load(dll).map_err(|os_error| ComponentError::DllNotLoaded { dll, os_error })?;
    let table = resolve(&library, dll)?;
    library.keep();
    Ok(table)
}

fn load() -> Result<HyperV, ComponentError> {
    Ok(HyperV {
        hcs: load_table(HCS.dll, HcsEntries::resolve)?,
        hdv: load_table(HDV.dll, HdvEntries::resolve)?,
    })
}

/// The resolved entry points, loaded on the first call and cached for the process (a failure
/// is cached too: it names the first missing DLL or entry point, in table order).
pub fn hyperv() -> Result<&'static HyperV, ComponentError> {
    static HYPERV: OnceLock<Result<HyperV, ComponentError>> = OnceLock::new();
    HYPERV.get_or_init(load).as_ref().map_err(|error| *error)
}

/// Tries every DLL and entry point of [`crate::hyperv_components::COMPONENTS`] and reports
/// each, without stopping at a missing one (for the probe). Loads and frees the DLLs again; the
/// cached table of [`hyperv`] is neither used nor changed.
pub fn component_statuses() -> Vec<ComponentStatus> {
    check_components(Library::load, |library, entry| {
        library.entry(entry).map(drop)
    })
}
