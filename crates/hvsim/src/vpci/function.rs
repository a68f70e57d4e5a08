//! One vPCI function as the platform (the VM worker's vPCI, `vmvpci.dll`) holds it: the BAR
//! registers and the command register, fed by the guest's configuration writes (or a Windows
//! guest's resource message) and by the device's `GetDetails` probed-BAR masks.
//!
//! Facts and their sources:
//! - BAR writes are ignored while memory decode is on: Linux
//!   `drivers/pci/controller/pci-hyperv.c` `prepopulate_bars` ("If the memory enable bit is
//!   already set, Hyper-V silently ignores the below BAR updates"); OpenVMM
//!   `vm/devices/pci/pci_core/src/cfg_space_emu.rs` `write_bar` accepts BAR writes only while
//!   MMIO decode is off (platform-paths.md G2, G4).
//! - A written BAR keeps only its address bits (`value & mask`, the type bits re-applied), so a
//!   BAR is always aligned to its size (OpenVMM `write_bar`; PCI BAR semantics).
//! - BAR register reads are unreliable on Hyper-V: OpenHCL `vpci_client` shadows them ("The
//!   Hyper-V VPCI implementation does not consistently handle BAR reads"), and the Looking
//!   Glass run on 10.0.26100 read all ones (hdv.md §3.3, platform-paths.md G3). **Strict
//!   reading:** every BAR register reads all ones; guest code keeps its own shadow.
//! - A Windows guest's `ASSIGNED_RESOURCES` message is applied like OpenVMM
//!   `vm/devices/pci/vpci/src/device.rs` `set_bars`: zero-length entries skipped, alignment
//!   checked against the BAR mask, **no check of where the address lies** (G3).
//! - Other configuration accesses reach the emulator's `Read/WriteConfigSpace` (hdv.md §3.3,
//!   observed). Whether the platform also forwards command and BAR writes is unknown; **strict
//!   reading:** it does not, so the device host cannot depend on seeing them.

use vmbmmio_devhost::callbacks::PCI_BAR_COUNT;

/// The command/status dword of a type-0 header.
pub const COMMAND_OFFSET: u32 = 0x04;
/// The command register's memory-space enable bit.
pub const COMMAND_MEMORY: u16 = 0x0002;
/// The command bits the platform keeps (memory space, bus master, parity error response,
/// SERR#, INTx disable; PCI Local Bus Specification 3.0 §6.2.2). I/O space is not: the model's
/// devices have no I/O BAR.
const COMMAND_WRITABLE: u16 = 0x0546;
/// BAR0's offset.
pub const BAR0_OFFSET: u32 = 0x10;
/// The status register's "capabilities list" bit (in the dword at 0x04, bit 20).
pub const STATUS_CAPABILITIES: u32 = 1 << 20;
/// Configuration space size of a function (PCI Express extended space included).
pub const CONFIG_SPACE_SIZE: u32 = 0x1000;

/// Where a configuration dword access goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// The command/status dword: command from the platform, status from the emulator.
    CommandStatus,
    /// BAR register `index` (0..=5): the platform.
    Bar(u8),
    /// Anything else: the emulator's `Read/WriteConfigSpace`.
    Emulator,
}

/// Routes a dword access at `offset` (dword aligned, inside configuration space).
pub fn route(offset: u32) -> Route {
    match offset {
        COMMAND_OFFSET => Route::CommandStatus,
        o if (BAR0_OFFSET..BAR0_OFFSET + 4 * PCI_BAR_COUNT as u32).contains(&o) => {
            // The range check bounds the index to 0..=5.
            Route::Bar(((o - BAR0_OFFSET) / 4) as u8)
        }
        _ => Route::Emulator,
    }
}

/// One implemented memory BAR as the platform decodes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlatformBar {
    /// The BAR's (low) index.
    pub bar: u8,
    /// Base address the registers hold (0: never placed; the model decodes no BAR at 0).
    pub base: u64,
    /// Size from the probed mask.
    pub size: u64,
    /// A 64-bit BAR (it also occupies the next index).
    pub is_64bit: bool,
}

/// The size and width of the memory BAR whose low dword is at `index`, read as if `index`
/// started a BAR (callers walk the indices in order so upper halves are skipped).
fn parse_bar(probed: &[u32; PCI_BAR_COUNT], index: usize) -> Option<(u64, bool)> {
    let low = *probed.get(index)?;
    if low == 0 || low & 1 != 0 {
        return None;
    }
    let is_64bit = (low >> 1) & 0b11 == 0b10;
    let high = if is_64bit {
        u64::from(*probed.get(index + 1)?)
    } else {
        u64::from(u32::MAX)
    };
    let mask = (high << 32) | u64::from(low & !0xF);
    Some(((!mask).wrapping_add(1), is_64bit))
}

