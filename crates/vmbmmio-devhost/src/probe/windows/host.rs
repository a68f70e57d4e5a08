//! The host collectors: registry values, the vmms service, files on disk, elevation.

use std::ffi::c_void;
use std::ptr::null;

use windows_sys::Win32::Foundation::{CloseHandle, GetLastError, HANDLE};
use windows_sys::Win32::Security::{
    GetTokenInformation, TOKEN_ELEVATION, TOKEN_QUERY, TokenElevation,
};
use windows_sys::Win32::Storage::FileSystem::{
    GetFileVersionInfoSizeW, GetFileVersionInfoW, VS_FIXEDFILEINFO, VerQueryValueW,
};
use windows_sys::Win32::System::Services::{
    CloseServiceHandle, OpenSCManagerW, OpenServiceW, QueryServiceStatus, SC_MANAGER_CONNECT,
    SERVICE_QUERY_STATUS, SERVICE_STATUS,
};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

use super::registry::{read_dword, read_sz};
use super::{system_root, wide};
use crate::probe::facts::{
    Collected, ERROR_SERVICE_DOES_NOT_EXIST, ExportImageFacts, HyperVRoleFacts, KmdfFacts, OsError,
    ServiceLookup, TestSigningFacts, VerifierFacts, WindowsVersionFacts,
};
use crate::probe::report::Value;

const CURRENT_VERSION: &str = "SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion";
const CONTROL: &str = "SYSTEM\\CurrentControlSet\\Control";
const MEMORY_MANAGEMENT: &str =
    "SYSTEM\\CurrentControlSet\\Control\\Session Manager\\Memory Management";
/// `VS_FIXEDFILEINFO.dwSignature`.
const VS_FFI_SIGNATURE: u32 = 0xFEEF_04BD;
/// `ERROR_RESOURCE_DATA_NOT_FOUND`, `ERROR_RESOURCE_TYPE_NOT_FOUND`: no version resource.
const NO_VERSION_RESOURCE: [u32; 2] = [1812, 1813];

fn last_error() -> u32 {
    // SAFETY: no preconditions.
    unsafe { GetLastError() }
}

/// Whether this process runs elevated (`TokenElevation`), or the failed call.
pub fn elevated() -> Value {
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: no preconditions: the pseudo-handle of this process.
    let process = unsafe { GetCurrentProcess() };
    // SAFETY: `process` is this process; `token` is a valid out pointer.
    if unsafe { OpenProcessToken(process, TOKEN_QUERY, &mut token) } == 0 {
        return Value::Text(OsError::new("OpenProcessToken", last_error()).to_string());
    }
    let mut elevation = TOKEN_ELEVATION { TokenIsElevated: 0 };
    let mut returned = 0u32;
    // SAFETY: `token` is open with TOKEN_QUERY; the buffer is a TOKEN_ELEVATION of its size.
    let ok = unsafe {
        GetTokenInformation(
            token,
            TokenElevation,
            (&mut elevation as *mut TOKEN_ELEVATION).cast::<c_void>(),
            std::mem::size_of::<TOKEN_ELEVATION>() as u32,
            &mut returned,
        )
    };
    let result = if ok == 0 {
        Value::Text(OsError::new("GetTokenInformation(TokenElevation)", last_error()).to_string())
    } else {
        Value::Bool(elevation.TokenIsElevated != 0)
    };
    // SAFETY: `token` was opened above and is closed once.
    unsafe { CloseHandle(token) };
    result
}

/// The `CurrentVersion` values.
pub fn windows_version() -> Collected<WindowsVersionFacts> {
    Ok(WindowsVersionFacts {
        major: read_dword(CURRENT_VERSION, "CurrentMajorVersionNumber")?,
        minor: read_dword(CURRENT_VERSION, "CurrentMinorVersionNumber")?,
        build: read_sz(CURRENT_VERSION, "CurrentBuildNumber")?,
        ubr: read_dword(CURRENT_VERSION, "UBR")?,
        product_name: read_sz(CURRENT_VERSION, "ProductName")?,
        display_version: read_sz(CURRENT_VERSION, "DisplayVersion")?,
        installation_type: read_sz(CURRENT_VERSION, "InstallationType")?,
    })
}

