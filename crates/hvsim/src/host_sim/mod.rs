//! Host consumers on the simulated platform: the host library (`vmbmmio-host`) running
//! against the driver's real core.
//!
//! - [`SimDriver`] is the library's transport (`vmbmmio_host::Driver`): a simulated consumer
//!   process with its own handle table, whose IOCTLs reach the real `ControlDevice` the way the
//!   glue delivers them ([`crate::glue`]), whose views are the sections' real bytes, and whose
//!   events live in the object-manager model.
//! - [`SimHost`] runs a whole machine (the demo's: driver, device host with named regions,
//!   HDV, the guest with its BAR and its protocol-1.1 conversation, and a guest program that
//!   answers doorbells) on a thread of its own; [`SimWorld`] is that machine, also usable on
//!   the caller's thread ([`SimWorld::serve`]), as the demo does.
//! - [`c_abi`]: `vmbmmio_sim_start`, `vmbmmio_sim_host_open` and `vmbmmio_sim_stop` for C
//!   programs (header `crates/vmbmmio-host/include/vmbmmio_host_sim.h`).
//!
//! Dependencies point one way: hvsim depends on the host library (it implements its transport
//! and runs its programs); the host library and the driver's crates know nothing of hvsim.

pub mod c_abi;
mod driver;
mod running;
mod server;
mod world;

pub use driver::{POLL_INTERVAL, SimDriver, SimLink};
pub use running::{Message, SimHost, SimHostOptions, SimReport};
pub use server::{Consumer, ConsumerServer, Envelope, Reply, Request};
pub use world::{SimWorld, TICK};
