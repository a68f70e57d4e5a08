//! The layout of the shared regions inside the device's one BAR.
//!
//! The driver decides the layout (every region page-aligned inside one BAR whose size is a
//! power of two, hdv.md §3.7: a memory BAR is sized by its probe mask) and reports it when the
//! session opens. The device host does not trust it blindly: [`BarLayout::from_session`]
//! re-checks everything the HDV calls and the PCI emulation depend on, so a driver bug becomes
//! a clear error instead of a mapping HDV might accept with undefined results (hdv.md §3.3:
//! behaviour on overlapping or out-of-bounds ranges is undocumented).
//!
//! [`BarLayout::plan`] computes the layout the way the driver does (regions packed in order
//! from offset 0, BAR = next power of two of the total), for the loopback mode that runs
//! without the driver.

use std::fmt;

use crate::driver::{RegionInfo, SessionInfo};

/// Size of a page: the unit of every HDV range (hdv.md §3.3 "Granularity").
pub const PAGE_SIZE: u64 = vmbmmio_proto::PAGE_SIZE;
/// Most regions one session may have (the driver's limit, `MAX_REGIONS` in its MMIO plan).
pub const MAX_REGIONS: usize = 16;
/// Largest BAR the driver can reserve guest MMIO for (the driver's `MAX_BAR_SIZE`): 32 GiB.
pub const MAX_BAR_SIZE: u64 = 32 << 30;

/// A validated layout of the regions in the BAR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BarLayout {
    bar_size: u64,
    regions: Vec<RegionInfo>,
}

/// Why a layout is not usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// No regions.
    NoRegions,
    /// More than [`MAX_REGIONS`] regions.
    TooManyRegions {
        /// How many.
        count: usize,
    },
    /// The driver returned a different number of regions than requested.
    RegionCount {
        /// Requested.
        expected: usize,
        /// Returned.
        actual: usize,
    },
    /// The BAR size is not a power of two of at least one page.
    BarSize {
        /// The size.
        size: u64,
    },
    /// The BAR is larger than [`MAX_BAR_SIZE`] (or the total overflowed).
    TooLarge,
    /// A region's offset or size is zero-sized or not a whole number of pages.
    Misaligned {
        /// Region index.
        region: usize,
    },
    /// A region is smaller than requested.
    RegionTooSmall {
        /// Region index.
        region: usize,
        /// Its size.
        size: u64,
        /// The requested size.
        requested: u64,
    },
    /// A region extends past the end of the BAR.
    OutsideBar {
        /// Region index.
        region: usize,
    },
    /// Two regions overlap.
    Overlap {
        /// The earlier region.
        first: usize,
        /// The later region.
        second: usize,
    },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NoRegions => f.write_str("no regions"),
            Self::TooManyRegions { count } => {
                write!(f, "{count} regions; at most {MAX_REGIONS} are supported")
            }
            Self::RegionCount { expected, actual } => {
                write!(
                    f,
                    "the driver returned {actual} regions, {expected} were requested"
                )
            }
            Self::BarSize { size } => {
                write!(
                    f,
                    "BAR size {size:#x} is not a power of two of at least 4 KiB"
                )
            }
            Self::TooLarge => write!(f, "the BAR would exceed {} GiB", MAX_BAR_SIZE >> 30),
            Self::Misaligned { region } => {
                write!(
                    f,
                    "region {region} is empty or not a whole number of 4 KiB pages"
                )
            }
            Self::RegionTooSmall {
                region,
                size,
                requested,
            } => {
                write!(
                    f,
                    "region {region} has {size} bytes, {requested} were requested"
                )
            }
            Self::OutsideBar { region } => write!(f, "region {region} extends past the BAR"),
            Self::Overlap { first, second } => write!(f, "regions {first} and {second} overlap"),
        }
    }
}

impl std::error::Error for LayoutError {}

/// `value` rounded up to whole pages, or `None` on overflow.
pub const fn round_up_to_page(value: u64) -> Option<u64> {
    match value.checked_add(PAGE_SIZE - 1) {
        Some(sum) => Some(sum & !(PAGE_SIZE - 1)),
        None => None,
    }
}

impl BarLayout {
    /// The layout the driver computes for `region_sizes` (bytes): regions rounded up to pages
    /// and packed in order from offset 0, BAR = next power of two of the total.
    pub fn plan(region_sizes: &[u64]) -> Result<Self, LayoutError> {
        check_count(region_sizes.len())?;
        let mut regions = Vec::with_capacity(region_sizes.len());
        let mut offset: u64 = 0;
        for (region, &size) in region_sizes.iter().enumerate() {
            if size == 0 {
                return Err(LayoutError::Misaligned { region });
            }
            let size = round_up_to_page(size).ok_or(LayoutError::TooLarge)?;
            regions.push(RegionInfo { offset, size });
            offset = offset.checked_add(size).ok_or(LayoutError::TooLarge)?;
            if offset > MAX_BAR_SIZE {
                return Err(LayoutError::TooLarge);
            }
        }
        let bar_size = offset.next_power_of_two().max(PAGE_SIZE);
        Ok(Self { bar_size, regions })
    }

