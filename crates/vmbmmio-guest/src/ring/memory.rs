//! The memory a ring lives in, as a trait, so the ring logic never touches a pointer.
//!
//! A ring is one control page followed by its data area ([`super::layout`]). The host can
//! change any byte of it at any time, so the trait copies bytes in and out (never lends a view)
//! and loads and stores the `u32` control fields atomically, with acquire (loads) and release
//! (stores) ordering, as Linux does: the producer publishes `write_index` with a release after
//! the packet's bytes, and the consumer loads it with an acquire before reading them
//! (`hv_pkt_iter_avail` in torvalds/linux `drivers/hv/ring_buffer.c`). [`RingMemory::fence`]
//! is the full barrier (`virt_mb`) Linux puts between publishing an index and reading the other
//! side's fields to decide whether to signal.
//!
//! Every access is bounds-checked by the implementation and fails with a [`MemoryError`]
//! instead of panicking; the ring never asks for an access outside the region it was given
//! (the property tests prove it with a recording implementation), so an error here is a bug or
//! a region shorter than the one the ring was built for.
//!
//! Implementations: [`VecRingMemory`] (heap bytes behind a mutex, for tests and simulated
//! hosts), [`Window`] (one ring inside a larger region, like the `uio_hv_generic` TXRX map), and
//! the lead's mmapped region on Linux. `&T` and `Arc<T>` forward, so two rings can share one
//! region.

use std::sync::atomic::{Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// A refused memory access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryError {
    /// `offset..offset + len` is not inside the region of `size` bytes.
    OutOfBounds {
        /// First byte asked for.
        offset: usize,
        /// Bytes asked for.
        len: usize,
        /// The region's size.
        size: usize,
    },
    /// A `u32` access at an offset that is not 4-aligned.
    Misaligned {
        /// The offset asked for.
        offset: usize,
    },
}

impl core::fmt::Display for MemoryError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::OutOfBounds { offset, len, size } => write!(
                f,
                "ring memory access of {len} bytes at offset {offset} is outside the {size}-byte region"
            ),
            Self::Misaligned { offset } => {
                write!(
                    f,
                    "ring memory u32 access at offset {offset} is not 4-aligned"
                )
            }
        }
    }
}

impl std::error::Error for MemoryError {}

/// Byte-addressed memory shared with the host. Offsets are from the region's start.
pub trait RingMemory {
    /// The region's size in bytes.
    fn size(&self) -> usize;

    /// Copies `buf.len()` bytes at `offset` into `buf`.
    fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), MemoryError>;

    /// Copies `data` to `offset`.
    fn write(&self, offset: usize, data: &[u8]) -> Result<(), MemoryError>;

    /// Loads the little-endian `u32` at the 4-aligned `offset` with acquire ordering.
    fn load_acquire(&self, offset: usize) -> Result<u32, MemoryError>;

    /// Stores `value` as a little-endian `u32` at the 4-aligned `offset` with release ordering.
    fn store_release(&self, offset: usize, value: u32) -> Result<(), MemoryError>;

    /// A full (sequentially consistent) barrier between the accesses before and after it.
    fn fence(&self) {
        fence(Ordering::SeqCst);
    }
}

impl<T: RingMemory + ?Sized> RingMemory for &T {
    fn size(&self) -> usize {
        (**self).size()
    }
    fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), MemoryError> {
        (**self).read(offset, buf)
    }
    fn write(&self, offset: usize, data: &[u8]) -> Result<(), MemoryError> {
        (**self).write(offset, data)
    }
    fn load_acquire(&self, offset: usize) -> Result<u32, MemoryError> {
        (**self).load_acquire(offset)
    }
    fn store_release(&self, offset: usize, value: u32) -> Result<(), MemoryError> {
        (**self).store_release(offset, value)
    }
    fn fence(&self) {
        (**self).fence();
    }
}

impl<T: RingMemory + ?Sized> RingMemory for Arc<T> {
    fn size(&self) -> usize {
        (**self).size()
    }
    fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), MemoryError> {
        (**self).read(offset, buf)
    }
    fn write(&self, offset: usize, data: &[u8]) -> Result<(), MemoryError> {
        (**self).write(offset, data)
    }
    fn load_acquire(&self, offset: usize) -> Result<u32, MemoryError> {
        (**self).load_acquire(offset)
    }
    fn store_release(&self, offset: usize, value: u32) -> Result<(), MemoryError> {
        (**self).store_release(offset, value)
    }
    fn fence(&self) {
        (**self).fence();
    }
}

/// The range `offset..offset + len` of a region of `size` bytes, or the error naming it.
pub fn checked_range(
    offset: usize,
    len: usize,
    size: usize,
) -> Result<core::ops::Range<usize>, MemoryError> {
    let oob = MemoryError::OutOfBounds { offset, len, size };
    let end = offset.checked_add(len).ok_or(oob)?;
    if end > size {
        return Err(oob);
    }
    Ok(offset..end)
}

