//! Configuration space of the emulated PCI device: a 256-byte type-0 header with one 64-bit
//! prefetchable memory BAR and one capability, the vmbmmio pairing capability.
//!
//! HDV hands the emulator every dword access to configuration space (`ReadConfigSpace` /
//! `WriteConfigSpace`, hdv.md §3.7) and asks it, through `GetDetails`, what each BAR reads back
//! after the guest writes all ones. Both must agree, so the BAR masks are computed in one place
//! ([`bar_probe_values`]). Layout follows hdv.md §6.4 (the emulator of the one public end-to-end
//! test): identity dwords, command register with a fixed set of writable bits, status 0, a
//! BAR whose writes are masked by the size mask with the type bits re-applied, the interrupt
//! line byte kept, everything else reads 0, and reads past 256 bytes return 0.
//!
//! Two additions for pairing and placement:
//! - Once the channel's identity is known ([`ConfigSpace::set_pairing`]), the status register
//!   sets "capabilities list", the capabilities pointer (0x34) holds [`PAIRING_CAP_OFFSET`], and
//!   the vendor-specific pairing capability (`vmbmmio_proto::pci_cap`) sits there, read-only.
//!   Microsoft's GPU-PV vPCI functions carry their channel's instance GUID in configuration space
//!   the same way (microsoft/WSL2-Linux-Kernel `drivers/hv/dxgkrnl/dxgmodule.c`,
//!   `DXGK_VMBUS_CHANNEL_ID_OFFSET` = 192).
//! - BAR writes are ignored while memory decode is on, as Hyper-V's vPCI does (torvalds/linux
//!   `drivers/pci/controller/pci-hyperv.c` `prepopulate_bars`: "If the memory enable bit is
//!   already set, Hyper-V silently ignores the below BAR updates") and as OpenVMM's PCI
//!   configuration-space emulator does (microsoft/openvmm
//!   `vm/devices/pci/pci_core/src/cfg_space_emu.rs` `write_bar`). So the BAR the guest sees
//!   cannot move under a live mapping.

use vmbmmio_proto::pci_cap::{
    PAIRING_CAP_DWORDS, PCI_CAPABILITY_LIST, PCI_STATUS_CAP_LIST, Pairing, PairingCapability,
};

use crate::callbacks::{PCI_BAR_COUNT, PciPnpId};
use crate::layout::PAGE_SIZE;
use crate::placement::BarPlacement;

/// Size of the configuration header the device implements.
pub const CONFIG_SPACE_SIZE: u32 = 256;
/// Command register: memory space decode enable.
pub const COMMAND_MEMORY_SPACE: u16 = 0x0002;
/// Command register: bus master enable.
pub const COMMAND_BUS_MASTER: u16 = 0x0004;
/// Command register bits the guest may change: memory space, bus master, parity error
/// response, SERR#, interrupt disable. I/O space (bit 0) is hard-wired to 0: the device has no
/// I/O BAR.
pub const COMMAND_WRITABLE: u16 = 0x0546;
/// Low nibble of the BAR: memory, 64-bit (bits 2:1 = 10b), prefetchable (bit 3).
pub const BAR_TYPE_64_PREFETCHABLE: u32 = 0xC;

const OFFSET_ID: u32 = 0x00;
const OFFSET_COMMAND_STATUS: u32 = 0x04;
const OFFSET_CLASS_REVISION: u32 = 0x08;
const OFFSET_BAR0: u32 = 0x10;
const OFFSET_SUBSYSTEM: u32 = 0x2C;
const OFFSET_INTERRUPT: u32 = 0x3C;
/// Where the pairing capability starts: the first dword after the standard header (PCI
/// capabilities live in 0x40..0x100).
pub const PAIRING_CAP_OFFSET: u32 = 0x40;
/// One past the pairing capability's last byte.
pub const PAIRING_CAP_END: u32 = PAIRING_CAP_OFFSET + 4 * PAIRING_CAP_DWORDS as u32;

