//! Byte-accurate shared memory: the common currency of the section, HDV and guest-memory models.
//!
//! A kernel section in the simulator is one [`SectionMemory`]: a fixed-size, zero-initialised
//! byte buffer (pagefile-backed `SEC_COMMIT` sections read as zeros until written). Every view
//! of a section, whether the driver's, the device host's or the guest's through a BAR, reads and
//! writes the same bytes, so a test can prove that what one side writes is what the other reads.
//!
//! The section model (`sections`) decides who may reach a section; the HDV and guest-memory
//! models reach it only through a [`SectionResolver`], the way HDV only sees a section through a
//! handle valid in the device-host process (hdv.md §3.3 "Section handle").

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// A simulated process (the device host, the VM worker, the system process).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcessId(pub u32);

/// Access a handle to a section grants (the `SECTION_MAP_*` rights that matter here).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SectionAccess {
    /// `SECTION_MAP_READ`.
    pub read: bool,
    /// `SECTION_MAP_WRITE`.
    pub write: bool,
}

impl SectionAccess {
    /// Read-only mapping rights.
    pub const READ: Self = Self {
        read: true,
        write: false,
    };
    /// Read and write mapping rights.
    pub const READ_WRITE: Self = Self {
        read: true,
        write: true,
    };

    /// Whether a handle with `self` rights allows a request for `wanted`.
    pub const fn allows(self, wanted: Self) -> bool {
        (self.read || !wanted.read) && (self.write || !wanted.write)
    }
}

/// Why a byte access to a section was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryError {
    /// `offset + len` lies past the end of the section (or overflows).
    OutOfBounds {
        /// Requested start.
        offset: u64,
        /// Requested length.
        len: u64,
        /// Size of the section.
        size: u64,
    },
}

/// The bytes of one section. Cheap to share: clone the `Arc`.
#[derive(Debug)]
pub struct SectionMemory {
    bytes: Mutex<Vec<u8>>,
    size: u64,
}

impl SectionMemory {
    /// A zero-filled section of `size` bytes.
    pub fn new(size: usize) -> Arc<Self> {
        Arc::new(Self {
            bytes: Mutex::new(vec![0; size]),
            // usize fits in u64 on every supported host.
            size: size as u64,
        })
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    fn range(&self, offset: u64, len: usize) -> Result<std::ops::Range<usize>, MemoryError> {
        let error = MemoryError::OutOfBounds {
            offset,
            len: len as u64,
            size: self.size,
        };
        let end = offset.checked_add(len as u64).ok_or(error)?;
        if end > self.size {
            return Err(error);
        }
        // Both bounds are <= size, which came from a usize.
        Ok(offset as usize..end as usize)
    }

    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        // A panicking test thread must not hide the bytes from the checks that follow.
        self.bytes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Copies `out.len()` bytes starting at `offset` into `out`.
    pub fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), MemoryError> {
        let range = self.range(offset, out.len())?;
        out.copy_from_slice(&self.lock()[range]);
        Ok(())
    }

    /// Copies `data` into the section starting at `offset`.
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<(), MemoryError> {
        let range = self.range(offset, data.len())?;
        self.lock()[range].copy_from_slice(data);
        Ok(())
    }
}

/// Why a section handle could not be resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResolveError {
    /// The handle is not open in that process (wrong process, closed, or never opened).
    InvalidHandle,
    /// The handle is open but lacks the requested access.
    AccessDenied,
}

/// Looks up the section behind a handle as a given process sees it.
///
/// Implemented by the section model; consumed by the HDV model, which receives section handles
/// valid in the device-host process (hdv.md §3.3).
pub trait SectionResolver {
    /// The memory behind `handle` in `process`, if that handle grants `access`.
    fn resolve(
        &self,
        process: ProcessId,
        handle: u64,
        access: SectionAccess,
    ) -> Result<Arc<SectionMemory>, ResolveError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_what_was_written_and_starts_zeroed() {
        let memory = SectionMemory::new(8192);
        let mut page = [0xAA; 16];
        memory.read(4096, &mut page).unwrap();
        assert_eq!(page, [0; 16]);
        memory.write(4100, &[1, 2, 3]).unwrap();
        memory.read(4096, &mut page).unwrap();
        assert_eq!(&page[..8], &[0, 0, 0, 0, 1, 2, 3, 0]);
    }

    #[test]
    fn refuses_out_of_bounds_and_overflowing_accesses() {
        let memory = SectionMemory::new(4096);
        assert!(memory.write(4095, &[1, 2]).is_err());
        assert!(memory.read(u64::MAX, &mut [0; 2]).is_err());
        assert!(memory.write(4096, &[]).is_ok());
    }

    #[test]
    fn access_rights_compare() {
        assert!(SectionAccess::READ_WRITE.allows(SectionAccess::READ));
        assert!(!SectionAccess::READ.allows(SectionAccess::READ_WRITE));
    }
}
