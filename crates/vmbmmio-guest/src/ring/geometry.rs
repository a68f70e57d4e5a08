//! One ring over a memory: its control fields and its data area, with the index arithmetic.
//!
//! Indices are byte offsets into the data area, always below its size and 8-aligned (packets
//! are 8-aligned and so is the data size). Reads and writes of the data area wrap once at its
//! end, like `hv_copyto_ringbuffer` and DPDK's `vmbus_txbr_copyto` (torvalds/linux
//! `drivers/hv/ring_buffer.c`, DPDK `drivers/bus/vmbus/vmbus_bufring.c`). The arithmetic is
//! checked everywhere; an index is validated before it is used, so no host value can reach an
//! offset outside the data area.

use super::error::{Corruption, GeometryError};
use super::layout::{
    CONTROL_PAGE_SIZE, FEATURE_BITS_OFFSET, INTERRUPT_MASK_OFFSET, PACKET_ALIGNMENT,
    PENDING_SEND_SIZE_OFFSET, READ_INDEX_OFFSET, WRITE_INDEX_OFFSET,
};
use super::memory::{MemoryError, RingMemory};

/// The smallest data area accepted: one descriptor, one trailer and the byte that always stays
/// free, rounded up to 8. Real rings are whole pages (`VMBUS_RING_SIZE` in
/// `include/linux/hyperv.h` page-aligns them); smaller ones let tests reach wrap-around and
/// full states quickly.
pub const MIN_DATA_SIZE: u32 = 32;

/// The largest data area accepted (2 GiB): indices are `u32` and index sums stay below 2^32.
pub const MAX_DATA_SIZE: u32 = 1 << 31;

/// A field of the control page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlField {
    /// `write_index`.
    WriteIndex,
    /// `read_index`.
    ReadIndex,
    /// `interrupt_mask`.
    InterruptMask,
    /// `pending_send_sz`.
    PendingSendSize,
    /// `feature_bits`.
    FeatureBits,
}

impl ControlField {
    /// The field's offset in the control page.
    pub const fn offset(self) -> usize {
        match self {
            Self::WriteIndex => WRITE_INDEX_OFFSET,
            Self::ReadIndex => READ_INDEX_OFFSET,
            Self::InterruptMask => INTERRUPT_MASK_OFFSET,
            Self::PendingSendSize => PENDING_SEND_SIZE_OFFSET,
            Self::FeatureBits => FEATURE_BITS_OFFSET,
        }
    }
}

/// One ring (control page, then data area) over a memory of exactly its size.
#[derive(Clone, Debug)]
pub struct Ring<M> {
    memory: M,
    data_size: u32,
}

impl<M: RingMemory> Ring<M> {
    /// The ring filling `memory`: the first [`CONTROL_PAGE_SIZE`] bytes are the control page,
    /// the rest the data area, whose size must be a multiple of 8 between [`MIN_DATA_SIZE`] and
    /// [`MAX_DATA_SIZE`].
    pub fn new(memory: M) -> Result<Self, GeometryError> {
        let region_size = memory.size();
        let bad = GeometryError::DataSize { region_size };
        let data = region_size.checked_sub(CONTROL_PAGE_SIZE).ok_or(bad)?;
        let data_size = u32::try_from(data).map_err(|_| bad)?;
        if !(MIN_DATA_SIZE..=MAX_DATA_SIZE).contains(&data_size)
            || !data.is_multiple_of(PACKET_ALIGNMENT)
        {
            return Err(bad);
        }
        Ok(Self { memory, data_size })
    }

    /// The data area's size in bytes.
    pub fn data_size(&self) -> u32 {
        self.data_size
    }

    /// The memory the ring lives in.
    pub fn memory(&self) -> &M {
        &self.memory
    }

    /// Loads a control field (acquire).
    pub fn load(&self, field: ControlField) -> Result<u32, MemoryError> {
        self.memory.load_acquire(field.offset())
    }

    /// Stores a control field (release).
    pub fn store(&self, field: ControlField, value: u32) -> Result<(), MemoryError> {
        self.memory.store_release(field.offset(), value)
    }

    /// A full barrier.
    pub(crate) fn fence(&self) {
        self.memory.fence();
    }

    /// `value` if it is a valid index (below the data size, 8-aligned).
    pub(crate) fn valid_index(&self, value: u32) -> Option<u32> {
        let aligned = value.trailing_zeros() >= 3;
        (value < self.data_size && aligned).then_some(value)
    }

