//! The vmbmmio device host: a user-mode HDV (Host Device Virtualization) emulator.
//!
//! # What this crate owns
//! - The portable logic of the device host: configuration ([`config`]), PCI configuration-space
//!   emulation ([`pci`]), the emulator behind the HDV callbacks with the intercept fallback
//!   ([`emulator`]), the layout checks ([`layout`]) and the HCS/HDV/driver call sequence with
//!   its reverse-order unwinding ([`sequence`]), the BAR placement signal the mapping waits for
//!   and its checks ([`placement`]), and the driver client over the control
//!   device's IOCTLs ([`driver_ioctl`], re-exported here: [`ProtoDriverClient`] over an
//!   [`IoctlTransport`]).
//! - The Hyper-V DLLs and entry points the Windows backend loads at run time, and the report
//!   and error for a missing one ([`hyperv_components`]).
//! - The platform as traits ([`platform`], [`driver`], [`views`], [`clock`]): implemented with
//!   `windows-sys` under `cfg(windows)` (module `windows`) and by `hvsim` in tests.
//!
//! # What this crate must not do
//! - Hold kernel policy: quotas, ownership and validation of sections live in the driver.
//! - Call Windows APIs outside the `cfg(windows)` backend: everything else must build, run and
//!   be tested on Linux, and pass the Windows-target type-check (`std,panic_abort`).
//!
//! - The field probes (`vmbmmio-devhost probe`, [`probe`]): read-only checks of a real host,
//!   one JSON report; their collectors are the only other Windows code (`probe::windows`).
//!
//! See `docs/devhost.md` for running it and for the platform caveats (hdv.md §3.3).

pub mod callbacks;
pub mod clock;
pub mod config;
pub mod driver;
pub mod driver_ioctl;
pub mod emulator;
pub mod guid;
pub mod hresult;
pub mod hyperv_components;
pub mod layout;
pub mod loopback;
pub mod pci;
pub mod placement;
pub mod platform;
pub mod probe;
pub mod sequence;
pub mod views;
pub mod vm_config;
#[cfg(windows)]
pub mod windows;

pub use driver_ioctl::{
    DriverSessionSettings, DriverTarget, IoctlFailure, IoctlTransport, ProtoDriverClient,
    TransportWaiter,
};
#[cfg(windows)]
pub use windows::DeviceIoControlTransport;
