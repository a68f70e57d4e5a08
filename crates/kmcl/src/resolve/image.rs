//! Reading a PE32+ image by RVA, and the header checks every reader shares.
//!
//! Two layouts of the same image ("PE Format", learn.microsoft.com/windows/win32/debug/pe-format,
//! "Section Table"):
//! - [`MappedImage`]: the image as the loader mapped it, each section at its `VirtualAddress`;
//!   an RVA is an offset from the base. This is what a driver has for a loaded module.
//! - [`FileImage`]: the file on disk; an RVA is mapped to a file offset through the section
//!   table (`VirtualAddress` → `PointerToRawData`). Used by tests on real DLLs.
//!
//! Both only hand out slices of the bytes they were given; neither trusts any header field.

use crate::resolve::error::PeError;
use crate::resolve::read::{offset, u16_at, u32_at};

/// The signature at `e_lfanew`.
const PE_SIGNATURE: [u8; 4] = *b"PE\0\0";
/// `IMAGE_FILE_MACHINE_AMD64`.
pub const MACHINE_AMD64: u16 = 0x8664;
/// Optional header magic of a PE32+ image.
pub const PE32_PLUS_MAGIC: u16 = 0x20B;
/// Size of the COFF file header.
const COFF_HEADER_SIZE: usize = 20;
/// Offsets in the PE32+ optional header.
const OPT_SIZE_OF_IMAGE: usize = 56;
const OPT_SIZE_OF_HEADERS: usize = 60;
const OPT_NUMBER_OF_RVA_AND_SIZES: usize = 108;
const OPT_DATA_DIRECTORIES: usize = 112;
/// Size of one section header.
const SECTION_HEADER_SIZE: usize = 40;

/// Read access to an image by RVA.
pub trait ImageReader {
    /// The bytes from `rva` to the end of the contiguous readable region that holds it, or
    /// `None` if `rva` is not readable. Never empty when `Some`.
    fn bytes_at(&self, rva: u32) -> Option<&[u8]>;

    /// The `len` bytes at `rva`, if all are readable contiguously.
    fn read(&self, rva: u32, len: u32) -> Option<&[u8]> {
        self.bytes_at(rva)?.get(..usize::try_from(len).ok()?)
    }

    /// Whether `rva` lies inside the image as loaded (an exported function or variable must).
    /// By default: whether it is readable. A file overrides this to include the parts of its
    /// sections that have no file bytes (zero fill, e.g. `.bss`).
    fn contains_rva(&self, rva: u32) -> bool {
        self.bytes_at(rva).is_some()
    }
}

/// What the export parser needs from the headers, after every check of [`PeHeaders::parse`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeHeaders {
    /// `SizeOfImage`.
    pub size_of_image: u32,
    /// `SizeOfHeaders`.
    pub size_of_headers: u32,
    /// Export table data directory: RVA.
    pub export_rva: u32,
    /// Export table data directory: size.
    pub export_size: u32,
    /// `NumberOfSections`.
    pub number_of_sections: u16,
    /// File (and image) offset of the section table.
    pub section_table_offset: usize,
}