/// The implemented memory BARs from `GetDetails`' probed values (hdv.md §3.7): `(index, size,
/// is_64bit)`, walking the indices in order so that the upper half of a 64-bit BAR (which
/// holds mask bits, not type bits) is never read as a BAR of its own.
pub fn probed_bars(probed: &[u32; PCI_BAR_COUNT]) -> Vec<(u8, u64, bool)> {
    let mut bars = Vec::new();
    let mut index = 0usize;
    while index < PCI_BAR_COUNT {
        match parse_bar(probed, index) {
            Some((size, is_64bit)) => {
                // index < PCI_BAR_COUNT = 6.
                bars.push((index as u8, size, is_64bit));
                index += if is_64bit { 2 } else { 1 };
            }
            None => index += 1,
        }
    }
    bars
}

/// The size and width of the memory BAR at `index`; `None` for an unused, I/O, or upper-half
/// index.
pub fn probed_bar(probed: &[u32; PCI_BAR_COUNT], index: u8) -> Option<(u64, bool)> {
    probed_bars(probed)
        .into_iter()
        .find(|&(bar, _, _)| bar == index)
        .map(|(_, size, is_64bit)| (size, is_64bit))
}

/// What a BAR register write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarWrite {
    /// Stored (masked).
    Applied,
    /// Dropped: memory decode is on (pci-hyperv `prepopulate_bars`, OpenVMM `write_bar`).
    IgnoredDecodeOn,
    /// Dropped: no BAR is implemented at that index.
    NotImplemented,
}

/// Why the platform refused a resource assignment (OpenVMM `set_bars`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssignError {
    /// No memory BAR at that index.
    NoSuchBar {
        /// The index.
        bar: u8,
    },
    /// The address is not aligned to the BAR's size (its mask).
    Misaligned {
        /// The index.
        bar: u8,
        /// The BAR's size.
        size: u64,
    },
    /// Memory decode is on: BAR updates would be ignored.
    DecodeOn,
}

/// The platform's configuration state of one function.
#[derive(Clone, Debug)]
pub struct VpciFunction {
    probed: [u32; PCI_BAR_COUNT],
    /// The address bits of each BAR register (type bits not stored).
    registers: [u32; PCI_BAR_COUNT],
    command: u16,
}

impl VpciFunction {
    /// A function whose `GetDetails` reported `probed`; BARs unplaced, decode off (reset).
    pub fn new(probed: [u32; PCI_BAR_COUNT]) -> Self {
        Self {
            probed,
            registers: [0; PCI_BAR_COUNT],
            command: 0,
        }
    }

    /// `GetDetails`' probed-BAR values.
    pub fn probed(&self) -> [u32; PCI_BAR_COUNT] {
        self.probed
    }

    /// The command register.
    pub fn command(&self) -> u16 {
        self.command
    }

    /// Whether memory decode is on.
    pub fn memory_decode(&self) -> bool {
        self.command & COMMAND_MEMORY != 0
    }

    /// Writes the command register; returns `(was decoding, decodes now)`.
    pub fn write_command(&mut self, value: u16) -> (bool, bool) {
        let before = self.memory_decode();
        self.command = value & COMMAND_WRITABLE;
        (before, self.memory_decode())
    }

    /// The mask of register `index`: the address bits a write keeps; `None` if that index
    /// holds no memory BAR or upper half of one.
    fn register_mask(&self, index: u8) -> Option<u32> {
        let i = usize::from(index);
        probed_bars(&self.probed)
            .into_iter()
            .find_map(|(bar, _, is_64bit)| {
                if bar == index {
                    self.probed.get(i).map(|low| low & !0xF)
                } else if is_64bit && bar.checked_add(1) == Some(index) {
                    self.probed.get(i).copied()
                } else {
                    None
                }
            })
    }

    /// A guest's configuration write to BAR register `index`.
    pub fn write_bar(&mut self, index: u8, value: u32) -> BarWrite {
        let Some(mask) = self.register_mask(index) else {
            return BarWrite::NotImplemented;
        };
        if self.memory_decode() {
            return BarWrite::IgnoredDecodeOn;
        }
        if let Some(register) = self.registers.get_mut(usize::from(index)) {
            *register = value & mask;
        }
        BarWrite::Applied
    }

    /// A Windows guest's assignment (`ASSIGNED_RESOURCES`), applied like OpenVMM `set_bars`:
    /// alignment against the mask, no range check. All or nothing.
    pub fn assign(&mut self, bars: &[(u8, u64)]) -> Result<(), AssignError> {
        if self.memory_decode() {
            return Err(AssignError::DecodeOn);
        }
        for &(bar, base) in bars {
            let (size, _) = probed_bar(&self.probed, bar).ok_or(AssignError::NoSuchBar { bar })?;
            if size == 0 || !base.is_multiple_of(size) {
                return Err(AssignError::Misaligned { bar, size });
            }
        }
        for &(bar, base) in bars {
            // Both halves go through the masked write; decode is off, so both apply.
            self.write_bar(bar, base as u32);
            if probed_bar(&self.probed, bar).is_some_and(|(_, wide)| wide) {
                self.write_bar(bar + 1, (base >> 32) as u32);
            }
        }
        Ok(())
    }

