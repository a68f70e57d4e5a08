//! Bindings of the VMBus Kernel Mode Client Library (KMCL) for a host-side (server) driver.
//!
//! # What this crate owns
//! - [`raw`]: the C types of `VmbusKernelModeClientLibApi.h` that a server driver needs (handle
//!   types, callback typedefs, `VMB_CHANNEL_STATE_CHANGE_CALLBACKS`, flag constants), written
//!   from `shared/reference/kmcl.md` with the exact parameter order, by-value GUIDs and the
//!   `extern "system"` calling convention.
//! - [`KmclApi`]: the one table of function pointers through which every KMCL call goes. On
//!   Windows a driver fills it from the host library `vmbkmclr.sys`; in tests the simulator
//!   (`hvsim`) fills it with its own `extern "system"` functions, so the driver's channel code
//!   runs unchanged against the model.
//!
//! # What this crate must not do
//! - Depend on `wdk-sys` or anything else that only builds on Windows: the crate is `no_std`,
//!   has no dependencies, and passes the Windows-target type-check on Linux.
//! - Make decisions: policy (what to offer, how much MMIO, when to tear down) belongs to the
//!   driver. This crate translates Rust calls into KMCL calls and NTSTATUS values into errors.
#![no_std]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::std_instead_of_core
)]

pub mod raw;
mod table;

pub use table::KmclApi;
