//! The raw facts the collectors gather, as plain portable values.
//!
//! Why a layer of its own: the Windows collectors (`probe::windows`) only make calls and fill
//! these; every decision (what a value means for a question) is in `probe::classify`, which is
//! tested on Linux with facts written by hand. `None` in an `Option` field means the value does
//! not exist (an absent registry value); a failed call is an [`OsError`] naming the call.

use std::fmt;

use crate::guid::Guid;

/// A failed operating-system call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OsError {
    /// The call (and its argument, where that helps: `RegGetValueW(...\\UBR)`).
    pub call: String,
    /// Its error: a Win32 error code, or an HRESULT's 32 bits, or an NTSTATUS.
    pub code: u32,
}

impl OsError {
    /// `call` failed with `code`.
    pub fn new(call: impl Into<String>, code: u32) -> Self {
        Self {
            call: call.into(),
            code,
        }
    }
}

impl fmt::Display for OsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} failed with {:#x} ({})",
            self.call, self.code, self.code
        )
    }
}

/// A fact, or the call that failed to collect it.
pub type Collected<T> = Result<T, OsError>;

/// Win32 `ERROR_FILE_NOT_FOUND`.
pub const ERROR_FILE_NOT_FOUND: u32 = 2;
/// Win32 `ERROR_PATH_NOT_FOUND`.
pub const ERROR_PATH_NOT_FOUND: u32 = 3;
/// Win32 `ERROR_ACCESS_DENIED`.
pub const ERROR_ACCESS_DENIED: u32 = 5;
/// Win32 `ERROR_SHARING_VIOLATION`.
pub const ERROR_SHARING_VIOLATION: u32 = 32;
/// Win32 `ERROR_INVALID_NAME` (a malformed path).
pub const ERROR_INVALID_NAME: u32 = 123;
/// Win32 `ERROR_SERVICE_DOES_NOT_EXIST`.
pub const ERROR_SERVICE_DOES_NOT_EXIST: u32 = 1060;

/// The values of `HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion` the probe reads.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct WindowsVersionFacts {
    /// `CurrentMajorVersionNumber` (REG_DWORD).
    pub major: Option<u32>,
    /// `CurrentMinorVersionNumber` (REG_DWORD).
    pub minor: Option<u32>,
    /// `CurrentBuildNumber` (REG_SZ).
    pub build: Option<String>,
    /// `UBR` (REG_DWORD): the update build revision.
    pub ubr: Option<u32>,
    /// `ProductName`.
    pub product_name: Option<String>,
    /// `DisplayVersion` (e.g. `24H2`).
    pub display_version: Option<String>,
    /// `InstallationType` (`Server`, `Client`, `Server Core`).
    pub installation_type: Option<String>,
}

/// Whether a service exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceLookup {
    /// It exists; `state` is `SERVICE_STATUS.dwCurrentState` (4 = running, 1 = stopped).
    Present {
        /// The current state.
        state: u32,
    },
    /// `OpenServiceW` said `ERROR_SERVICE_DOES_NOT_EXIST`.
    Absent,
    /// The lookup failed otherwise.
    Failed(OsError),
}

/// The Hyper-V role's traces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HyperVRoleFacts {
    /// The `vmms` service.
    pub vmms: ServiceLookup,
    /// Whether `%SystemRoot%\System32\drivers\vmbkmclr.sys` exists.
    pub vmbkmclr_present: Collected<bool>,
}

/// The KMDF runtime's file version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KmdfFacts {
    /// The file read.
    pub path: String,
    /// Its `VS_FIXEDFILEINFO` file version (major, minor, build, revision); `None` when the
    /// file has no version resource.
    pub file_version: Collected<Option<[u16; 4]>>,
}

/// The boot options in effect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestSigningFacts {
    /// `HKLM\SYSTEM\CurrentControlSet\Control` `SystemStartOptions`.
    pub system_start_options: Collected<Option<String>>,
}

/// Driver Verifier's registry settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierFacts {
    /// `VerifyDrivers` (REG_SZ, driver names separated by spaces, or `*`).
    pub verify_drivers: Collected<Option<String>>,
    /// `VerifyDriverLevel` (REG_DWORD, the verifier flags).
    pub verify_driver_level: Collected<Option<u32>>,
}

