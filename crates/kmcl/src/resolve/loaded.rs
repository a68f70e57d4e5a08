//! Finding the loaded `vmbkmclr.sys` and reading only what stays mapped of it.
//!
//! # How the driver finds the module
//! `AuxKlibQueryModuleInformation` (Microsoft Learn, "AuxKlibQueryModuleInformation function
//! (aux_klib.h)") fills an array of `AUX_MODULE_EXTENDED_INFO` records, one per loaded kernel
//! module: image base, image size, the offset of the file name in the full path, and the full
//! path (256 bytes, NUL-terminated). [`find_module`] picks the record whose file name is
//! [`HOST_LIBRARY`], comparing ASCII case-insensitively (paths are recorded as the loader saw
//! them, e.g. `\SystemRoot\System32\drivers\vmbkmclr.sys`). The glue copies the array into pool
//! memory it owns; this parser reads that copy, never kernel structures.
//!
//! # What the driver reads of it
//! Not the whole image: a loaded driver's discardable sections (`INIT`) are unmapped after its
//! own DriverEntry, so `ImageBase .. ImageBase + ImageSize` is not readable as a whole. Two
//! ranges stay mapped while the module is loaded, because the kernel itself reads them to
//! resolve other drivers' imports and `AuxKlibGetImageExportDirectory` (aux_klib.h) returns a
//! pointer into them given only the image base:
//! 1. the headers: [`header_window`] bytes from the base (the first page, or less for a smaller
//!    image); [`ExportWindow::from_headers`] checks them and says where the export directory is;
//! 2. the export directory: [`ExportWindow`] (RVA and size from the export data directory,
//!    checked to lie inside the image).
//!
//! [`LoadedImage`] is an [`ImageReader`] over exactly those two slices: an RVA anywhere else is
//! unreadable, and an exported function's RVA only has to lie inside `ImageSize`.
//!
//! # The module must stay loaded
//! The returned function pointers point into `vmbkmclr.sys`. Nothing the driver does pins that
//! module: importing from it would (the loader keeps an imported module loaded for its
//! importers), but a static import is exactly what fails the load when one name is missing.
//! `AuxKlibQueryModuleInformation`'s page says a caller must assume a module can be unloaded
//! unless it can ensure otherwise. The driver relies on an **assumption**: on a Hyper-V host
//! `vmbkmclr.sys` is imported by Hyper-V's own host drivers (`vmswitch.sys` imports
//! `vmbkmclr!VmbChannelEnable` and others), which stay loaded while Hyper-V runs, so the module
//! is not unloaded under the driver. The README's verified-where table names this assumption.

use core::fmt;

use crate::raw::NTSTATUS;
use crate::resolve::error::PeError;
use crate::resolve::image::{ImageReader, PeHeaders};
use crate::resolve::read::{c_string, offset, u16_at, u32_at};

/// The host KMCL library's file name (kmcl.md §1a: `C:\Windows\System32\drivers\vmbkmclr.sys`).
pub const HOST_LIBRARY: &str = "vmbkmclr.sys";

/// `AUX_KLIB_MODULE_PATH_LEN` (aux_klib.h): bytes of `FullPathName`.
pub const MODULE_PATH_LEN: usize = 256;

/// `sizeof(AUX_MODULE_EXTENDED_INFO)` on 64-bit Windows: `AUX_MODULE_BASIC_INFO` (one `PVOID
/// ImageBase`, 8 bytes), `ULONG ImageSize` (4), `USHORT FileNameOffset` (2), `UCHAR
/// FullPathName[256]`, padded to the 8-byte alignment of the pointer: 270 → 272. The glue
/// asserts that its declaration of the struct has exactly this size.
pub const AUX_MODULE_EXTENDED_INFO_SIZE: usize = 272;

/// Field offsets in one record.
const RECORD_IMAGE_BASE: usize = 0;
const RECORD_IMAGE_SIZE: usize = 8;
const RECORD_FILE_NAME_OFFSET: usize = 12;
const RECORD_FULL_PATH: usize = 14;

