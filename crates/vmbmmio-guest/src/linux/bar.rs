//! [`BarMapping`]: the paired function's BAR mapped from its sysfs `resourceN` (or
//! `resourceN_wc`) file (`Documentation/PCI/sysfs-pci.rst`), with volatile 1/2/4/8-byte and
//! byte-slice accesses, each checked against the BAR; and [`RegionWindow`], one region of the
//! host's layout inside it, each access checked against the region (and writes against its
//! access rights).

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use memmap2::MmapRaw;
use vmbmmio_proto::guest::{Region, RegionAccess};

use super::{LinuxError, map_shared};
use crate::discover::BarFile;

/// The BAR, mapped shared.
#[derive(Debug)]
pub struct BarMapping {
    map: MmapRaw,
    path: PathBuf,
}

/// `offset..offset + len` inside `size`, as a `usize` start, or the error naming it.
fn check(offset: u64, len: u64, size: u64) -> Result<usize, LinuxError> {
    let oob = || LinuxError::OutOfBounds { offset, len, size };
    let end = offset.checked_add(len).ok_or_else(oob)?;
    if end > size {
        return Err(oob());
    }
    usize::try_from(offset).map_err(|_| oob())
}

macro_rules! scalar_access {
    ($read:ident, $write:ident, $ty:ty) => {
        /// A volatile, naturally aligned read at `offset` in the BAR.
        pub fn $read(&self, offset: u64) -> Result<$ty, LinuxError> {
            let at = self.scalar_at(offset, core::mem::size_of::<$ty>())?;
            let ptr = self.map.as_mut_ptr().wrapping_add(at).cast::<$ty>();
            // SAFETY: `scalar_at` checked the access lies inside the mapping (alive as long
            // as `self`) and is aligned to its size (the mapping is page-aligned).
            Ok(unsafe { ptr.read_volatile() })
        }

        /// A volatile, naturally aligned write at `offset` in the BAR.
        pub fn $write(&self, offset: u64, value: $ty) -> Result<(), LinuxError> {
            let at = self.scalar_at(offset, core::mem::size_of::<$ty>())?;
            let ptr = self.map.as_mut_ptr().wrapping_add(at).cast::<$ty>();
            // SAFETY: as for the read: inside the shared writable mapping and aligned.
            unsafe { ptr.write_volatile(value) };
            Ok(())
        }
    };
}

impl BarMapping {
    /// Maps `size` bytes (the BAR's size, from `resource`) of `file`.
    pub fn open(file: &BarFile, size: u64) -> Result<Self, LinuxError> {
        Self::open_path(&file.path, size)
    }

    /// Maps `size` bytes of the file at `path`.
    pub fn open_path(path: &Path, size: u64) -> Result<Self, LinuxError> {
        let handle = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|source| LinuxError::io("opening", path, source))?;
        let len = usize::try_from(size).map_err(|_| LinuxError::Empty {
            path: path.to_path_buf(),
        })?;
        let map = map_shared(&handle, path, 0, len)?;
        Ok(Self {
            map,
            path: path.to_path_buf(),
        })
    }

    /// The mapped file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The BAR's size.
    pub fn size(&self) -> u64 {
        u64::try_from(self.map.len()).unwrap_or(u64::MAX)
    }

    fn scalar_at(&self, offset: u64, width: usize) -> Result<usize, LinuxError> {
        let width = u64::try_from(width).unwrap_or(u64::MAX);
        if width == 0 || !offset.is_multiple_of(width) {
            return Err(LinuxError::Misaligned { offset, width });
        }
        check(offset, width, self.size())
    }

    scalar_access!(read_u8, write_u8, u8);
    scalar_access!(read_u16, write_u16, u16);
    scalar_access!(read_u32, write_u32, u32);
    scalar_access!(read_u64, write_u64, u64);

    /// Copies `buf.len()` bytes at `offset` into `buf`, one volatile byte at a time.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), LinuxError> {
        let len = u64::try_from(buf.len()).unwrap_or(u64::MAX);
        let start = check(offset, len, self.size())?;
        let base = self.map.as_mut_ptr().wrapping_add(start);
        for (index, out) in buf.iter_mut().enumerate() {
            // SAFETY: `start + index` lies inside the mapping (the whole range was checked).
            *out = unsafe { base.wrapping_add(index).read_volatile() };
        }
        Ok(())
    }

    /// Copies `data` to `offset`, one volatile byte at a time.
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<(), LinuxError> {
        let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
        let start = check(offset, len, self.size())?;
        let base = self.map.as_mut_ptr().wrapping_add(start);
        for (index, byte) in data.iter().enumerate() {
            // SAFETY: `start + index` lies inside the shared writable mapping (checked).
            unsafe { base.wrapping_add(index).write_volatile(*byte) };
        }
        Ok(())
    }

    /// The window of `region` (offsets relative to its start), refused unless the region lies
    /// inside the BAR.
    pub fn region(&self, region: &Region) -> Result<RegionWindow<'_>, LinuxError> {
        let outside = LinuxError::RegionOutsideBar { id: region.id };
        let start = region
            .offset_bytes()
            .ok_or(LinuxError::RegionOutsideBar { id: region.id })?;
        let len = region
            .length_bytes()
            .ok_or(LinuxError::RegionOutsideBar { id: region.id })?;
        check(start, len, self.size()).map_err(|_| outside)?;
        Ok(RegionWindow {
            bar: self,
            id: region.id,
            start,
            len,
            writable: region.access == RegionAccess::ReadWrite,
        })
    }
}

