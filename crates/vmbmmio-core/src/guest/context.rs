//! What the engine knows of its session: the channel's interface instance (for `NOT_PAIRED`),
//! the BAR's size and the regions with their mapping states (for `GET_LAYOUT` and the guest's
//! `EVENT`s).
//!
//! The session's real state lives under the table lock, which no KMCL callback may take
//! (module docs of [`crate::control`]); so the engine keeps its own copy, made when the session
//! is opened and updated by REPORT_MAPPING under the table lock, then the event lock (the
//! documented order). The regions are stored as the wire's [`Region`]s, so a `LAYOUT` is
//! encoded straight from them: nothing is built on the stack under the spin lock.

use vmbmmio_proto::guest::{Region, RegionAccess, RegionName, RegionState};
use vmbmmio_proto::ioctl::{MappingState, WireGuid};

use super::limits::MAX_REGIONS;
use crate::mmio_plan::MmioPlan;

/// An unused slot of the region table.
const EMPTY_REGION: Region = Region::EMPTY;

/// Whether the guest may use the regions: the aggregate of their states that the guest's
/// `REGIONS_*` events announce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    /// At least one region is not backed.
    Incomplete,
    /// Every region is section-backed.
    Mapped,
    /// Every region is backed, at least one by the intercept fallback.
    Intercepted,
}

/// The session as the engine sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionContext {
    instance: WireGuid,
    bar_size: u64,
    regions: [Region; MAX_REGIONS],
    count: usize,
}

impl SessionContext {
    /// The session of channel `instance` whose BAR is laid out by `plan`; region `i` is
    /// guest-writable if `writable[i]`. Every region starts unmapped and unnamed
    /// ([`Self::set_name`] names the regions of a version-2 session).
    ///
    /// IRQL: <= DISPATCH_LEVEL (no allocation).
    pub fn new(instance: WireGuid, plan: &MmioPlan, writable: &[bool]) -> Self {
        let mut regions = [EMPTY_REGION; MAX_REGIONS];
        let mut count = 0usize;
        for (index, (slot, placement)) in regions.iter_mut().zip(plan.regions()).enumerate() {
            let Ok(id) = u32::try_from(index) else {
                break;
            };
            *slot = Region {
                id,
                access: if writable.get(index).copied().unwrap_or(false) {
                    RegionAccess::ReadWrite
                } else {
                    RegionAccess::ReadOnly
                },
                state: RegionState::Unmapped,
                offset_pages: placement.offset_pages(),
                length_pages: placement.pages(),
                name: RegionName::EMPTY,
            };
            count = index.saturating_add(1);
        }
        Self {
            instance,
            bar_size: plan.bar_size(),
            regions,
            count,
        }
    }

    /// Names region `index` (OPEN_SESSION version 2: the names consumers attach by, which the
    /// guest's `GET_LAYOUT` carries too); out-of-range indexes are ignored.
    pub fn set_name(&mut self, index: usize, name: RegionName) {
        if index < self.count
            && let Some(region) = self.regions.get_mut(index)
        {
            region.name = name;
        }
    }

    /// The channel's interface instance GUID (what the pairing capability carries).
    pub const fn instance(&self) -> WireGuid {
        self.instance
    }

    /// The session's BAR size.
    pub const fn bar_size(&self) -> u64 {
        self.bar_size
    }

    /// The regions, in BAR order, with their current states.
    pub fn regions(&self) -> &[Region] {
        self.regions.get(..self.count).unwrap_or(&[])
    }

    /// Sets region `index`'s state from what the device host reported; whether it changed.
    pub fn set_state(&mut self, index: usize, mapping: MappingState) -> bool {
        let state = region_state(mapping);
        if index >= self.count {
            return false;
        }
        match self.regions.get_mut(index) {
            Some(region) if region.state != state => {
                region.state = state;
                true
            }
            _ => false,
        }
    }

    /// The aggregate of the regions' states.
    pub fn backing(&self) -> Backing {
        let regions = self.regions();
        if regions.is_empty() || regions.iter().any(|r| r.state == RegionState::Unmapped) {
            Backing::Incomplete
        } else if regions.iter().all(|r| r.state == RegionState::Mapped) {
            Backing::Mapped
        } else {
            Backing::Intercepted
        }
    }
}

/// What the guest sees of a device host's mapping state: a failed mapping serves nothing.
pub const fn region_state(mapping: MappingState) -> RegionState {
    match mapping {
        MappingState::SectionBacked => RegionState::Mapped,
        MappingState::InterceptFallback => RegionState::Intercepted,
        MappingState::Unmapped | MappingState::Failed => RegionState::Unmapped,
    }
}