impl PeHeaders {
    /// Checks the MS-DOS header, `e_lfanew`, the PE signature, the COFF header (machine AMD64),
    /// the optional header (magic 0x20B, data-directory count within `SizeOfOptionalHeader`)
    /// and that the section table fits in `SizeOfHeaders`, in `headers` (the image's first
    /// bytes).
    pub fn parse(headers: &[u8]) -> Result<Self, PeError> {
        if headers.len() < 64 {
            return Err(PeError::DosHeaderTruncated);
        }
        if headers.get(..2) != Some(b"MZ".as_slice()) {
            return Err(PeError::BadDosMagic);
        }
        let e_lfanew = u32_at(headers, 0x3C).ok_or(PeError::DosHeaderTruncated)?;
        let lfanew_err = PeError::LfanewOutOfBounds { e_lfanew };
        let pe = offset(0, e_lfanew).ok_or(lfanew_err)?;
        let signature: [u8; 4] = crate::resolve::read::array(headers, pe).ok_or(lfanew_err)?;
        if signature != PE_SIGNATURE {
            return Err(PeError::BadPeSignature);
        }
        let coff = pe.checked_add(4).ok_or(lfanew_err)?;
        let machine = u16_at(headers, coff).ok_or(PeError::CoffHeaderTruncated)?;
        let number_of_sections = u16_at(
            headers,
            coff.checked_add(2).ok_or(PeError::CoffHeaderTruncated)?,
        )
        .ok_or(PeError::CoffHeaderTruncated)?;
        let size_of_optional = u16_at(
            headers,
            coff.checked_add(16).ok_or(PeError::CoffHeaderTruncated)?,
        )
        .ok_or(PeError::CoffHeaderTruncated)?;
        // The last COFF field must be readable too.
        u16_at(
            headers,
            coff.checked_add(18).ok_or(PeError::CoffHeaderTruncated)?,
        )
        .ok_or(PeError::CoffHeaderTruncated)?;
        if machine != MACHINE_AMD64 {
            return Err(PeError::NotAmd64 { machine });
        }
        let opt = coff
            .checked_add(COFF_HEADER_SIZE)
            .ok_or(PeError::OptionalHeaderTruncated)?;
        let opt_len = usize::from(size_of_optional);
        let opt_end = opt
            .checked_add(opt_len)
            .ok_or(PeError::OptionalHeaderTruncated)?;
        let optional = headers
            .get(opt..opt_end)
            .ok_or(PeError::OptionalHeaderTruncated)?;
        let magic = u16_at(optional, 0).ok_or(PeError::OptionalHeaderTruncated)?;
        if magic != PE32_PLUS_MAGIC {
            return Err(PeError::NotPe32Plus { magic });
        }
        let field = |at| u32_at(optional, at).ok_or(PeError::OptionalHeaderTruncated);
        let size_of_image = field(OPT_SIZE_OF_IMAGE)?;
        let size_of_headers = field(OPT_SIZE_OF_HEADERS)?;
        // All headers, the optional one included, lie within SizeOfHeaders.
        if usize::try_from(size_of_headers).map_or(true, |size| opt_end > size) {
            return Err(PeError::OptionalHeaderTruncated);
        }
        let count = field(OPT_NUMBER_OF_RVA_AND_SIZES)?;
        let bad_count = PeError::BadDataDirectoryCount { count };
        let dirs_len = usize::try_from(count)
            .ok()
            .and_then(|n| n.checked_mul(8))
            .and_then(|n| n.checked_add(OPT_DATA_DIRECTORIES))
            .ok_or(bad_count)?;
        if count == 0 || dirs_len > opt_len {
            return Err(bad_count);
        }
        let export_rva = field(OPT_DATA_DIRECTORIES)?;
        let export_size = field(OPT_DATA_DIRECTORIES.wrapping_add(4))?;
        let section_table_offset = opt_end;
        let table_len = usize::from(number_of_sections)
            .checked_mul(SECTION_HEADER_SIZE)
            .ok_or(PeError::SectionTableOutOfBounds)?;
        let table_end = section_table_offset
            .checked_add(table_len)
            .ok_or(PeError::SectionTableOutOfBounds)?;
        let within_headers = usize::try_from(size_of_headers).is_ok_and(|size| table_end <= size);
        if table_end > headers.len() || !within_headers {
            return Err(PeError::SectionTableOutOfBounds);
        }
        Ok(Self {
            size_of_image,
            size_of_headers,
            export_rva,
            export_size,
            number_of_sections,
            section_table_offset,
        })
    }
}

/// An image as the loader mapped it: RVA = offset from the first byte.
#[derive(Clone, Copy, Debug)]
pub struct MappedImage<'a> {
    bytes: &'a [u8],
}

