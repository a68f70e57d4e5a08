//! Wire formats shared by the vmbmmio driver, its device host and the guest.
//!
//! # What this crate owns
//! - The IOCTL interface between the driver and the user-mode device host ([`ioctl`]):
//!   fixed-layout little-endian structs, versioned, with reserved fields that must be zero and
//!   explicit maximum sizes.
//! - The control protocol spoken with the guest over the VMBus channel ([`guest`],
//!   `docs/protocol.md`): the messages, the host's request parser and reply encoders, the
//!   guest's reply parser and state machine ([`guest::GuestClient`]), and the BAR placement
//!   checks the driver and the device host share ([`guest::placement`]).
//! - The PCI vendor-specific capability that pairs the emulated PCI function with its VMBus
//!   channel ([`pci_cap`]), with the parser a guest driver runs on its configuration space.
//! - Validation of every field, with overflow-safe page arithmetic, returning typed errors.
//!
//! # What this crate must not do
//! - Allocate, block, log or panic: it runs in the kernel on bytes that came from user mode or
//!   from a hostile guest. It is `no_std`, uses only `zerocopy`, and passes the Windows-target
//!   type-check with `core,alloc`.
//! - Know about NTSTATUS or KMCL: the driver maps this crate's errors to NTSTATUS.
#![no_std]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::std_instead_of_core
)]
// Tests may compute freely; only the shipped code is held to these.
#![cfg_attr(
    test,
    allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)
)]

/// Size of a page, the unit of every section and MMIO range (x64 and ARM64 Windows: 4 KiB).
pub const PAGE_SIZE: u64 = 4096;

pub mod guest;
pub mod ioctl;
pub mod pci_cap;
