//! The [`DriverClient`](crate::driver::DriverClient) over the vmbmmio control device's IOCTLs.
//!
//! # Why it looks like this
//! Every byte that crosses the boundary is built and checked by `vmbmmio-proto`, the same crate
//! the driver validates with, so the two sides cannot disagree on a layout. The client trusts
//! the driver no more than the driver trusts it: every reply goes through the proto reply
//! parser, and a reply that does not parse, or that describes a layout other than the one asked
//! for, is a [`DriverError::Rejected`](crate::driver::DriverError::Rejected) naming the request
//! and the problem — never a panic.
//!
//! The bytes travel through an [`IoctlTransport`]: on Windows `DeviceIoControl` on
//! `\\.\vmbmmio` (`windows::DeviceIoControlTransport`), elsewhere whatever a test or the
//! simulator provides. A transport failure keeps the status the transport saw
//! ([`IoctlFailure`]): on Windows a Win32 error, because the kernel's NTSTATUS reaches user mode
//! only translated by the system.
//!
//! The driver needs more than the device host's `SessionRequest` (which names the VM and the
//! regions): the target and the offer's GUIDs come from [`DriverSessionSettings`], given at
//! construction. OPEN_SESSION goes out as version 2 (with the VM id and the regions' names and
//! access), falling back to version 1 for a driver that refuses version 2 (module `client`).

mod client;
mod mapping;
mod settings;
mod transport;

pub use client::{ProtoDriverClient, request_name};
pub use mapping::{mapping_from_wire, mapping_to_wire};
pub use settings::{
    DEFAULT_INTERFACE_INSTANCE, DEFAULT_INTERFACE_TYPE, DriverSessionSettings, DriverTarget,
};
pub use transport::{IoctlFailure, IoctlTransport, TransportWaiter};
