//! A Windows guest's vpci.sys and PnP arbiter bringing up one vPCI device (platform-paths.md
//! G3, G6; anchors.md §2.5).
//!
//! How the arbiter places a BAR is not documented; the model claims each BAR separately from
//! the guest's pool, aligned to its size (natural PCI alignment), a 32-bit BAR below 4 GiB and
//! a 64-bit BAR anywhere, page-rounded (mappings are whole pages, hdv.md §3.3). The BARs go to
//! the host in `ASSIGNED_RESOURCES` (OpenVMM `vm/devices/pci/vpci/src/device.rs` applies them
//! with `set_bars`), then the device starts with memory decode on.

use super::function::probed_bars;
use super::guest::{BusReport, GuestPci, GuestPciError};
use crate::hdv::VpciDevice;
use crate::vm::{ClaimOwner, ClaimRequest};

const PAGE_SIZE: u64 = 4096;

/// One PnP assignment per BAR, the resource message, then decode on.
pub(super) fn bring_up(pci: &GuestPci, device: &VpciDevice) -> Result<BusReport, GuestPciError> {
    let id = device.instance.to_u128();
    let mut assigned = Vec::new();
    let mut windows = Vec::new();
    for (bar, size, is_64bit) in probed_bars(&device.probed_bars) {
        let size = size.checked_next_multiple_of(PAGE_SIZE).unwrap_or(u64::MAX);
        let request = if is_64bit {
            ClaimRequest::anywhere(size, size)
        } else {
            ClaimRequest::low(size, size)
        };
        let range = pci
            .guest
            .claim(ClaimOwner::VpciBar { instance: id, bar }, request)
            .map_err(|_| GuestPciError::NoMmioSpace {
                high: is_64bit,
                size,
            })?;
        windows.push(range);
        assigned.push((bar, range.base, is_64bit));
    }
    let message: Vec<(u8, u64)> = assigned.iter().map(|&(bar, base, _)| (bar, base)).collect();
    pci.hdv
        .vpci_assign_resources(pci.vm, device.instance, &message)?;
    for &(bar, base, is_64bit) in &assigned {
        pci.shadow_bar(device.instance, bar, base, is_64bit);
    }
    pci.set_memory_decode(device.instance, true)?;
    let bars = assigned
        .iter()
        .filter_map(|&(bar, _, _)| pci.bar(device.instance, bar))
        .collect();
    Ok(BusReport {
        instance: device.instance,
        config_window: None,
        windows,
        bars,
        memory_decode: true,
    })
}
