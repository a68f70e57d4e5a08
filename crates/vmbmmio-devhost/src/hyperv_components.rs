//! The Hyper-V components the device host loads at run time: which DLLs, which entry points, and
//! how a missing one is reported.
//!
//! # Why at run time
//! `computecore.dll` (HCS) and `vmdevicehost.dll` (HDV) exist only where the Hyper-V feature is
//! enabled. Imported at load time, a missing DLL or entry point kills the process with
//! `STATUS_DLL_NOT_FOUND` (or `STATUS_ENTRYPOINT_NOT_FOUND`) before `main`, so the device host
//! could not even print `--help` or say what is missing. The Windows backend
//! (`windows::hyperv`) therefore loads both from System32 with `LoadLibraryExW(...,
//! LOAD_LIBRARY_SEARCH_SYSTEM32)` and resolves every entry point below with `GetProcAddress`
//! (Microsoft Learn: "LoadLibraryExW function", "GetProcAddress function"), once per process.
//!
//! # What lives here
//! The portable part, compiled and tested everywhere: [`COMPONENTS`], the one list of DLLs and
//! entry points (the Windows loader's typed table is checked against it at compile time),
//! [`ComponentStatus`] for a report that lists every DLL and entry point, [`check_components`]
//! (tries everything, stops at nothing) and [`ComponentError`], the error the device host
//! prints when it cannot run, with what to do about it.

use std::fmt;

/// `computecore.dll`: the Host Compute Service API (Microsoft Learn, "Host Compute System API
/// Reference").
pub const COMPUTECORE_DLL: &str = "computecore.dll";

/// `vmdevicehost.dll`: the Host Device Virtualization API (Microsoft Learn, HDV reference;
/// windows-rs links every `Hdv*` function against this DLL).
pub const VMDEVICEHOST_DLL: &str = "vmdevicehost.dll";

/// The HCS functions the device host calls (`windows::hcs`): open the VM, pause and resume it
/// around a mapping change, and the synchronous operation they run in.
pub const HCS_ENTRIES: &[&str] = &[
    "HcsCreateOperation",
    "HcsCloseOperation",
    "HcsWaitForOperationResult",
    "HcsOpenComputeSystem",
    "HcsPauseComputeSystem",
    "HcsResumeComputeSystem",
    "HcsCloseComputeSystem",
];

/// The HDV functions the device host calls (`windows::hdv`).
pub const HDV_ENTRIES: &[&str] = &[
    "HdvInitializeDeviceHostEx",
    "HdvCreateDeviceInstance",
    "HdvCreateSectionBackedMmioRange",
    "HdvDestroySectionBackedMmioRange",
    "HdvTeardownDeviceHost",
];

/// A DLL the device host loads at run time and the entry points it must export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Component {
    /// File name, loaded from System32 only.
    pub dll: &'static str,
    /// The API it provides, for messages.
    pub api: &'static str,
    /// Every entry point the device host resolves from it, in the Windows table's order.
    pub entries: &'static [&'static str],
}

/// The HCS component.
pub const HCS: Component = Component {
    dll: COMPUTECORE_DLL,
    api: "Host Compute Service (HCS)",
    entries: HCS_ENTRIES,
};

/// The HDV component.
pub const HDV: Component = Component {
    dll: VMDEVICEHOST_DLL,
    api: "Host Device Virtualization (HDV)",
    entries: HDV_ENTRIES,
};

/// Every component, in load order: the source of truth for the Windows loader and the probe.
pub const COMPONENTS: [Component; 2] = [HCS, HDV];

/// The component that provides `dll`, if any.
pub fn component(dll: &str) -> Option<&'static Component> {
    COMPONENTS
        .iter()
        .find(|component| component.dll.eq_ignore_ascii_case(dll))
}

/// Win32 `ERROR_ACCESS_DENIED`.
pub const ERROR_ACCESS_DENIED: u32 = 5;
/// Win32 `ERROR_MOD_NOT_FOUND`: what `LoadLibraryExW` sets for a DLL that is not there.
pub const ERROR_MOD_NOT_FOUND: u32 = 126;
/// Win32 `ERROR_PROC_NOT_FOUND`: what `GetProcAddress` sets for a name the DLL does not export.
pub const ERROR_PROC_NOT_FOUND: u32 = 127;
/// Win32 `ERROR_BAD_EXE_FORMAT`: the file is not a loadable image for this architecture.
pub const ERROR_BAD_EXE_FORMAT: u32 = 193;
/// Win32 `ERROR_DLL_INIT_FAILED`: the DLL's initialization routine failed.
pub const ERROR_DLL_INIT_FAILED: u32 = 1114;

