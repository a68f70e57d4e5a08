//! The Linux backend: the real files the portable core only names.
//!
//! Discovery ([`crate::discover`]) finds `/dev/uioN`, its ring map and the BAR's sysfs
//! `resourceN` file; this module maps them. [`MmapRing`] is the rings' [`crate::ring::RingMemory`]
//! over a shared mapping of the uio map, [`UioDoorbell`] the [`crate::ring_channel::Doorbell`]
//! on the uio file (`uio_hv_generic`'s `irqcontrol` write and `poll`), and [`BarMapping`] the
//! BAR with volatile, bounds-checked accesses; [`Session`] puts them together for a program. Everything the host or the files give is
//! untrusted: every access is checked against the mapping's length first and no reference into
//! shared memory is ever made (only raw-pointer volatile and atomic accesses), so the host
//! changing bytes underneath is never undefined behaviour on our side.
//!
//! Sources: Linux `drivers/uio/uio.c` (`uio_mmap`: map N at offset `N * PAGE_SIZE`; `uio_write`:
//! a 4-byte `irqcontrol` value; `uio_read`/`uio_poll`: the 4-byte event count),
//! `drivers/uio/uio_hv_generic.c` (`hv_uio_irqcontrol`: a non-zero value unmasks the
//! interrupt and signals the host), `Documentation/PCI/sysfs-pci.rst` (mapping `resourceN`).
//!
//! This is the only module of the crate with `unsafe`; each block says why it is sound.

pub mod agent_error;
pub mod bar;
pub mod doorbell;
pub mod error;
pub mod mmap_ring;
pub mod session;

pub use agent_error::AgentError;
pub use bar::{BarMapping, RegionWindow};
pub use doorbell::UioDoorbell;
pub use error::LinuxError;
pub use mmap_ring::{MmapRing, page_size};
pub use session::{
    BarCheck, Counters, DEFAULT_INTERFACE_TYPE, Doorbell, Options, RegionView, RingProtocol,
    Session,
};

use std::fs::File;
use std::path::Path;

use memmap2::{MmapOptions, MmapRaw};

/// Maps `len` bytes of `file` at `offset`, shared and read/write. A regular file (tests) must
/// hold the whole range, or touching the mapping past its end would fault (`SIGBUS`).
fn map_shared(file: &File, path: &Path, offset: u64, len: usize) -> Result<MmapRaw, LinuxError> {
    if len == 0 {
        return Err(LinuxError::Empty {
            path: path.to_path_buf(),
        });
    }
    let metadata = file
        .metadata()
        .map_err(|source| LinuxError::io("inspecting", path, source))?;
    if metadata.is_file() {
        let need = u64::try_from(len)
            .ok()
            .and_then(|len| offset.checked_add(len))
            .ok_or(LinuxError::Empty {
                path: path.to_path_buf(),
            })?;
        if metadata.len() < need {
            return Err(LinuxError::FileTooShort {
                path: path.to_path_buf(),
                need,
                have: metadata.len(),
            });
        }
    }
    MmapOptions::new()
        .offset(offset)
        .len(len)
        .map_raw(file)
        .map_err(|source| LinuxError::io("mapping", path, source))
}
