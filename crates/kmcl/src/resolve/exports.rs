//! The export directory of a PE32+ image ("PE Format", learn.microsoft.com/windows/win32/debug/
//! pe-format, "The .edata Section (Image Only)").
//!
//! [`ExportDirectory::parse`] checks the headers and the whole directory up front: the three
//! arrays are readable in full (sizes computed with checked arithmetic, so huge counts fail),
//! every name is NUL-terminated inside the image, every ordinal is below `NumberOfFunctions`,
//! and whether the names are sorted (then lookups binary-search; otherwise they scan).
//! A lookup then checks the one function it returns: an RVA inside the export directory is a
//! forwarder ("DLL.Name" or "DLL.#ordinal"), reported as [`ExportTarget::Forwarded`] and never
//! followed, so a forwarder loop cannot make the parser loop.

use core::cmp::Ordering;

use crate::resolve::error::PeError;
use crate::resolve::image::{ImageReader, PeHeaders};
use crate::resolve::read::{c_string, u16_at, u32_at};

/// Size of the export directory table.
const EXPORT_DIRECTORY_SIZE: u32 = 40;
/// Longest accepted export or forwarder name, NUL excluded (C++ decorated names can be long).
pub const MAX_NAME_LEN: usize = 4096;

/// Where an export leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportTarget<'a> {
    /// Code or data in this image, at this RVA (checked to be inside the image).
    Rva(u32),
    /// A forwarder to another module's export (`"NTOSKRNL.KeBugCheck"` or `"DLL.#12"`), not
    /// followed.
    Forwarded(&'a [u8]),
}

/// One export, found by name or by ordinal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Export<'a> {
    /// The biased ordinal (`Base` + index into the export address table).
    pub ordinal: u32,
    /// What it resolves to.
    pub target: ExportTarget<'a>,
}

/// A checked export directory, read through an [`ImageReader`].
#[derive(Clone, Copy, Debug)]
pub struct ExportDirectory<'r, R: ImageReader> {
    reader: &'r R,
    dir_rva: u32,
    dir_end: u32,
    name_rva: u32,
    ordinal_base: u32,
    functions: &'r [u8],
    names: &'r [u8],
    ordinals: &'r [u8],
    number_of_functions: u32,
    number_of_names: u32,
    names_sorted: bool,
}

/// `count × width` bytes at `rva`, or `err`.
fn array<R: ImageReader>(
    reader: &R,
    rva: u32,
    count: u32,
    width: u32,
    err: PeError,
) -> Result<&[u8], PeError> {
    if count == 0 {
        return Ok(&[]);
    }
    let len = count.checked_mul(width).ok_or(err)?;
    reader.read(rva, len).ok_or(err)
}

impl<'r, R: ImageReader> ExportDirectory<'r, R> {
    /// Checks the image headers and the export directory of `reader`'s image.
    pub fn parse(reader: &'r R) -> Result<Self, PeError> {
        let headers = reader.bytes_at(0).ok_or(PeError::DosHeaderTruncated)?;
        let headers = PeHeaders::parse(headers)?;
        let (rva, size) = (headers.export_rva, headers.export_size);
        if rva == 0 && size == 0 {
            return Err(PeError::NoExportDirectory);
        }
        let out_of_bounds = PeError::ExportDirectoryOutOfBounds { rva, size };
        if size < EXPORT_DIRECTORY_SIZE {
            return Err(out_of_bounds);
        }
        let dir_end = rva.checked_add(size).ok_or(out_of_bounds)?;
        let table = reader.read(rva, size).ok_or(out_of_bounds)?;
        let field = |at| u32_at(table, at).ok_or(out_of_bounds);
        let name_rva = field(12)?;
        let ordinal_base = field(16)?;
        let number_of_functions = field(20)?;
        let number_of_names = field(24)?;
        let functions = array(
            reader,
            field(28)?,
            number_of_functions,
            4,
            PeError::FunctionTableOutOfBounds,
        )?;
        let names = array(
            reader,
            field(32)?,
            number_of_names,
            4,
            PeError::NameTableOutOfBounds,
        )?;
        let ordinals = array(
            reader,
            field(36)?,
            number_of_names,
            2,
            PeError::OrdinalTableOutOfBounds,
        )?;
        let mut directory = Self {
            reader,
            dir_rva: rva,
            dir_end,
            name_rva,
            ordinal_base,
            functions,
            names,
            ordinals,
            number_of_functions,
            number_of_names,
            names_sorted: false,
        };
        directory.names_sorted = directory.check_names()?;
        Ok(directory)
    }

    /// Checks every name and ordinal; returns whether the names are in ascending byte order.
    fn check_names(&self) -> Result<bool, PeError> {
        let mut sorted = true;
        let mut previous: Option<&[u8]> = None;
        for index in 0..self.number_of_names {
            let name = self.name(index)?;
            self.name_ordinal(index)?;
            if previous.is_some_and(|p| p > name) {
                sorted = false;
            }
            previous = Some(name);
        }
        Ok(sorted)
    }

    /// `NumberOfFunctions`: entries in the export address table.
    pub fn number_of_functions(&self) -> u32 {
        self.number_of_functions
    }

