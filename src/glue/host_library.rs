//! DriverEntry's first step: the KMCL table, resolved from the loaded `vmbkmclr.sys`.
//!
//! The sequence and every decision in it are portable (`kmcl::resolve::load_host_library`,
//! tested against synthetic module lists and images); this module only executes its kernel
//! calls, from Microsoft's auxiliary kernel-mode library (Microsoft Learn, "aux_klib.h"):
//! `AuxKlibInitialize`, `AuxKlibQueryModuleInformation` and `AuxKlibGetImageExportDirectory`,
//! all PASSIVE_LEVEL. `Aux_Klib.lib` is a static library in the WDK's kernel-mode library
//! directory; wdk-sys does not generate these declarations, so they are written here from the
//! documented prototypes. Linked as a static library without bundling (`-bundle`), so rustc
//! passes it to the final link and emits no `__imp_` (DLL import) references for it.
//!
//! Nothing here imports from `vmbkmclr.sys`: a missing name can no longer stop the image from
//! loading, and dev and release builds resolve the same list at run time.

use core::ffi::c_void;

use kmcl::resolve::loaded::AUX_MODULE_EXTENDED_INFO_SIZE;
use kmcl::resolve::{HostLibraryError, ListCopy, LoadedModules, ModuleError, load_host_library};
use kmcl::{AlreadyInstalled, EntrySet, Vmbkmclr};
use wdk_sys::{NTSTATUS, ULONG};

/// `AUX_MODULE_BASIC_INFO` (aux_klib.h).
#[repr(C)]
#[allow(non_snake_case, reason = "the C field names")]
struct AuxModuleBasicInfo {
    ImageBase: *mut c_void,
}

/// `AUX_MODULE_EXTENDED_INFO` (aux_klib.h): only its size is used here (the element size the
/// query is told); the portable parser reads the records by offset.
#[repr(C)]
#[allow(non_snake_case, reason = "the C field names")]
struct AuxModuleExtendedInfo {
    BasicInfo: AuxModuleBasicInfo,
    ImageSize: ULONG,
    FileNameOffset: u16,
    FullPathName: [u8; kmcl::resolve::loaded::MODULE_PATH_LEN],
}

const _: () = assert!(size_of::<AuxModuleExtendedInfo>() == AUX_MODULE_EXTENDED_INFO_SIZE);

/// The element size passed to `AuxKlibQueryModuleInformation`.
const ELEMENT_SIZE: ULONG = AUX_MODULE_EXTENDED_INFO_SIZE as ULONG;

/// `STATUS_BUFFER_TOO_SMALL`.
const STATUS_BUFFER_TOO_SMALL: NTSTATUS = kmcl::raw::STATUS_BUFFER_TOO_SMALL;

// SAFETY: the prototypes of aux_klib.h (Microsoft Learn: "AuxKlibInitialize function",
// "AuxKlibQueryModuleInformation function", "AuxKlibGetImageExportDirectory function"), NTAPI
// = "system".
#[link(name = "aux_klib", kind = "static", modifiers = "-bundle")]
unsafe extern "system" {
    fn AuxKlibInitialize() -> NTSTATUS;
    fn AuxKlibQueryModuleInformation(
        BufferSize: *mut ULONG,
        ElementSize: ULONG,
        QueryInfo: *mut c_void,
    ) -> NTSTATUS;
    fn AuxKlibGetImageExportDirectory(ImageBase: *mut c_void) -> *mut c_void;
}

/// The kernel side of `kmcl::resolve::LoadedModules`.
struct AuxKlib {
    initialized: bool,
}

impl LoadedModules for AuxKlib {
    fn list_size(&mut self) -> Result<usize, ModuleError> {
        if !self.initialized {
            // SAFETY: no preconditions; PASSIVE_LEVEL (DriverEntry).
            let status = unsafe { AuxKlibInitialize() };
            if status < 0 {
                return Err(ModuleError::Query {
                    call: "AuxKlibInitialize",
                    status,
                });
            }
            self.initialized = true;
        }
        let mut size: ULONG = 0;
        // SAFETY: `size` is a live local; a NULL QueryInfo asks only for the size.
        let status = unsafe {
            AuxKlibQueryModuleInformation(&raw mut size, ELEMENT_SIZE, core::ptr::null_mut())
        };
        if status < 0 {
            return Err(ModuleError::Query {
                call: "AuxKlibQueryModuleInformation",
                status,
            });
        }
        usize::try_from(size).map_err(|_| ModuleError::ModuleListMalformed { len: usize::MAX })
    }

    fn copy_list(&mut self, buffer: &mut [u8]) -> Result<ListCopy, ModuleError> {
        let mut size = ULONG::try_from(buffer.len())
            .map_err(|_| ModuleError::ModuleListMalformed { len: buffer.len() })?;
        // SAFETY: `buffer` is writable for `size` bytes and lives across the call (pool memory,
        // 16-byte aligned on x64, enough for the records' pointer field); `size` is a live
        // local.
        let status = unsafe {
            AuxKlibQueryModuleInformation(&raw mut size, ELEMENT_SIZE, buffer.as_mut_ptr().cast())
        };
        if status == STATUS_BUFFER_TOO_SMALL {
            return Ok(ListCopy::TooSmall);
        }
        if status < 0 {
            return Err(ModuleError::Query {
                call: "AuxKlibQueryModuleInformation",
                status,
            });
        }
        let len = usize::try_from(size).unwrap_or(usize::MAX);
        Ok(ListCopy::Copied { len })
    }

    unsafe fn mapped(&self, address: usize, len: usize) -> &[u8] {
        // SAFETY: the caller guarantees that `address .. address + len` is inside a loaded
        // module and stays mapped and unchanged while the slice is used; `address` is not NULL
        // (a module base, or base + RVA).
        unsafe { core::slice::from_raw_parts(core::ptr::with_exposed_provenance(address), len) }
    }

    fn kernel_export_directory(&self, base: usize) -> usize {
        // SAFETY: `base` is the image base of a loaded module that AuxKlibQueryModuleInformation
        // just reported, as the routine requires; AuxKlibInitialize succeeded in `list_size`.
        let directory =
            unsafe { AuxKlibGetImageExportDirectory(core::ptr::with_exposed_provenance_mut(base)) };
        directory.expose_provenance()
    }
}

/// Resolves the KMCL table and installs it for every later KMCL call. Returns the optional
/// entries the driver runs without.
///
/// IRQL: PASSIVE_LEVEL (DriverEntry).
pub(super) fn install() -> Result<EntrySet, HostLibraryError> {
    let mut modules = AuxKlib { initialized: false };
    // SAFETY: `AuxKlib` reports the kernel's real module list and mappings. The module it
    // finds, vmbkmclr.sys, stays loaded while this driver runs: it is imported by Hyper-V's own
    // host drivers (the assumption stated in `kmcl::resolve::loaded` and the README). Its
    // exports of the KMCL names are the KMCL functions.
    let resolved = unsafe { load_host_library(&mut modules) }?;
    match Vmbkmclr::install(resolved.api) {
        // DriverEntry runs once per load; a second install would only repeat the same table.
        Ok(()) | Err(AlreadyInstalled) => Ok(resolved.missing_optional),
    }
}
