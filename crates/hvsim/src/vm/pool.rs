//! The guest's VMBus MMIO pool: one address space every MMIO claim of a guest comes from.
//!
//! Facts (Linux `drivers/hv/vmbus_drv.c`, read in torvalds/linux):
//! - the pool is built from the `_CRS` of the VMBus ACPI module device (`VMOD`, HID
//!   `ACPI0004`): a low window below 4 GiB and a high window above it (`vmbus_acpi_add`);
//! - every claim is **exclusive** (`vmbus_allocate_mmio` makes a busy shadow claim, then
//!   `request_mem_region_exclusive`), walks the pool in steps of the requested alignment between
//!   a `min` and a `max` address, and takes the first fit;
//! - the channel driver's own range and pci-hyperv's vPCI config window and bridge windows are
//!   separate claims from this one pool (`drivers/pci/controller/pci-hyperv.c`:
//!   `hv_allocate_config_window`, `hv_pci_allocate_bridge_windows`).
//!
//! A Windows guest's VMBus driver and its vPCI bus driver get their ranges from the PnP arbiter
//! over the same `_CRS` windows; how it places and aligns them is not documented, so the model
//! uses the same exclusive first-fit walk with the alignment each caller passes.
//!
//! Model choice (no source gives one): the default pool's windows start at addresses that are
//! *not* aligned to any large power of two, so a BAR's natural alignment costs real space and an
//! alignment mistake shows (see [`MmioPool::hyper_v_like`]).

use std::fmt;

/// A range of guest-physical addresses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
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

    /// Whether the two ranges share at least one address.
    pub fn overlaps(&self, other: &GpaRange) -> bool {
        let (Some(end), Some(other_end)) = (self.end(), other.end()) else {
            return false;
        };
        self.size != 0 && other.size != 0 && self.base < other_end && other.base < end
    }
}

impl fmt::Display for GpaRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{:#x}, {:#x})",
            self.base,
            self.base.saturating_add(self.size)
        )
    }
}

/// 4 GiB: the boundary between the low and the high window.
pub const FOUR_GIB: u64 = 1 << 32;

/// Who made a claim (for narration, leak checks and the disjointness proofs).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ClaimOwner {
    /// A guest's reservation for a VMBus channel's `MmioMegabytes` (Windows: the VMBus driver
    /// for its child device; Linux: the channel's own driver), keyed by the model's channel id.
    ChannelReservation(u32),
    /// pci-hyperv's 0x2000-byte configuration window of a vPCI bus (keyed by device instance).
    VpciConfigWindow(u128),
    /// A vPCI bus's bridge window for its BARs (keyed by device instance; high: above 4 GiB).
    VpciBridgeWindow {
        /// Device instance GUID as a number.
        instance: u128,
        /// Whether this is the high (64-bit) window.
        high: bool,
    },
    /// A vPCI BAR a Windows guest's PnP arbiter assigned to a device (vpci.sys; keyed by device
    /// instance and BAR index).
    VpciBar {
        /// Device instance GUID as a number.
        instance: u128,
        /// BAR index.
        bar: u8,
    },
    /// Anything else a test claims (a framebuffer, another device).
    Other(String),
}

/// One exclusive claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// Who holds it.
    pub owner: ClaimOwner,
    /// Where.
    pub range: GpaRange,
}

/// What to claim: `vmbus_allocate_mmio(min, max, size, align)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClaimRequest {
    /// Lowest acceptable base.
    pub min: u64,
    /// Highest acceptable last address + 1 (`u64::MAX`: no limit).
    pub max: u64,
    /// Bytes.
    pub size: u64,
    /// Alignment of the base (a power of two; 0 or 1: none).
    pub align: u64,
}

impl ClaimRequest {
    /// A claim anywhere in the pool.
    pub const fn anywhere(size: u64, align: u64) -> Self {
        Self {
            min: 0,
            max: u64::MAX,
            size,
            align,
        }
    }

    /// A claim below 4 GiB (pci-hyperv's low bridge window).
    pub const fn low(size: u64, align: u64) -> Self {
        Self {
            min: 0,
            max: FOUR_GIB,
            size,
            align,
        }
    }

    /// A claim at or above 4 GiB (pci-hyperv's high bridge window, its config window since the
    /// kdump fix).
    pub const fn high(size: u64, align: u64) -> Self {
        Self {
            min: FOUR_GIB,
            max: u64::MAX,
            size,
            align,
        }
    }
}