/// One region of the layout inside the mapped BAR.
#[derive(Debug)]
pub struct RegionWindow<'a> {
    bar: &'a BarMapping,
    id: u32,
    start: u64,
    len: u64,
    writable: bool,
}

macro_rules! window_scalar_access {
    ($read:ident, $write:ident, $ty:ty) => {
        /// A volatile, naturally aligned read at `offset` in the region.
        pub fn $read(&self, offset: u64) -> Result<$ty, LinuxError> {
            let at = self.at(offset, core::mem::size_of::<$ty>())?;
            self.bar.$read(at)
        }

        /// A volatile, naturally aligned write at `offset` in the region (refused for a
        /// read-only region).
        pub fn $write(&self, offset: u64, value: $ty) -> Result<(), LinuxError> {
            self.writable()?;
            let at = self.at(offset, core::mem::size_of::<$ty>())?;
            self.bar.$write(at, value)
        }
    };
}

impl RegionWindow<'_> {
    window_scalar_access!(read_u8, write_u8, u8);
    window_scalar_access!(read_u16, write_u16, u16);
    window_scalar_access!(read_u32, write_u32, u32);
    window_scalar_access!(read_u64, write_u64, u64);

    /// The region's first byte, for a program that builds its own volatile or atomic accesses
    /// (valid for [`Self::len`] bytes while the BAR stays mapped). Never make a `&[u8]` or
    /// `&mut [u8]` from it: the other side changes the bytes underneath.
    pub fn as_ptr(&self) -> *mut u8 {
        usize::try_from(self.start)
            .map(|start| self.bar.map.as_mut_ptr().wrapping_add(start))
            .unwrap_or(core::ptr::null_mut())
    }

    /// Whether the region may be written.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    fn writable(&self) -> Result<(), LinuxError> {
        if self.writable {
            Ok(())
        } else {
            Err(LinuxError::ReadOnly { id: self.id })
        }
    }

    /// The region's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the region is empty (a checked layout never has one).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where it starts in the BAR.
    pub fn start(&self) -> u64 {
        self.start
    }

    fn at(&self, offset: u64, len: usize) -> Result<u64, LinuxError> {
        let len = u64::try_from(len).unwrap_or(u64::MAX);
        check(offset, len, self.len)?;
        self.start
            .checked_add(offset)
            .ok_or(LinuxError::OutOfBounds {
                offset,
                len,
                size: self.len,
            })
    }

    /// Reads `buf.len()` bytes at `offset` in the region.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), LinuxError> {
        let at = self.at(offset, buf.len())?;
        self.bar.read(at, buf)
    }

    /// Writes `data` at `offset` in the region (refused for a read-only region).
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<(), LinuxError> {
        self.writable()?;
        let at = self.at(offset, data.len())?;
        self.bar.write(at, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmbmmio_proto::guest::{RegionName, RegionState};

    fn bar_file(len: u64) -> PathBuf {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "vmbmmio-bar-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(len).unwrap();
        path
    }

    fn region(id: u32, offset_pages: u64, length_pages: u64, access: RegionAccess) -> Region {
        Region {
            id,
            access,
            state: RegionState::Mapped,
            offset_pages,
            length_pages,
            name: RegionName::new("r").unwrap(),
        }
    }

    #[test]
    fn scalar_and_slice_accesses_are_checked() {
        let path = bar_file(16384);
        let bar = BarMapping::open_path(&path, 16384).unwrap();
        bar.write_u64(8, 0x0102_0304_0506_0708).unwrap();
        assert_eq!(bar.read_u32(8).unwrap(), 0x0506_0708);
        assert_eq!(bar.read_u16(14).unwrap(), 0x0102);
        bar.write_u8(16383, 9).unwrap();
        assert_eq!(bar.read_u8(16383).unwrap(), 9);
        assert!(matches!(
            bar.read_u32(2),
            Err(LinuxError::Misaligned { .. })
        ));
        assert!(matches!(
            bar.read_u64(16384),
            Err(LinuxError::OutOfBounds { .. })
        ));
        let mut buf = [0u8; 4];
        assert!(bar.read(16382, &mut buf).is_err());
        assert!(bar.write(u64::MAX, &buf).is_err());
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn regions_are_checked_against_the_bar_and_their_access() {
        let path = bar_file(16384);
        let bar = BarMapping::open_path(&path, 16384).unwrap();
        let rw = bar
            .region(&region(0, 1, 2, RegionAccess::ReadWrite))
            .unwrap();
        rw.write(0, &[7; 8]).unwrap();
        assert_eq!(bar.read_u8(4096).unwrap(), 7);
        assert!(rw.write(8192 - 4, &[0; 8]).is_err());
        let ro = bar
            .region(&region(1, 3, 1, RegionAccess::ReadOnly))
            .unwrap();
        assert!(matches!(
            ro.write(0, &[1]),
            Err(LinuxError::ReadOnly { id: 1 })
        ));
        let mut one = [0u8; 1];
        ro.read(4095, &mut one).unwrap();
        assert!(matches!(
            bar.region(&region(2, 3, 2, RegionAccess::ReadWrite)),
            Err(LinuxError::RegionOutsideBar { id: 2 })
        ));
        let _ = std::fs::remove_file(path);
    }
}
