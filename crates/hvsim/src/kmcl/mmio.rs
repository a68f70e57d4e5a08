//! Guest-physical MMIO space: the window a guest's VMBus driver reserves offered MMIO from.
//!
//! anchors.md §2.1: the Linux guest keeps the VMBus MMIO pool (from ACPI `_CRS`) as a sorted
//! list and carves aligned ranges out of it first-fit (`vmbus_allocate_mmio`); §2.5: the Windows
//! guest reserves the space for its child device, with undocumented alignment and placement. The
//! model therefore takes the alignment as a parameter and allocates first-fit.

/// A range of guest-physical addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GpaRange {
    /// First address.
    pub base: u64,
    /// Size in bytes.
    pub size: u64,
}

impl GpaRange {
    /// One past the last address, if it does not overflow.
    pub fn end(&self) -> Option<u64> {
        self.base.checked_add(self.size)
    }

    /// Whether `other` lies entirely inside `self`.
    pub fn contains(&self, other: &GpaRange) -> bool {
        match (self.end(), other.end()) {
            (Some(end), Some(other_end)) => other.base >= self.base && other_end <= end,
            _ => false,
        }
    }
}

/// Why a reservation could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReserveError {
    /// No free, suitably aligned range of the requested size is left in the window.
    WindowFull {
        /// Bytes asked for.
        requested: u64,
        /// Alignment asked for.
        alignment: u64,
    },
    /// The offer asks for no MMIO at all (both values 0).
    NothingRequested,
    /// The requested size overflows.
    SizeOverflow,
}

/// First-fit allocator over one window.
#[derive(Clone, Debug)]
pub(crate) struct MmioAllocator {
    window: GpaRange,
    /// Reserved ranges, sorted by base.
    reserved: Vec<GpaRange>,
}

impl MmioAllocator {
    pub(crate) fn new(window: GpaRange) -> Self {
        Self {
            window,
            reserved: Vec::new(),
        }
    }

    /// Reserves `size` bytes aligned to `alignment` (a power of two).
    pub(crate) fn reserve(&mut self, size: u64, alignment: u64) -> Result<GpaRange, ReserveError> {
        if size == 0 {
            return Err(ReserveError::NothingRequested);
        }
        let alignment = alignment.max(1);
        let window_end = self.window.end().ok_or(ReserveError::SizeOverflow)?;
        let mut cursor = self.window.base;
        // Candidate gaps: before each reserved range, then after the last one.
        let mut gaps: Vec<(u64, u64)> = Vec::new();
        for range in &self.reserved {
            gaps.push((cursor, range.base));
            cursor = range.end().unwrap_or(u64::MAX);
        }
        gaps.push((cursor, window_end));
        for (start, end) in gaps {
            let Some(aligned) = start.checked_next_multiple_of(alignment) else {
                continue;
            };
            let Some(range_end) = aligned.checked_add(size) else {
                return Err(ReserveError::SizeOverflow);
            };
            if range_end <= end {
                let range = GpaRange {
                    base: aligned,
                    size,
                };
                let index = self.reserved.partition_point(|r| r.base < aligned);
                self.reserved.insert(index, range);
                return Ok(range);
            }
        }
        Err(ReserveError::WindowFull {
            requested: size,
            alignment,
        })
    }

    /// Releases a range returned by [`Self::reserve`]; false if it was not reserved.
    pub(crate) fn release(&mut self, range: GpaRange) -> bool {
        match self.reserved.iter().position(|r| *r == range) {
            Some(index) => {
                self.reserved.remove(index);
                true
            }
            None => false,
        }
    }

    /// The window.
    pub(crate) fn window(&self) -> GpaRange {
        self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn first_fit_aligned_and_reusable() {
        let mut allocator = MmioAllocator::new(GpaRange {
            base: 0x1000,
            size: 8 * MIB,
        });
        let a = allocator.reserve(MIB, MIB).unwrap();
        assert_eq!(
            a,
            GpaRange {
                base: MIB,
                size: MIB
            }
        );
        let b = allocator.reserve(0x1000, 0x1000).unwrap();
        assert_eq!(b.base, 0x1000, "the gap below the first range is used");
        let c = allocator.reserve(MIB, 0x1000).unwrap();
        assert_eq!(c.base, 2 * MIB, "the gap below is too small now");
        assert!(allocator.release(a));
        assert!(!allocator.release(a));
        assert_eq!(allocator.reserve(MIB, MIB).unwrap(), a);
    }

    #[test]
    fn a_full_window_fails_cleanly() {
        let mut allocator = MmioAllocator::new(GpaRange {
            base: 0,
            size: 4 * MIB,
        });
        allocator.reserve(3 * MIB, 0x1000).unwrap();
        assert_eq!(
            allocator.reserve(2 * MIB, 0x1000),
            Err(ReserveError::WindowFull {
                requested: 2 * MIB,
                alignment: 0x1000
            })
        );
        assert_eq!(
            allocator.reserve(0, 0x1000),
            Err(ReserveError::NothingRequested)
        );
        assert_eq!(
            allocator.reserve(u64::MAX, 0x1000),
            Err(ReserveError::SizeOverflow)
        );
    }
}
