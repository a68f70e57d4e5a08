//! [`RegionView`]: a mapped region, reached only through volatile and atomic accesses.
//!
//! # Why no `&[u8]`
//! The memory is shared with another machine: the guest writes the same bytes while this
//! process looks at them, and a Rust reference promises they do not change. So every access is
//! a volatile copy or an atomic on an aligned cell (`UnsafeCell` inside: shared mutation is what
//! it is for), bounds-checked against the mapping. The view owns the mapping and unmaps it on
//! drop; it is independent of the attachment it came from, because the memory stays valid after
//! detach and after the VM's session closed (docs/host-library.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64};

use crate::driver::{Driver, Mapping};
use crate::error::{Error, Result};

/// A mapped region. `Send + Sync`: accesses from several threads are as safe as the guest's
/// concurrent ones (each access is volatile or atomic).
pub struct RegionView {
    driver: Arc<dyn Driver>,
    /// `Some` until drop hands it back to the driver.
    mapping: Option<Mapping>,
    /// Its length (the mapping's, kept here so accessors never look at an `Option`).
    len: usize,
    /// Its first byte, as an address.
    base: *mut u8,
    writable: bool,
}

// SAFETY: `base` points into `mapping`, which is Send + Sync; accesses are volatile or atomic.
unsafe impl Send for RegionView {}
// SAFETY: as above; `&self` methods only do volatile/atomic accesses.
unsafe impl Sync for RegionView {}

impl std::fmt::Debug for RegionView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegionView")
            .field("base", &self.base)
            .field("len", &self.len)
            .field("writable", &self.writable)
            .finish()
    }
}

macro_rules! scalar {
    ($read:ident, $write:ident, $ty:ty) => {
        #[doc = concat!("Reads a `", stringify!($ty), "` (little-endian, any alignment) at `offset`, volatile.")]
        pub fn $read(&self, offset: u64) -> Result<$ty> {
            let mut bytes = [0u8; size_of::<$ty>()];
            self.read(offset, &mut bytes)?;
            Ok(<$ty>::from_le_bytes(bytes))
        }

        #[doc = concat!("Writes a `", stringify!($ty), "` (little-endian, any alignment) at `offset`, volatile.")]
        pub fn $write(&self, offset: u64, value: $ty) -> Result<()> {
            self.write(offset, &value.to_le_bytes())
        }
    };
}

impl RegionView {
    /// A view over `mapping`, which `driver` made (and unmaps on drop).
    pub(crate) fn new(driver: Arc<dyn Driver>, mapping: Mapping, writable: bool) -> Self {
        Self {
            driver,
            len: mapping.len(),
            base: mapping.base().as_ptr(),
            mapping: Some(mapping),
            writable,
        }
    }

    /// The region's size in bytes.
    pub fn len(&self) -> u64 {
        self.len as u64
    }

    /// Whether the region is empty (never: regions are at least a page).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the view may be written (the attachment's granted access).
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// The first byte, for programs that build their own volatile or atomic structures (the
    /// same rules apply: never make a `&[u8]` or `&mut [u8]` of it). Writing through it on a
    /// read-only view faults.
    pub fn as_ptr(&self) -> *mut u8 {
        self.base
    }

    /// The start of `len` bytes at `offset`, checked against the region.
    fn range(&self, offset: u64, len: usize) -> Result<usize> {
        let out = || Error::OutOfBounds {
            offset,
            len: len as u64,
            size: self.len as u64,
        };
        let start = usize::try_from(offset).map_err(|_| out())?;
        let end = start.checked_add(len).ok_or_else(out)?;
        if end > self.len {
            return Err(out());
        }
        Ok(start)
    }

    fn writable(&self) -> Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(Error::ReadOnly)
        }
    }

    /// Copies `buf.len()` bytes at `offset` into `buf` (volatile, byte by byte).
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let start = self.range(offset, buf.len())?;
        for (index, slot) in buf.iter_mut().enumerate() {
            // SAFETY: start + index < start + buf.len() <= len (checked by `range`), inside the
            // mapping, which lives as long as `self`. Volatile: the guest may write concurrently.
            *slot = unsafe {
                self.base
                    .wrapping_add(start.wrapping_add(index))
                    .read_volatile()
            };
        }
        Ok(())
    }

    /// Copies `data` to `offset` (volatile, byte by byte). [`Error::ReadOnly`] on a read-only
    /// view.
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.writable()?;
        let start = self.range(offset, data.len())?;
        for (index, byte) in data.iter().enumerate() {
            // SAFETY: inside the mapping (checked by `range`), which is writable (checked
            // above) and lives as long as `self`.
            unsafe {
                self.base
                    .wrapping_add(start.wrapping_add(index))
                    .write_volatile(*byte);
            }
        }
        Ok(())
    }

    /// Fills `len` bytes at `offset` with `byte` (volatile).
    pub fn fill(&self, offset: u64, len: u64, byte: u8) -> Result<()> {
        self.writable()?;
        let count = usize::try_from(len).map_err(|_| Error::OutOfBounds {
            offset,
            len,
            size: self.len as u64,
        })?;
        let start = self.range(offset, count)?;
        for index in 0..count {
            // SAFETY: inside the writable mapping (checked above).
            unsafe {
                self.base
                    .wrapping_add(start.wrapping_add(index))
                    .write_volatile(byte);
            }
        }
        Ok(())
    }

    scalar!(read_u8, write_u8, u8);
    scalar!(read_u16, write_u16, u16);
    scalar!(read_u32, write_u32, u32);
    scalar!(read_u64, write_u64, u64);

    /// The address of an aligned, in-bounds cell of `width` bytes at `offset` in a writable
    /// view.
    fn cell(&self, offset: u64, width: usize) -> Result<*mut u8> {
        self.writable()?;
        let start = self.range(offset, width)?;
        if !start.is_multiple_of(width) {
            return Err(Error::Misaligned {
                offset,
                align: width as u64,
            });
        }
        // The mapping's base is aligned to 8 (`Mapping::new`'s contract: page-aligned views),
        // so an aligned offset is an aligned address.
        Ok(self.base.wrapping_add(start))
    }

    /// The 4-byte cell at `offset` as an atomic (for counters, flags, ring indices shared with
    /// the guest). `offset` must be a multiple of 4 and inside the region, and the view
    /// writable ([`Error::ReadOnly`] otherwise: an atomic read-modify-write would fault on a
    /// read-only view; read-only views use [`Self::read_u32`]).
    pub fn atomic_u32(&self, offset: u64) -> Result<&AtomicU32> {
        let cell = self.cell(offset, 4)?;
        // SAFETY: `cell` is 4-byte aligned, inside the writable mapping that lives as long as
        // the returned borrow of `self`; AtomicU32 has interior mutability, so concurrent
        // writes by the guest or other views are what it allows.
        Ok(unsafe { AtomicU32::from_ptr(cell.cast()) })
    }

    /// The 8-byte cell at `offset` as an atomic; as [`Self::atomic_u32`], aligned to 8.
    pub fn atomic_u64(&self, offset: u64) -> Result<&AtomicU64> {
        let cell = self.cell(offset, 8)?;
        // SAFETY: as in `atomic_u32`, 8-byte aligned.
        Ok(unsafe { AtomicU64::from_ptr(cell.cast()) })
    }
}

impl Drop for RegionView {
    fn drop(&mut self) {
        if let Some(mapping) = self.mapping.take() {
            self.driver.unmap(mapping);
        }
    }
}
