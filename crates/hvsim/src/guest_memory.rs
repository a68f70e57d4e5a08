//! The guest's physical address space around the emulated device: its PCI configuration
//! space and the MMIO of its BARs.
//!
//! A guest reaches the device two ways (hdv.md §3.3, §3.7):
//! - configuration space: dword accesses that reach the emulator's `Read/WriteConfigSpace`
//!   (observed to reach it, §3.3). The guest sizes and places a BAR there the way a PCI driver
//!   does ([`GuestPhysicalMemory::assign_bar`]: write all ones, read the mask back, write the
//!   base, enable memory decode). The observed VPCI host handled the BAR registers itself
//!   (§3.3) using GetDetails' masks (§3.7); the model routes them to the emulator, whose masks
//!   must equal the ones it reported, so a guest sees the same values either way.
//! - MMIO at a guest physical address inside a BAR: a page covered by a section-backed range
//!   reaches the section's bytes (§3.3 semantics); any other page reaches the emulator's
//!   `Read/WriteInterceptedMemory` in naturally aligned pieces of 1, 2, 4 or 8 bytes (§3.7),
//!   as a guest's copy loop would issue them.
//!
//! Refused (reads all ones, writes dropped, counted): addresses in no BAR, BARs whose device
//! has memory decode off or base 0 (model: an unassigned BAR), accesses while the VM does not
//! run, and writes to a read-only mapping. All ones is what a read nobody claims returns;
//! observed on 10.0.26100 for BAR reads the host did not forward (§3.3).

use std::sync::{Mutex, PoisonError};

use vmbmmio_devhost::guid::Guid;

use crate::hdv::{GuestDevice, HdvSim, VmState};

const PAGE_SIZE: u64 = 4096;
/// Command register offset and its memory-space enable bit (PCI type-0 header).
const COMMAND: u32 = 0x04;
const COMMAND_MEMORY: u32 = 0x2;
const BAR0: u32 = 0x10;

/// What one guest access did, byte by byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccessReport {
    /// Bytes that reached a section through a section-backed range.
    pub section_bytes: u64,
    /// Intercepted accesses (calls of the emulator's callbacks).
    pub intercepted_calls: u64,
    /// Bytes that reached the emulator.
    pub intercepted_bytes: u64,
    /// Intercepted accesses the emulator failed (reads then return all ones).
    pub intercept_errors: u64,
    /// Bytes refused (no BAR, decode off, VM not running, read-only mapping).
    pub refused_bytes: u64,
}

impl AccessReport {
    fn add(&mut self, other: Self) {
        self.section_bytes += other.section_bytes;
        self.intercepted_calls += other.intercepted_calls;
        self.intercepted_bytes += other.intercepted_bytes;
        self.intercept_errors += other.intercept_errors;
        self.refused_bytes += other.refused_bytes;
    }
}

/// Why a guest-side BAR assignment failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestPciError {
    /// The guest sees no such device.
    NoDevice,
    /// The BAR reads back 0 after all ones (not implemented) or is an I/O BAR.
    NoMemoryBar,
    /// The base is not aligned to the BAR's size.
    Misaligned {
        /// The BAR's size.
        size: u64,
    },
}

/// Where the guest placed a BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarAssignment {
    /// Guest physical base address.
    pub base: u64,
    /// Size in bytes (from the read-back mask).
    pub size: u64,
    /// Whether it is a 64-bit BAR (it then also occupies the next index).
    pub is_64bit: bool,
}

/// One VM's guest physical address space, as far as emulated devices go.
pub struct GuestPhysicalMemory {
    hdv: HdvSim,
    vm: Guid,
    totals: Mutex<AccessReport>,
}

/// A decoded BAR of a device.
struct Decoded {
    device: GuestDevice,
    bar: u8,
    offset: u64,
    size: u64,
}

