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
//!   video `VRAM_LOCATION`): the guest control protocol (docs/protocol.md) carries it to the
//!   driver, which hands it to the device host as a WAIT_GUEST_EVENT event (docs/ioctl.md);
//!   the device host's waiting loop (`sequence::guest_wait`) reports it here.
//!   `DeviceHost::placement_reported` remains for callers that receive it otherwise.
//!
//! Both go through [`PlacementSignal`]: each report is checked against the device's BAR
//! ([`check_placement`]) and, if the guest names its channel reservation, against that
//! ([`classify_reservation`]); a report that passes becomes the current placement, whatever its
//! source (the newest wins). A report that fails changes nothing and is counted: the reporter
//! is the guest, so every field is hostile until checked.

mod check;
mod signal;

pub use check::{
    MAX_GUEST_PHYSICAL_ADDRESS, PlacementError, ReservationRelation, check_bar_size,
    check_placement, check_reservation, classify_reservation,
};
pub use signal::{AcceptedPlacement, PlacementLook, PlacementRejection, PlacementSignal};
/// The placement types, shared with the driver through the wire crate.
pub use vmbmmio_proto::guest::placement::{BarPlacement, BarState, GuestRange};

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