/// Checks a `u32` access: in bounds and 4-aligned.
pub fn checked_u32(offset: usize, size: usize) -> Result<core::ops::Range<usize>, MemoryError> {
    if !offset.is_multiple_of(4) {
        return Err(MemoryError::Misaligned { offset });
    }
    checked_range(offset, 4, size)
}

/// Heap memory behind a mutex: a stand-in for the shared pages in tests and simulated hosts.
///
/// The mutex makes every access atomic and ordered, which is stronger than acquire/release, so
/// the ring's logic (not its memory orderings) is what tests over this memory check.
#[derive(Debug, Default)]
pub struct VecRingMemory {
    bytes: Mutex<Vec<u8>>,
}

impl VecRingMemory {
    /// `size` zeroed bytes.
    pub fn new(size: usize) -> Self {
        Self::from_bytes(vec![0; size])
    }

    /// The given bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self {
            bytes: Mutex::new(bytes),
        }
    }

    /// A copy of every byte.
    pub fn snapshot(&self) -> Vec<u8> {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        // A panic while holding the lock cannot leave the bytes half-updated in a way that
        // matters: the host may write anything anyway.
        self.bytes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl RingMemory for VecRingMemory {
    fn size(&self) -> usize {
        self.lock().len()
    }

    fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), MemoryError> {
        let bytes = self.lock();
        let range = checked_range(offset, buf.len(), bytes.len())?;
        let src = bytes.get(range).ok_or(MemoryError::OutOfBounds {
            offset,
            len: buf.len(),
            size: bytes.len(),
        })?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write(&self, offset: usize, data: &[u8]) -> Result<(), MemoryError> {
        let mut bytes = self.lock();
        let size = bytes.len();
        let range = checked_range(offset, data.len(), size)?;
        let dst = bytes.get_mut(range).ok_or(MemoryError::OutOfBounds {
            offset,
            len: data.len(),
            size,
        })?;
        dst.copy_from_slice(data);
        Ok(())
    }

    fn load_acquire(&self, offset: usize) -> Result<u32, MemoryError> {
        let bytes = self.lock();
        let range = checked_u32(offset, bytes.len())?;
        let mut word = [0u8; 4];
        word.copy_from_slice(bytes.get(range).ok_or(MemoryError::OutOfBounds {
            offset,
            len: 4,
            size: bytes.len(),
        })?);
        Ok(u32::from_le_bytes(word))
    }

    fn store_release(&self, offset: usize, value: u32) -> Result<(), MemoryError> {
        let mut bytes = self.lock();
        let size = bytes.len();
        let range = checked_u32(offset, size)?;
        bytes
            .get_mut(range)
            .ok_or(MemoryError::OutOfBounds {
                offset,
                len: 4,
                size,
            })?
            .copy_from_slice(&value.to_le_bytes());
        Ok(())
    }
}

/// The bytes `base..base + size` of a larger memory, as a memory of its own: one ring of the
/// `uio_hv_generic` TXRX map ([`super::TxRxLayout`]).
#[derive(Clone, Debug)]
pub struct Window<M> {
    memory: M,
    base: usize,
    size: usize,
}

impl<M: RingMemory> Window<M> {
    /// The window `base..base + size` of `memory`; refused unless it lies inside `memory` and
    /// `base` keeps 4-byte alignment.
    pub fn new(memory: M, base: usize, size: usize) -> Result<Self, MemoryError> {
        checked_range(base, size, memory.size())?;
        if !base.is_multiple_of(4) {
            return Err(MemoryError::Misaligned { offset: base });
        }
        Ok(Self { memory, base, size })
    }

    /// The memory the window is cut from.
    pub fn inner(&self) -> &M {
        &self.memory
    }

    /// Where the window starts in the inner memory.
    pub fn base(&self) -> usize {
        self.base
    }

    fn translate(&self, offset: usize, len: usize) -> Result<usize, MemoryError> {
        checked_range(offset, len, self.size)?;
        self.base
            .checked_add(offset)
            .ok_or(MemoryError::OutOfBounds {
                offset,
                len,
                size: self.size,
            })
    }
}

impl<M: RingMemory> RingMemory for Window<M> {
    fn size(&self) -> usize {
        self.size
    }
    fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), MemoryError> {
        let at = self.translate(offset, buf.len())?;
        self.memory.read(at, buf)
    }
    fn write(&self, offset: usize, data: &[u8]) -> Result<(), MemoryError> {
        let at = self.translate(offset, data.len())?;
        self.memory.write(at, data)
    }
    fn load_acquire(&self, offset: usize) -> Result<u32, MemoryError> {
        checked_u32(offset, self.size)?;
        let at = self.translate(offset, 4)?;
        self.memory.load_acquire(at)
    }
    fn store_release(&self, offset: usize, value: u32) -> Result<(), MemoryError> {
        checked_u32(offset, self.size)?;
        let at = self.translate(offset, 4)?;
        self.memory.store_release(at, value)
    }
    fn fence(&self) {
        self.memory.fence();
    }
}
