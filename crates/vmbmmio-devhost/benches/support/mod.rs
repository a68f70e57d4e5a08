//! The intercept benchmarks' device: the emulator with one 64 KiB region whose view is plain
//! process memory accessed the way the Windows view is (`windows/sections.rs`: bounds check,
//! then a raw copy), and the plain volatile load/store of the same size it is compared with.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;

use vmbmmio_devhost::callbacks::{PciDeviceCallbacks, PciPnpId};
use vmbmmio_devhost::emulator::Emulator;
use vmbmmio_devhost::layout::BarLayout;
use vmbmmio_devhost::views::{SectionView, ViewError, check_bounds};

/// The BAR index the emulator reports.
pub const BAR: u32 = 0;
/// The region's size.
pub const REGION: usize = 64 << 10;
/// The offset every access uses (8-byte aligned, inside the region).
pub const OFFSET: u64 = 0x1000;

/// Process memory standing in for a mapped section view.
pub struct MemoryView {
    base: *mut u8,
    size: u64,
}

// SAFETY: the memory is a leaked allocation valid for the process's life; every access is a
// bounds-checked raw copy (no reference into it), as for the Windows view.
unsafe impl Send for MemoryView {}
// SAFETY: as for Send.
unsafe impl Sync for MemoryView {}

impl MemoryView {
    /// A zeroed view of `size` bytes (leaked: benchmarks run once per process).
    pub fn new(size: usize) -> Self {
        let memory: &'static mut [u8] = Box::leak(vec![0u8; size].into_boxed_slice());
        Self {
            base: memory.as_mut_ptr(),
            size: size as u64,
        }
    }

    /// The address of byte `offset` (for the plain-access baseline).
    pub fn at(&self, offset: u64) -> *mut u8 {
        self.base.wrapping_add(offset as usize)
    }
}

impl SectionView for MemoryView {
    fn size(&self) -> u64 {
        self.size
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), ViewError> {
        check_bounds(offset, out.len(), self.size)?;
        // SAFETY: `offset + out.len() <= size` (checked): the source lies in the allocation.
        unsafe { std::ptr::copy_nonoverlapping(self.at(offset), out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), ViewError> {
        check_bounds(offset, data.len(), self.size)?;
        // SAFETY: in bounds (checked), as for `read`.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.at(offset), data.len()) };
        Ok(())
    }
}

/// The emulator with its view attached, and a second view of plain memory for the baseline.
pub fn device() -> (Emulator, Arc<MemoryView>) {
    let emulator = Emulator::new(
        PciPnpId {
            vendor_id: 0x1414,
            ..Default::default()
        },
        0,
    );
    emulator.set_layout(BarLayout::plan(&[REGION as u64]).unwrap());
    let view = Arc::new(MemoryView::new(REGION));
    assert!(emulator.attach_view(0, view.clone()));
    (emulator, view)
}

/// The measured step: one intercepted read of `out.len()` bytes.
#[inline(never)]
pub fn intercepted_read(emulator: &Emulator, out: &mut [u8]) {
    emulator.read_intercepted_memory(BAR, OFFSET, out).unwrap();
}

/// The measured step: one intercepted write of `data.len()` bytes.
#[inline(never)]
pub fn intercepted_write(emulator: &Emulator, data: &[u8]) {
    emulator
        .write_intercepted_memory(BAR, OFFSET, data)
        .unwrap();
}

/// The baseline: a plain volatile load of `len` bytes at `at` (aligned).
#[inline(never)]
pub fn plain_load(at: *mut u8, len: usize) -> u64 {
    match len {
        // SAFETY: `at` is 8-byte aligned inside a live allocation with 8 more bytes.
        1 => u64::from(unsafe { std::ptr::read_volatile(at) }),
        // SAFETY: as above.
        2 => u64::from(unsafe { std::ptr::read_volatile(at.cast::<u16>()) }),
        // SAFETY: as above.
        4 => u64::from(unsafe { std::ptr::read_volatile(at.cast::<u32>()) }),
        // SAFETY: as above.
        _ => unsafe { std::ptr::read_volatile(at.cast::<u64>()) },
    }
}

/// The baseline: a plain volatile store of `len` bytes at `at` (aligned).
#[inline(never)]
pub fn plain_store(at: *mut u8, len: usize, value: u64) {
    match len {
        // SAFETY: as for `plain_load`.
        1 => unsafe { std::ptr::write_volatile(at, value as u8) },
        // SAFETY: as above.
        2 => unsafe { std::ptr::write_volatile(at.cast::<u16>(), value as u16) },
        // SAFETY: as above.
        4 => unsafe { std::ptr::write_volatile(at.cast::<u32>(), value as u32) },
        // SAFETY: as above.
        _ => unsafe { std::ptr::write_volatile(at.cast::<u64>(), value) },
    }
}
