//! The whole load-time resolution, with the kernel calls behind [`LoadedModules`].
//!
//! DriverEntry runs [`load_host_library`] once, at PASSIVE_LEVEL, before it creates anything
//! that could call KMCL. The sequence, every decision of it here and tested against synthetic
//! images, the glue only executing the kernel calls:
//! 1. copy the loaded-module list (`AuxKlibInitialize`, then `AuxKlibQueryModuleInformation`
//!    twice: size, then copy; the list can grow in between, so a short buffer is retried a
//!    bounded number of times with room to spare);
//! 2. find `vmbkmclr.sys` in it ([`find_module`]);
//! 3. read its headers (first page), find the export directory ([`ExportWindow`]) and check it
//!    against the kernel's own view (`AuxKlibGetImageExportDirectory`);
//! 4. read the export directory, locate every entry, build the table ([`resolve_loaded`]).
//!
//! A failure at any step is a [`HostLibraryError`]: its `Display` is the one line DriverEntry
//! writes to the System event log and the debugger, and [`HostLibraryError::ntstatus`] is what
//! DriverEntry returns.

use alloc::vec::Vec;
use core::fmt;

use crate::raw::{
    NTSTATUS, STATUS_DLL_NOT_FOUND, STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_IMAGE_FORMAT,
    STATUS_PROCEDURE_NOT_FOUND,
};
use crate::resolve::kmcl_table::{ResolveError, ResolvedKmcl, resolve_loaded};
use crate::resolve::loaded::{
    AUX_MODULE_EXTENDED_INFO_SIZE, ExportWindow, HOST_LIBRARY, LoadedImage, ModuleError,
    find_module, header_window,
};

/// How often the module list is fetched again when it grew between the size query and the
/// copy. Each retry asks for [`LIST_SLACK_RECORDS`] more records than the kernel said.
pub const LIST_ATTEMPTS: usize = 4;
/// Extra records of room per attempt.
pub const LIST_SLACK_RECORDS: usize = 16;
/// Largest module list accepted (8192 modules); a larger size is refused, not allocated.
pub const MAX_LIST_BYTES: usize = 8192 * AUX_MODULE_EXTENDED_INFO_SIZE;

/// The result of copying the module list into a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListCopy {
    /// The list is in the first `len` bytes of the buffer.
    Copied {
        /// Bytes written.
        len: usize,
    },
    /// The buffer was too small (`STATUS_BUFFER_TOO_SMALL`): the list grew.
    TooSmall,
}

/// The kernel calls behind the resolution (the glue's `AuxKlib*` calls; a test's synthetic
/// module list).
pub trait LoadedModules {
    /// `AuxKlibInitialize`, then the byte size of the module list
    /// (`AuxKlibQueryModuleInformation` with no buffer, element size
    /// [`AUX_MODULE_EXTENDED_INFO_SIZE`]).
    fn list_size(&mut self) -> Result<usize, ModuleError>;

    /// Copies the module list into `buffer`.
    fn copy_list(&mut self, buffer: &mut [u8]) -> Result<ListCopy, ModuleError>;

    /// The `len` bytes at `address`.
    ///
    /// # Safety
    /// `address .. address + len` lies inside a loaded module's image and stays mapped and
    /// unchanged while the returned slice is used (the caller asks only for a module's headers
    /// and its export directory, which the kernel keeps mapped while the module is loaded).
    unsafe fn mapped(&self, address: usize, len: usize) -> &[u8];

    /// `AuxKlibGetImageExportDirectory(base)` as an address (0 if it returned NULL).
    fn kernel_export_directory(&self, base: usize) -> usize;
}

/// Why the host library could not be resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostLibraryError {
    /// Finding or reading the module failed.
    Module(ModuleError),
    /// The export table was refused or lacks required entries.
    Resolve(ResolveError),
    /// Memory for the module list could not be allocated.
    OutOfMemory,
}

impl From<ModuleError> for HostLibraryError {
    fn from(error: ModuleError) -> Self {
        Self::Module(error)
    }
}

