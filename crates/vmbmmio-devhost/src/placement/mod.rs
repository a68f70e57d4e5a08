//! Where the guest put the device's BAR, and whether memory decode is on: the signal the
//! mapping sequence waits for.
//!
//! # Why the device host needs to be told
//! HDV backs pages *of a BAR* (`HdvCreateSectionBackedMmioRange(device, barIndex, offset, ...)`,
//! Microsoft Learn "HdvCreateSectionBackedMmioRange"), wherever the guest placed that BAR, and the
//! guest places it: a Linux guest writes the BAR registers itself through configuration space
//! with memory decode off (torvalds/linux `drivers/pci/controller/pci-hyperv.c`
//! `prepopulate_bars`), a Windows guest's vPCI driver reports its assignment in
//! `PCI_RESOURCES_ASSIGNED` (microsoft/openvmm `vm/devices/pci/vpci/src/device.rs`). Nothing
//! tells the host by itself. And the order matters: in the one public end-to-end test
//! (templarsco/LookingGlass `hcs_probe.c`, Windows 10.0.26100 nested) a range mapped before the
//! guest enabled decode crashed the VM worker when decode came on. So the device host maps only
//! once the guest has placed the BAR *and* enabled decode, and unmaps when that stops being
//! true.
//!
//! # Two sources, one signal
//! - [`PlacementSource::ConfigSpace`]: the emulator's own configuration space, if the platform
//!   forwards the guest's BAR and command writes to it. On the observed build Hyper-V's vPCI
//!   handled the BAR registers itself (LookingGlass, same run), so this source may never fire.
//! - [`PlacementSource::GuestReport`]: the guest driver's own report over the VMBus channel (the
//!   pattern of every Hyper-V device that shares MMIO: dxgkrnl `SETIOSPACEREGION`, synthetic
//!   video `VRAM_LOCATION`); until the channel protocol carries it, a caller hands it over with
//!   `DeviceHost::placement_reported`.
//!
//! Both go through [`PlacementSignal`]: each report is checked against the device's BAR
//! ([`check_placement`]) and, if the guest names its channel reservation, against that
//! ([`classify_reservation`]); a report that passes becomes the current placement, whatever its
//! source (the newest wins). A report that fails changes nothing and is counted: the reporter
//! is the guest, so every field is hostile until checked.

mod check;
mod signal;

pub use check::{
    MAX_GUEST_PHYSICAL_ADDRESS, PlacementError, ReservationRelation, check_placement,
    classify_reservation,
};
pub use signal::{AcceptedPlacement, PlacementRejection, PlacementSignal};

use std::fmt;

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

/// A guest's report: its BAR and, optionally, where its VMBus driver placed the channel's MMIO
/// reservation (a Linux guest reserves only if its driver asks; platform-paths: disjoint by
/// default, inside only if the guest chose so).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GuestReport {
    /// The BAR.
    pub bar: BarPlacement,
    /// The channel's MMIO reservation, if the guest made one and reports it.
    pub channel_reservation: Option<GuestRange>,
}

impl From<BarPlacement> for GuestReport {
    fn from(bar: BarPlacement) -> Self {
        Self {
            bar,
            channel_reservation: None,
        }
    }
}

/// Who said it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PlacementSource {
    /// The guest's writes to the emulator's configuration space.
    ConfigSpace,
    /// The guest driver's report (over the channel).
    GuestReport,
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