/// The symbolic name of the Win32 errors a load can plausibly end with (Microsoft Learn,
/// "System Error Codes (0-499)" and "(1000-1299)"); `None` for any other code.
pub const fn os_error_name(code: u32) -> Option<&'static str> {
    match code {
        ERROR_ACCESS_DENIED => Some("ERROR_ACCESS_DENIED"),
        ERROR_MOD_NOT_FOUND => Some("ERROR_MOD_NOT_FOUND"),
        ERROR_PROC_NOT_FOUND => Some("ERROR_PROC_NOT_FOUND"),
        ERROR_BAD_EXE_FORMAT => Some("ERROR_BAD_EXE_FORMAT"),
        ERROR_DLL_INIT_FAILED => Some("ERROR_DLL_INIT_FAILED"),
        _ => None,
    }
}

/// "OS error 126 (ERROR_MOD_NOT_FOUND)", or just the number for an unnamed code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OsError(pub u32);

impl fmt::Display for OsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match os_error_name(self.0) {
            Some(name) => write!(f, "OS error {} ({name})", self.0),
            None => write!(f, "OS error {}", self.0),
        }
    }
}

/// One line of a component report: a DLL (`entry` is `None`) or one of its entry points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ComponentStatus {
    /// The DLL.
    pub dll: &'static str,
    /// The entry point, or `None` for the DLL itself.
    pub entry: Option<&'static str>,
    /// Whether the DLL loaded from System32 / the entry point was exported.
    pub found: bool,
    /// The Win32 error of the failed `LoadLibraryExW` or `GetProcAddress`. `None` when found,
    /// and for an entry point that was not looked up because its DLL did not load.
    pub os_error: Option<u32>,
}

impl ComponentStatus {
    /// Whether this line is an entry point that was not looked up (its DLL did not load).
    pub fn not_checked(&self) -> bool {
        self.entry.is_some() && !self.found && self.os_error.is_none()
    }

    /// The error this line stands for, if it is a failure that was observed (a DLL that did not
    /// load, or an entry point its loaded DLL lacks).
    pub fn error(&self) -> Option<ComponentError> {
        if self.found {
            return None;
        }
        let os_error = self.os_error?;
        Some(match self.entry {
            None => ComponentError::DllNotLoaded {
                dll: self.dll,
                os_error,
            },
            Some(entry) => ComponentError::EntryMissing {
                dll: self.dll,
                entry,
                os_error,
            },
        })
    }
}

impl fmt::Display for ComponentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.entry {
            None => write!(f, "{}", self.dll)?,
            Some(entry) => write!(f, "{}!{entry}", self.dll)?,
        }
        match (self.found, self.os_error) {
            (true, _) => f.write_str(": found"),
            (false, Some(code)) => write!(f, ": missing ({})", OsError(code)),
            (false, None) => f.write_str(": not checked (its DLL did not load)"),
        }
    }
}