impl From<ResolveError> for HostLibraryError {
    fn from(error: ResolveError) -> Self {
        Self::Resolve(error)
    }
}

impl HostLibraryError {
    /// The status DriverEntry fails with.
    pub fn ntstatus(&self) -> NTSTATUS {
        match self {
            Self::Module(ModuleError::Query { status, .. }) => *status,
            Self::Module(ModuleError::NotLoaded) => STATUS_DLL_NOT_FOUND,
            Self::Module(_) => STATUS_INVALID_IMAGE_FORMAT,
            Self::Resolve(ResolveError::MissingRequired { .. }) => STATUS_PROCEDURE_NOT_FOUND,
            Self::Resolve(_) => STATUS_INVALID_IMAGE_FORMAT,
            Self::OutOfMemory => STATUS_INSUFFICIENT_RESOURCES,
        }
    }

    /// The missing required entries, as bits (event-log dump data); 0 for other errors.
    pub fn missing_bits(&self) -> u32 {
        match self {
            Self::Resolve(ResolveError::MissingRequired { missing, .. }) => missing.bits(),
            _ => 0,
        }
    }
}

impl fmt::Display for HostLibraryError {
    /// One line, prefixed with the driver's name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("vmbmmio: cannot use the VMBus host library: ")?;
        match self {
            Self::Module(error) => write!(f, "{error}"),
            Self::Resolve(error) => write!(f, "{error}"),
            Self::OutOfMemory => f.write_str("out of memory for the loaded-module list"),
        }
    }
}

/// Longest event-log line, in characters (ASCII). An I/O error-log entry holds at most
/// `ERROR_LOG_MAXIMUM_SIZE` (240) bytes, header and dump data included (Microsoft Learn,
/// "IoAllocateErrorLogEntry function (wdm.h)"); the text is UTF-16 plus a NUL.
pub const EVENT_LINE_MAX: usize = 88;

/// A short ASCII line for one event-log entry.
#[derive(Clone, Copy)]
pub struct EventLine {
    /// The text, then at least one NUL.
    bytes: [u8; EVENT_LINE_MAX + 1],
    len: usize,
}

impl EventLine {
    /// The text.
    pub fn as_str(&self) -> &str {
        self.bytes
            .get(..self.len)
            .and_then(|bytes| core::str::from_utf8(bytes).ok())
            .unwrap_or("")
    }

    /// The text, NUL-terminated (for `DbgPrint("%s")`).
    pub fn as_c_str(&self) -> &core::ffi::CStr {
        core::ffi::CStr::from_bytes_until_nul(&self.bytes).unwrap_or(c"")
    }
}

impl fmt::Debug for EventLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Write for EventLine {
    /// Appends printable ASCII (anything else becomes `?`), silently stopping at the capacity.
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for byte in text.bytes() {
            // The last byte stays NUL.
            let Some(slot) = self
                .bytes
                .get_mut(..EVENT_LINE_MAX)
                .and_then(|b| b.get_mut(self.len))
            else {
                break;
            };
            *slot = if byte.is_ascii_graphic() || byte == b' ' {
                byte
            } else {
                b'?'
            };
            self.len = self.len.saturating_add(1);
        }
        Ok(())
    }
}

fn event_line(args: fmt::Arguments<'_>) -> EventLine {
    let mut line = EventLine {
        bytes: [0; EVENT_LINE_MAX + 1],
        len: 0,
    };
    let _ = fmt::Write::write_fmt(&mut line, args);
    line
}

impl HostLibraryError {
    /// The System event-log entries for this failure, each short enough for one I/O error-log
    /// entry: one per missing required entry (so every name is logged, however many are
    /// missing), or one line otherwise. The full text ([`fmt::Display`]) goes to the debugger.
    pub fn event_lines(&self, mut emit: impl FnMut(EventLine)) {
        match self {
            Self::Resolve(ResolveError::MissingRequired { missing, forwarded }) => {
                for function in missing.iter() {
                    let how = if forwarded.contains(function) {
                        "only forwards"
                    } else {
                        "does not export"
                    };
                    emit(event_line(format_args!(
                        "{HOST_LIBRARY} {how} required KMCL entry {}",
                        function.c_name()
                    )));
                }
            }
            Self::Module(error) => emit(event_line(format_args!("{error}"))),
            Self::Resolve(error) => emit(event_line(format_args!("{error}"))),
            Self::OutOfMemory => emit(event_line(format_args!(
                "out of memory reading the loaded-module list"
            ))),
        }
    }
}

