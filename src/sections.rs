//! Kernel sections that back the guest MMIO.
//!
//! Filled by the sections issue: one section per region, per-VM and global quotas, and a ledger
//! of every section, handle and mapping with one owner and one release path.