/// The part of an image read as its headers: the first page (4 KiB, the smallest unit the
/// memory manager maps), or the whole image if it is smaller.
pub const HEADER_WINDOW: u32 = 0x1000;

/// Why the host library could not be used. Every variant names what was wrong, for the
/// event-log message and DbgPrint of a failed DriverEntry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleError {
    /// A kernel call failed (`AuxKlibInitialize`, `AuxKlibQueryModuleInformation`).
    Query {
        /// Which call.
        call: &'static str,
        /// Its status.
        status: NTSTATUS,
    },
    /// The module list kept growing between the size query and the copy, every retry.
    ModuleListUnstable,
    /// The module list's length is not a whole number of records.
    ModuleListMalformed {
        /// Its length in bytes.
        len: usize,
    },
    /// No loaded module is named [`HOST_LIBRARY`]: Hyper-V's host components are not running.
    NotLoaded,
    /// Two loaded modules are named [`HOST_LIBRARY`]; the driver will not guess which one.
    LoadedTwice,
    /// The module's record has a null base, or a size too small to hold its own headers.
    BadRecord,
    /// The module's headers or export directory are malformed.
    Image(PeError),
    /// `AuxKlibGetImageExportDirectory` disagrees with the headers about where the export
    /// directory is.
    ExportDirectoryMismatch,
}

impl From<PeError> for ModuleError {
    fn from(error: PeError) -> Self {
        Self::Image(error)
    }
}

impl fmt::Display for ModuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Query { call, status } => {
                write!(f, "{call} failed with status {:#010x}", *status as u32)
            }
            Self::ModuleListUnstable => f.write_str("the loaded-module list kept changing"),
            Self::ModuleListMalformed { len } => {
                write!(
                    f,
                    "the loaded-module list has {len} bytes, not whole records"
                )
            }
            Self::NotLoaded => write!(
                f,
                "{HOST_LIBRARY} is not loaded (is the Hyper-V role installed and running?)"
            ),
            Self::LoadedTwice => write!(f, "two modules named {HOST_LIBRARY} are loaded"),
            Self::BadRecord => write!(f, "the module record of {HOST_LIBRARY} is implausible"),
            Self::Image(error) => write!(f, "{HOST_LIBRARY} image refused: {error}"),
            Self::ExportDirectoryMismatch => write!(
                f,
                "{HOST_LIBRARY}: AuxKlibGetImageExportDirectory and the headers disagree"
            ),
        }
    }
}

/// One loaded module, as its `AUX_MODULE_EXTENDED_INFO` record describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModuleRecord<'a> {
    /// `ImageBase`.
    pub base: usize,
    /// `ImageSize`.
    pub size: u32,
    /// The file name part of `FullPathName` (from `FileNameOffset` to the NUL).
    pub file_name: &'a [u8],
}

/// The records of a module list copied out of `AuxKlibQueryModuleInformation`. A record whose
/// file name is unreadable (offset past the path, no NUL) yields an empty name.
pub fn records(list: &[u8]) -> Result<impl Iterator<Item = ModuleRecord<'_>>, ModuleError> {
    if list.len().checked_rem(AUX_MODULE_EXTENDED_INFO_SIZE) != Some(0) {
        return Err(ModuleError::ModuleListMalformed { len: list.len() });
    }
    Ok(list
        .chunks_exact(AUX_MODULE_EXTENDED_INFO_SIZE)
        .map(|record| {
            let base = crate::resolve::read::array::<8>(record, RECORD_IMAGE_BASE)
                .map(u64::from_le_bytes)
                .and_then(|base| usize::try_from(base).ok())
                .unwrap_or(0);
            let size = u32_at(record, RECORD_IMAGE_SIZE).unwrap_or(0);
            let name_offset = u16_at(record, RECORD_FILE_NAME_OFFSET).unwrap_or(u16::MAX);
            let path = record
                .get(RECORD_FULL_PATH..)
                .and_then(|tail| tail.get(..MODULE_PATH_LEN))
                .unwrap_or(&[]);
            let file_name = path
                .get(usize::from(name_offset)..)
                .and_then(|tail| c_string(tail, MODULE_PATH_LEN))
                .unwrap_or(&[]);
            ModuleRecord {
                base,
                size,
                file_name,
            }
        }))
}

