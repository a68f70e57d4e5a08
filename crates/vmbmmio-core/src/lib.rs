//! The vmbmmio driver's portable logic: every decision the driver makes, with no Windows
//! dependency.
//!
//! # What this crate owns
//! - [`mmio_plan`]: the BAR layout and the `MmioMegabytes` pair of the offer.
//! - [`channel`]: one VMBus server channel per VM, over `kmcl`'s function table.
//! - [`sections`]: the sections that back the guest MMIO, their quotas and their ledger.
//! - [`control`]: what the device host may ask through the control device (one session per
//!   file handle), checked with `vmbmmio-proto`'s parsers.
//! - [`guest`]: the host side of the guest control protocol (docs/protocol.md) on the session's
//!   channel, and [`guest_events`]: what it tells the device host (WAIT_GUEST_EVENT).
//! - [`consumers`]: host consumers' platform pieces (clock, user events) and rate limits.
//! - [`error`]: typed errors and their NTSTATUS.
//!
//! # What this crate must not do
//! - Touch `wdk-sys`: kernel calls are behind small traits (`kmcl::KmclProvider`,
//!   `channel::KernelHandleCloser`, `sections::SectionBackend`) that the driver's glue
//!   implements on Windows and `hvsim` implements in tests.
//! - Use `std`, block at DISPATCH_LEVEL, or panic on input: it is kernel code (`no_std` +
//!   `alloc`), type-checked for `x86_64-pc-windows-msvc` by `scripts/check-windows-target.sh`.
//!
//! # Why a separate crate
//! The driver package (`vmbmmio`, the workspace root) is a `cdylib` built with
//! `panic = "abort"`. A library that is also a cdylib gets unhashed output names, so building it
//! once for a binary (abort) and once for tests (unwind) in the same `cargo test` run collides.
//! Keeping the logic in this rlib lets tests, the simulator and its demo link it freely while
//! the driver package stays a plain windows-drivers-rs KMDF crate.
#![no_std]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]
// Tests may compute freely; only the shipped code is held to these.
#![cfg_attr(
    test,
    allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)
)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod channel;
pub mod consumers;
pub mod control;
pub mod error;
pub mod guest;
pub mod guest_events;
pub mod mmio_plan;
pub mod sections;

pub use error::{DriverError, DriverResult};