/// `vmbkmclr.sys` read from disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportImageFacts {
    /// The file read.
    pub path: String,
    /// Its bytes.
    pub image: Collected<Vec<u8>>,
}

/// One compute system from the HCS list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmEntry {
    /// `Id`.
    pub id: Guid,
    /// `Name`, if the HCS gave one.
    pub name: Option<String>,
    /// `State` (`Running`, `Paused`, `Stopped`, ...).
    pub state: Option<String>,
    /// `Owner` (`VMMS` for Hyper-V Manager's VMs).
    pub owner: Option<String>,
    /// `SystemType` (`VirtualMachine`, `Container`).
    pub system_type: Option<String>,
    /// `RuntimeId`.
    pub runtime_id: Option<String>,
}

/// How `--vm` was looked up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmLookupFacts {
    /// `HcsEnumerateComputeSystems` failed.
    EnumerationFailed(OsError),
    /// Its answer was not the expected JSON list (the text is the parse error).
    BadAnswer(String),
    /// No compute system has that id or name; `known` lists what the HCS knows (id and name).
    NotFound {
        /// `id (name)` of every compute system listed.
        known: Vec<String>,
    },
    /// Several compute systems have that name.
    Ambiguous(Vec<VmEntry>),
    /// Found; then its properties were queried.
    Found {
        /// The list's entry.
        entry: Box<VmEntry>,
        /// `HcsGetComputeSystemProperties` with no query: the JSON document, or the failure.
        properties: Collected<String>,
    },
}

/// A process that may be the VM's worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessFacts {
    /// Process id.
    pub pid: u32,
    /// Image name (`vmwp.exe`).
    pub image: String,
    /// Its command line (the worker's carries the VM id), or why it could not be read.
    pub command_line: Collected<String>,
}

/// `PROTECTION_LEVEL_NONE` of `PROCESS_PROTECTION_LEVEL_INFORMATION` (processthreadsapi.h).
pub const PROTECTION_LEVEL_NONE: u32 = 0xFFFF_FFFE;

/// What the probe learned about the VM's worker process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerFacts {
    /// Every `vmwp.exe` process, or why they could not be listed.
    pub processes: Collected<Vec<ProcessFacts>>,
    /// The facts of the one process [`super::classify::find_worker`] chose, if it chose one.
    pub chosen: Option<WorkerProcessFacts>,
}

/// The chosen worker process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerProcessFacts {
    /// Its id.
    pub pid: u32,
    /// `GetProcessInformation(ProcessProtectionLevelInfo)`'s `ProtectionLevel`.
    pub protection_level: Collected<u32>,
    /// Whether `OpenProcess(PROCESS_DUP_HANDLE)` succeeded (the handle was closed at once).
    pub dup_handle_open: Collected<()>,
}

/// How an IOCTL on the second vdev handle ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IoctlResult {
    /// It completed successfully with this many output bytes.
    Completed {
        /// `lpBytesReturned`.
        bytes_returned: u32,
        /// The output buffer's first `bytes_returned` bytes, hex.
        output_hex: String,
    },
    /// It failed with this Win32 error.
    Failed {
        /// `GetLastError()` / the overlapped result's error.
        win32: u32,
    },
    /// It did not complete within the bound; `cancelled` says whether `CancelIoEx` succeeded.
    TimedOut {
        /// Whether the cancel was accepted.
        cancelled: bool,
    },
}

/// One IOCTL sent on the second vdev handle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoctlFacts {
    /// The control code.
    pub code: u32,
    /// Its name in the public symbols (`VDEV_SETUP`).
    pub name: &'static str,
    /// Input bytes sent.
    pub input_len: u32,
    /// Output buffer size.
    pub output_len: u32,
    /// How it ended.
    pub result: IoctlResult,
}

/// The second open of the VM's vdev path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VdevFacts {
    /// The path opened.
    pub path: String,
    /// The desired access asked for (`GENERIC_ALL`'s bits).
    pub desired_access: u32,
    /// The share mode asked for.
    pub share_mode: u32,
    /// `Ok` if `CreateFileW` succeeded, else its Win32 error.
    pub open: Result<(), u32>,
    /// The IOCTLs sent (only with `--experimental`, only if the open succeeded).
    pub ioctls: Vec<IoctlFacts>,
}
