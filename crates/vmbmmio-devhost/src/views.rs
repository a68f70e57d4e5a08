//! The device host's own views of the sections, which serve intercepted guest accesses.
//!
//! Where the section-backed mapping does not take effect (hdv.md §3.3, observed), guest
//! accesses to the BAR reach the emulator's `Read/WriteInterceptedMemory`. Serving them from a
//! view of the same section keeps the bytes identical on both paths: the driver, the guest and
//! the device host always see one memory.

use std::fmt;

use crate::driver::SectionAccess;
use crate::platform::SectionHandle;

/// Why a view could not be mapped or accessed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewError {
    /// The operating system refused (a Win32 error code).
    Os {
        /// `GetLastError()` of the failed call.
        code: u32,
    },
    /// The handle is not a section handle of this process.
    InvalidHandle,
    /// The handle does not grant the requested access.
    AccessDenied,
    /// The requested view is larger than the section.
    TooLarge {
        /// Requested size.
        requested: u64,
        /// Section size.
        available: u64,
    },
    /// An access fell outside the view.
    OutOfBounds {
        /// Start of the access.
        offset: u64,
        /// Its length.
        len: u64,
        /// Size of the view.
        size: u64,
    },
}

impl fmt::Display for ViewError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Os { code } => write!(f, "mapping the section failed with Win32 error {code}"),
            Self::InvalidHandle => f.write_str("not a section handle of this process"),
            Self::AccessDenied => f.write_str("the section handle lacks the requested access"),
            Self::TooLarge {
                requested,
                available,
            } => {
                write!(
                    f,
                    "a view of {requested} bytes does not fit a {available}-byte section"
                )
            }
            Self::OutOfBounds { offset, len, size } => {
                write!(
                    f,
                    "{len} bytes at offset {offset} lie outside a {size}-byte view"
                )
            }
        }
    }
}

impl std::error::Error for ViewError {}

/// A mapped view of a section, unmapped when dropped (its only release path).
pub trait SectionView: Send + Sync {
    /// Size of the view in bytes.
    fn size(&self) -> u64;
    /// Copies `out.len()` bytes at `offset` of the view into `out`.
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), ViewError>;
    /// Copies `data` into the view at `offset`.
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), ViewError>;
}

/// Maps views of section handles and closes those handles.
pub trait SectionMapper {
    /// The view type.
    type View: SectionView + 'static;
    /// Maps the first `size` bytes of the section behind `handle` with `access`
    /// (`MapViewOfFile`).
    fn map_view(
        &mut self,
        handle: SectionHandle,
        size: u64,
        access: SectionAccess,
    ) -> Result<Self::View, ViewError>;
    /// Closes a section handle the device host owns (`CloseHandle`).
    fn close_handle(&mut self, handle: SectionHandle);
}

/// Checks that `len` bytes at `offset` lie inside a view of `size` bytes.
pub fn check_bounds(offset: u64, len: usize, size: u64) -> Result<(), ViewError> {
    let len = len as u64;
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(ViewError::OutOfBounds { offset, len, size }),
    }
}
