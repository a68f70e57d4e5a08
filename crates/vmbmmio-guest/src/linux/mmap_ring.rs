//! [`MmapRing`]: the `uio_hv_generic` ring map (`txrx_rings`) as a [`RingMemory`].
//!
//! The host writes these pages at any time, so nothing here makes a Rust reference into them:
//! bytes are copied with volatile single-byte accesses and the control fields are accessed
//! through [`AtomicU32`] with acquire/release ordering (what `RingMemory` asks for). Every
//! offset is checked against the mapping's length before a pointer is formed.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use memmap2::MmapRaw;

use super::{LinuxError, map_shared};
use crate::discover::UioMap;
use crate::ring::memory::{MemoryError, RingMemory, checked_range, checked_u32};

/// The system's page size (what `uio` multiplies map indices by).
pub fn page_size() -> u64 {
    // SAFETY: `sysconf` reads a configuration value; it has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size)
        .ok()
        .filter(|size| *size > 0)
        .unwrap_or(4096)
}

/// A shared read/write mapping of one uio map.
#[derive(Debug)]
pub struct MmapRing {
    map: MmapRaw,
}

impl MmapRing {
    /// Opens `dev_node` (`/dev/uioN`) read/write and maps `map` of it (at
    /// [`UioMap::mmap_offset`]), `map.size` bytes.
    pub fn open(dev_node: &Path, map: &UioMap) -> Result<Self, LinuxError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(dev_node)
            .map_err(|source| LinuxError::io("opening", dev_node, source))?;
        let empty = || LinuxError::Empty {
            path: dev_node.to_path_buf(),
        };
        let offset = map.mmap_offset(page_size()).ok_or_else(empty)?;
        let len = usize::try_from(map.size).map_err(|_| empty())?;
        Self::map(&file, dev_node, offset, len)
    }

    /// Maps `len` bytes of an open `file` at `offset` (tests map a regular file this way).
    pub fn map(file: &File, path: &Path, offset: u64, len: usize) -> Result<Self, LinuxError> {
        let map = map_shared(file, path, offset, len)?;
        Ok(Self { map })
    }

    /// A pointer to byte `at`, which the caller has checked lies inside the mapping.
    fn byte_ptr(&self, at: usize) -> *mut u8 {
        self.map.as_mut_ptr().wrapping_add(at)
    }

    /// The atomic at the checked, 4-aligned range starting `at`.
    fn atomic(&self, at: usize) -> &AtomicU32 {
        let ptr = self.byte_ptr(at).cast::<u32>();
        // SAFETY: the caller checked `at..at + 4` lies inside the mapping, which lives as long
        // as `self`, so the pointer is valid for the returned borrow; the mapping is
        // page-aligned and `at` 4-aligned, so it is aligned for `u32`. The ring's control
        // fields are only ever accessed here through atomics (the host's side uses aligned
        // 4-byte accesses too), which is what `AtomicU32::from_ptr` requires.
        unsafe { AtomicU32::from_ptr(ptr) }
    }
}

impl RingMemory for MmapRing {
    fn size(&self) -> usize {
        self.map.len()
    }

    fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), MemoryError> {
        let range = checked_range(offset, buf.len(), self.size())?;
        for (at, out) in range.zip(buf.iter_mut()) {
            // SAFETY: `at` is inside the mapping (checked above), valid for reads for its
            // lifetime; a volatile byte read tolerates the host changing it concurrently.
            *out = unsafe { self.byte_ptr(at).read_volatile() };
        }
        Ok(())
    }

    fn write(&self, offset: usize, data: &[u8]) -> Result<(), MemoryError> {
        let range = checked_range(offset, data.len(), self.size())?;
        for (at, byte) in range.zip(data.iter()) {
            // SAFETY: `at` is inside the shared writable mapping (checked above); no reference
            // to it exists, and a volatile byte write is what shared memory needs.
            unsafe { self.byte_ptr(at).write_volatile(*byte) };
        }
        Ok(())
    }

    fn load_acquire(&self, offset: usize) -> Result<u32, MemoryError> {
        let range = checked_u32(offset, self.size())?;
        Ok(u32::from_le(
            self.atomic(range.start).load(Ordering::Acquire),
        ))
    }

    fn store_release(&self, offset: usize, value: u32) -> Result<(), MemoryError> {
        let range = checked_u32(offset, self.size())?;
        self.atomic(range.start)
            .store(value.to_le(), Ordering::Release);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::RingPair;

    fn temp_file(len: u64) -> (std::path::PathBuf, File) {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "vmbmmio-mmap-ring-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.set_len(len).unwrap();
        (path, file)
    }

    #[test]
    fn accesses_are_bounds_checked_and_shared() {
        let (path, file) = temp_file(8192);
        let ring = MmapRing::map(&file, &path, 0, 8192).unwrap();
        let other = MmapRing::map(&file, &path, 0, 8192).unwrap();
        ring.write(8188, &[1, 2, 3, 4]).unwrap();
        let mut four = [0u8; 4];
        other.read(8188, &mut four).unwrap();
        assert_eq!(four, [1, 2, 3, 4]);
        assert_eq!(other.load_acquire(8188).unwrap(), 0x0403_0201);
        ring.store_release(0, 0xdead_beef).unwrap();
        assert_eq!(other.load_acquire(0).unwrap(), 0xdead_beef);
        assert!(ring.write(8189, &[0; 4]).is_err());
        assert!(ring.read(usize::MAX, &mut four).is_err());
        assert!(ring.load_acquire(2).is_err());
        assert!(ring.store_release(8192, 0).is_err());
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_short_file_or_empty_map_is_refused() {
        let (path, file) = temp_file(4096);
        assert!(matches!(
            MmapRing::map(&file, &path, 0, 8192),
            Err(LinuxError::FileTooShort { .. })
        ));
        assert!(matches!(
            MmapRing::map(&file, &path, 0, 0),
            Err(LinuxError::Empty { .. })
        ));
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_ring_pair_attaches_to_a_mapped_file() {
        let len = 2 * (4096 + 16384);
        let (path, file) = temp_file(len as u64);
        let map = std::sync::Arc::new(MmapRing::map(&file, &path, 0, len).unwrap());
        assert!(RingPair::guest(map.clone()).is_ok());
        let _ = std::fs::remove_file(path);
    }
}
