//! Progress of the sequence, for the operator (main prints them) and for tests.

use std::fmt;

use crate::driver::{MappingState, SessionStatus};
use crate::hresult::HResult;

/// Something the device host did or noticed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The VM was opened.
    ComputeSystemOpened,
    /// The device host exists; `com_security` says whether HDV initialized COM security
    /// (false after the observed `RPC_E_TOO_LATE` retry, hdv.md §3.1).
    DeviceHostInitialized {
        /// Whether the InitializeComSecurity flag was accepted.
        com_security: bool,
    },
    /// The PCI device instance exists.
    DeviceCreated,
    /// The driver session is open.
    SessionOpened {
        /// BAR size in bytes.
        bar_size: u64,
        /// Number of regions.
        regions: usize,
    },
    /// Every region has a section handle and a view: the VM may start now.
    Ready,
    /// The emulator received `Start`.
    VmStarted,
    /// HDV refused a mapping because the VM is not ready; retrying (hdv.md §3.3).
    MappingDeferred {
        /// Region index.
        region: u32,
        /// Attempts so far.
        attempts: u32,
    },
    /// A region's mapping state was decided and reported to the driver.
    RegionMapped {
        /// Region index.
        region: u32,
        /// The state reported.
        state: MappingState,
        /// Mapping attempts made.
        attempts: u32,
    },
    /// Guest accesses to a section-backed region reached the emulator: the mapping is not in
    /// effect (hdv.md §3.3, observed), the region is served by intercepts.
    FastPathNotInEffect {
        /// Region index.
        region: u32,
        /// Intercepted accesses counted for the region since it was mapped.
        intercepts: u64,
    },
    /// The driver's view of the session (QUERY_STATUS: state and counters).
    DriverStatus(SessionStatus),
    /// The driver's status could not be read (not fatal).
    DriverStatusUnavailable(String),
    /// Pausing the VM for the unmapping failed; the ranges are destroyed without it.
    UnmapWithoutPause(HResult),
    /// Serving ended because a stop was requested.
    StopRequested,
    /// Serving ended because the VM was cleaned up (the emulator's `Teardown`).
    VmTornDown,
    /// Everything was released.
    TornDown,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ComputeSystemOpened => f.write_str("opened the VM"),
            Self::DeviceHostInitialized { com_security: true } => {
                f.write_str("device host initialized (COM security initialized by HDV)")
            }
            Self::DeviceHostInitialized {
                com_security: false,
            } => f.write_str(
                "device host initialized (COM security was already set in this process)",
            ),
            Self::DeviceCreated => f.write_str("PCI device instance created"),
            Self::SessionOpened { bar_size, regions } => {
                write!(
                    f,
                    "driver session open: {regions} region(s) in a {bar_size:#x}-byte BAR"
                )
            }
            Self::Ready => f.write_str("ready: start the VM now"),
            Self::VmStarted => f.write_str("the VM started"),
            Self::MappingDeferred { region, attempts } => write!(
                f,
                "region {region}: HDV says the VM is not ready yet (attempt {attempts}), retrying"
            ),
            Self::RegionMapped {
                region,
                state,
                attempts,
            } => {
                write!(f, "region {region}: {state:?} after {attempts} attempt(s)")
            }
            Self::FastPathNotInEffect { region, intercepts } => write!(
                f,
                "region {region}: {intercepts} guest access(es) reached the emulator although \
                 the section is mapped; serving it through intercepts"
            ),
            Self::DriverStatus(status) => {
                let c = &status.counters;
                write!(
                    f,
                    "driver status: session {:?}, {} section(s), {} section handle(s) issued, \
                     {} region(s) mapped section-backed, {} guest packet(s), {} protocol \
                     error(s)",
                    status.state,
                    c.sections_created,
                    c.section_handles_issued,
                    c.regions_mapped,
                    c.guest_packets,
                    c.protocol_errors
                )
            }
            Self::DriverStatusUnavailable(why) => write!(f, "driver status unavailable: {why}"),
            Self::UnmapWithoutPause(hr) => {
                write!(
                    f,
                    "could not pause the VM to unmap ({hr}); unmapping anyway"
                )
            }
            Self::StopRequested => f.write_str("stop requested"),
            Self::VmTornDown => f.write_str("the VM was cleaned up"),
            Self::TornDown => f.write_str("released everything"),
        }
    }
}