/// One debugger line per optional entry the driver runs without (`runs without
/// optional KMCL entry VmbChannelGetMmioSpace`).
pub fn optional_lines(missing: crate::EntrySet, mut emit: impl FnMut(EventLine)) {
    for function in missing.iter() {
        emit(event_line(format_args!(
            "runs without optional KMCL entry {}",
            function.c_name()
        )));
    }
}

/// Copies the module list, retrying a bounded number of times while it grows.
fn module_list<M: LoadedModules>(modules: &mut M) -> Result<Vec<u8>, HostLibraryError> {
    for _ in 0..LIST_ATTEMPTS {
        let size = modules.list_size()?;
        let room = LIST_SLACK_RECORDS
            .checked_mul(AUX_MODULE_EXTENDED_INFO_SIZE)
            .and_then(|slack| size.checked_add(slack))
            .filter(|&room| room <= MAX_LIST_BYTES)
            .ok_or(ModuleError::ModuleListMalformed { len: size })?;
        let mut buffer = Vec::new();
        buffer
            .try_reserve_exact(room)
            .map_err(|_| HostLibraryError::OutOfMemory)?;
        #[allow(
            clippy::disallowed_methods,
            reason = "fills the capacity try_reserve_exact made: never reallocates"
        )]
        buffer.resize(room, 0);
        match modules.copy_list(&mut buffer)? {
            ListCopy::Copied { len } if len <= room => {
                buffer.truncate(len);
                return Ok(buffer);
            }
            ListCopy::Copied { len } => return Err(ModuleError::ModuleListMalformed { len }.into()),
            ListCopy::TooSmall => continue,
        }
    }
    Err(ModuleError::ModuleListUnstable.into())
}

/// Finds the loaded `vmbkmclr.sys` and resolves the KMCL table from its export directory.
///
/// IRQL: PASSIVE_LEVEL (`AuxKlibQueryModuleInformation`; reads of the module's pageable
/// headers).
///
/// # Safety
/// `modules` reports real loaded modules, and the module it finds stays loaded for as long as
/// the returned table is used (the assumption in [`crate::resolve::loaded`]); its exports of
/// the KMCL names are the KMCL functions (kmcl.md §2).
pub unsafe fn load_host_library<M: LoadedModules>(
    modules: &mut M,
) -> Result<ResolvedKmcl, HostLibraryError> {
    let list = module_list(modules)?;
    let module = find_module(&list, HOST_LIBRARY)?;
    let (base, size) = (module.base, module.size);
    // SAFETY: the first page (or less) of a loaded module's image: its headers, which the
    // kernel keeps mapped while the module is loaded (it reads them itself, e.g. for
    // AuxKlibGetImageExportDirectory, given only the base).
    let headers = unsafe { modules.mapped(base, header_window(size)) };
    let window = ExportWindow::from_headers(headers, size)?;
    window.check_kernel_view(base, modules.kernel_export_directory(base))?;
    let export_len = usize::try_from(window.size).map_err(|_| ModuleError::BadRecord)?;
    let export_at = usize::try_from(window.rva)
        .ok()
        .and_then(|rva| base.checked_add(rva))
        .ok_or(ModuleError::BadRecord)?;
    // SAFETY: the module's export directory, inside its image (checked by `from_headers`) and
    // where the kernel itself says it is (`check_kernel_view`); the kernel keeps it mapped to
    // resolve other modules' imports.
    let export = unsafe { modules.mapped(export_at, export_len) };
    let image = LoadedImage::new(headers, export, window, size)?;
    // SAFETY: `image` reads the loaded module at `base`; the rest is this function's contract.
    Ok(unsafe { resolve_loaded(&image, base) }?)
}