/// Why a claim failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimError {
    /// Nothing asked for (size 0).
    Empty,
    /// The alignment is not a power of two.
    BadAlignment,
    /// No free, aligned range of that size is left between `min` and `max` (pci-hyperv logs
    /// "Need %#llx of low/high MMIO space. Consider reconfiguring the VM.").
    NoSpace {
        /// Bytes asked for.
        size: u64,
        /// Alignment asked for.
        align: u64,
    },
}

/// The largest power of two not above `size` (pci-hyperv's bridge-window alignment); 0 for 0.
pub const fn highest_power_of_two_at_most(size: u64) -> u64 {
    if size == 0 {
        0
    } else {
        1 << (63 - size.leading_zeros())
    }
}

/// The pool and its claims.
#[derive(Clone, Debug)]
pub struct MmioPool {
    windows: Vec<GpaRange>,
    claims: Vec<Claim>,
}

impl MmioPool {
    /// A pool of the given windows (sorted; overlapping or empty windows are dropped).
    pub fn new(windows: &[GpaRange]) -> Self {
        let mut sorted: Vec<GpaRange> = windows
            .iter()
            .copied()
            .filter(|w| w.size > 0 && w.end().is_some())
            .collect();
        sorted.sort();
        let mut kept: Vec<GpaRange> = Vec::new();
        for window in sorted {
            if kept.last().is_some_and(|last| last.overlaps(&window)) {
                continue;
            }
            kept.push(window);
        }
        Self {
            windows: kept,
            claims: Vec::new(),
        }
    }

    /// The model's default guest pool (a model choice: no source gives Hyper-V's gap sizes,
    /// which are per-VM settings): a low window of 127 MiB starting at 0xF610_0000 (ending at
    /// 0xFE00_0000, below the vTPM at 0xFED4_0000 that Linux cuts the pool at), and a high
    /// window of 96 GiB starting 64 GiB + 17 MiB, an address aligned to nothing larger than
    /// 1 MiB, so a naturally aligned BAR never lands at the window's start by luck.
    pub fn hyper_v_like() -> Self {
        Self::new(&[
            GpaRange {
                base: 0xF610_0000,
                size: 127 << 20,
            },
            GpaRange {
                base: (64 << 30) + (17 << 20),
                size: 96 << 30,
            },
        ])
    }

    /// The windows, sorted.
    pub fn windows(&self) -> &[GpaRange] {
        &self.windows
    }

    /// The live claims, sorted by base.
    pub fn claims(&self) -> &[Claim] {
        &self.claims
    }

    /// Claims `request` for `owner`: the first aligned fit between `min` and `max`, inside one
    /// window, touching no other claim (exclusive).
    pub fn claim(
        &mut self,
        owner: ClaimOwner,
        request: ClaimRequest,
    ) -> Result<GpaRange, ClaimError> {
        if request.size == 0 {
            return Err(ClaimError::Empty);
        }
        let align = request.align.max(1);
        if !align.is_power_of_two() {
            return Err(ClaimError::BadAlignment);
        }
        let no_space = ClaimError::NoSpace {
            size: request.size,
            align,
        };
        for window in &self.windows {
            let Some(window_end) = window.end() else {
                continue;
            };
            let start = window.base.max(request.min);
            let end = window_end.min(request.max);
            let Some(mut candidate) = start.checked_next_multiple_of(align) else {
                continue;
            };
            while let Some(candidate_end) = candidate.checked_add(request.size) {
                if candidate_end > end {
                    break;
                }
                let range = GpaRange {
                    base: candidate,
                    size: request.size,
                };
                match self.claims.iter().find(|c| c.range.overlaps(&range)) {
                    None => {
                        let index = self.claims.partition_point(|c| c.range.base < candidate);
                        self.claims.insert(index, Claim { owner, range });
                        return Ok(range);
                    }
                    Some(blocking) => {
                        // Step past the blocking claim, keeping the alignment.
                        let Some(next) = blocking
                            .range
                            .end()
                            .and_then(|e| e.checked_next_multiple_of(align))
                        else {
                            break;
                        };
                        candidate = next;
                    }
                }
            }
        }
        Err(no_space)
    }

    /// Releases the claim of exactly `range`; false if there is none.
    pub fn release(&mut self, range: GpaRange) -> bool {
        match self.claims.iter().position(|c| c.range == range) {
            Some(index) => {
                self.claims.remove(index);
                true
            }
            None => false,
        }
    }

