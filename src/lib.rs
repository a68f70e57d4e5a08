//! vmbmmio: a Hyper-V host KMDF driver that offers a VMBus server channel whose guest MMIO
//! reservation is backed by kernel sections shared with a paired HDV device host.
//!
//! # Layering
//! - `glue` (Windows only, `driver` feature): DriverEntry, device add and the other WDF entry
//!   points. Mechanical translation between wdk-sys and the portable modules; no decisions.
//! - Portable modules (everything else): the decisions, written against `kmcl::KmclApi` and small
//!   backend traits, `no_std` + `alloc`, tested on Linux against the simulator `hvsim` and
//!   type-checked for `x86_64-pc-windows-msvc`.
//!
//! See `docs/architecture.md` for where each responsibility lives.
#![no_std]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

extern crate alloc;
// The Linux build links this crate as a cdylib, which needs std's panic handler and allocator;
// tests need std everywhere. Portable modules still only use `core` and `alloc` (enforced by the
// `std_instead_of_*` lints above and by the Windows-target type-check of this crate).
#[cfg(any(test, not(windows)))]
extern crate std;

#[cfg(all(windows, feature = "driver", not(test)))]
extern crate wdk_panic;

/// Kernel pool allocator (`ExAllocatePool2`, non-paged). Safe at IRQL <= DISPATCH_LEVEL.
#[cfg(all(windows, feature = "driver", not(test)))]
#[global_allocator]
static GLOBAL_ALLOCATOR: wdk_alloc::WdkAllocator = wdk_alloc::WdkAllocator;

#[cfg(all(windows, feature = "driver"))]
pub mod glue;

pub mod channel;
pub mod error;
pub mod mmio_plan;
pub mod sections;

pub use error::{DriverError, DriverResult};
