//! Explicit bounds of the IOCTL interface and the overflow-safe page arithmetic that enforces
//! them.
//!
//! Every size that reaches the driver is bounded before it is used: the number of regions, the
//! size of one region and the size of all regions together. The bounds are part of the wire
//! contract (version 1) so a device host can check them before it sends anything.

use crate::PAGE_SIZE;

/// Most regions one session may share; also the fixed capacity of every region array on the
/// wire. Matches the driver's MMIO planner, which places at most this many regions in the BAR.
pub const MAX_REGIONS: usize = 16;

/// [`MAX_REGIONS`] as the `u32` the wire carries.
pub const MAX_REGIONS_U32: u32 = 16;
const _: () = assert!(MAX_REGIONS_U32 as usize == MAX_REGIONS);

/// Largest single region after page rounding: 4 GiB (2^20 pages).
///
/// Nothing needs more for one shared window, and the bound keeps every region's page count in
/// 32 bits and the sum of all regions far from `u64` overflow.
pub const MAX_REGION_SIZE: u64 = 4 << 30;

/// Largest sum of all page-rounded regions of one session: 32 GiB.
///
/// The BAR of the paired device that holds the regions is the next power of two of this sum.
/// The guest places that BAR in its MMIO pool next to everything else it claims; 32 GiB is the
/// largest BAR the project proves end to end (the simulator's guest pool holds it together with
/// the channel's 1 MiB reservation and the vPCI config window).
pub const MAX_TOTAL_SIZE: u64 = 32 << 30;

/// Largest BAR a reply may describe; the same 32 GiB as [`MAX_TOTAL_SIZE`].
pub const MAX_BAR_SIZE: u64 = MAX_TOTAL_SIZE;

/// One mebibyte, the unit of the MMIO reservation fields.
pub const MIB: u64 = 1 << 20;

/// `bytes` rounded up to a whole number of pages, or `None` if that would overflow `u64`.
pub const fn round_up_to_page(bytes: u64) -> Option<u64> {
    match bytes.checked_add(PAGE_SIZE - 1) {
        Some(sum) => Some(sum & !(PAGE_SIZE - 1)),
        None => None,
    }
}

/// Whether `value` is a multiple of [`PAGE_SIZE`].
pub const fn is_page_aligned(value: u64) -> bool {
    value.is_multiple_of(PAGE_SIZE)
}
