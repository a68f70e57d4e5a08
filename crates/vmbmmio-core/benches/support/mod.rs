//! Shared by the benchmarks of this crate.

pub mod packets;
pub mod tables;