/// The values a 64-bit prefetchable BAR of `size` bytes reads back after all ones were written
/// to it: `(low dword, high dword)`. hdv.md §3.7 / §6.4: low = low 32 bits of `!(size - 1)`
/// with the type bits, high = high 32 bits of the mask.
///
/// `size` must be a power of two of at least 4 KiB (callers check; a violating size is rounded
/// up to the next such power of two so the result is still a valid BAR).
pub const fn bar_probe_values(size: u64) -> (u32, u32) {
    let mask = bar_address_mask(size);
    (
        ((mask as u32) & !0xF) | BAR_TYPE_64_PREFETCHABLE,
        (mask >> 32) as u32,
    )
}

/// The address bits a BAR of `size` bytes decodes: `!(size - 1)`.
pub const fn bar_address_mask(size: u64) -> u64 {
    let size = if size < PAGE_SIZE { PAGE_SIZE } else { size };
    match size.checked_next_power_of_two() {
        Some(size) => !(size - 1),
        // Larger than 2^63: the BAR decodes only its top bit.
        None => 1 << 63,
    }
}

/// The BAR size a guest computes from the two dwords it read back after writing all ones:
/// `!(mask & !0xF) + 1` over 64 bits; `None` for a BAR that is not implemented (reads 0).
pub const fn bar_size_from_probe(low: u32, high: u32) -> Option<u64> {
    let mask = ((high as u64) << 32) | ((low & !0xF) as u64);
    if mask == 0 {
        None
    } else {
        Some((!mask).wrapping_add(1))
    }
}

/// The emulated configuration space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigSpace {
    id: PciPnpId,
    bar_index: u8,
    bar_size: Option<u64>,
    command: u16,
    interrupt_line: u8,
    bar_low: u32,
    bar_high: u32,
    pairing: Option<[u32; PAIRING_CAP_DWORDS]>,
}

impl ConfigSpace {
    /// A device with identity `id` whose BAR occupies indices `bar_index` and `bar_index + 1`
    /// (`bar_index` even and at most 4; the configuration checks it). The BAR is unimplemented
    /// until [`ConfigSpace::set_bar_size`].
    pub fn new(id: PciPnpId, bar_index: u8) -> Self {
        Self {
            id,
            bar_index,
            bar_size: None,
            command: 0,
            interrupt_line: 0,
            bar_low: 0,
            bar_high: 0,
            pairing: None,
        }
    }

    /// Exposes the pairing capability carrying `pairing` (the last and only capability).
    pub fn set_pairing(&mut self, pairing: &Pairing) {
        self.pairing = Some(PairingCapability::new(pairing, 0).to_dwords());
    }

    /// The placement this configuration space shows: the BAR's base and size and the decode
    /// bit; `None` while the BAR is unsized.
    pub fn bar_placement(&self) -> Option<BarPlacement> {
        self.bar_size.map(|size| BarPlacement {
            base: self.bar_base(),
            size,
            memory_decode: self.memory_decode(),
        })
    }

    /// Sizes the BAR (a power of two of at least 4 KiB, from the driver's layout).
    pub fn set_bar_size(&mut self, size: u64) {
        self.bar_size = Some(size);
        self.bar_low &= self.low_mask();
        self.bar_high &= self.high_mask();
    }

    /// The identity the device reports.
    pub fn pnp_id(&self) -> PciPnpId {
        self.id
    }

    /// Index of the BAR's low dword.
    pub fn bar_index(&self) -> u8 {
        self.bar_index
    }

    /// The BAR's size, once known.
    pub fn bar_size(&self) -> Option<u64> {
        self.bar_size
    }

    /// Whether the guest enabled memory decoding in the command register.
    pub fn memory_decode(&self) -> bool {
        self.command & COMMAND_MEMORY_SPACE != 0
    }