    /// `NumberOfNames`: entries in the name pointer and ordinal tables.
    pub fn number_of_names(&self) -> u32 {
        self.number_of_names
    }

    /// `Base`: the ordinal of the export address table's first entry.
    pub fn ordinal_base(&self) -> u32 {
        self.ordinal_base
    }

    /// Whether the name pointer table is sorted (lookups by name then binary-search).
    pub fn names_sorted(&self) -> bool {
        self.names_sorted
    }

    /// The DLL name the export directory records (e.g. `b"vmbkmclr.sys"`).
    pub fn module_name(&self) -> Result<&'r [u8], PeError> {
        let bytes = self
            .reader
            .bytes_at(self.name_rva)
            .ok_or(PeError::BadModuleName)?;
        c_string(bytes, MAX_NAME_LEN).ok_or(PeError::BadModuleName)
    }

    /// Name number `index` of the name pointer table (without its NUL).
    pub fn name(&self, index: u32) -> Result<&'r [u8], PeError> {
        let at = usize::try_from(index)
            .ok()
            .and_then(|i| i.checked_mul(4))
            .ok_or(PeError::NameOutOfBounds { index })?;
        let rva = u32_at(self.names, at).ok_or(PeError::NameOutOfBounds { index })?;
        let bytes = self
            .reader
            .bytes_at(rva)
            .ok_or(PeError::NameOutOfBounds { index })?;
        c_string(bytes, MAX_NAME_LEN).ok_or(PeError::NameNotTerminated { index })
    }

    /// The unbiased ordinal (index into the export address table) of name `index`.
    fn name_ordinal(&self, index: u32) -> Result<u16, PeError> {
        let at = usize::try_from(index)
            .ok()
            .and_then(|i| i.checked_mul(2))
            .ok_or(PeError::OrdinalTableOutOfBounds)?;
        let ordinal = u16_at(self.ordinals, at).ok_or(PeError::OrdinalTableOutOfBounds)?;
        if u32::from(ordinal) >= self.number_of_functions {
            return Err(PeError::OrdinalOutOfRange { index, ordinal });
        }
        Ok(ordinal)
    }

    /// The export named `name` (exact, case-sensitive), or `None` if the image has no such
    /// name. A name whose slot is empty (RVA 0) is reported as not exported.
    pub fn find(&self, name: &[u8]) -> Result<Option<Export<'r>>, PeError> {
        let Some(index) = self.find_name_index(name)? else {
            return Ok(None);
        };
        let ordinal = self.name_ordinal(index)?;
        self.by_index(u32::from(ordinal))
    }

    fn find_name_index(&self, name: &[u8]) -> Result<Option<u32>, PeError> {
        if !self.names_sorted {
            for index in 0..self.number_of_names {
                if self.name(index)? == name {
                    return Ok(Some(index));
                }
            }
            return Ok(None);
        }
        // Binary search over [low, high).
        let (mut low, mut high) = (0u32, self.number_of_names);
        while low < high {
            let mid = low.wrapping_add(high.wrapping_sub(low) / 2);
            match self.name(mid)?.cmp(name) {
                Ordering::Equal => return Ok(Some(mid)),
                Ordering::Less => low = mid.wrapping_add(1),
                Ordering::Greater => high = mid,
            }
        }
        Ok(None)
    }

    /// The export with biased ordinal `ordinal`, or `None` if it is outside the table or its
    /// slot is empty.
    pub fn by_ordinal(&self, ordinal: u32) -> Result<Option<Export<'r>>, PeError> {
        match ordinal.checked_sub(self.ordinal_base) {
            Some(index) if index < self.number_of_functions => self.by_index(index),
            _ => Ok(None),
        }
    }

    /// Entry `index` of the export address table (`index < NumberOfFunctions`).
    fn by_index(&self, index: u32) -> Result<Option<Export<'r>>, PeError> {
        let ordinal = self
            .ordinal_base
            .checked_add(index)
            .ok_or(PeError::OrdinalOverflow)?;
        let at = usize::try_from(index)
            .ok()
            .and_then(|i| i.checked_mul(4))
            .ok_or(PeError::FunctionTableOutOfBounds)?;
        let rva = u32_at(self.functions, at).ok_or(PeError::FunctionTableOutOfBounds)?;
        if rva == 0 {
            return Ok(None);
        }
        if rva >= self.dir_rva && rva < self.dir_end {
            // A forwarder: its string must end inside the export directory.
            let bytes = self
                .reader
                .read(rva, self.dir_end.wrapping_sub(rva))
                .ok_or(PeError::ForwarderNotTerminated { rva })?;
            let forwarder =
                c_string(bytes, MAX_NAME_LEN).ok_or(PeError::ForwarderNotTerminated { rva })?;
            return Ok(Some(Export {
                ordinal,
                target: ExportTarget::Forwarded(forwarder),
            }));
        }
        if !self.reader.contains_rva(rva) {
            return Err(PeError::FunctionOutOfBounds { rva });
        }
        Ok(Some(Export {
            ordinal,
            target: ExportTarget::Rva(rva),
        }))
    }
}
