//! Guest MMIO reservation planning.
//!
//! Before any KMCL call, the driver turns the configured shared regions (sizes in bytes) into
//! 1. a layout of one PCI BAR of the paired HDV device: every region page-aligned, packed in
//!    order from offset 0; the BAR size is the next power of two of the total (a PCI memory BAR
//!    is a naturally aligned power of two), at least one page;
//! 2. the two values passed to `VmbServerChannelInitSetMmioMegabytes` during channel init.
//!
//! # The reservation is not where the memory lives
//! In every real guest the channel's MMIO reservation and the paired device's BAR are two
//! separate, exclusive claims from the same guest MMIO pool: a Linux guest's channel driver and
//! pci-hyperv each call `vmbus_allocate_mmio` (torvalds/linux `drivers/hv/vmbus_drv.c`,
//! `drivers/pci/controller/pci-hyperv.c`), and a Windows guest gets two PnP assignments. HDV maps
//! sections *relative to the BAR* (`HdvCreateSectionBackedMmioRange(device, bar, offset, ...)`),
//! wherever the guest puts it. So the shared memory lives in the BAR, and every byte reserved
//! for the channel is a byte the guest's vPCI bridge window cannot use. The driver cannot read
//! the guest's pool size (a per-VM setting of the host).
//!
//! Decision: [`RESERVATION_MEGABYTES`] = 1 and [`RESERVATION_MEGABYTES_OPTIONAL`] = 0, for every
//! plan:
//! - 1 MiB is the smallest request the API accepts: the header's SAL requires
//!   `MmioMegabytes > 0` (the prose only needs one of the two non-zero; the stricter reading
//!   wins);
//! - optional 0: Linux never reads the optional field, and what a Windows guest does with it is
//!   undocumented;
//! - it is the same for every layout, so the reservation never takes room the BAR's bridge
//!   window needs, however large the layout.
//!
//! A guest may still choose to place the BAR inside a range its channel driver claimed itself
//! (a Linux kernel driver can: decode off, write the BAR, decode on). That range is the guest
//! driver's own claim, of whatever size it asks for, not this reservation; the host accepts
//! that placement only after checking the guest's report, and never assumes it.
//!
//! Impossible layouts are rejected here with a typed error before any KMCL call: no regions,
//! too many, an empty region, or a BAR above [`MAX_BAR_SIZE`].

use alloc::vec::Vec;

use kmcl::raw::{NTSTATUS, STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_PARAMETER};

/// Size of a page: the unit of every section and mapping.
pub const PAGE_SIZE: u64 = 4096;
/// One mebibyte, the unit of `VmbServerChannelInitSetMmioMegabytes`.
pub const MIB: u64 = 1 << 20;
/// Most regions one channel may share: the IOCTL interface's fixed capacity.
pub const MAX_REGIONS: usize = vmbmmio_proto::ioctl::MAX_REGIONS;
/// Largest BAR a plan may need: 32 GiB, the IOCTL interface's bound on a session's regions
/// (`vmbmmio_proto::ioctl::MAX_BAR_SIZE`), proven end to end in the simulator with a guest
/// whose MMIO pool also holds the channel's reservation and the vPCI config window.
pub const MAX_BAR_SIZE: u64 = vmbmmio_proto::ioctl::MAX_BAR_SIZE;
/// `MmioMegabytes` of every offer (see the module docs for the decision).
pub const RESERVATION_MEGABYTES: u16 = 1;
/// `MmioMegabytesOptional` of every offer (see the module docs for the decision).
pub const RESERVATION_MEGABYTES_OPTIONAL: u16 = 0;

/// Where one region lives inside the BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionPlacement {
    /// Byte offset from the start of the BAR; a multiple of [`PAGE_SIZE`].
    pub offset: u64,
    /// Size in bytes, rounded up to whole pages.
    pub size: u64,
}

impl RegionPlacement {
    /// Offset in pages, the unit of `HdvCreateSectionBackedMmioRange`.
    pub const fn offset_pages(&self) -> u64 {
        self.offset / PAGE_SIZE
    }

    /// Size in pages.
    pub const fn pages(&self) -> u64 {
        self.size / PAGE_SIZE
    }
}

/// Why a region layout cannot be planned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// At least one region is needed.
    NoRegions,
    /// More than [`MAX_REGIONS`] regions.
    TooManyRegions {
        /// How many were asked for.
        count: usize,
    },
    /// Region `index` has size zero.
    EmptyRegion {
        /// Index of the region.
        index: usize,
    },
    /// The layout needs a BAR larger than [`MAX_BAR_SIZE`] (or overflows).
    TooLarge,
    /// No memory for the plan's region list.
    OutOfMemory,
}

impl PlanError {
    /// Every planning error is a bad configuration (`STATUS_INVALID_PARAMETER`), except a
    /// failed allocation (`STATUS_INSUFFICIENT_RESOURCES`).
    pub const fn to_ntstatus(self) -> NTSTATUS {
        match self {
            Self::OutOfMemory => STATUS_INSUFFICIENT_RESOURCES,
            Self::NoRegions
            | Self::TooManyRegions { .. }
            | Self::EmptyRegion { .. }
            | Self::TooLarge => STATUS_INVALID_PARAMETER,
        }
    }
}

/// A validated layout of the BAR, and the channel's MMIO reservation request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MmioPlan {
    regions: Vec<RegionPlacement>,
    bar_size: u64,
}