    /// The base address the guest programmed into the BAR (whatever the decode bit says).
    pub fn bar_base(&self) -> u64 {
        (u64::from(self.bar_high) << 32) | u64::from(self.bar_low)
    }

    /// `GetDetails`' probed-BAR values (hdv.md §3.7, §6.4): the low dword with type bits at
    /// the BAR's index, the high 32 bits of the mask at the next index, 0 everywhere else.
    pub fn probed_bars(&self) -> [u32; PCI_BAR_COUNT] {
        let mut bars = [0; PCI_BAR_COUNT];
        if let Some(size) = self.bar_size {
            let (low, high) = bar_probe_values(size);
            let index = usize::from(self.bar_index);
            if let Some(slot) = bars.get_mut(index) {
                *slot = low;
            }
            if let Some(slot) = bars.get_mut(index + 1) {
                *slot = high;
            }
        }
        bars
    }

    fn low_mask(&self) -> u32 {
        match self.bar_size {
            Some(size) => bar_probe_values(size).0 & !0xF,
            None => 0,
        }
    }

    fn high_mask(&self) -> u32 {
        match self.bar_size {
            Some(size) => bar_probe_values(size).1,
            None => 0,
        }
    }

    fn bar_offsets(&self) -> (u32, u32) {
        let low = OFFSET_BAR0 + 4 * u32::from(self.bar_index);
        (low, low + 4)
    }

    /// The dword at byte `offset` (rounded down to a dword boundary; HDV passes dword
    /// accesses, hdv.md §3.7). Reads past the 256-byte header return 0.
    pub fn read(&self, offset: u32) -> u32 {
        let offset = offset & !3;
        let (bar_low, bar_high) = self.bar_offsets();
        let id = self.id;
        match offset {
            OFFSET_ID => u32::from(id.vendor_id) | (u32::from(id.device_id) << 16),
            // Status: "capabilities list" once the pairing capability exists; no error bit is
            // ever set.
            OFFSET_COMMAND_STATUS => {
                let status = if self.pairing.is_some() {
                    PCI_STATUS_CAP_LIST
                } else {
                    0
                };
                u32::from(self.command) | (u32::from(status) << 16)
            }
            _ if offset == u32::from(PCI_CAPABILITY_LIST) && self.pairing.is_some() => {
                PAIRING_CAP_OFFSET
            }
            PAIRING_CAP_OFFSET..PAIRING_CAP_END => self
                .pairing
                .and_then(|dwords| {
                    let index = (offset - PAIRING_CAP_OFFSET) / 4;
                    dwords.get(usize::try_from(index).ok()?).copied()
                })
                .unwrap_or(0),
            OFFSET_CLASS_REVISION => {
                u32::from_le_bytes([id.revision_id, id.prog_if, id.sub_class, id.base_class])
            }
            OFFSET_SUBSYSTEM => {
                u32::from(id.subsystem_vendor_id) | (u32::from(id.subsystem_id) << 16)
            }
            // Interrupt pin 0: the device raises no INTx.
            OFFSET_INTERRUPT => u32::from(self.interrupt_line),
            _ if offset == bar_low && self.bar_size.is_some() => {
                self.bar_low | BAR_TYPE_64_PREFETCHABLE
            }
            _ if offset == bar_high && self.bar_size.is_some() => self.bar_high,
            // Cache line, latency, header type 0 (single function), BIST, other BARs, CardBus
            // CIS, expansion ROM, the rest of device-specific space, past the header.
            _ => 0,
        }
    }

