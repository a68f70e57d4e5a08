//! The guest's side of the demo: what a guest driver does to find the shared memory.
//!
//! A real guest sees two unrelated devices: the VMBus channel (an offer with an interface type
//! and instance GUID) and a vPCI function. It pairs them the way Microsoft's GPU-PV guest driver
//! pairs its vPCI functions with their channels: by reading the channel's instance GUID from the
//! function's configuration space (here, vmbmmio's vendor-specific pairing capability,
//! `vmbmmio_proto::pci_cap`). It then turns memory decode on and learns where its own vPCI bus
//! driver put the BAR, from its own shadow (BAR register reads are unreliable on Hyper-V).

use vmbmmio_devhost::guid::Guid;
use vmbmmio_proto::pci_cap::{FoundPairing, find_pairing};

use super::DemoError;
use crate::kmcl::Offer;
use crate::vpci::{GuestBar, GuestPci};

/// The PCI function a guest paired with its channel.
#[derive(Clone, Copy, Debug)]
pub struct PairedFunction {
    /// The vPCI device instance (what a Linux guest names the PCI domain after).
    pub instance: Guid,
    /// Vendor and device ID.
    pub ids: (u16, u16),
    /// The pairing capability and where it sits.
    pub found: FoundPairing,
}

/// Enumerates the guest's PCI functions and returns the one whose pairing capability names
/// `offer`'s interface instance. Functions without a capability list or with another vendor's
/// capabilities are skipped; a malformed vmbmmio capability is an error (a guest that pairs
/// wrongly talks to the wrong channel).
pub fn find_paired_function(pci: &GuestPci, offer: &Offer) -> Result<PairedFunction, DemoError> {
    let functions = pci
        .functions()
        .map_err(|error| DemoError(format!("enumerating PCI functions: {error}")))?;
    let wanted = offer.interface_instance.to_u128();
    for function in functions {
        let read = |offset: u16| {
            // A failed read is what a read of an absent function returns: all ones.
            pci.config_read(function.instance, u32::from(offset))
                .unwrap_or(u32::MAX)
        };
        let found = find_pairing(read).map_err(|error| {
            DemoError(format!(
                "PCI function {} carries a malformed pairing capability: {error:?}",
                function.instance
            ))
        })?;
        if let Some(found) = found
            && found.pairing.interface_instance.to_u128() == wanted
        {
            return Ok(PairedFunction {
                instance: function.instance,
                ids: (function.vendor_id, function.device_id),
                found,
            });
        }
    }
    Err(DemoError(format!(
        "no PCI function carries a pairing capability for channel instance {}",
        Guid::from_u128(wanted)
    )))
}

/// Turns memory decode on (a Linux driver's `pci_enable_device`, or sysfs `enable`; a Windows
/// guest's vPCI bus already did) and returns BAR `bar` as the guest placed it.
pub fn enable_and_locate(pci: &GuestPci, instance: Guid, bar: u8) -> Result<GuestBar, DemoError> {
    pci.set_memory_decode(instance, true)
        .map_err(|error| DemoError(format!("enabling memory decode: {error}")))?;
    pci.bar(instance, bar)
        .filter(|placed| placed.base != 0)
        .ok_or_else(|| DemoError(format!("the guest has no placed BAR{bar}")))
}
