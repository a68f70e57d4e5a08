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

use std::collections::HashMap;
use std::ops::Range;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

/// The largest section [`SectionMemory::contiguous`] turns contiguous (a host consumer's
/// mapping in `host_sim` needs real addresses; larger sections stay sparse and cannot be mapped
/// by a simulated consumer).
pub const MAX_CONTIGUOUS: u64 = 256 << 20;

/// A simulated process (the device host, the VM worker, the system process).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcessId(pub u32);

/// Access a handle to a section grants (the `SECTION_*` rights that matter here).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SectionAccess {
    /// `SECTION_MAP_READ`.
    pub read: bool,
    /// `SECTION_MAP_WRITE`.
    pub write: bool,
    /// `SECTION_QUERY`: size and attributes. `MapViewOfFile` does not need it; HDV does
    /// (hdv.md §3.3 "Section handle": rights that allow mapping it, read/write/**query**).
    pub query: bool,
}

impl SectionAccess {
    /// Read-only mapping rights (what `MapViewOfFile(FILE_MAP_READ)` needs).
    pub const READ: Self = Self {
        read: true,
        write: false,
        query: false,
    };
    /// Read and write mapping rights (what `MapViewOfFile(FILE_MAP_WRITE)` needs).
    pub const READ_WRITE: Self = Self {
        read: true,
        write: true,
        query: false,
    };
    /// What `HdvCreateSectionBackedMmioRange` needs for a read-only mapping: map read and
    /// query (hdv.md §3.3; the COM layer marshals the handle with `system_handle(sh_section)`).
    pub const HDV_READ: Self = Self {
        read: true,
        write: false,
        query: true,
    };
    /// What `HdvCreateSectionBackedMmioRange` needs for a writeable mapping: map read, map
    /// write and query (hdv.md §3.3).
    pub const HDV_READ_WRITE: Self = Self {
        read: true,
        write: true,
        query: true,
    };

