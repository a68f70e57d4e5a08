//! What can go wrong in the call sequence, and what the unwinding reports.

use std::fmt;
use std::time::Duration;

use crate::driver::{ChannelIdentity, DriverError};
use crate::hresult::HResult;
use crate::layout::LayoutError;
use crate::views::ViewError;

/// A step of the forward sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// `HcsOpenComputeSystem`.
    OpenComputeSystem,
    /// `HdvInitializeDeviceHostEx` (with the COM-security retry).
    InitializeDeviceHost,
    /// `HdvCreateDeviceInstance`.
    CreateDeviceInstance,
    /// Deciding the channel identity the pairing capability carries.
    CheckPairing,
    /// The driver's open-session request.
    OpenSession,
    /// Checking the layout the driver returned.
    CheckLayout,
    /// Fetching a region's section handle from the driver.
    GetSection {
        /// Region index.
        region: u32,
    },
    /// Mapping the device host's view of a region's section.
    MapView {
        /// Region index.
        region: u32,
    },
    /// Waiting for the VM to start (the emulator's `Start` callback).
    WaitForStart,
    /// `HcsPauseComputeSystem` before a mapping.
    PauseVm {
        /// Region index.
        region: u32,
    },
    /// `HdvCreateSectionBackedMmioRange`.
    CreateRange {
        /// Region index.
        region: u32,
    },
    /// `HcsResumeComputeSystem` after a mapping.
    ResumeVm {
        /// Region index.
        region: u32,
    },
    /// Reporting a region's mapping state to the driver.
    ReportMapping {
        /// Region index.
        region: u32,
    },
    /// `HcsPauseComputeSystem` before unmapping after a placement change.
    PauseForUnmap,
    /// `HdvDestroySectionBackedMmioRange` after a placement change.
    DestroyRange {
        /// Region index.
        region: u32,
    },
    /// `HcsResumeComputeSystem` after unmapping.
    ResumeAfterUnmap,
    /// Reporting a region unmapped after a placement change.
    ReportUnmapped {
        /// Region index.
        region: u32,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OpenComputeSystem => f.write_str("opening the VM (HcsOpenComputeSystem)"),
            Self::InitializeDeviceHost => {
                f.write_str("initializing the device host (HdvInitializeDeviceHostEx)")
            }
            Self::CreateDeviceInstance => {
                f.write_str("creating the PCI device instance (HdvCreateDeviceInstance)")
            }
            Self::CheckPairing => f.write_str("deciding the channel identity to pair with"),
            Self::OpenSession => f.write_str("opening the driver session"),
            Self::CheckLayout => f.write_str("checking the driver's region layout"),
            Self::GetSection { region } => write!(f, "getting region {region}'s section handle"),
            Self::MapView { region } => write!(f, "mapping a view of region {region}'s section"),
            Self::WaitForStart => f.write_str("waiting for the VM to start"),
            Self::PauseVm { region } => {
                write!(
                    f,
                    "pausing the VM to map region {region} (HcsPauseComputeSystem)"
                )
            }
            Self::CreateRange { region } => {
                write!(
                    f,
                    "mapping region {region} (HdvCreateSectionBackedMmioRange)"
                )
            }
            Self::ResumeVm { region } => {
                write!(
                    f,
                    "resuming the VM after mapping region {region} (HcsResumeComputeSystem)"
                )
            }
            Self::ReportMapping { region } => {
                write!(f, "reporting region {region}'s mapping state to the driver")
            }
            Self::PauseForUnmap => f.write_str("pausing the VM to unmap (HcsPauseComputeSystem)"),
            Self::DestroyRange { region } => write!(
                f,
                "unmapping region {region} after a placement change \
                 (HdvDestroySectionBackedMmioRange)"
            ),
            Self::ResumeAfterUnmap => {
                f.write_str("resuming the VM after unmapping (HcsResumeComputeSystem)")
            }
            Self::ReportUnmapped { region } => {
                write!(f, "reporting region {region} unmapped to the driver")
            }
        }
    }
}

/// Why a step failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cause {
    /// An HCS or HDV call failed.
    Platform(HResult),
    /// A driver request failed.
    Driver(DriverError),
    /// Mapping a view failed.
    View(ViewError),
    /// The driver's layout is unusable.
    Layout(LayoutError),
    /// The wait ran out.
    TimedOut,
    /// The driver client offers the channel with other GUIDs than the configuration names: the
    /// pairing capability would point the guest at the wrong channel.
    PairingMismatch {
        /// The configuration's GUIDs.
        configured: ChannelIdentity,
        /// The driver client's GUIDs.
        driver: ChannelIdentity,
    },
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Platform(hr) => write!(f, "HRESULT {hr}"),
            Self::Driver(error) => error.fmt(f),
            Self::View(error) => error.fmt(f),
            Self::Layout(error) => error.fmt(f),
            Self::TimedOut => f.write_str("timed out"),
            Self::PairingMismatch { configured, driver } => write!(
                f,
                "the configuration names interface type {} instance {}, but the driver client \
                 offers type {} instance {}",
                configured.interface_type,
                configured.interface_instance,
                driver.interface_type,
                driver.interface_instance
            ),
        }
    }
}

