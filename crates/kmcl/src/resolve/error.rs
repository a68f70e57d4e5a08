//! Why a PE32+ image or its export directory was refused.
//!
//! Every check of the parser has its own variant, so a test (or an event-log message) can say
//! exactly which structure was malformed. Section names are those of the "PE Format" page
//! (learn.microsoft.com/windows/win32/debug/pe-format).

use core::fmt;

/// A malformed or unsupported image. Never produced by a panic: every read is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeError {
    /// Fewer than 64 bytes: no room for the MS-DOS header and its `e_lfanew` at 0x3C.
    DosHeaderTruncated,
    /// The image does not start with `MZ`.
    BadDosMagic,
    /// `e_lfanew` points outside the headers (or the signature does not fit there).
    LfanewOutOfBounds {
        /// The `e_lfanew` value.
        e_lfanew: u32,
    },
    /// No `PE\0\0` at `e_lfanew`.
    BadPeSignature,
    /// The COFF file header does not fit in the headers.
    CoffHeaderTruncated,
    /// `Machine` is not `IMAGE_FILE_MACHINE_AMD64` (0x8664).
    NotAmd64 {
        /// The `Machine` value found.
        machine: u16,
    },
    /// The optional header (its fixed part, or `SizeOfOptionalHeader` bytes) does not fit.
    OptionalHeaderTruncated,
    /// The optional header magic is not 0x20B (PE32+).
    NotPe32Plus {
        /// The magic found (0x10B is PE32).
        magic: u16,
    },
    /// `NumberOfRvaAndSizes` is 0 (no export directory entry) or its directories do not fit in
    /// `SizeOfOptionalHeader`.
    BadDataDirectoryCount {
        /// `NumberOfRvaAndSizes`.
        count: u32,
    },
    /// The section table does not fit in the headers.
    SectionTableOutOfBounds,
    /// The export data directory is empty: the image exports nothing.
    NoExportDirectory,
    /// The export directory (RVA, size) is not readable in full, or smaller than its 40-byte
    /// table.
    ExportDirectoryOutOfBounds {
        /// Its RVA.
        rva: u32,
        /// Its size.
        size: u32,
    },
    /// The export address table (`NumberOfFunctions` × 4 bytes) is not readable in full.
    FunctionTableOutOfBounds,
    /// The name pointer table (`NumberOfNames` × 4 bytes) is not readable in full.
    NameTableOutOfBounds,
    /// The ordinal table (`NumberOfNames` × 2 bytes) is not readable in full.
    OrdinalTableOutOfBounds,
    /// Name pointer `index` points outside the image.
    NameOutOfBounds {
        /// Index into the name pointer table.
        index: u32,
    },
    /// Name `index` has no NUL within the image (or within the 4096-byte name limit).
    NameNotTerminated {
        /// Index into the name pointer table.
        index: u32,
    },
    /// Ordinal-table entry `index` is not below `NumberOfFunctions`.
    OrdinalOutOfRange {
        /// Index into the ordinal table.
        index: u32,
        /// The (unbiased) ordinal found.
        ordinal: u16,
    },
    /// A biased ordinal (`Base` + index) does not fit in 32 bits.
    OrdinalOverflow,
    /// An exported function's RVA is outside the image.
    FunctionOutOfBounds {
        /// The RVA.
        rva: u32,
    },
    /// A forwarder string has no NUL inside the export directory.
    ForwarderNotTerminated {
        /// The forwarder's RVA.
        rva: u32,
    },
    /// The DLL name (the export directory's `Name` RVA) is outside the image or not terminated.
    BadModuleName,
}

impl fmt::Display for PeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::DosHeaderTruncated => f.write_str("image shorter than an MS-DOS header"),
            Self::BadDosMagic => f.write_str("no MZ signature"),
            Self::LfanewOutOfBounds { e_lfanew } => {
                write!(f, "e_lfanew {e_lfanew:#x} outside the headers")
            }
            Self::BadPeSignature => f.write_str("no PE signature at e_lfanew"),
            Self::CoffHeaderTruncated => f.write_str("COFF file header truncated"),
            Self::NotAmd64 { machine } => write!(f, "machine {machine:#06x} is not AMD64"),
            Self::OptionalHeaderTruncated => f.write_str("optional header truncated"),
            Self::NotPe32Plus { magic } => {
                write!(f, "optional header magic {magic:#x} is not PE32+")
            }
            Self::BadDataDirectoryCount { count } => {
                write!(f, "bad data directory count {count}")
            }
            Self::SectionTableOutOfBounds => f.write_str("section table outside the headers"),
            Self::NoExportDirectory => f.write_str("no export directory"),
            Self::ExportDirectoryOutOfBounds { rva, size } => {
                write!(f, "export directory {rva:#x}+{size:#x} outside the image")
            }
            Self::FunctionTableOutOfBounds => f.write_str("export address table outside the image"),
            Self::NameTableOutOfBounds => f.write_str("name pointer table outside the image"),
            Self::OrdinalTableOutOfBounds => f.write_str("ordinal table outside the image"),
            Self::NameOutOfBounds { index } => write!(f, "export name {index} outside the image"),
            Self::NameNotTerminated { index } => write!(f, "export name {index} not terminated"),
            Self::OrdinalOutOfRange { index, ordinal } => {
                write!(
                    f,
                    "ordinal {ordinal} of name {index} beyond NumberOfFunctions"
                )
            }
            Self::OrdinalOverflow => f.write_str("ordinal base + index overflows"),
            Self::FunctionOutOfBounds { rva } => {
                write!(f, "exported function RVA {rva:#x} outside the image")
            }
            Self::ForwarderNotTerminated { rva } => {
                write!(
                    f,
                    "forwarder string at {rva:#x} not terminated in the export directory"
                )
            }
            Self::BadModuleName => f.write_str("export directory DLL name invalid"),
        }
    }
}