impl GuestPhysicalMemory {
    /// The address space of VM `vm`.
    pub fn new(hdv: &HdvSim, vm: Guid) -> Self {
        Self {
            hdv: hdv.clone(),
            vm,
            totals: Mutex::default(),
        }
    }

    /// Every access so far, summed.
    pub fn totals(&self) -> AccessReport {
        *self.totals.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, report: AccessReport) -> AccessReport {
        self.totals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add(report);
        report
    }

    fn device(&self, instance: Guid) -> Option<GuestDevice> {
        self.hdv
            .guest_devices(self.vm)
            .into_iter()
            .find(|device| device.instance_id == instance)
    }

    /// A configuration-space dword read of device `instance`; all ones if the guest sees no
    /// such device or the emulator fails the read (what a read of an absent function returns).
    pub fn config_read(&self, instance: Guid, offset: u32) -> u32 {
        self.device(instance)
            .and_then(|device| device.callbacks.read_config_space(offset).ok())
            .unwrap_or(u32::MAX)
    }

    /// A configuration-space dword write of device `instance` (dropped if there is none).
    pub fn config_write(&self, instance: Guid, offset: u32, value: u32) {
        if let Some(device) = self.device(instance) {
            // A failed configuration write has no effect the guest can see.
            let _ = device.callbacks.write_config_space(offset, value);
        }
    }

    /// Sizes BAR `bar` of device `instance`: memory decode off, all ones written, the mask read
    /// back (and the original value restored), as a PCI driver does.
    pub fn probe_bar(&self, instance: Guid, bar: u8) -> Result<(u64, bool), GuestPciError> {
        self.device(instance).ok_or(GuestPciError::NoDevice)?;
        let low_offset = BAR0 + 4 * u32::from(bar);
        let command = self.config_read(instance, COMMAND) & 0xFFFF;
        self.config_write(instance, COMMAND, command & !COMMAND_MEMORY);
        let original_low = self.config_read(instance, low_offset);
        self.config_write(instance, low_offset, u32::MAX);
        let low = self.config_read(instance, low_offset);
        self.config_write(instance, low_offset, original_low);
        if low == 0 || low & 1 != 0 {
            self.config_write(instance, COMMAND, command);
            return Err(GuestPciError::NoMemoryBar);
        }
        let is_64bit = (low >> 1) & 0b11 == 0b10;
        let high = if is_64bit && bar < 5 {
            let high_offset = low_offset + 4;
            let original_high = self.config_read(instance, high_offset);
            self.config_write(instance, high_offset, u32::MAX);
            let high = self.config_read(instance, high_offset);
            self.config_write(instance, high_offset, original_high);
            u64::from(high)
        } else {
            u64::from(u32::MAX)
        };
        self.config_write(instance, COMMAND, command);
        let mask = (high << 32) | u64::from(low & !0xF);
        Ok(((!mask).wrapping_add(1), is_64bit))
    }

    /// Places BAR `bar` of device `instance` at `base` and enables memory decode.
    pub fn assign_bar(
        &self,
        instance: Guid,
        bar: u8,
        base: u64,
    ) -> Result<BarAssignment, GuestPciError> {
        let (size, is_64bit) = self.probe_bar(instance, bar)?;
        if size == 0 || !base.is_multiple_of(size) {
            return Err(GuestPciError::Misaligned { size });
        }
        let low_offset = BAR0 + 4 * u32::from(bar);
        let command = self.config_read(instance, COMMAND) & 0xFFFF;
        self.config_write(instance, COMMAND, command & !COMMAND_MEMORY);
        self.config_write(instance, low_offset, base as u32);
        if is_64bit {
            self.config_write(instance, low_offset + 4, (base >> 32) as u32);
        }
        self.config_write(instance, COMMAND, command | COMMAND_MEMORY);
        Ok(BarAssignment {
            base,
            size,
            is_64bit,
        })
    }