    /// Whether a handle with `self` rights allows a request for `wanted`.
    pub const fn allows(self, wanted: Self) -> bool {
        (self.read || !wanted.read)
            && (self.write || !wanted.write)
            && (self.query || !wanted.query)
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

/// Bytes are stored in chunks of this size, allocated on first write.
const CHUNK: u64 = 256;

/// The bytes of one section. Cheap to share: clone the `Arc`.
///
/// Byte-accurate but sparse: a chunk of [`CHUNK`] bytes exists only once something wrote into
/// it, and every other byte reads as zero, exactly like a fresh pagefile-backed section. That
/// keeps a 32 GiB section (the largest BAR the plan allows) cheap when a test touches only a
/// few bytes of each page.
///
/// A host consumer of the simulated platform (`host_sim`) maps the section into a real address
/// range: [`SectionMemory::contiguous`] then moves the bytes into one zero-initialised block of
/// 64-bit atomic words, where they stay for the section's life. Every later read and write of
/// any side goes to that block (byte accesses as atomic word operations), so the consumer's
/// volatile and atomic accesses through the pointer and the guest's accesses through the BAR
/// meet in the same bytes.
#[derive(Debug)]
pub struct SectionMemory {
    chunks: Mutex<HashMap<u64, Box<[u8; CHUNK as usize]>>>,
    /// The contiguous block, once a consumer mapped the section.
    dense: OnceLock<Box<[AtomicU64]>>,
    size: u64,
}

impl SectionMemory {
    /// A zero-filled section of `size` bytes.
    pub fn new(size: usize) -> Arc<Self> {
        Arc::new(Self {
            chunks: Mutex::new(HashMap::new()),
            dense: OnceLock::new(),
            // usize fits in u64 on every supported host.
            size: size as u64,
        })
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    fn check(&self, offset: u64, len: usize) -> Result<(), MemoryError> {
        let error = MemoryError::OutOfBounds {
            offset,
            len: len as u64,
            size: self.size,
        };
        match offset.checked_add(len as u64) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(error),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Box<[u8; CHUNK as usize]>>> {
        // A panicking test thread must not hide the bytes from the checks that follow.
        self.chunks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Calls `f(chunk index, offset in chunk, range of the caller's buffer)` for each chunk
    /// that `[offset, offset + len)` touches, in order.
    fn for_each_chunk(offset: u64, len: usize, mut f: impl FnMut(u64, usize, Range<usize>)) {
        let mut done = 0usize;
        while done < len {
            let at = offset + done as u64;
            let within = (at % CHUNK) as usize;
            let take = (CHUNK as usize - within).min(len - done);
            f(at / CHUNK, within, done..done + take);
            done += take;
        }
    }

    /// The first byte of the section's bytes as one contiguous, 8-aligned block of
    /// [`Self::size`] bytes that lives as long as `self` (the bytes move there on the first
    /// call); `None` for a section larger than [`MAX_CONTIGUOUS`]. Reach the block only with
    /// volatile or atomic accesses: every other side reaches it with atomic word operations.
    pub fn contiguous(&self) -> Option<NonNull<u8>> {
        if self.size > MAX_CONTIGUOUS {
            return None;
        }
        let words = match self.dense.get() {
            Some(words) => words,
            None => {
                // Under the chunk lock: a sparse access in flight finishes first, and every
                // later one sees the block (they check it again under the lock).
                let mut chunks = self.lock();
                let words = self.dense.get_or_init(|| {
                    (0..self.size.div_ceil(8))
                        .map(|_| AtomicU64::new(0))
                        .collect()
                });
                for (index, chunk) in chunks.drain() {
                    dense_write(words, index * CHUNK, &chunk[..]);
                }
                words
            }
        };
        NonNull::new(words.as_ptr().cast_mut().cast::<u8>())
    }

    /// Copies `out.len()` bytes starting at `offset` into `out`.
    pub fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), MemoryError> {
        self.check(offset, out.len())?;
        if let Some(words) = self.dense.get() {
            dense_read(words, offset, out);
            return Ok(());
        }
        let chunks = self.lock();
        if let Some(words) = self.dense.get() {
            dense_read(words, offset, out);
            return Ok(());
        }
        Self::for_each_chunk(offset, out.len(), |index, within, range| {
            let len = range.len();
            let target = &mut out[range];
            match chunks.get(&index) {
                Some(chunk) => target.copy_from_slice(&chunk[within..within + len]),
                None => target.fill(0),
            }
        });
        Ok(())
    }

    /// Copies `data` into the section starting at `offset`.
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<(), MemoryError> {
        self.check(offset, data.len())?;
        if let Some(words) = self.dense.get() {
            dense_write(words, offset, data);
            return Ok(());
        }
        let mut chunks = self.lock();
        if let Some(words) = self.dense.get() {
            dense_write(words, offset, data);
            return Ok(());
        }
        Self::for_each_chunk(offset, data.len(), |index, within, range| {
            let len = range.len();
            let chunk = chunks
                .entry(index)
                .or_insert_with(|| Box::new([0; CHUNK as usize]));
            chunk[within..within + len].copy_from_slice(&data[range]);
        });
        Ok(())
    }
}

/// Reads `out.len()` bytes at `offset` of a contiguous block (bounds checked by the caller):
/// whole aligned words at once, the rest byte by byte, little-endian like the machine.
fn dense_read(words: &[AtomicU64], offset: u64, out: &mut [u8]) {
    let mut done = 0usize;
    while done < out.len() {
        let at = offset + done as u64;
        let word = words[(at / 8) as usize]
            .load(Ordering::SeqCst)
            .to_le_bytes();
        let within = (at % 8) as usize;
        let take = (8 - within).min(out.len() - done);
        out[done..done + take].copy_from_slice(&word[within..within + take]);
        done += take;
    }
}

/// Writes `data` at `offset` of a contiguous block: whole aligned words with one store, parts
/// of a word with a compare-exchange loop (the word's other bytes are left as they are).
fn dense_write(words: &[AtomicU64], offset: u64, data: &[u8]) {
    let mut done = 0usize;
    while done < data.len() {
        let at = offset + done as u64;
        let cell = &words[(at / 8) as usize];
        let within = (at % 8) as usize;
        let take = (8 - within).min(data.len() - done);
        let part = &data[done..done + take];
        if take == 8 {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(part);
            cell.store(u64::from_le_bytes(bytes), Ordering::SeqCst);
        } else {
            let _ = cell.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |old| {
                let mut bytes = old.to_le_bytes();
                bytes[within..within + take].copy_from_slice(part);
                Some(u64::from_le_bytes(bytes))
            });
        }
        done += take;
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

/// The section model as the HDV model sees it: looks up the section behind a handle as a given
/// process sees it, and moves handles between processes.
///
/// Implemented by the section model; consumed by the HDV model, which receives section handles
/// valid in the device-host process (hdv.md §3.3) and duplicates each mapped one into the VM
/// worker process (the COM layer's `system_handle(sh_section)` marshaling, hdv.md §3.3).
pub trait SectionResolver {
    /// The memory behind `handle` in `process`, if that handle grants `access`.
    fn resolve(
        &self,
        process: ProcessId,
        handle: u64,
        access: SectionAccess,
    ) -> Result<Arc<SectionMemory>, ResolveError>;

    /// Starts a process (the VM worker, `vmwp.exe`, when a VM starts).
    fn spawn_process(&self) -> ProcessId;

    /// `DuplicateHandle(source, handle, target, DUPLICATE_SAME_ACCESS)`: the new handle's value
    /// in `target`.
    fn duplicate_handle(
        &self,
        source: ProcessId,
        handle: u64,
        target: ProcessId,
    ) -> Result<u64, ResolveError>;

    /// `CloseHandle(handle)` in `process`.
    fn close_handle(&self, process: ProcessId, handle: u64) -> Result<(), ResolveError>;

    /// The process exits: every handle it holds is closed and every view unmapped.
    fn exit_process(&self, process: ProcessId);
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
    fn accesses_across_chunks_and_huge_sizes_are_exact() {
        let memory = SectionMemory::new(32 << 30);
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        memory.write((32 << 30) - 1000, &data).unwrap();
        let mut back = vec![0u8; 1000];
        memory.read((32 << 30) - 1000, &mut back).unwrap();
        assert_eq!(back, data);
        let mut around = vec![0xFFu8; 20];
        memory.read((32 << 30) - 1010, &mut around).unwrap();
        assert_eq!(&around[..10], &[0; 10]);
        assert_eq!(&around[10..], &data[..10]);
    }

    #[test]
    fn contiguous_keeps_the_bytes_and_every_side_meets_there() {
        let memory = SectionMemory::new(8192);
        memory.write(4093, &[1, 2, 3, 4, 5]).unwrap();
        let base = memory.contiguous().unwrap();
        assert_eq!(base.as_ptr() as usize % 8, 0);
        assert_eq!(
            memory.contiguous(),
            Some(base),
            "the block stays where it is"
        );
        let mut back = [0u8; 7];
        memory.read(4092, &mut back).unwrap();
        assert_eq!(back, [0, 1, 2, 3, 4, 5, 0]);
        // What a consumer writes through the pointer, the other sides read, and back.
        let byte_100 = base.as_ptr().wrapping_add(100);
        // SAFETY: byte 100 of the block, which is 8192 bytes long and lives as long as `memory`.
        unsafe { byte_100.write_volatile(0xAB) };
        let mut byte = [0u8; 1];
        memory.read(100, &mut byte).unwrap();
        assert_eq!(byte, [0xAB]);
        memory.write(8190, &[7, 8]).unwrap();
        let last = base.as_ptr().wrapping_add(8191);
        // SAFETY: the block's last byte, as above.
        assert_eq!(unsafe { last.read_volatile() }, 8);
        assert!(memory.write(8191, &[1, 2]).is_err());
        assert!(
            SectionMemory::new(MAX_CONTIGUOUS as usize + 1)
                .contiguous()
                .is_none()
        );
    }

    #[test]
    fn access_rights_compare() {
        assert!(SectionAccess::READ_WRITE.allows(SectionAccess::READ));
        assert!(!SectionAccess::READ.allows(SectionAccess::READ_WRITE));
        assert!(SectionAccess::HDV_READ_WRITE.allows(SectionAccess::READ_WRITE));
        assert!(!SectionAccess::READ_WRITE.allows(SectionAccess::HDV_READ));
    }
}
