//! Pure checks of a reported placement, shared by the driver's protocol engine and the device
//! host: what a hostile guest could send is refused here, with a typed error, before anything
//! is mapped.
//!
//! # Why they live here
//! The guest reports where its BAR and its channel reservation are (`REPORT_DEVICE`,
//! `REPORT_RESERVATION`, `docs/protocol.md`). The driver checks the report when the packet
//! arrives, the device host checks it again before it maps (it knows the VM's configuration,
//! the driver does not). Both must refuse the same lies in the same way, so the checks are one
//! set of `no_std` functions in the wire crate, used by [`parse_request`](super::parse_request)
//! and re-exported by `vmbmmio-devhost` from its `placement` module.

use core::fmt;

use crate::PAGE_SIZE;

/// Highest guest physical address (exclusive) a BAR or reservation may reach: 2^52, the largest
/// physical address width x86-64 defines (Intel SDM Vol. 3A §4.1.4, MAXPHYADDR at most 52) and
/// ARM64 with FEAT_LPA allows. A range past it cannot be reached by any guest processor.
pub const MAX_GUEST_PHYSICAL_ADDRESS: u64 = 1 << 52;

/// A range of guest physical addresses, `[base, base + size)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GuestRange {
    /// First address.
    pub base: u64,
    /// Length in bytes.
    pub size: u64,
}

impl fmt::Display for GuestRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.base.checked_add(self.size) {
            Some(end) => write!(f, "[{:#x}, {end:#x})", self.base),
            None => write!(f, "[{:#x}, +{:#x} overflowing)", self.base, self.size),
        }
    }
}

/// What a source says about the device's BAR: exactly the facts a guest knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BarPlacement {
    /// The BAR's guest physical base address (meaningless while decode is off).
    pub base: u64,
    /// The BAR's size as the guest sized it (must be the device's BAR size).
    pub size: u64,
    /// Whether memory decode (command register bit 1) is on.
    pub memory_decode: bool,
}

/// A checked placement: what the mapping sequence acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BarState {
    /// Memory decode is off: nothing may be mapped (whatever the BAR registers hold).
    DecodeOff,
    /// Memory decode is on and the BAR is at `base`: the regions may be mapped.
    Decoding {
        /// The BAR's guest physical base address (aligned to the BAR's size).
        base: u64,
    },
}

impl fmt::Display for BarState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DecodeOff => f.write_str("memory decode off"),
            Self::Decoding { base } => write!(f, "BAR at {base:#x}, memory decode on"),
        }
    }
}

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
    /// The reported size cannot be a BAR's: a memory BAR holding pages is a power of two of at
    /// least one page ([`check_bar_size`]).
    BadBarSize {
        /// The reported size.
        size: u64,
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
    /// The reported channel reservation is at address 0 (a guest never places MMIO there).
    ReservationUnassigned {
        /// The reported reservation.
        reservation: GuestRange,
    },
    /// The reported channel reservation's base or size is not a whole number of pages.
    ReservationMisaligned {
        /// The reported reservation.
        reservation: GuestRange,
    },
    /// The reported channel reservation passes [`MAX_GUEST_PHYSICAL_ADDRESS`].
    ReservationBeyondAddressSpace {
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
            Self::BadBarSize { size } => write!(
                f,
                "reported BAR size {size:#x} is not a power of two of at least one page"
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
            Self::ReservationUnassigned { reservation } => {
                write!(f, "the channel reservation {reservation} is at address 0")
            }
            Self::ReservationMisaligned { reservation } => write!(
                f,
                "the channel reservation {reservation} is not a whole number of pages"
            ),
            Self::ReservationBeyondAddressSpace { reservation } => write!(
                f,
                "the channel reservation {reservation} passes the end of the guest physical \
                 address space ({MAX_GUEST_PHYSICAL_ADDRESS:#x})"
            ),
            Self::PartialOverlap { bar, reservation } => write!(
                f,
                "BAR {bar} partly overlaps the channel reservation {reservation}"
            ),
        }
    }
}

impl core::error::Error for PlacementError {}

/// Checks that `size` can be a memory BAR's size that holds pages: a power of two, at least
/// [`PAGE_SIZE`]. A session's BAR always is (`docs/ioctl.md`, OPEN_SESSION reply), so a report
/// of any other size is a lie whatever the session.
pub const fn check_bar_size(size: u64) -> Result<u64, PlacementError> {
    if size.is_power_of_two() && size >= PAGE_SIZE {
        Ok(size)
    } else {
        Err(PlacementError::BadBarSize { size })
    }
}

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

/// Checks a reported channel reservation on its own, in this order: non-empty and not
/// overflowing ([`PlacementError::BadReservation`]), not at 0, page-aligned base and size, and
/// below [`MAX_GUEST_PHYSICAL_ADDRESS`]. `REPORT_RESERVATION` with `PRESENT` must pass it.
pub fn check_reservation(reservation: GuestRange) -> Result<GuestRange, PlacementError> {
    let Some(end) = reservation.base.checked_add(reservation.size) else {
        return Err(PlacementError::BadReservation { reservation });
    };
    if reservation.size == 0 {
        return Err(PlacementError::BadReservation { reservation });
    }
    if reservation.base == 0 {
        return Err(PlacementError::ReservationUnassigned { reservation });
    }
    if !reservation.base.is_multiple_of(PAGE_SIZE) || !reservation.size.is_multiple_of(PAGE_SIZE) {
        return Err(PlacementError::ReservationMisaligned { reservation });
    }
    if end > MAX_GUEST_PHYSICAL_ADDRESS {
        return Err(PlacementError::ReservationBeyondAddressSpace { reservation });
    }
    Ok(reservation)
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