    /// Loads the host's `read_index` and validates it.
    pub(crate) fn load_read_index(&self) -> Result<Result<u32, Corruption>, MemoryError> {
        let value = self.load(ControlField::ReadIndex)?;
        Ok(self.valid_index(value).ok_or(Corruption::ReadIndex {
            value,
            data_size: self.data_size,
        }))
    }

    /// Loads the host's `write_index` and validates it.
    pub(crate) fn load_write_index(&self) -> Result<Result<u32, Corruption>, MemoryError> {
        let value = self.load(ControlField::WriteIndex)?;
        Ok(self.valid_index(value).ok_or(Corruption::WriteIndex {
            value,
            data_size: self.data_size,
        }))
    }

    /// Bytes published between a valid read index and a valid write index.
    pub(crate) fn bytes_to_read(&self, read: u32, write: u32) -> u32 {
        if write >= read {
            write.saturating_sub(read)
        } else {
            self.data_size.saturating_sub(read).saturating_add(write)
        }
    }

    /// Bytes free for the producer (the complement of [`Self::bytes_to_read`]): a value of
    /// the data size means the ring is empty, and a packet fits only if strictly fewer bytes
    /// than this are needed.
    pub(crate) fn bytes_to_write(&self, read: u32, write: u32) -> u32 {
        self.data_size
            .saturating_sub(self.bytes_to_read(read, write))
    }

    /// `index + len` wrapped into the data area; `index` valid and `len` at most the data size.
    pub(crate) fn advance(&self, index: u32, len: u32) -> Result<u32, MemoryError> {
        let sum = u64::from(index).checked_add(u64::from(len));
        let wrapped = sum.and_then(|s| s.checked_rem(u64::from(self.data_size)));
        wrapped
            .and_then(|w| u32::try_from(w).ok())
            .ok_or(self.data_error(index, len))
    }

    /// Copies `buf.len()` bytes of the data area starting at the valid `index`, wrapping once.
    pub(crate) fn read_data(&self, index: u32, buf: &mut [u8]) -> Result<(), MemoryError> {
        let (first, second) = self.split(index, buf.len())?;
        let (head, tail) = buf
            .split_at_mut_checked(first)
            .ok_or(self.data_error(index, first))?;
        self.memory.read(self.data_offset(index)?, head)?;
        if second > 0 {
            self.memory.read(CONTROL_PAGE_SIZE, tail)?;
        }
        Ok(())
    }

    /// Copies `data` into the data area starting at the valid `index`, wrapping once.
    pub(crate) fn write_data(&self, index: u32, data: &[u8]) -> Result<(), MemoryError> {
        let (first, second) = self.split(index, data.len())?;
        let (head, tail) = data
            .split_at_checked(first)
            .ok_or(self.data_error(index, first))?;
        self.memory.write(self.data_offset(index)?, head)?;
        if second > 0 {
            self.memory.write(CONTROL_PAGE_SIZE, tail)?;
        }
        Ok(())
    }

    /// How an access of `len` bytes at `index` splits at the end of the data area.
    fn split(&self, index: u32, len: usize) -> Result<(usize, usize), MemoryError> {
        let data = usize::try_from(self.data_size).map_err(|_| self.data_error(index, 0))?;
        let at = usize::try_from(index).map_err(|_| self.data_error(index, 0))?;
        let to_end = data.checked_sub(at).ok_or(self.data_error(index, 0))?;
        if len > data {
            return Err(self.data_error(index, 0));
        }
        let first = len.min(to_end);
        Ok((first, len.saturating_sub(first)))
    }

    fn data_offset(&self, index: u32) -> Result<usize, MemoryError> {
        usize::try_from(index)
            .ok()
            .and_then(|i| CONTROL_PAGE_SIZE.checked_add(i))
            .ok_or(self.data_error(index, 0))
    }

    fn data_error(&self, index: u32, len: impl TryInto<usize>) -> MemoryError {
        MemoryError::OutOfBounds {
            offset: usize::try_from(index)
                .unwrap_or(usize::MAX)
                .saturating_add(CONTROL_PAGE_SIZE),
            len: len.try_into().unwrap_or(usize::MAX),
            size: self.memory.size(),
        }
    }
}
