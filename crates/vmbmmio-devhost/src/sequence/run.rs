//! The whole run in one call, as `main` uses it.

use super::{
    Backends, DeviceHost, EventLog, Progress, SERVE_POLL_INTERVAL, SequenceError, ServeEnd,
    TeardownReport,
};
use crate::clock::{Clock, StopSignal};
use crate::config::DeviceHostConfig;
use crate::driver::{DriverClient, MappingState};
use crate::platform::{HcsApi, HdvApi};
use crate::views::SectionMapper;

/// The result of a whole run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSummary {
    /// Whether the regions were mapped before the run ended.
    pub progress: Progress,
    /// Why serving ended (`None` if the run stopped before serving).
    pub serve_end: Option<ServeEnd>,
    /// The last mapping state of each region.
    pub states: Vec<MappingState>,
    /// How the final release went.
    pub teardown: TeardownReport,
}

/// Runs the whole sequence: start, wait for the VM and the guest's placement, map, serve
/// (following the placement), shut down.
pub fn run<H: HcsApi, D: HdvApi, C: DriverClient, M: SectionMapper>(
    config: &DeviceHostConfig,
    backends: Backends<H, D, C, M>,
    clock: &dyn Clock,
    stop: &dyn StopSignal,
    log: EventLog,
) -> Result<RunSummary, SequenceError> {
    let mut host = DeviceHost::start(config, backends, log)?;
    let progress = host.map_regions(clock, stop)?;
    let serve_end = match progress {
        Progress::Mapped => Some(host.serve(clock, stop, SERVE_POLL_INTERVAL)?),
        Progress::Stopped | Progress::VmTornDown => None,
    };
    let states = host.mapping_states();
    // A VM still running after Ctrl-C gets the bounded wait before the device host's teardown.
    let teardown = host.shutdown_waiting(clock);
    Ok(RunSummary {
        progress,
        serve_end,
        states,
        teardown,
    })
}
