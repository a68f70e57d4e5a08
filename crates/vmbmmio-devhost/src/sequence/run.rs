//! The whole run in one call, as `main` uses it.

use super::guest_wait::LoopStopHandle;
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

/// What the caller of [`run_with`] wants to hear about while the sequence runs.
#[derive(Default)]
pub struct RunHooks {
    /// Called once, right after the start, if the guest-event loop runs: `main` hands the
    /// handle to the Ctrl-C handler, so a Ctrl-C cancels the pending WAIT_GUEST_EVENT at once
    /// (the release stops and joins the loop anyway, before CLOSE_SESSION).
    pub guest_loop_started: Option<Box<dyn FnOnce(LoopStopHandle)>>,
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
    run_with(config, backends, clock, stop, log, RunHooks::default())
}

/// [`run`], with [`RunHooks`].
pub fn run_with<H: HcsApi, D: HdvApi, C: DriverClient, M: SectionMapper>(
    config: &DeviceHostConfig,
    backends: Backends<H, D, C, M>,
    clock: &dyn Clock,
    stop: &dyn StopSignal,
    log: EventLog,
    hooks: RunHooks,
) -> Result<RunSummary, SequenceError> {
    let mut host = DeviceHost::start(config, backends, log)?;
    if let (Some(started), Some(handle)) = (hooks.guest_loop_started, host.guest_loop_stop_handle())
    {
        started(handle);
    }
    let progress = host.map_regions(clock, stop)?;
    let serve_end = match progress {
        Progress::Mapped => Some(host.serve(clock, stop, SERVE_POLL_INTERVAL)?),
        Progress::Stopped | Progress::VmTornDown | Progress::GuestStopped => None,
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
