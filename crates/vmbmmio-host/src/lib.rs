//! `vmbmmio-host`: a host program's way to a running VM's shared memory.
//!
//! A host process (Administrator or SYSTEM) opens the vmbmmio driver's control device as a
//! *consumer*, lists the VMs whose device host named its regions, attaches to a region by VM id
//! and name (the driver opens a handle to the region's section in this process, with at most
//! the region's consumer access), maps it, and exchanges doorbells with the guest's program:
//!
//! ```no_run
//! use std::time::Duration;
//! use vmbmmio_host::{Access, Host, VmId};
//!
//! # fn main() -> Result<(), vmbmmio_host::Error> {
//! let host = Host::open()?;
//! let vm: VmId = "6ba7b810-9dad-11d1-80b4-00c04fd430c8".parse().expect("a GUID");
//! let frames = host.attach(vm, "frames", Access::ReadWrite)?;
//! let view = frames.map()?;
//! view.write_u32(0, 0x1234_5678)?;
//! frames.ring(1)?;                                         // the guest's DOORBELL event
//! if let Some(bells) = frames.wait_doorbell(Some(Duration::from_secs(1)))? {
//!     let _ = (bells.count, bells.last_value, view.read_u64(8)?);
//! }
//! frames.detach()?;                                        // also done on drop
//! # Ok(()) }
//! ```
//!
//! Layers: [`Driver`] is the transport (Windows: `windows` module; tests: [`fake`]; later the
//! simulator), [`Host`]/[`Attachment`]/[`RegionView`] the client logic, `wire` the byte
//! layouts (from `vmbmmio-proto`), [`ffi`] the C ABI (`include/vmbmmio_host.h`). The whole
//! crate avoids panics (the C ABI runs it across `extern "C"`): no `unwrap`, no indexing, no
//! unchecked arithmetic outside tests. docs/host-library.md describes the API, the CLI, the C
//! ABI and every error.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::todo,
        clippy::unimplemented,
        clippy::unreachable
    )
)]

mod attachment;
mod driver;
mod error;
pub mod failure;
pub mod fake;
pub mod ffi;
#[cfg(feature = "test-double")]
pub mod ffi_test_double;
mod host;
mod view;
mod vm_id;
#[cfg(windows)]
pub mod windows;
mod wire;

pub use attachment::{Attachment, Doorbells};
pub use driver::{Driver, Mapping};
pub use error::{Error, Result};
pub use failure::DriverFailure;
pub use host::{Access, Host, RegionInfo, RegionState, VmSession};
pub use view::RegionView;
pub use vm_id::{VmId, VmIdParseError};
