//! Load-time resolution of the KMCL table from the export directory of the loaded
//! `vmbkmclr.sys`.
//!
//! # Why
//! Importing KMCL from `vmbkmclr.sys` statically (`raw-dylib`) would let the loader resolve the
//! imports before `DriverEntry` runs, so a single name the host library does not export would
//! fail the whole image load (`STATUS_DRIVER_ENTRYPOINT_NOT_FOUND`, device Code 39) without
//! saying which; and LTO could change which names a release build imports. Only three of the
//! names the driver needs are evidenced as `vmbkmclr.sys` exports (kmcl.md §1a). Resolving the
//! table at run time instead lets the driver load, look every entry up, refuse to start with a
//! message naming *every* missing required entry, and run without the optional ones (reporting
//! them). The driver does exactly this in DriverEntry ([`load_host_library`]).

//! # Parts
//! - [`image`]: the [`ImageReader`] abstraction over a PE32+ image: [`MappedImage`] (an image as
//!   the loader mapped it: RVA = offset from the base; what the driver has for a loaded module)
//!   and [`FileImage`] (a file on disk: RVA mapped through the section table; for tests), plus
//!   the header checks both share.
//! - [`exports`]: the export-directory parser. Everything is validated with checked arithmetic;
//!   forwarded exports are reported, never followed; nothing panics.
//! - [`policy`]: the static list of KMCL entries, each Required or Optional with its reason.
//!   Dev and release builds resolve the same list: nothing depends on the linker.
//! - [`kmcl_table`]: turning the export directory into a [`crate::KmclApi`].
//! - [`loaded`]: finding the loaded module in the kernel's module list and reading only its
//!   headers and export directory ([`LoadedImage`]); why the module must stay loaded.
//! - [`host_library`]: the whole DriverEntry sequence over the kernel calls it needs
//!   ([`LoadedModules`]), its errors, and the event-log lines of a failure.
//!
//! Format: "PE Format", Microsoft Learn (learn.microsoft.com/windows/win32/debug/pe-format):
//! MS-DOS stub and `e_lfanew` at 0x3C, signature `PE\0\0`, COFF file header, optional header
//! (magic 0x20B = PE32+), data directories (index 0 = export table), section table, and the
//! `.edata` section (export directory table, export address table, name pointer table, ordinal
//! table; an export address inside the export section is a forwarder RVA).

pub mod error;
pub mod exports;
pub mod host_library;
pub mod image;
pub mod kmcl_table;
pub mod loaded;
pub mod policy;
mod read;

pub use crate::entry_set::EntrySet;
pub use error::PeError;
pub use exports::{Export, ExportDirectory, ExportTarget};
pub use host_library::{
    EVENT_LINE_MAX, EventLine, HostLibraryError, ListCopy, LoadedModules, load_host_library,
    optional_lines,
};
pub use image::{FileImage, ImageReader, MappedImage, PeHeaders};
pub use kmcl_table::{
    Located, ResolveError, ResolvedKmcl, build_table, locate, resolve_loaded, resolve_mapped,
};
pub use loaded::{
    ExportWindow, HOST_LIBRARY, LoadedImage, ModuleError, ModuleRecord, find_module, header_window,
};
pub use policy::{ENTRIES, EntryPolicy, EntrySpec};