    /// Sets or clears memory decode of device `instance`.
    pub fn set_memory_decode(&self, instance: Guid, enabled: bool) {
        let command = self.config_read(instance, COMMAND) & 0xFFFF;
        let command = if enabled {
            command | COMMAND_MEMORY
        } else {
            command & !COMMAND_MEMORY
        };
        self.config_write(instance, COMMAND, command);
    }

    /// The BAR that decodes `gpa`, read from the devices' configuration space.
    fn decode(&self, gpa: u64) -> Option<Decoded> {
        for device in self.hdv.guest_devices(self.vm) {
            let read = |offset: u32| device.callbacks.read_config_space(offset).unwrap_or(0);
            if read(COMMAND) & COMMAND_MEMORY == 0 {
                continue;
            }
            let mut bar = 0u8;
            while usize::from(bar) < device.probed_bars.len() {
                let probed = device.probed_bars[usize::from(bar)];
                let is_64bit = (probed >> 1) & 0b11 == 0b10;
                let step = if is_64bit { 2 } else { 1 };
                if probed != 0 && probed & 1 == 0 {
                    let low_offset = BAR0 + 4 * u32::from(bar);
                    let (mask_high, base_high) = if is_64bit {
                        let high = device.probed_bars.get(usize::from(bar) + 1).copied();
                        (
                            u64::from(high.unwrap_or(0)),
                            u64::from(read(low_offset + 4)),
                        )
                    } else {
                        (u64::from(u32::MAX), 0)
                    };
                    let size = (!((mask_high << 32) | u64::from(probed & !0xF))).wrapping_add(1);
                    let base = (base_high << 32) | u64::from(read(low_offset) & !0xF);
                    if base != 0 && gpa >= base && gpa - base < size {
                        return Some(Decoded {
                            device,
                            bar,
                            offset: gpa - base,
                            size,
                        });
                    }
                }
                bar += step;
            }
        }
        None
    }

    fn running(&self) -> bool {
        self.hdv.vm_state(self.vm) == Some(VmState::Running)
    }

    /// A guest read of `out.len()` bytes at `gpa`.
    pub fn read(&self, gpa: u64, out: &mut [u8]) -> AccessReport {
        let mut report = AccessReport::default();
        let mut done = 0;
        while done < out.len() {
            let at = gpa.wrapping_add(done as u64);
            let in_page = (PAGE_SIZE - at % PAGE_SIZE) as usize;
            let chunk_len = in_page.min(out.len() - done);
            let chunk = &mut out[done..done + chunk_len];
            report.add(self.read_chunk(at, chunk));
            done += chunk_len;
        }
        self.record(report)
    }

    /// A guest write of `data` at `gpa`.
    pub fn write(&self, gpa: u64, data: &[u8]) -> AccessReport {
        let mut report = AccessReport::default();
        let mut done = 0;
        while done < data.len() {
            let at = gpa.wrapping_add(done as u64);
            let in_page = (PAGE_SIZE - at % PAGE_SIZE) as usize;
            let chunk_len = in_page.min(data.len() - done);
            report.add(self.write_chunk(at, &data[done..done + chunk_len]));
            done += chunk_len;
        }
        self.record(report)
    }

    /// Reads within one page.
    fn read_chunk(&self, gpa: u64, out: &mut [u8]) -> AccessReport {
        let refused = |out: &mut [u8]| {
            out.fill(0xFF);
            AccessReport {
                refused_bytes: out.len() as u64,
                ..Default::default()
            }
        };
        if !self.running() {
            return refused(out);
        }
        let Some(decoded) = self.decode(gpa) else {
            return refused(out);
        };
        if decoded.offset + out.len() as u64 > decoded.size {
            return refused(out);
        }
        if let Some((memory, at, _)) = section_target(&decoded) {
            if memory.read(at, out).is_err() {
                return refused(out);
            }
            return AccessReport {
                section_bytes: out.len() as u64,
                ..Default::default()
            };
        }
        if self.hdv.quirks().bar_accesses_not_forwarded {
            return refused(out);
        }
        let mut report = AccessReport::default();
        for (start, len) in pieces(decoded.offset, out.len()) {
            let piece = &mut out[start..start + len];
            let offset = decoded.offset + start as u64;
            report.intercepted_calls += 1;
            report.intercepted_bytes += len as u64;
            let bar = u32::from(decoded.bar);
            if decoded
                .device
                .callbacks
                .read_intercepted_memory(bar, offset, piece)
                .is_err()
            {
                piece.fill(0xFF);
                report.intercept_errors += 1;
            }
        }
        report
    }