/// A release step of the unwinding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// `HdvDestroySectionBackedMmioRange`.
    DestroyRange {
        /// Region index.
        region: u32,
    },
    /// `HcsResumeComputeSystem` after destroying the ranges.
    ResumeVm,
    /// Reporting a region unmapped.
    ReportUnmapped {
        /// Region index.
        region: u32,
    },
    /// Closing the driver session.
    CloseSession,
    /// `HdvTeardownDeviceHost`.
    TeardownDeviceHost,
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DestroyRange { region } => {
                write!(
                    f,
                    "unmapping region {region} (HdvDestroySectionBackedMmioRange)"
                )
            }
            Self::ResumeVm => f.write_str("resuming the VM after unmapping"),
            Self::ReportUnmapped { region } => write!(f, "reporting region {region} unmapped"),
            Self::CloseSession => f.write_str("closing the driver session"),
            Self::TeardownDeviceHost => {
                f.write_str("tearing down the device host (HdvTeardownDeviceHost)")
            }
        }
    }
}

/// What happened to the device host itself (`HdvTeardownDeviceHost`).
///
/// hdv.md §3.1 / §5 step 6 (hcs-rs's doc comments; Microsoft's HDV sample order): the device
/// host is torn down after the VM has been terminated. The device host never terminates the VM
/// (it does not own it), so when the VM still runs at shutdown the teardown waits for it, and
/// when the wait runs out the teardown is deferred: the device host and the compute-system
/// handle stay open until the VM stops (then dropping the `DeviceHost` finishes) or this process
/// exits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HostTeardown {
    /// No device host was held (the sequence failed before initializing one).
    #[default]
    NotHeld,
    /// `HdvTeardownDeviceHost` ran before the VM was ever powered on.
    BeforeVmStarted,
    /// `HdvTeardownDeviceHost` ran after the VM was cleaned up (the emulator's `Teardown`).
    AfterVmTornDown,
    /// `HdvTeardownDeviceHost` was not called: the VM still ran after waiting `waited`.
    DeferredToProcessExit {
        /// How long the device host waited for the VM to stop.
        waited: Duration,
    },
}

impl fmt::Display for HostTeardown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotHeld => f.write_str("no device host to tear down"),
            Self::BeforeVmStarted => f.write_str("device host torn down before the VM started"),
            Self::AfterVmTornDown => f.write_str("device host torn down after the VM stopped"),
            Self::DeferredToProcessExit { waited } => write!(
                f,
                "device host teardown deferred: the VM still runs after waiting {:.1}s; it is \
                 torn down when the VM stops or released when this process exits",
                waited.as_secs_f64()
            ),
        }
    }
}

/// What the unwinding could not release cleanly. Every release step runs even when an
/// earlier one failed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TeardownReport {
    /// Failed release steps, in the order they ran.
    pub failures: Vec<(Release, Cause)>,
    /// What happened to the device host.
    pub device_host: HostTeardown,
}

impl TeardownReport {
    /// Whether everything was released cleanly: no failure, and the device host was not left
    /// for process exit.
    pub fn is_clean(&self) -> bool {
        self.failures.is_empty() && !self.deferred()
    }

    /// Whether the device host's teardown was deferred because the VM still ran.
    pub fn deferred(&self) -> bool {
        matches!(self.device_host, HostTeardown::DeferredToProcessExit { .. })
    }
}

impl fmt::Display for TeardownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.failures.is_empty() {
            return if self.deferred() {
                write!(f, "teardown incomplete: {}", self.device_host)
            } else {
                write!(f, "teardown complete ({})", self.device_host)
            };
        }
        write!(
            f,
            "teardown finished with {} failure(s) ({}):",
            self.failures.len(),
            self.device_host
        )?;
        for (release, cause) in &self.failures {
            write!(f, " [{release}: {cause}]")?;
        }
        Ok(())
    }
}

/// A failed step, after everything done before it was released in reverse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequenceError {
    /// The step that failed.
    pub step: Step,
    /// Why.
    pub cause: Cause,
    /// How the unwinding went.
    pub teardown: TeardownReport,
}

impl fmt::Display for SequenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}; {}", self.step, self.cause, self.teardown)
    }
}

impl std::error::Error for SequenceError {}