    /// Releases every claim `owner` holds; returns how many.
    pub fn release_owner(&mut self, owner: &ClaimOwner) -> usize {
        let before = self.claims.len();
        self.claims.retain(|c| &c.owner != owner);
        before - self.claims.len()
    }

    /// Releases every claim (the guest's memory map is gone: VM stopped or reset).
    pub fn release_all(&mut self) -> usize {
        let count = self.claims.len();
        self.claims.clear();
        count
    }

    /// The claim of `owner`, if it holds exactly one.
    pub fn claim_of(&self, owner: &ClaimOwner) -> Option<GpaRange> {
        let mut found = self.claims.iter().filter(|c| &c.owner == owner);
        match (found.next(), found.next()) {
            (Some(claim), None) => Some(claim.range),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn pool() -> MmioPool {
        MmioPool::new(&[
            GpaRange {
                base: 0x1000,
                size: 8 * MIB,
            },
            GpaRange {
                base: 5 * GIB + MIB,
                size: 8 * GIB,
            },
        ])
    }

    #[test]
    fn claims_are_exclusive_aligned_first_fit_and_reusable() {
        let mut pool = pool();
        let a = pool
            .claim(
                ClaimOwner::Other("a".into()),
                ClaimRequest::anywhere(MIB, MIB),
            )
            .unwrap();
        assert_eq!(
            a,
            GpaRange {
                base: MIB,
                size: MIB
            }
        );
        let b = pool
            .claim(
                ClaimOwner::Other("b".into()),
                ClaimRequest::anywhere(0x1000, 0x1000),
            )
            .unwrap();
        assert_eq!(b.base, 0x1000, "the gap below the first claim is used");
        let c = pool
            .claim(
                ClaimOwner::Other("c".into()),
                ClaimRequest::anywhere(MIB, 0x1000),
            )
            .unwrap();
        assert_eq!(c.base, 2 * MIB, "never overlapping an earlier claim");
        assert!(!a.overlaps(&b) && !a.overlaps(&c) && !b.overlaps(&c));
        assert!(pool.release(a));
        assert!(!pool.release(a));
        assert_eq!(
            pool.claim(
                ClaimOwner::Other("a".into()),
                ClaimRequest::anywhere(MIB, MIB)
            )
            .unwrap(),
            a
        );
    }

    #[test]
    fn high_claims_stay_above_four_gib_and_are_naturally_aligned() {
        let mut pool = pool();
        let window = pool
            .claim(
                ClaimOwner::VpciBridgeWindow {
                    instance: 1,
                    high: true,
                },
                ClaimRequest::high(4 * GIB, 4 * GIB),
            )
            .unwrap();
        assert_eq!(window.base, 8 * GIB, "the high window starts unaligned");
        assert_eq!(
            pool.claim(
                ClaimOwner::Other("x".into()),
                ClaimRequest::high(4 * GIB, 4 * GIB)
            ),
            Err(ClaimError::NoSpace {
                size: 4 * GIB,
                align: 4 * GIB
            })
        );
    }

    #[test]
    fn bad_requests_fail_cleanly() {
        let mut pool = pool();
        let owner = ClaimOwner::Other("x".into());
        assert_eq!(
            pool.claim(owner.clone(), ClaimRequest::anywhere(0, 1)),
            Err(ClaimError::Empty)
        );
        assert_eq!(
            pool.claim(owner.clone(), ClaimRequest::anywhere(1, 3)),
            Err(ClaimError::BadAlignment)
        );
        assert!(matches!(
            pool.claim(owner, ClaimRequest::anywhere(u64::MAX, 1)),
            Err(ClaimError::NoSpace { .. })
        ));
    }

    #[test]
    fn highest_power_of_two() {
        assert_eq!(highest_power_of_two_at_most(0), 0);
        assert_eq!(highest_power_of_two_at_most(1), 1);
        assert_eq!(highest_power_of_two_at_most(3 * MIB), 2 * MIB);
        assert_eq!(highest_power_of_two_at_most(4 * GIB), 4 * GIB);
    }

    #[test]
    fn defect_02_the_default_pool_is_not_aligned_to_large_powers_of_two() {
        let pool = MmioPool::hyper_v_like();
        for window in pool.windows() {
            assert_ne!(window.base % (2 * MIB), 0, "{window} starts 2 MiB-aligned");
        }
    }
}
