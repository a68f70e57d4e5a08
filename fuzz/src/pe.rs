//! The PE32+ export parser (`kmcl::resolve`) on hostile bytes.
//!
//! One input is read four ways, the ways the driver and its tests read images:
//! - a **file image** (`FileImage`: RVAs through the section table) and a **mapped image**
//!   (`MappedImage`: RVA = offset), each parsed (`ExportDirectory::parse`), every name, lookup
//!   and a range of ordinals touched, and every KMCL entry looked up (`locate`);
//! - a **loaded image** as DriverEntry reads `vmbkmclr.sys` (`load_host_library`): only the
//!   header window (`header_window`, `ExportWindow::from_headers`) and the export directory
//!   (`LoadedImage`), here cut out of the input instead of read from kernel memory;
//! - a **module list** (`AuxKlibQueryModuleInformation`'s records): `records` and
//!   `find_module` for the host library.
//!
//! The oracle is that nothing panics and nothing loops without bound (libFuzzer's timeout).

use kmcl::resolve::{
    ExportDirectory, ExportWindow, FileImage, HOST_LIBRARY, ImageReader, LoadedImage, MappedImage,
    PeError, find_module, header_window, loaded::records, locate,
};

/// Names looked up per image at most (a valid directory may list many).
const MAX_NAMES: u32 = 256;
/// Ordinals tried per image.
const ORDINALS: u32 = 64;

/// Runs one input.
pub fn run(data: &[u8]) {
    let _ = FileImage::new(data).and_then(|file| exercise(&file));
    let _ = exercise(&MappedImage::new(data));
    loaded(data);
    if let Ok(list) = records(data) {
        for record in list {
            let _ = record
                .file_name
                .eq_ignore_ascii_case(HOST_LIBRARY.as_bytes());
        }
    }
    let _ = find_module(data, HOST_LIBRARY);
}

/// Parses the export directory behind `reader` and touches everything a caller can.
fn exercise<R: ImageReader>(reader: &R) -> Result<(), PeError> {
    let exports = ExportDirectory::parse(reader)?;
    let _ = exports.module_name();
    let _ = exports.names_sorted();
    for index in 0..exports.number_of_names().min(MAX_NAMES) {
        if let Ok(name) = exports.name(index) {
            let _ = exports.find(name);
        }
    }
    let _ = exports.find(b"VmbChannelAllocate");
    let _ = exports.find(b"");
    let base = exports.ordinal_base();
    for ordinal in
        base.saturating_sub(1)..base.saturating_add(exports.number_of_functions().min(ORDINALS))
    {
        let _ = exports.by_ordinal(ordinal);
    }
    let _ = exports.by_ordinal(u32::MAX);
    let _ = locate(&exports);
    Ok(())
}

/// The input as a loaded module of its own length, read like `load_host_library` reads one.
fn loaded(data: &[u8]) {
    let Ok(size) = u32::try_from(data.len()) else {
        return;
    };
    let Some(headers) = data.get(..header_window(size)) else {
        return;
    };
    let Ok(window) = ExportWindow::from_headers(headers, size) else {
        return;
    };
    let (Ok(rva), Ok(len)) = (usize::try_from(window.rva), usize::try_from(window.size)) else {
        return;
    };
    let Some(export) = rva.checked_add(len).and_then(|end| data.get(rva..end)) else {
        return;
    };
    if let Ok(image) = LoadedImage::new(headers, export, window, size) {
        let _ = exercise(&image);
    }
}