    /// Validates the layout the driver returned for a request of `requested` sizes (bytes,
    /// already page-rounded).
    pub fn from_session(info: &SessionInfo, requested: &[u64]) -> Result<Self, LayoutError> {
        check_count(requested.len())?;
        if info.regions.len() != requested.len() {
            return Err(LayoutError::RegionCount {
                expected: requested.len(),
                actual: info.regions.len(),
            });
        }
        let bar_size = info.bar_size;
        if !bar_size.is_power_of_two() || bar_size < PAGE_SIZE {
            return Err(LayoutError::BarSize { size: bar_size });
        }
        if bar_size > MAX_BAR_SIZE {
            return Err(LayoutError::TooLarge);
        }
        for (region, (info, &wanted)) in info.regions.iter().zip(requested).enumerate() {
            if info.size == 0 || info.offset % PAGE_SIZE != 0 || info.size % PAGE_SIZE != 0 {
                return Err(LayoutError::Misaligned { region });
            }
            if info.size < wanted {
                return Err(LayoutError::RegionTooSmall {
                    region,
                    size: info.size,
                    requested: wanted,
                });
            }
            match info.offset.checked_add(info.size) {
                Some(end) if end <= bar_size => {}
                _ => return Err(LayoutError::OutsideBar { region }),
            }
        }
        let mut order: Vec<usize> = (0..info.regions.len()).collect();
        order.sort_by_key(|&index| info.regions.get(index).map(|region| region.offset));
        for pair in order.windows(2) {
            if let [a, b] = *pair {
                let (Some(first), Some(second)) = (info.regions.get(a), info.regions.get(b)) else {
                    continue;
                };
                // Both ends were checked against the BAR above, so this cannot overflow.
                if first.offset + first.size > second.offset {
                    return Err(LayoutError::Overlap {
                        first: a.min(b),
                        second: a.max(b),
                    });
                }
            }
        }
        Ok(Self {
            bar_size,
            regions: info.regions.clone(),
        })
    }

    /// Size of the BAR in bytes (a power of two, at least one page).
    pub fn bar_size(&self) -> u64 {
        self.bar_size
    }

    /// The regions, in request order.
    pub fn regions(&self) -> &[RegionInfo] {
        &self.regions
    }

    /// The region containing BAR byte `offset`, and the offset inside that region.
    pub fn locate(&self, offset: u64) -> Option<(usize, u64)> {
        self.regions.iter().enumerate().find_map(|(index, region)| {
            let inside = offset.checked_sub(region.offset)?;
            (inside < region.size).then_some((index, inside))
        })
    }
}

fn check_count(count: usize) -> Result<(), LayoutError> {
    match count {
        0 => Err(LayoutError::NoRegions),
        count if count > MAX_REGIONS => Err(LayoutError::TooManyRegions { count }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::SessionId;

    fn info(bar_size: u64, regions: &[(u64, u64)]) -> SessionInfo {
        SessionInfo {
            session: SessionId(1),
            bar_size,
            regions: regions
                .iter()
                .map(|&(offset, size)| RegionInfo { offset, size })
                .collect(),
        }
    }

    #[test]
    fn plan_packs_regions_and_rounds_the_bar_up() {
        let layout = BarLayout::plan(&[5000, 4096, 1]).unwrap();
        assert_eq!(layout.bar_size(), 16384);
        assert_eq!(
            layout.regions(),
            &[
                RegionInfo {
                    offset: 0,
                    size: 8192
                },
                RegionInfo {
                    offset: 8192,
                    size: 4096
                },
                RegionInfo {
                    offset: 12288,
                    size: 4096
                },
            ]
        );
        assert_eq!(layout.locate(8192 + 5), Some((1, 5)));
        assert_eq!(layout.locate(16383), Some((2, 4095)));
        let padded = BarLayout::plan(&[5000, 4096]).unwrap();
        assert_eq!(padded.bar_size(), 16384);
        assert_eq!(
            padded.locate(12288),
            None,
            "power-of-two padding belongs to no region"
        );
        assert_eq!(BarLayout::plan(&[]), Err(LayoutError::NoRegions));
        assert_eq!(
            BarLayout::plan(&[0]),
            Err(LayoutError::Misaligned { region: 0 })
        );
        assert_eq!(
            BarLayout::plan(&[MAX_BAR_SIZE, 1]),
            Err(LayoutError::TooLarge)
        );
        assert_eq!(BarLayout::plan(&[u64::MAX]), Err(LayoutError::TooLarge));
    }

    #[test]
    fn session_layouts_are_checked() {
        let ok = info(16384, &[(8192, 8192), (0, 4096)]);
        assert!(BarLayout::from_session(&ok, &[8192, 4096]).is_ok());
        let cases = [
            (
                info(16384, &[(0, 4096)]),
                LayoutError::RegionCount {
                    expected: 2,
                    actual: 1,
                },
            ),
            (
                info(12288, &[(0, 4096), (4096, 4096)]),
                LayoutError::BarSize { size: 12288 },
            ),
            (
                info(2048, &[(0, 4096), (4096, 4096)]),
                LayoutError::BarSize { size: 2048 },
            ),
            (
                info(64 << 30, &[(0, 4096), (4096, 4096)]),
                LayoutError::TooLarge,
            ),
            (
                info(16384, &[(0, 8192), (100, 4096)]),
                LayoutError::Misaligned { region: 1 },
            ),
            (
                info(16384, &[(0, 0), (8192, 4096)]),
                LayoutError::Misaligned { region: 0 },
            ),
            (
                info(16384, &[(0, 4096), (4096, 4096)]),
                LayoutError::RegionTooSmall {
                    region: 0,
                    size: 4096,
                    requested: 8192,
                },
            ),
            (
                info(16384, &[(0, 8192), (16384, 4096)]),
                LayoutError::OutsideBar { region: 1 },
            ),
            (
                info(16384, &[(0, 8192), (u64::MAX - 4095, 4096)]),
                LayoutError::OutsideBar { region: 1 },
            ),
            (
                info(16384, &[(4096, 8192), (8192, 4096)]),
                LayoutError::Overlap {
                    first: 0,
                    second: 1,
                },
            ),
        ];
        for (info, error) in cases {
            assert_eq!(
                BarLayout::from_session(&info, &[8192, 4096]),
                Err(error),
                "{info:?}"
            );
        }
    }
}