impl MmioPlan {
    /// Plans the layout of `region_sizes` (bytes, in order).
    pub fn new(region_sizes: &[u64]) -> Result<Self, PlanError> {
        if region_sizes.is_empty() {
            return Err(PlanError::NoRegions);
        }
        if region_sizes.len() > MAX_REGIONS {
            return Err(PlanError::TooManyRegions {
                count: region_sizes.len(),
            });
        }
        let mut regions = Vec::new();
        regions
            .try_reserve_exact(region_sizes.len())
            .map_err(|_| PlanError::OutOfMemory)?;
        let mut offset: u64 = 0;
        for (index, &size) in region_sizes.iter().enumerate() {
            if size == 0 {
                return Err(PlanError::EmptyRegion { index });
            }
            let size = round_up(size, PAGE_SIZE).ok_or(PlanError::TooLarge)?;
            #[allow(
                clippy::disallowed_methods,
                reason = "within the capacity try_reserve_exact made: never reallocates"
            )]
            regions.push(RegionPlacement { offset, size });
            offset = offset.checked_add(size).ok_or(PlanError::TooLarge)?;
            if offset > MAX_BAR_SIZE {
                return Err(PlanError::TooLarge);
            }
        }
        // offset <= MAX_BAR_SIZE, so the power of two cannot overflow.
        let bar_size = offset.next_power_of_two().max(PAGE_SIZE);
        if bar_size > MAX_BAR_SIZE {
            return Err(PlanError::TooLarge);
        }
        Ok(Self { regions, bar_size })
    }

    /// The regions, in the order given, with their place in the BAR.
    pub fn regions(&self) -> &[RegionPlacement] {
        &self.regions
    }

    /// Region `index`, if it exists.
    pub fn region(&self, index: usize) -> Option<&RegionPlacement> {
        self.regions.get(index)
    }

    /// Size of the BAR in bytes: a power of two, at least one page.
    pub const fn bar_size(&self) -> u64 {
        self.bar_size
    }

    /// `MmioMegabytes` for the offer: [`RESERVATION_MEGABYTES`]; never zero.
    pub const fn mmio_megabytes(&self) -> u16 {
        RESERVATION_MEGABYTES
    }

    /// `MmioMegabytesOptional` for the offer: [`RESERVATION_MEGABYTES_OPTIONAL`].
    pub const fn mmio_megabytes_optional(&self) -> u16 {
        RESERVATION_MEGABYTES_OPTIONAL
    }

    /// Total bytes the offer asks the guest to reserve (both values).
    pub const fn reserved_bytes(&self) -> u64 {
        // At most 2 * 65535 MiB: far from overflowing a u64.
        (self.mmio_megabytes() as u64)
            .saturating_add(self.mmio_megabytes_optional() as u64)
            .saturating_mul(MIB)
    }
}

/// `value` rounded up to a multiple of `unit` (a power of two), or `None` on overflow.
const fn round_up(value: u64, unit: u64) -> Option<u64> {
    let mask = unit.saturating_sub(1);
    match value.checked_add(mask) {
        Some(v) => Some(v & !mask),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_small_region_gets_one_page_bar_and_one_mib() {
        let plan = MmioPlan::new(&[100]).unwrap();
        assert_eq!(
            plan.regions(),
            &[RegionPlacement {
                offset: 0,
                size: 4096
            }]
        );
        assert_eq!(plan.bar_size(), 4096);
        assert_eq!(plan.mmio_megabytes(), 1);
        assert_eq!(plan.mmio_megabytes_optional(), 0);
    }

    #[test]
    fn regions_are_packed_page_aligned_in_order() {
        let plan = MmioPlan::new(&[4096, 5000, 1 << 20]).unwrap();
        let offsets: Vec<u64> = plan.regions().iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [0, 4096, 12288]);
        assert_eq!(plan.regions()[1].size, 8192);
        assert_eq!(plan.bar_size(), 2 << 20);
        assert_eq!(
            plan.mmio_megabytes(),
            1,
            "the reservation does not grow with the BAR"
        );
        assert_eq!(plan.mmio_megabytes_optional(), 0);
    }

    #[test]
    fn largest_bar_reserves_one_mib() {
        let plan = MmioPlan::new(&[MAX_BAR_SIZE]).unwrap();
        assert_eq!(plan.bar_size(), MAX_BAR_SIZE);
        assert_eq!(plan.mmio_megabytes(), 1);
        assert_eq!(plan.mmio_megabytes_optional(), 0);
        assert_eq!(plan.reserved_bytes(), MIB);
        assert_eq!(MmioPlan::new(&[MAX_BAR_SIZE + 1]), Err(PlanError::TooLarge));
    }

    #[test]
    fn rejects_impossible_layouts() {
        assert_eq!(MmioPlan::new(&[]), Err(PlanError::NoRegions));
        assert_eq!(
            MmioPlan::new(&[4096; MAX_REGIONS + 1]),
            Err(PlanError::TooManyRegions { count: 17 })
        );
        assert_eq!(
            MmioPlan::new(&[4096, 0]),
            Err(PlanError::EmptyRegion { index: 1 })
        );
        assert_eq!(MmioPlan::new(&[u64::MAX]), Err(PlanError::TooLarge));
        assert_eq!(
            MmioPlan::new(&[u64::MAX / 2, u64::MAX / 2]),
            Err(PlanError::TooLarge)
        );
    }
}
