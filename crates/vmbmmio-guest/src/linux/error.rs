//! What the Linux backend can fail with; each error names the file and says what happened.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// A failure to open, map or access a file of the backend.
#[derive(Debug)]
pub enum LinuxError {
    /// The system refused an operation on a file.
    Io {
        /// What was being done ("opening", "mapping", ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The system's answer.
        source: io::Error,
    },
    /// A mapping of zero bytes (or whose end overflows) was asked for.
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// A regular file is shorter than the range to map.
    FileTooShort {
        /// The file.
        path: PathBuf,
        /// The bytes needed (offset + length).
        need: u64,
        /// The bytes it has.
        have: u64,
    },
    /// An access outside the mapping or the region.
    OutOfBounds {
        /// First byte asked for.
        offset: u64,
        /// Bytes asked for.
        len: u64,
        /// The mapping's or region's size.
        size: u64,
    },
    /// A 2-, 4- or 8-byte access at an offset not aligned to its size.
    Misaligned {
        /// The offset asked for.
        offset: u64,
        /// The access's size.
        width: u64,
    },
    /// A region that does not lie inside the BAR.
    RegionOutsideBar {
        /// The region's id.
        id: u32,
    },
    /// A write to a read-only region.
    ReadOnly {
        /// The region's id.
        id: u32,
    },
}

impl LinuxError {
    /// The error for `source` while `what`-ing `path`.
    pub fn io(what: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}

impl LinuxError {
    /// A stable snake_case name of the error (`docs/guest-agent.md`, "Errors").
    pub fn kind(&self) -> &'static str {
        match self {
            Self::OutOfBounds { .. } | Self::Misaligned { .. } => "out_of_bounds",
            Self::ReadOnly { .. } => "read_only",
            Self::RegionOutsideBar { .. } => "region_outside_bar",
            Self::Io { .. } | Self::Empty { .. } | Self::FileTooShort { .. } => "device",
        }
    }
}

impl fmt::Display for LinuxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { what, path, source } => {
                write!(f, "{what} {}: {source}", path.display())?;
                if source.kind() == io::ErrorKind::PermissionDenied {
                    f.write_str(": run as root")?;
                }
                Ok(())
            }
            Self::Empty { path } => write!(f, "{}: nothing to map (zero length)", path.display()),
            Self::FileTooShort { path, need, have } => write!(
                f,
                "{} has {have} bytes, fewer than the {need} to map",
                path.display()
            ),
            Self::OutOfBounds { offset, len, size } => write!(
                f,
                "{len} bytes at offset {offset:#x} are outside the {size:#x}-byte range"
            ),
            Self::Misaligned { offset, width } => {
                write!(f, "a {width}-byte access at {offset:#x} is not aligned")
            }
            Self::RegionOutsideBar { id } => {
                write!(f, "region {id} does not lie inside the BAR")
            }
            Self::ReadOnly { id } => write!(f, "region {id} is read-only"),
        }
    }
}

impl std::error::Error for LinuxError {}