    /// The implemented memory BARs with the bases the registers hold.
    pub fn bars(&self) -> Vec<PlatformBar> {
        probed_bars(&self.probed)
            .into_iter()
            .map(|(bar, size, is_64bit)| {
                let index = usize::from(bar);
                let low = u64::from(self.registers.get(index).copied().unwrap_or(0));
                let high = if is_64bit {
                    u64::from(self.registers.get(index + 1).copied().unwrap_or(0))
                } else {
                    0
                };
                PlatformBar {
                    bar,
                    base: (high << 32) | low,
                    size,
                    is_64bit,
                }
            })
            .collect()
    }

    /// The BAR that decodes `gpa` and the offset in it: memory decode on, the BAR placed
    /// (base not 0), `gpa` inside it.
    pub fn decode(&self, gpa: u64) -> Option<(PlatformBar, u64)> {
        if !self.memory_decode() {
            return None;
        }
        self.bars()
            .into_iter()
            .filter(|bar| bar.base != 0)
            .find_map(|bar| {
                let offset = gpa.checked_sub(bar.base)?;
                (offset < bar.size).then_some((bar, offset))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 16 KiB 64-bit prefetchable BAR at index 2 (what the device host reports).
    const PROBED: [u32; PCI_BAR_COUNT] = [0, 0, 0xFFFF_C00C, 0xFFFF_FFFF, 0, 0];

    #[test]
    fn routes_bars_and_command_to_the_platform() {
        assert_eq!(route(0x04), Route::CommandStatus);
        assert_eq!(route(0x10), Route::Bar(0));
        assert_eq!(route(0x24), Route::Bar(5));
        assert_eq!(route(0x00), Route::Emulator);
        assert_eq!(route(0x28), Route::Emulator);
        assert_eq!(route(0x34), Route::Emulator);
    }

    #[test]
    fn bar_writes_apply_masked_only_while_decode_is_off() {
        let mut f = VpciFunction::new(PROBED);
        assert_eq!(f.write_bar(2, 0xF000_1234), BarWrite::Applied);
        assert_eq!(f.write_bar(3, 0x1), BarWrite::Applied);
        assert_eq!(
            f.bars()[0].base,
            0x1_F000_0000,
            "masked to the 16 KiB alignment"
        );
        assert_eq!(f.write_bar(0, 0x1000), BarWrite::NotImplemented);
        f.write_command(COMMAND_MEMORY);
        assert_eq!(f.write_bar(2, 0xE000_0000), BarWrite::IgnoredDecodeOn);
        assert_eq!(f.bars()[0].base, 0x1_F000_0000);
        assert_eq!(f.decode(0x1_F000_0010).map(|(_, o)| o), Some(0x10));
        assert_eq!(f.decode(0x1_F000_4000), None);
        f.write_command(0);
        assert_eq!(f.decode(0x1_F000_0010), None, "decode off");
    }

    #[test]
    fn assignment_checks_alignment_not_range() {
        let mut f = VpciFunction::new(PROBED);
        assert_eq!(
            f.assign(&[(2, 0x1000)]),
            Err(AssignError::Misaligned {
                bar: 2,
                size: 0x4000
            })
        );
        assert_eq!(
            f.assign(&[(0, 0x4000)]),
            Err(AssignError::NoSuchBar { bar: 0 })
        );
        f.assign(&[(2, 0x7_0000_4000)]).unwrap();
        assert_eq!(f.bars()[0].base, 0x7_0000_4000);
        f.write_command(COMMAND_MEMORY);
        assert_eq!(f.assign(&[(2, 0x8000)]), Err(AssignError::DecodeOn));
    }

    #[test]
    fn probed_bars_parse_widths_and_skip_upper_halves() {
        let probed = [0xFFFF_F000, 0, 0xFFFF_C00C, 0xFFFF_FFFF, 0x1, 0];
        assert_eq!(
            probed_bars(&probed),
            [(0, 0x1000, false), (2, 0x4000, true)]
        );
        // A 32 GiB BAR: the upper half holds mask bits that look like a 32-bit BAR.
        let huge = [0, 0, 0xC, 0xFFFF_FFF8, 0, 0];
        assert_eq!(probed_bars(&huge), [(2, 32 << 30, true)]);
        assert_eq!(probed_bar(&huge, 3), None);
        let mut f = VpciFunction::new(huge);
        assert_eq!(f.write_bar(2, 0), BarWrite::Applied);
        assert_eq!(f.write_bar(3, 0x18), BarWrite::Applied);
        assert_eq!(f.bars()[0].base, 0x18_0000_0000);
    }
}
