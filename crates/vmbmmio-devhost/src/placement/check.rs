//! Pure checks of a reported placement: what a hostile guest could send is refused here, with a
//! typed error, before anything is mapped.

use std::fmt;

use super::{BarPlacement, BarState, GuestRange};

/// Highest guest physical address (exclusive) a BAR may reach: 2^52, the largest physical
/// address width x86-64 defines (Intel SDM Vol. 3A §4.1.4, MAXPHYADDR at most 52) and ARM64 with
/// FEAT_LPA allows. A BAR past it cannot be reached by any guest processor.
pub const MAX_GUEST_PHYSICAL_ADDRESS: u64 = 1 << 52;

/// Why a reported placement was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlacementError {
    /// The device host does not know its BAR's size yet (no layout from the driver).
    BarSizeUnknown,
    /// The reported size is not the device's BAR size.
    SizeMismatch {
        /// The device's BAR size.
        expected: u64,
        /// The reported size.
        got: u64,
    },
    /// Decode is on but the BAR is at 0: an unprogrammed BAR reads 0.
    Unassigned,
    /// The base is not aligned to the BAR's size (a BAR decodes naturally aligned addresses
    /// only; its low bits are hard-wired to zero).
    Misaligned {
        /// The reported base.
        base: u64,
        /// The required alignment (the BAR's size).
        alignment: u64,
    },
    /// `base + size` overflows or passes [`MAX_GUEST_PHYSICAL_ADDRESS`].
    BeyondAddressSpace {
        /// The reported base.
        base: u64,
        /// The BAR's size.
        size: u64,
    },
    /// The reported channel reservation is empty or overflows.
    BadReservation {
        /// The reported reservation.
        reservation: GuestRange,
    },
    /// The BAR overlaps the channel's reservation without lying inside it.
    PartialOverlap {
        /// The BAR.
        bar: GuestRange,
        /// The channel's reservation.
        reservation: GuestRange,
    },
}

impl fmt::Display for PlacementError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BarSizeUnknown => f.write_str("the BAR's size is not known yet"),
            Self::SizeMismatch { expected, got } => write!(
                f,
                "reported BAR size {got:#x} is not the device's BAR size {expected:#x}"
            ),
            Self::Unassigned => f.write_str("memory decode is on but the BAR is at 0 (unassigned)"),
            Self::Misaligned { base, alignment } => write!(
                f,
                "BAR base {base:#x} is not aligned to the BAR size {alignment:#x}"
            ),
            Self::BeyondAddressSpace { base, size } => write!(
                f,
                "BAR [{base:#x}, +{size:#x}) passes the end of the guest physical address space \
                 ({MAX_GUEST_PHYSICAL_ADDRESS:#x})"
            ),
            Self::BadReservation { reservation } => {
                write!(
                    f,
                    "the channel reservation {reservation} is empty or overflows"
                )
            }
            Self::PartialOverlap { bar, reservation } => write!(
                f,
                "BAR {bar} partly overlaps the channel reservation {reservation}"
            ),
        }
    }
}

impl std::error::Error for PlacementError {}

/// Checks `placement` against the device's BAR of `bar_size` bytes (a power of two). With
/// decode off only the size is checked: the base is not decoded, so nothing depends on it.
pub fn check_placement(
    placement: &BarPlacement,
    bar_size: u64,
) -> Result<BarState, PlacementError> {
    if placement.size != bar_size {
        return Err(PlacementError::SizeMismatch {
            expected: bar_size,
            got: placement.size,
        });
    }
    if !placement.memory_decode {
        return Ok(BarState::DecodeOff);
    }
    let base = placement.base;
    if base == 0 {
        return Err(PlacementError::Unassigned);
    }
    if bar_size == 0 || !base.is_multiple_of(bar_size) {
        return Err(PlacementError::Misaligned {
            base,
            alignment: bar_size,
        });
    }
    match base.checked_add(bar_size) {
        Some(end) if end <= MAX_GUEST_PHYSICAL_ADDRESS => Ok(BarState::Decoding { base }),
        _ => Err(PlacementError::BeyondAddressSpace {
            base,
            size: bar_size,
        }),
    }
}

/// How the BAR lies relative to the channel's MMIO reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReservationRelation {
    /// The guest reported no reservation (a Linux guest makes one only if its driver asks).
    NoReservation,
    /// Two separate ranges: what every stock guest does (two exclusive claims from the VMBus
    /// MMIO pool on Linux, `drivers/hv/vmbus_drv.c` `vmbus_allocate_mmio`; two PnP assignments on
    /// Windows).
    Disjoint,
    /// The BAR lies wholly inside the reservation: a Linux guest driver that bypasses the PCI
    /// core can do this on purpose. Accepted and checked, never assumed.
    Inside,
}

/// Classifies the BAR `bar` against the guest-reported channel `reservation`. A BAR that
/// overlaps the reservation only partly is refused: no guest can use such a layout on purpose,
/// so it is a lie or a bug.
pub fn classify_reservation(
    reservation: Option<GuestRange>,
    bar: GuestRange,
) -> Result<ReservationRelation, PlacementError> {
    let Some(reservation) = reservation else {
        return Ok(ReservationRelation::NoReservation);
    };
    let bad = PlacementError::BadReservation { reservation };
    if reservation.size == 0 {
        return Err(bad);
    }
    let reservation_end = reservation.base.checked_add(reservation.size).ok_or(bad)?;
    let bar_end = bar
        .base
        .checked_add(bar.size)
        .ok_or(PlacementError::BeyondAddressSpace {
            base: bar.base,
            size: bar.size,
        })?;
    if bar_end <= reservation.base || reservation_end <= bar.base {
        Ok(ReservationRelation::Disjoint)
    } else if reservation.base <= bar.base && bar_end <= reservation_end {
        Ok(ReservationRelation::Inside)
    } else {
        Err(PlacementError::PartialOverlap { bar, reservation })
    }
}
