//! vmbmmio: a Hyper-V host KMDF driver that offers a VMBus server channel whose guest MMIO
//! reservation is backed by kernel sections shared with a paired HDV device host.
//!
//! This package is the driver binary: DriverEntry, the WDF callbacks and the few kernel calls
//! (`glue`, Windows only). Every decision lives in `vmbmmio-core` (portable, `no_std`, tested
//! on Linux against the simulator `hvsim`); the glue only translates between wdk-sys and it.
//! See `docs/architecture.md`.
#![no_std]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

// The Linux build links this crate as an (empty) cdylib, which needs std's panic handler;
// tests need std everywhere.
#[cfg(any(test, not(windows)))]
extern crate std;

#[cfg(windows)]
extern crate alloc;

#[cfg(all(windows, not(test)))]
extern crate wdk_panic;

/// Kernel pool allocator (`ExAllocatePool2`, non-paged). Safe at IRQL <= DISPATCH_LEVEL.
#[cfg(all(windows, not(test)))]
#[global_allocator]
static GLOBAL_ALLOCATOR: wdk_alloc::WdkAllocator = wdk_alloc::WdkAllocator;

#[cfg(windows)]
mod glue;