    /// Writes the dword at byte `offset` (rounded down to a dword boundary). Only the command
    /// register, the BAR (while memory decode is off) and the interrupt line are writable;
    /// everything else, the pairing capability included, ignores writes. Returns whether the
    /// write touched the command register or the BAR (the placement may have changed).
    pub fn write(&mut self, offset: u32, value: u32) -> bool {
        let offset = offset & !3;
        let (bar_low, bar_high) = self.bar_offsets();
        let decoding = self.memory_decode();
        match offset {
            // The status half is write-one-to-clear and has no bits set.
            OFFSET_COMMAND_STATUS => {
                self.command = (value as u16) & COMMAND_WRITABLE;
                true
            }
            OFFSET_INTERRUPT => {
                self.interrupt_line = value as u8;
                false
            }
            // Ignored while decode is on (module docs).
            _ if offset == bar_low => {
                if !decoding {
                    self.bar_low = value & self.low_mask();
                }
                true
            }
            _ if offset == bar_high => {
                if !decoding {
                    self.bar_high = value & self.high_mask();
                }
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> PciPnpId {
        PciPnpId {
            vendor_id: 0x1af4,
            device_id: 0x1110,
            revision_id: 1,
            prog_if: 0,
            sub_class: 0,
            base_class: 5,
            subsystem_vendor_id: 0x1af4,
            subsystem_id: 0x1100,
        }
    }

    #[test]
    fn header_matches_the_reference_emulator() {
        // hdv.md §6.4: dword0 = 0x1110_1af4, dword2 = 0x0500_0001, 0x2C = 0x1100_1af4.
        let mut space = ConfigSpace::new(id(), 2);
        space.set_bar_size(32 << 20);
        assert_eq!(space.read(0x00), 0x1110_1af4);
        assert_eq!(space.read(0x08), 0x0500_0001);
        assert_eq!(space.read(0x2C), 0x1100_1af4);
        assert_eq!(space.read(0x18), 0xC);
        assert_eq!(space.read(0x1C), 0);
        assert_eq!(space.read(0x10), 0, "unused BAR0");
        assert_eq!(space.read(0x0C), 0, "header type 0");
        assert_eq!(space.read(0x100), 0, "past the header");
        assert_eq!(space.read(u32::MAX), 0);
        // BAR2 = low32(~(size-1)) & ~0xF | 0xC, BAR3 = high32(~(size-1)).
        assert_eq!(space.probed_bars(), [0, 0, 0xFE00_000C, 0xFFFF_FFFF, 0, 0]);
    }

    #[test]
    fn bar_sizing_and_programming_work_like_a_guest_expects() {
        let mut space = ConfigSpace::new(id(), 4);
        space.set_bar_size(8 << 30);
        space.write(0x20, u32::MAX);
        space.write(0x24, u32::MAX);
        let (low, high) = (space.read(0x20), space.read(0x24));
        assert_eq!((low, high), (0xC, 0xFFFF_FFFE));
        assert_eq!(space.probed_bars()[4..], [low, high]);
        assert_eq!(bar_size_from_probe(low, high), Some(8 << 30));
        space.write(0x20, 0x1234_5678);
        space.write(0x24, 0x0000_0003);
        assert_eq!(space.bar_base(), 0x2_0000_0000);
        assert!(!space.memory_decode());
        space.write(0x04, 0xFFFF_FFFF);
        assert_eq!(space.read(0x04), u32::from(COMMAND_WRITABLE));
        assert!(space.memory_decode());
        space.write(0x04, u32::from(COMMAND_BUS_MASTER));
        assert!(!space.memory_decode());
        space.write(0x3C, 0xFFFF_FF0B);
        assert_eq!(space.read(0x3C), 0x0B);
        space.write(0x00, 0);
        space.write(0x10, u32::MAX);
        assert_eq!(space.read(0x00), 0x1110_1af4, "identity is read-only");
        assert_eq!(space.read(0x10), 0, "unused BAR stays 0");
    }

    #[test]
    fn an_unsized_bar_is_unimplemented() {
        let mut space = ConfigSpace::new(id(), 0);
        space.write(0x10, u32::MAX);
        assert_eq!(space.read(0x10), 0);
        assert_eq!(space.probed_bars(), [0; 6]);
        assert_eq!(bar_size_from_probe(0, 0), None);
    }
}
