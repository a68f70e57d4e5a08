//! Guest MMIO reservation planning.
//!
//! Filled by the channel issue: from the configured shared regions it computes the
//! `MmioMegabytes` / `MmioMegabytesOptional` pair passed to
//! `VmbServerChannelInitSetMmioMegabytes`, and rejects impossible layouts before any KMCL call.
