//! The vmbmmio device host: a user-mode HDV (Host Device Virtualization) emulator.
//!
//! # What this crate owns
//! - The portable logic of the device host (filled by a later issue): configuration parsing,
//!   PCI configuration-space emulation, BAR masks for the region layout, the retry policy while
//!   the VM is not ready, and the HDV call sequence that maps the driver's sections into the BAR
//!   with `HdvCreateSectionBackedMmioRange`.
//! - The Windows API calls (HCS, HDV, the driver's control device) behind a trait, implemented
//!   with `windows-sys` under `cfg(windows)` and by `hvsim` in tests.
//!
//! # What this crate must not do
//! - Hold kernel policy: quotas, ownership and validation of sections live in the driver.
//! - Call Windows APIs outside the `cfg(windows)` backend: everything else must build, run and
//!   be tested on Linux, and pass the Windows-target type-check (`std,panic_abort`).
