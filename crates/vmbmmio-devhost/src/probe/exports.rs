//! The export comparison: every KMCL entry point the driver resolves, against the export
//! directory of a `vmbkmclr.sys` image read from disk.
//!
//! Why with the driver's own code: the names and their Required/Optional policy are
//! `kmcl::resolve::ENTRIES`, the very list DriverEntry resolves, and the image is parsed by the
//! same PE32+ export parser (`kmcl::resolve::{FileImage, ExportDirectory}`) and judged by the same
//! `kmcl::resolve::locate` that decides whether the driver starts. So the probe's answer is
//! exactly what the driver will do with this file, and every exported name is listed too (the
//! library's real export list is itself an open question).

use kmcl::resolve::{
    ENTRIES, EntryPolicy, ExportDirectory, ExportTarget, FileImage, PeError, locate,
};

/// At most this many exported names are listed in the report.
pub const MAX_LISTED_NAMES: u32 = 4096;

/// Where one entry point stands in the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExportStatus {
    /// Exported by name, with code in the image.
    Present {
        /// The biased ordinal.
        ordinal: u32,
        /// The code's RVA.
        rva: u32,
    },
    /// Exported by name as a forwarder (the driver never follows one: it counts as missing).
    Forwarded {
        /// The biased ordinal.
        ordinal: u32,
        /// The forwarder string (`DLL.Name`).
        target: String,
    },
    /// Not exported by name.
    Missing,
    /// The lookup itself hit a malformed part of the directory.
    Unreadable(PeError),
}

impl ExportStatus {
    /// The report's spelling.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Present { .. } => "present",
            Self::Forwarded { .. } => "forwarded",
            Self::Missing => "missing",
            Self::Unreadable(_) => "unreadable",
        }
    }
}

/// One entry point's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryResult {
    /// The exported C name.
    pub name: &'static str,
    /// Whether the driver requires it.
    pub required: bool,
    /// Whether a public source evidences it as a `vmbkmclr.sys` export.
    pub evidenced_export: bool,
    /// Where it stands.
    pub status: ExportStatus,
}

impl EntryResult {
    /// Whether the driver can use it (present with code; a forwarder is not followed).
    pub fn usable(&self) -> bool {
        matches!(self.status, ExportStatus::Present { .. })
    }
}

/// The whole comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportComparison {
    /// The export directory's module name (`vmbkmclr.sys`), if readable.
    pub module_name: Option<String>,
    /// `NumberOfFunctions`.
    pub number_of_functions: u32,
    /// `NumberOfNames`.
    pub number_of_names: u32,
    /// One result per entry of `kmcl::resolve::ENTRIES`, in its order.
    pub entries: Vec<EntryResult>,
    /// Every exported name (at most [`MAX_LISTED_NAMES`]), in name-table order.
    pub exported_names: Vec<String>,
    /// What the driver's `locate` says: `Ok` = DriverEntry would start, else its message.
    pub driver_verdict: Result<(), String>,
}

impl ExportComparison {
    /// Names of entries with `required` and not usable.
    pub fn missing(&self, required: bool) -> Vec<&'static str> {
        self.entries
            .iter()
            .filter(|entry| entry.required == required && !entry.usable())
            .map(|entry| entry.name)
            .collect()
    }

    /// Names of entries exported as forwarders.
    pub fn forwarded(&self) -> Vec<&'static str> {
        self.entries
            .iter()
            .filter(|entry| matches!(entry.status, ExportStatus::Forwarded { .. }))
            .map(|entry| entry.name)
            .collect()
    }

    /// How many entries are usable.
    pub fn present_count(&self) -> usize {
        self.entries.iter().filter(|entry| entry.usable()).count()
    }
}

/// Compares the image file `image` (as stored on disk) against the driver's KMCL entries.
/// Fails only when the headers or the export directory are malformed.
pub fn compare_exports(image: &[u8]) -> Result<ExportComparison, PeError> {
    let file = FileImage::new(image)?;
    let exports = ExportDirectory::parse(&file)?;
    let module_name = exports
        .module_name()
        .ok()
        .map(|name| String::from_utf8_lossy(name).into_owned());
    let entries = ENTRIES
        .iter()
        .map(|spec| {
            let status = match exports.find(spec.name.as_bytes()) {
                Ok(Some(export)) => match export.target {
                    ExportTarget::Rva(rva) => ExportStatus::Present {
                        ordinal: export.ordinal,
                        rva,
                    },
                    ExportTarget::Forwarded(target) => ExportStatus::Forwarded {
                        ordinal: export.ordinal,
                        target: String::from_utf8_lossy(target).into_owned(),
                    },
                },
                Ok(None) => ExportStatus::Missing,
                Err(error) => ExportStatus::Unreadable(error),
            };
            EntryResult {
                name: spec.name,
                required: spec.policy == EntryPolicy::Required,
                evidenced_export: spec.evidenced_export,
                status,
            }
        })
        .collect();
    let exported_names = (0..exports.number_of_names().min(MAX_LISTED_NAMES))
        .map(|index| match exports.name(index) {
            Ok(name) => String::from_utf8_lossy(name).into_owned(),
            Err(error) => format!("<unreadable: {error}>"),
        })
        .collect();
    let driver_verdict = locate(&exports)
        .map(|_| ())
        .map_err(|error| error.to_string());
    Ok(ExportComparison {
        module_name,
        number_of_functions: exports.number_of_functions(),
        number_of_names: exports.number_of_names(),
        entries,
        exported_names,
        driver_verdict,
    })
}