/// Tries every DLL of [`COMPONENTS`] with `load` and every entry point of each loaded DLL with
/// `resolve`, without stopping at a failure, and returns one line per DLL followed by one per
/// entry point, in table order.
///
/// `load` returns the loaded library or the OS error; `resolve` returns whether the library
/// exports the name, or the OS error. The Windows backend passes `LoadLibraryExW` and
/// `GetProcAddress`; tests pass fakes.
pub fn check_components<L>(
    mut load: impl FnMut(&'static str) -> Result<L, u32>,
    mut resolve: impl FnMut(&L, &'static str) -> Result<(), u32>,
) -> Vec<ComponentStatus> {
    let mut statuses = Vec::new();
    for component in &COMPONENTS {
        let library = load(component.dll);
        statuses.push(ComponentStatus {
            dll: component.dll,
            entry: None,
            found: library.is_ok(),
            os_error: library.as_ref().err().copied(),
        });
        for &entry in component.entries {
            let status = match &library {
                Ok(library) => {
                    let resolved = resolve(library, entry);
                    ComponentStatus {
                        dll: component.dll,
                        entry: Some(entry),
                        found: resolved.is_ok(),
                        os_error: resolved.err(),
                    }
                }
                Err(_) => ComponentStatus {
                    dll: component.dll,
                    entry: Some(entry),
                    found: false,
                    os_error: None,
                },
            };
            statuses.push(status);
        }
    }
    statuses
}

/// The first observed failure of a report (what the device host would stop at), if any.
pub fn first_error(statuses: &[ComponentStatus]) -> Option<ComponentError> {
    statuses.iter().find_map(ComponentStatus::error)
}

/// Why the device host cannot use HCS or HDV on this Windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComponentError {
    /// `LoadLibraryExW(dll, NULL, LOAD_LIBRARY_SEARCH_SYSTEM32)` failed.
    DllNotLoaded {
        /// The DLL.
        dll: &'static str,
        /// `GetLastError()` after the call.
        os_error: u32,
    },
    /// The DLL loaded but `GetProcAddress(entry)` failed.
    EntryMissing {
        /// The DLL.
        dll: &'static str,
        /// The entry point.
        entry: &'static str,
        /// `GetLastError()` after the call.
        os_error: u32,
    },
}

impl ComponentError {
    /// The DLL concerned.
    pub fn dll(&self) -> &'static str {
        match *self {
            Self::DllNotLoaded { dll, .. } | Self::EntryMissing { dll, .. } => dll,
        }
    }

    /// The entry point concerned, if the DLL itself loaded.
    pub fn entry(&self) -> Option<&'static str> {
        match *self {
            Self::DllNotLoaded { .. } => None,
            Self::EntryMissing { entry, .. } => Some(entry),
        }
    }

    /// The Win32 error code.
    pub fn os_error(&self) -> u32 {
        match *self {
            Self::DllNotLoaded { os_error, .. } | Self::EntryMissing { os_error, .. } => os_error,
        }
    }

    /// What the user should do about it.
    pub fn advice(&self) -> &'static str {
        match *self {
            Self::DllNotLoaded {
                os_error: ERROR_MOD_NOT_FOUND,
                ..
            } => {
                "the Hyper-V feature is not enabled on this Windows. Enable it from an elevated \
                 PowerShell (`Enable-WindowsOptionalFeature -Online -FeatureName Microsoft-Hyper-V \
                 -All` on a client, `Install-WindowsFeature -Name Hyper-V` on Windows Server) and \
                 restart"
            }
            Self::DllNotLoaded { .. } => {
                "the file is there but Windows could not load it: the Hyper-V feature may be \
                 damaged or only partly installed. Disable and enable it again, or repair \
                 Windows, and restart"
            }
            Self::EntryMissing { .. } => {
                "this Windows build is too old for the device host, which needs Windows Server \
                 2022 or later with the Hyper-V role: update Windows"
            }
        }
    }
}

impl fmt::Display for ComponentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let api = component(self.dll()).map_or("Hyper-V", |component| component.api);
        match *self {
            Self::DllNotLoaded { dll, os_error } => write!(
                f,
                "cannot load {dll} ({api} API) from System32: {}; {}",
                OsError(os_error),
                self.advice()
            ),
            Self::EntryMissing {
                dll,
                entry,
                os_error,
            } => write!(
                f,
                "{dll} ({api} API) has no entry point {entry}: {}; {}",
                OsError(os_error),
                self.advice()
            ),
        }
    }
}

impl std::error::Error for ComponentError {}

/// Whether `a` and `b` list the same names in the same order; `const` so that the Windows
/// loader's typed table can be checked against [`COMPONENTS`] at compile time.
pub const fn same_names(a: &[&str], b: &[&str]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut index = 0;
    while index < a.len() {
        if !same_str(a[index], b[index]) {
            return false;
        }
        index += 1;
    }
    true
}

const fn same_str(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut index = 0;
    while index < a.len() {
        if a[index] != b[index] {
            return false;
        }
        index += 1;
    }
    true
}

#[cfg(test)]
mod tests;
