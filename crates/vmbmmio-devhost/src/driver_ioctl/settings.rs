//! What the driver's OPEN_SESSION needs beyond the device host's `SessionRequest`.
//!
//! The device host's `SessionRequest` names the VM by its compute-system id and lists the
//! regions (sizes, names, access modes); the driver cannot select a VM by its compute-system id
//! (it only records it, as OPEN_SESSION version 2's `vm_id`, for host consumers). It selects
//! the VM by a VMBus handle (kmcl.md §6) or offers the channel back to the host (loopback
//! offer), and it needs the offer's interface type and instance GUIDs (docs/ioctl.md,
//! OPEN_SESSION). Those come from the configuration, through these settings.

use crate::guid::Guid;

/// Default interface type GUID of the vmbmmio channel offer (`--interface-type`).
pub const DEFAULT_INTERFACE_TYPE: Guid = Guid::from_u128(0x9d0ee607_90ef_4c63_8f88_a81dcbc7ca83);
/// Default interface instance GUID of the offer (`--interface-instance`).
pub const DEFAULT_INTERFACE_INSTANCE: Guid =
    Guid::from_u128(0xdb36f587_469a_4cf2_b817_03b5aedbde58);

/// Which VM the driver offers the session's channel to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DriverTarget {
    /// The VM of this VMBus handle: a user-mode handle value **valid in the device host's
    /// process** (the driver converts it in the caller's context, kmcl.md §6). Must be non-zero.
    VmbusHandle(u64),
    /// The driver's loopback offer to the host itself, for host-local testing (kmcl.md §6:
    /// what KMCL does with it is inferred, UNCERTAIN).
    LoopbackOffer,
}

/// The driver-specific part of an OPEN_SESSION request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DriverSessionSettings {
    /// Which VM the channel is offered to.
    pub target: DriverTarget,
    /// Interface type GUID of the offer; not nil.
    pub interface_type: Guid,
    /// Interface instance GUID of the offer; not nil.
    pub interface_instance: Guid,
    /// `true`: each region's access mode decides whether the guest may write it
    /// (`SessionRequest::regions`). `false` takes guest write access from every region, so the
    /// driver refuses the read-write section handles the device host asks for its `rw` and
    /// `host-ro` regions (only useful to exercise that rule).
    pub guest_writable: bool,
}

impl DriverSessionSettings {
    /// Settings for `target` with the default GUIDs and guest-writable regions.
    pub const fn new(target: DriverTarget) -> Self {
        Self {
            target,
            interface_type: DEFAULT_INTERFACE_TYPE,
            interface_instance: DEFAULT_INTERFACE_INSTANCE,
            guest_writable: true,
        }
    }
}