impl<'a> MappedImage<'a> {
    /// The image whose mapping is `bytes` (base = `bytes.as_ptr()`).
    pub const fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    /// The image of `size` bytes mapped at `base`.
    ///
    /// # Safety
    /// `base..base + size` must be readable for `'a` and not written during `'a`. A loaded
    /// driver image is **not** readable as a whole: its discardable sections (`INIT`) are
    /// unmapped after its DriverEntry. Pass only a range known to stay mapped (the headers and
    /// the export directory of a module that stays loaded for `'a`), never `ImageBase` with
    /// the whole `ImageSize`.
    pub unsafe fn from_raw_parts(base: *const u8, size: usize) -> Self {
        // SAFETY: the caller guarantees that `size` bytes at `base` stay readable and unchanged
        // for `'a` (a loaded module's image mapping).
        let bytes = unsafe { core::slice::from_raw_parts(base, size) };
        Self { bytes }
    }

    /// The first byte of the mapping (the module's base address).
    pub fn base(&self) -> *const u8 {
        self.bytes.as_ptr()
    }

    /// The mapping's length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the mapping is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl ImageReader for MappedImage<'_> {
    fn bytes_at(&self, rva: u32) -> Option<&[u8]> {
        let tail = self.bytes.get(usize::try_from(rva).ok()?..)?;
        (!tail.is_empty()).then_some(tail)
    }
}

/// An image file as stored on disk: RVAs are mapped through the section table.
#[derive(Clone, Copy, Debug)]
pub struct FileImage<'a> {
    file: &'a [u8],
    headers: PeHeaders,
}

/// One section header's mapping fields.
struct Section {
    virtual_address: u32,
    /// `VirtualSize`, or `SizeOfRawData` when that is 0: the section's extent in the image.
    virtual_size: u32,
    /// Bytes of the section backed by the file: `SizeOfRawData`, capped by a nonzero
    /// `VirtualSize` (the rest is padding or zero fill, which has no file bytes).
    file_backed: u32,
    pointer_to_raw_data: u32,
}

impl<'a> FileImage<'a> {
    /// The image file `file`, after the header checks of [`PeHeaders::parse`].
    pub fn new(file: &'a [u8]) -> Result<Self, PeError> {
        let headers = PeHeaders::parse(file)?;
        Ok(Self { file, headers })
    }

    /// The checked headers.
    pub fn headers(&self) -> &PeHeaders {
        &self.headers
    }

    fn sections(&self) -> impl Iterator<Item = Section> + '_ {
        let count = usize::from(self.headers.number_of_sections);
        let table = self
            .file
            .get(self.headers.section_table_offset..)
            .unwrap_or_default();
        table
            .chunks_exact(SECTION_HEADER_SIZE)
            .take(count)
            .map(|header| {
                let virtual_size = u32_at(header, 8).unwrap_or(0);
                let raw_size = u32_at(header, 16).unwrap_or(0);
                Section {
                    virtual_address: u32_at(header, 12).unwrap_or(0),
                    virtual_size: if virtual_size == 0 {
                        raw_size
                    } else {
                        virtual_size
                    },
                    file_backed: if virtual_size == 0 {
                        raw_size
                    } else {
                        virtual_size.min(raw_size)
                    },
                    pointer_to_raw_data: u32_at(header, 20).unwrap_or(0),
                }
            })
    }
}

impl ImageReader for FileImage<'_> {
    fn bytes_at(&self, rva: u32) -> Option<&[u8]> {
        let slice = if rva < self.headers.size_of_headers {
            let end = usize::try_from(self.headers.size_of_headers).ok()?;
            let end = end.min(self.file.len());
            self.file.get(usize::try_from(rva).ok()?..end)?
        } else {
            self.sections().find_map(|s| {
                let within = rva.checked_sub(s.virtual_address)?;
                if within >= s.file_backed {
                    return None;
                }
                let start = offset(usize::try_from(s.pointer_to_raw_data).ok()?, within)?;
                let end = offset(usize::try_from(s.pointer_to_raw_data).ok()?, s.file_backed)?;
                self.file.get(start..end.min(self.file.len()))
            })?
        };
        (!slice.is_empty()).then_some(slice)
    }

    fn contains_rva(&self, rva: u32) -> bool {
        if rva >= self.headers.size_of_image {
            return false;
        }
        rva < self.headers.size_of_headers
            || self.sections().any(|s| {
                rva.checked_sub(s.virtual_address)
                    .is_some_and(|within| within < s.virtual_size)
            })
    }
}
