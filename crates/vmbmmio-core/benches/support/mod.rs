//! Shared by the benchmarks of this crate.

pub mod callgrind;
pub mod packets;
pub mod tables;
