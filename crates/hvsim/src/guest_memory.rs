//! The guest's physical address space around the emulated devices: the MMIO of their BARs.
//!
//! Where a BAR is, and whether it decodes, is the vPCI platform's state ([`crate::vpci`]):
//! the BAR registers and the memory-decode bit the guest programmed through the platform (a
//! Linux guest's configuration writes, a Windows guest's resource message), never the device
//! host's emulated configuration space (the observed platform handled the BAR registers itself,
//! hdv.md §3.3; platform-paths.md G3). The guest places BARs only through [`crate::vpci::GuestPci`];
//! this model has no way to put a BAR anywhere by itself.
//!
//! A guest access inside a placed, decoding BAR:
//! - a page covered by a section-backed range reaches the section's bytes (§3.3 semantics);
//! - any other page reaches the emulator's `Read/WriteInterceptedMemory` in naturally aligned
//!   pieces of 1, 2, 4 or 8 bytes (§3.7), as a guest's copy loop would issue them.
//!
//! Refused (reads all ones, writes dropped, counted): addresses in no placed BAR, BARs whose
//! function has memory decode off, accesses while the VM does not run, and writes to a
//! read-only mapping. All ones is what a read nobody claims returns; observed on 10.0.26100 for
//! BAR reads the host did not forward (§3.3).

use std::sync::{Arc, Mutex, PoisonError};

use vmbmmio_devhost::guid::Guid;

use crate::hdv::{GuestDevice, HdvSim, VmState};
use crate::memory::SectionMemory;

const PAGE_SIZE: u64 = 4096;

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

    /// The BAR that decodes `gpa`, from the vPCI platform's registers.
    fn decode(&self, gpa: u64) -> Option<Decoded> {
        let (device, bar, offset) = self.hdv.decode_gpa(self.vm, gpa)?;
        Some(Decoded {
            device,
            bar: bar.bar,
            offset,
            size: bar.size,
        })
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
fn section_target(decoded: &Decoded) -> Option<(Arc<SectionMemory>, u64, bool)> {
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