/// The one module named `name` (ASCII case-insensitive) in `list`.
pub fn find_module<'a>(list: &'a [u8], name: &str) -> Result<ModuleRecord<'a>, ModuleError> {
    let mut found = None;
    for record in records(list)? {
        if record.file_name.eq_ignore_ascii_case(name.as_bytes()) {
            if found.is_some() {
                return Err(ModuleError::LoadedTwice);
            }
            found = Some(record);
        }
    }
    let record = found.ok_or(ModuleError::NotLoaded)?;
    if record.base == 0 || record.size == 0 {
        return Err(ModuleError::BadRecord);
    }
    Ok(record)
}

/// How many bytes from the image base to read as headers: [`HEADER_WINDOW`], or the image size
/// if smaller.
pub fn header_window(image_size: u32) -> usize {
    usize::try_from(image_size.min(HEADER_WINDOW)).unwrap_or(0)
}

/// Where the export directory of a loaded image is, from its checked headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportWindow {
    /// Its RVA.
    pub rva: u32,
    /// Its size in bytes.
    pub size: u32,
}

impl ExportWindow {
    /// Checks `headers` (the first [`header_window`] bytes of an image of `image_size` bytes)
    /// and returns its export directory's range, which must lie inside the image and outside
    /// the headers.
    pub fn from_headers(headers: &[u8], image_size: u32) -> Result<Self, ModuleError> {
        let parsed = PeHeaders::parse(headers)?;
        let (rva, size) = (parsed.export_rva, parsed.export_size);
        if rva == 0 && size == 0 {
            return Err(PeError::NoExportDirectory.into());
        }
        let out_of_bounds = PeError::ExportDirectoryOutOfBounds { rva, size };
        let end = rva.checked_add(size).ok_or(out_of_bounds)?;
        let header_len = u32::try_from(headers.len()).map_err(|_| out_of_bounds)?;
        if size == 0 || rva < header_len || end > image_size || end > parsed.size_of_image {
            return Err(out_of_bounds.into());
        }
        Ok(Self { rva, size })
    }

    /// Checks the address `AuxKlibGetImageExportDirectory` returned for the image at `base`
    /// against this window.
    pub fn check_kernel_view(&self, base: usize, reported: usize) -> Result<(), ModuleError> {
        match offset(base, self.rva) {
            Some(expected) if expected == reported => Ok(()),
            _ => Err(ModuleError::ExportDirectoryMismatch),
        }
    }
}

/// A loaded image read through its headers and its export directory only.
#[derive(Clone, Copy, Debug)]
pub struct LoadedImage<'a> {
    headers: &'a [u8],
    export: &'a [u8],
    export_rva: u32,
    image_size: u32,
}

impl<'a> LoadedImage<'a> {
    /// The image of `image_size` bytes whose first bytes are `headers` and whose export
    /// directory (at `window`) is `export`. `export` must be exactly `window.size` bytes.
    pub fn new(
        headers: &'a [u8],
        export: &'a [u8],
        window: ExportWindow,
        image_size: u32,
    ) -> Result<Self, ModuleError> {
        let expected = usize::try_from(window.size).ok();
        if expected != Some(export.len()) {
            return Err(PeError::ExportDirectoryOutOfBounds {
                rva: window.rva,
                size: window.size,
            }
            .into());
        }
        Ok(Self {
            headers,
            export,
            export_rva: window.rva,
            image_size,
        })
    }
}

impl ImageReader for LoadedImage<'_> {
    fn bytes_at(&self, rva: u32) -> Option<&[u8]> {
        let at = usize::try_from(rva).ok()?;
        let tail = if at < self.headers.len() {
            self.headers.get(at..)?
        } else {
            let within = usize::try_from(rva.checked_sub(self.export_rva)?).ok()?;
            self.export.get(within..)?
        };
        (!tail.is_empty()).then_some(tail)
    }

    fn contains_rva(&self, rva: u32) -> bool {
        rva < self.image_size
    }
}
