//! A Linux guest's pci-hyperv bringing up one vPCI device (torvalds/linux
//! `drivers/pci/controller/pci-hyperv.c`; anchors.md §2.3, platform-paths.md G1, G2).

use super::function::{COMMAND_MEMORY, COMMAND_OFFSET, probed_bars};
use super::guest::{BusReport, GuestPci, GuestPciError};
use crate::hdv::VpciDevice;
use crate::vm::{ClaimError, ClaimOwner, ClaimRequest, highest_power_of_two_at_most};

/// `PCI_CONFIG_MMIO_LENGTH`: pci-hyperv's configuration window.
const CONFIG_WINDOW_SIZE: u64 = 0x2000;
/// Its alignment (`hv_allocate_config_window`).
const CONFIG_WINDOW_ALIGN: u64 = 0x1000;
const PAGE_SIZE: u64 = 4096;

/// `get_bar_size`: the BAR size rounded up to whole pages.
fn page_rounded(size: u64) -> u64 {
    size.checked_next_multiple_of(PAGE_SIZE).unwrap_or(u64::MAX)
}

/// `hv_allocate_config_window`, `survey_child_resources`, `hv_pci_allocate_bridge_windows`
/// and `prepopulate_bars` for `device`. Claims are released by the caller on failure.
pub(super) fn bring_up(pci: &GuestPci, device: &VpciDevice) -> Result<BusReport, GuestPciError> {
    let id = device.instance.to_u128();
    // The kdump fix (Dexuan Cui): the configuration window at or above 4 GiB.
    let config_window = pci
        .guest
        .claim(
            ClaimOwner::VpciConfigWindow(id),
            ClaimRequest::high(CONFIG_WINDOW_SIZE, CONFIG_WINDOW_ALIGN),
        )
        .map_err(GuestPciError::ConfigWindow)?;

    // survey_child_resources: 64-bit BARs count as high, 32-bit BARs as low, page-rounded.
    let bars = probed_bars(&device.probed_bars);
    let sum = |high: bool| -> u64 {
        bars.iter()
            .filter(|&&(_, _, is_64bit)| is_64bit == high)
            .fold(0u64, |total, &(_, size, _)| {
                total.saturating_add(page_rounded(size))
            })
    };
    let mut windows = Vec::new();
    let mut bases = [None, None];
    for high in [false, true] {
        let size = sum(high);
        if size == 0 {
            continue;
        }
        let align = highest_power_of_two_at_most(size);
        let request = if high {
            ClaimRequest::high(size, align)
        } else {
            ClaimRequest::low(size, align)
        };
        let window = pci
            .guest
            .claim(ClaimOwner::VpciBridgeWindow { instance: id, high }, request)
            .map_err(|error| match error {
                ClaimError::NoSpace { .. } | ClaimError::Empty | ClaimError::BadAlignment => {
                    GuestPciError::NoMmioSpace { high, size }
                }
            })?;
        windows.push(window);
        bases[usize::from(high)] = Some(window.base);
    }

    // prepopulate_bars: decode off first ("If the memory enable bit is already set, Hyper-V
    // silently ignores the below BAR updates").
    let command = pci.config_read(device.instance, COMMAND_OFFSET)? & 0xFFFF;
    pci.config_write(
        device.instance,
        COMMAND_OFFSET,
        command & !u32::from(COMMAND_MEMORY),
    )?;
    // Largest first, each into its window in turn.
    let mut order = bars.clone();
    order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    for (bar, size, is_64bit) in order {
        let Some(base) = bases[usize::from(is_64bit)] else {
            continue;
        };
        pci.write_bar(device.instance, bar, base)?;
        bases[usize::from(is_64bit)] = base.checked_add(page_rounded(size));
    }
    // Decode is left off: the guest's driver enables the device later.
    let placed = bars
        .iter()
        .filter_map(|&(bar, _, _)| pci.bar(device.instance, bar))
        .collect();
    Ok(BusReport {
        instance: device.instance,
        config_window: Some(config_window),
        windows,
        bars: placed,
        memory_decode: false,
    })
}
