//! Bindings of the VMBus Kernel Mode Client Library (KMCL) for a host-side (server) driver, and
//! a safe wrapper for one server channel.
//!
//! # What this crate owns
//! - [`raw`]: the C types of `VmbusKernelModeClientLibApi.h` that a server driver needs (handle
//!   types, callback typedefs, `VMB_CHANNEL_STATE_CHANGE_CALLBACKS`, flag and status constants),
//!   written from `shared/reference/kmcl.md` with the exact parameter order, by-value GUIDs and
//!   the `extern "system"` calling convention; their layouts are checked at compile time
//!   (`layout`, evaluated for `x86_64-pc-windows-msvc` by the Windows-target type-check).
//! - [`KmclApi`]: the one table of function pointers through which every KMCL call goes.
//! - [`server`]: the safe wrapper. [`server::ServerChannel`] creates a channel in the order the
//!   reference records for host VSPs and tears it down once; [`server::ChannelHandler`] receives
//!   the callbacks through `extern "system"` trampolines; [`server::IncomingPacket`] is completed
//!   exactly once. Failures are typed: [`KmclError`] names the function and its NTSTATUS.
//! - [`convert_vmbus_handle`]: the user-to-kernel VMBus handle conversion (kmcl.md §6).
//!
//! # Where the table comes from
//! The wrapper reaches the table through a type, [`KmclProvider`], so its trampolines need no
//! global state.
//! - **Windows driver**: `imports::Vmbkmclr` (`cfg(windows)`, re-exported as `kmcl::Vmbkmclr`),
//!   a static table of functions imported from the host library `vmbkmclr.sys` with
//!   `raw-dylib` (kmcl.md §1a: the only mechanism observed for host-side server code; no import
//!   library is known to ship). Only entry points with evidence of host use, or without which
//!   no channel can work, are imported; the others (`VmbChannelGetMmioSpace`, Pause, the
//!   packet-sending functions, …) are `None`, because one missing import would stop the driver
//!   from loading.
//! - **Load-time resolution** ([`resolve`], not yet wired into the driver): the replacement for
//!   those imports. It walks the export directory of the loaded `vmbkmclr.sys` and fills the
//!   table by name, so a missing entry no longer stops the driver from loading: a missing
//!   required entry fails start with every missing name, a missing optional one is reported.
//! - **Not used: the interface query** (`WdfFdoQueryForInterface` with
//!   `KMCL_SERVER_INTERFACE_TYPE`, kmcl.md §1b): its GUIDs and version numbers are NOT FOUND
//!   (kmcl.md §9 item 2), and which device would answer it for a host driver is unknown (§1c).
//! - **Tests and the demo**: `hvsim::kmcl::HvsimKmcl`, the simulator's model, which fills every
//!   entry with its own `extern "system"` functions (and a variant without
//!   `VmbChannelGetMmioSpace`), so the driver's channel code runs unchanged against the model.
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

mod entry_set;
pub mod error;
mod handle;
pub mod installed;
mod layout;
mod provider;
pub mod raw;
pub mod resolve;
pub mod server;
mod table;

pub use entry_set::EntrySet;
pub use error::{ErrorStatus, KmclError, KmclFunction, SetupError};
pub use handle::convert_vmbus_handle;
pub use installed::{AlreadyInstalled, TableCell, UNRESOLVED, Vmbkmclr};
pub use provider::{ContextEvent, KmclProvider};
pub use table::{
    FnVmbChannelGetMmioSpace, FnVmbChannelInitSetFlags, FnVmbChannelPause, FnVmbPacketAllocate,
    FnVmbPacketCompletionOnly, FnVmbPacketFree, FnVmbPacketSend, FnVmbPacketSetCompletionRoutine,
    KmclApi,
};
