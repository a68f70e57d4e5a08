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
//!   the callbacks through `extern "system"` trampolines; [`server::IncomingPacket`] (or the
//!   [`server::HeldPacket`] it becomes when the driver answers later) is completed
//!   exactly once. Failures are typed: [`KmclError`] names the function and its NTSTATUS.
//! - [`convert_vmbus_handle`]: the user-to-kernel VMBus handle conversion (kmcl.md §6).
//! - [`fallible`]: `Box` and `Arc` allocated fallibly ([`fallible::try_box`],
//!   [`fallible::TryArc`]), for every kernel crate: an infallible allocation that fails is a
//!   bugcheck.
//!
//! # Where the table comes from
//! The wrapper reaches the table through a type, [`KmclProvider`], so its trampolines need no
//! global state.
//! - **Windows driver**: [`Vmbkmclr`], a provider over a write-once static table
//!   ([`installed`]). DriverEntry fills it at load time ([`resolve::load_host_library`]): it
//!   finds the loaded host library `vmbkmclr.sys` (kmcl.md §1a: the module host-side server code
//!   imports KMCL from; no import library is known to ship), reads its export directory and fills
//!   the table by name. Nothing is imported statically, so a name the library lacks cannot stop
//!   the driver from loading: a missing required entry fails DriverEntry naming every missing
//!   one, a missing optional entry is `None` and reported ([`KmclApi::missing_optional`]).
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
pub mod fallible;
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