fn service(name: &str) -> ServiceLookup {
    // SAFETY: local machine, default database; connect access only.
    let manager = unsafe { OpenSCManagerW(null(), null(), SC_MANAGER_CONNECT) };
    if manager.is_null() {
        return ServiceLookup::Failed(OsError::new("OpenSCManagerW", last_error()));
    }
    let wide_name = wide(name);
    // SAFETY: `manager` is open; the name is NUL-terminated; query access only.
    let service = unsafe { OpenServiceW(manager, wide_name.as_ptr(), SERVICE_QUERY_STATUS) };
    let lookup = if service.is_null() {
        match last_error() {
            ERROR_SERVICE_DOES_NOT_EXIST => ServiceLookup::Absent,
            code => ServiceLookup::Failed(OsError::new(format!("OpenServiceW({name})"), code)),
        }
    } else {
        // SAFETY: SERVICE_STATUS is plain data; all-zero is a valid value.
        let mut status: SERVICE_STATUS = unsafe { std::mem::zeroed() };
        // SAFETY: `service` is open with SERVICE_QUERY_STATUS; `status` is a valid out pointer.
        let lookup = if unsafe { QueryServiceStatus(service, &mut status) } == 0 {
            ServiceLookup::Failed(OsError::new(
                format!("QueryServiceStatus({name})"),
                last_error(),
            ))
        } else {
            ServiceLookup::Present {
                state: status.dwCurrentState,
            }
        };
        // SAFETY: opened above, closed once.
        unsafe { CloseServiceHandle(service) };
        lookup
    };
    // SAFETY: opened above, closed once.
    unsafe { CloseServiceHandle(manager) };
    lookup
}

fn file_exists(path: &str) -> Collected<bool> {
    match std::fs::metadata(path) {
        Ok(metadata) => Ok(metadata.is_file()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(OsError::new(
            format!("GetFileAttributes({path})"),
            error.raw_os_error().map_or(0, |code| code as u32),
        )),
    }
}

fn driver_path(file: &str) -> String {
    format!("{}\\System32\\drivers\\{file}", system_root())
}

/// The vmms service and vmbkmclr.sys.
pub fn hyperv_role() -> HyperVRoleFacts {
    HyperVRoleFacts {
        vmms: service("vmms"),
        vmbkmclr_present: file_exists(&driver_path("vmbkmclr.sys")),
    }
}

fn file_version(path: &str) -> Collected<Option<[u16; 4]>> {
    let wide_path = wide(path);
    let mut handle = 0u32;
    // SAFETY: the path is NUL-terminated; `handle` is a valid out pointer (ignored).
    let size = unsafe { GetFileVersionInfoSizeW(wide_path.as_ptr(), &mut handle) };
    if size == 0 {
        return match last_error() {
            code if NO_VERSION_RESOURCE.contains(&code) => Ok(None),
            code => Err(OsError::new(
                format!("GetFileVersionInfoSizeW({path})"),
                code,
            )),
        };
    }
    let mut block = vec![0u8; size as usize];
    // SAFETY: `block` holds `size` bytes.
    if unsafe { GetFileVersionInfoW(wide_path.as_ptr(), 0, size, block.as_mut_ptr().cast()) } == 0 {
        return Err(OsError::new(
            format!("GetFileVersionInfoW({path})"),
            last_error(),
        ));
    }
    let root = wide("\\");
    let mut info: *mut c_void = std::ptr::null_mut();
    let mut len = 0u32;
    // SAFETY: `block` is the version block just read; "\" asks for its VS_FIXEDFILEINFO.
    let found =
        unsafe { VerQueryValueW(block.as_ptr().cast(), root.as_ptr(), &mut info, &mut len) };
    if found == 0 || info.is_null() || (len as usize) < std::mem::size_of::<VS_FIXEDFILEINFO>() {
        return Ok(None);
    }
    // SAFETY: VerQueryValueW points into `block` (alive) at a VS_FIXEDFILEINFO of `len` bytes;
    // read unaligned to make no alignment assumption.
    let fixed = unsafe { std::ptr::read_unaligned(info.cast::<VS_FIXEDFILEINFO>()) };
    if fixed.dwSignature != VS_FFI_SIGNATURE {
        return Ok(None);
    }
    Ok(Some([
        (fixed.dwFileVersionMS >> 16) as u16,
        fixed.dwFileVersionMS as u16,
        (fixed.dwFileVersionLS >> 16) as u16,
        fixed.dwFileVersionLS as u16,
    ]))
}

/// The KMDF runtime's file version.
pub fn kmdf() -> KmdfFacts {
    let path = driver_path("Wdf01000.sys");
    KmdfFacts {
        file_version: file_version(&path),
        path,
    }
}

/// `SystemStartOptions`.
pub fn test_signing() -> TestSigningFacts {
    TestSigningFacts {
        system_start_options: read_sz(CONTROL, "SystemStartOptions"),
    }
}

/// `VerifyDrivers`, `VerifyDriverLevel`.
pub fn verifier() -> VerifierFacts {
    VerifierFacts {
        verify_drivers: read_sz(MEMORY_MANAGEMENT, "VerifyDrivers"),
        verify_driver_level: read_dword(MEMORY_MANAGEMENT, "VerifyDriverLevel"),
    }
}

/// vmbkmclr.sys's bytes.
pub fn kmcl_image() -> ExportImageFacts {
    let path = driver_path("vmbkmclr.sys");
    let image = std::fs::read(&path).map_err(|error| {
        OsError::new(
            format!("reading {path}"),
            error.raw_os_error().map_or(0, |code| code as u32),
        )
    });
    ExportImageFacts { path, image }
}
