//! hvsim: a simulated Hyper-V host and guest for vmbmmio's tests and demo.
//!
//! # What this crate owns
//! - Models of the platform pieces that exist only on a Hyper-V host: the VMBus Kernel Mode
//!   Client Library (filling `kmcl::KmclApi` with `extern "system"` functions), the guest's
//!   VMBus driver and MMIO pool, the guest's virtual PCI bus, kernel sections, HDV/HCS and guest
//!   physical memory, all sharing one VM (`vm`).
//! - The demo (`demo`), a one-session bench for the guest protocol (`guest_session`) and the
//!   `replay` tool that feeds files to the driver's guest-packet handler.
//! - The global allocator of every binary that links hvsim (`alloc_faults`): it can fail the
//!   n-th allocation the driver makes, to prove every allocation site of the driver fallible.
//! - Byte-accurate memory, so a test can prove that what the guest writes is what the host reads.
//!
//! # What this crate must not do
//! - Model what is convenient for the driver: every rule it enforces cites the line of
//!   `shared/reference/` it comes from, and where the reference says a behaviour is uncertain
//!   the model takes the stricter reading and says so.
//! - Ship in the driver: it is a std crate used by tests, benchmarks and the demo only.

pub mod agent_peer;
pub mod alloc_faults;
pub mod clock;
pub mod demo;
pub mod explore;
pub mod glue;
pub mod guest_memory;
pub mod guest_session;
pub mod hdv;
pub mod host_sim;
pub mod kmcl;
pub mod lock_rules;
pub mod memory;
pub mod platform;
pub mod replay;
pub mod sections;
pub mod table_lock;
pub mod vm;
pub mod vpci;
