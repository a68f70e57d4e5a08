//! What can go wrong in the call sequence, and what the unwinding reports.

use std::fmt;

use crate::driver::DriverError;
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
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Platform(hr) => write!(f, "HRESULT {hr}"),
            Self::Driver(error) => error.fmt(f),
            Self::View(error) => error.fmt(f),
            Self::Layout(error) => error.fmt(f),
            Self::TimedOut => f.write_str("timed out"),
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

/// What the unwinding could not release cleanly. Every release step runs even when an
/// earlier one failed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TeardownReport {
    /// Failed release steps, in the order they ran.
    pub failures: Vec<(Release, Cause)>,
}

impl TeardownReport {
    /// Whether everything was released cleanly.
    pub fn is_clean(&self) -> bool {
        self.failures.is_empty()
    }
}

impl fmt::Display for TeardownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.failures.is_empty() {
            return f.write_str("teardown complete");
        }
        write!(
            f,
            "teardown finished with {} failure(s):",
            self.failures.len()
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