    /// Writes within one page.
    fn write_chunk(&self, gpa: u64, data: &[u8]) -> AccessReport {
        let refused = AccessReport {
            refused_bytes: data.len() as u64,
            ..Default::default()
        };
        if !self.running() {
            return refused;
        }
        let Some(decoded) = self.decode(gpa) else {
            return refused;
        };
        if decoded.offset + data.len() as u64 > decoded.size {
            return refused;
        }
        if let Some((memory, at, writeable)) = section_target(&decoded) {
            // HdvMmioMappingFlagNone maps read-only (hdv.md §3.3 flags, inference).
            if !writeable || memory.write(at, data).is_err() {
                return refused;
            }
            return AccessReport {
                section_bytes: data.len() as u64,
                ..Default::default()
            };
        }
        if self.hdv.quirks().bar_accesses_not_forwarded {
            return refused;
        }
        let mut report = AccessReport::default();
        for (start, len) in pieces(decoded.offset, data.len()) {
            let offset = decoded.offset + start as u64;
            report.intercepted_calls += 1;
            report.intercepted_bytes += len as u64;
            let bar = u32::from(decoded.bar);
            let piece = &data[start..start + len];
            if decoded
                .device
                .callbacks
                .write_intercepted_memory(bar, offset, piece)
                .is_err()
            {
                report.intercept_errors += 1;
            }
        }
        report
    }
}

/// The section bytes behind the decoded BAR offset, if a section-backed range covers its
/// page: `(memory, byte offset in the section, writeable)`.
fn section_target(
    decoded: &Decoded,
) -> Option<(std::sync::Arc<crate::memory::SectionMemory>, u64, bool)> {
    let page = decoded.offset / PAGE_SIZE;
    decoded
        .device
        .ranges
        .iter()
        .find(|range| {
            range.bar == decoded.bar
                && page >= range.offset_pages
                && page - range.offset_pages < range.length_pages
        })
        .map(|range| {
            let section_page = range.section_offset_pages + (page - range.offset_pages);
            let at = section_page * PAGE_SIZE + decoded.offset % PAGE_SIZE;
            (range.memory.clone(), at, range.writeable)
        })
}

/// Splits `len` bytes at BAR offset `offset` into naturally aligned pieces of 8, 4, 2 or 1
/// bytes (hdv.md §3.7: intercepted accesses are 1, 2, 4 or 8 bytes): `(start, len)` pairs.
fn pieces(offset: u64, len: usize) -> Vec<(usize, usize)> {
    let mut result = Vec::new();
    let mut start = 0;
    while start < len {
        let at = offset + start as u64;
        let size = [8usize, 4, 2, 1]
            .into_iter()
            .find(|&size| at.is_multiple_of(size as u64) && size <= len - start)
            .unwrap_or(1);
        result.push((start, size));
        start += size;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::pieces;

    #[test]
    fn pieces_are_naturally_aligned_and_cover_the_access() {
        assert_eq!(pieces(0, 8), [(0, 8)]);
        assert_eq!(pieces(1, 8), [(0, 1), (1, 2), (3, 4), (7, 1)]);
        assert_eq!(pieces(6, 3), [(0, 2), (2, 1)]);
        assert_eq!(pieces(0, 20), [(0, 8), (8, 8), (16, 4)]);
    }
}
