//! The logic behind the fuzz targets, in a library so the committed corpora also run as plain
//! tests on stable (`cargo test --manifest-path fuzz/Cargo.toml`) and the seed generator
//! (`examples/make_seeds.rs`) builds inputs in the same format the targets read.
//!
//! - [`ioctl`]: every IOCTL parser of `vmbmmio_proto::ioctl`, then the driver's control device
//!   (`vmbmmio_core::control::ControlDevice::dispatch`) over the simulator, driven by the input
//!   as a **sequence** of IOCTLs and file, guest and VM events; after everything is closed, every
//!   counter must balance.
//! - [`guest`]: the guest control protocol's host side (the driver's real packet handler over
//!   the simulator) as a stateful sequence of guest packets interleaved with the device host's
//!   IOCTLs and channel closes and reopens; every reply must parse, the counters balance.
//! - [`pe`]: the PE32+ export parser of `kmcl::resolve` on the input as a file image, a mapped
//!   image, a loaded image and a kernel module list.
//!
//! A target fails by panicking: the parsers and the driver must never panic, so every `assert!`
//! here is an oracle (a reply the driver wrote must parse, a parsed message must re-encode to
//! the same bytes, nothing may be left over).

pub mod guest;
pub mod ioctl;
pub mod pe;
mod reader;

pub use reader::Reader;
