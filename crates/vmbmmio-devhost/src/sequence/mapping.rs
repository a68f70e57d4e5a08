//! Steps 6-8: waiting for the VM, mapping each region under a pause, serving and watching
//! the fast path.

use std::time::Duration;

use super::{
    Cause, DeviceHost, Event, Progress, START_POLL_INTERVAL, SequenceError, ServeEnd, Step,
    StepResult,
};
use crate::clock::{Clock, StopSignal};
use crate::driver::{DriverClient, MappingState};
use crate::hresult::HResult;
use crate::layout::PAGE_SIZE;
use crate::platform::{HcsApi, HdvApi, MmioMappingFlags, MmioRange};
use crate::views::SectionMapper;

impl<H: HcsApi, D: HdvApi, C: DriverClient, M: SectionMapper> DeviceHost<H, D, C, M> {
    /// Steps 6-7: waits for the VM to start, then maps every region and reports its state. On
    /// failure everything is released before the error returns.
    pub fn map_regions(
        &mut self,
        clock: &dyn Clock,
        stop: &dyn StopSignal,
    ) -> Result<Progress, SequenceError> {
        match self.try_map_regions(clock, stop) {
            Ok(progress) => Ok(progress),
            Err((step, cause)) => Err(self.fail(step, cause)),
        }
    }

    fn try_map_regions(
        &mut self,
        clock: &dyn Clock,
        stop: &dyn StopSignal,
    ) -> StepResult<Progress> {
        let deadline = self
            .config
            .start_timeout
            .map(|timeout| clock.now() + timeout);
        while !self.emulator.started() {
            if stop.stop_requested() {
                return Ok(Progress::Stopped);
            }
            if deadline.is_some_and(|deadline| clock.now() >= deadline) {
                return Err((Step::WaitForStart, Cause::TimedOut));
            }
            clock.sleep(START_POLL_INTERVAL);
        }
        self.emit(Event::VmStarted);
        for slot in 0..self.regions.len() {
            if self.map_region(slot, clock, stop)? == Progress::Stopped {
                return Ok(Progress::Stopped);
            }
        }
        match self.driver_status() {
            Ok(status) => self.emit(Event::DriverStatus(status)),
            Err(error) => self.emit(Event::DriverStatusUnavailable(error.to_string())),
        }
        Ok(Progress::Mapped)
    }

    fn map_region(
        &mut self,
        slot: usize,
        clock: &dyn Clock,
        stop: &dyn StopSignal,
    ) -> StepResult<Progress> {
        let (Some(system), Some(device), Some(session), Some(layout)) =
            (self.system, self.device, self.session, self.layout.as_ref())
        else {
            return Ok(Progress::Stopped);
        };
        let Some(resources) = self.regions.get(slot) else {
            return Ok(Progress::Stopped);
        };
        let region = resources.index;
        let Some(placement) = layout.regions().get(slot).copied() else {
            return Ok(Progress::Stopped);
        };
        let range = MmioRange {
            bar: self.config.bar_index,
            offset_pages: placement.offset / PAGE_SIZE,
            length_pages: placement.size / PAGE_SIZE,
            flags: MmioMappingFlags::WRITEABLE,
            section: resources.handle,
            section_offset_pages: 0,
        };
        let policy = self.config.map_retry;
        let mut attempts = 0u32;
        let outcome = loop {
            attempts += 1;
            self.backends
                .hcs
                .pause(system)
                .map_err(|hr| (Step::PauseVm { region }, Cause::Platform(hr)))?;
            self.paused = true;
            let created = self
                .backends
                .hdv
                .create_section_backed_mmio_range(device, &range);
            if created.is_ok()
                && let Some(resources) = self.regions.get_mut(slot)
            {
                resources.range = Some((range.bar, range.offset_pages));
            }
            self.backends
                .hcs
                .resume(system)
                .map_err(|hr| (Step::ResumeVm { region }, Cause::Platform(hr)))?;
            self.paused = false;
            match created {
                Err(HResult::INVALID_STATE) if attempts < policy.max_attempts.max(1) => {
                    self.emit(Event::MappingDeferred { region, attempts });
                    if stop.stop_requested() {
                        return Ok(Progress::Stopped);
                    }
                    clock.sleep(policy.interval);
                }
                other => break other,
            }
        };
        let state = match outcome {
            Ok(()) => MappingState::SectionBacked,
            Err(hresult) if self.config.intercept_fallback => {
                MappingState::InterceptFallback { hresult }
            }
            Err(hresult) => {
                // Tell the driver why before unwinding (which then reports it unmapped); a
                // failure to report is secondary to the mapping failure being returned.
                let failed = MappingState::Failed { hresult };
                if self
                    .backends
                    .driver
                    .report_mapping(session, region, failed)
                    .is_ok()
                    && let Some(resources) = self.regions.get_mut(slot)
                {
                    resources.state = failed;
                    resources.reported = true;
                }
                return Err((Step::CreateRange { region }, Cause::Platform(hresult)));
            }
        };
        self.backends
            .driver
            .report_mapping(session, region, state)
            .map_err(|error| (Step::ReportMapping { region }, Cause::Driver(error)))?;
        let intercepts = self.region_intercepts(slot);
        if let Some(resources) = self.regions.get_mut(slot) {
            resources.state = state;
            resources.reported = true;
            resources.intercepts_at_mapping = intercepts;
        }
        self.emit(Event::RegionMapped {
            region,
            state,
            attempts,
        });
        Ok(Progress::Mapped)
    }

    fn region_intercepts(&self, slot: usize) -> u64 {
        self.emulator
            .intercepts()
            .per_region
            .get(slot)
            .copied()
            .unwrap_or(0)
    }

    /// One health check: a section-backed region whose accesses still reach the emulator is
    /// re-reported as served by intercepts (`InterceptFallback` with `S_OK`). On failure
    /// everything is released before the error returns.
    pub fn check_fast_path(&mut self) -> Result<(), SequenceError> {
        let Some(session) = self.session else {
            return Ok(());
        };
        for slot in 0..self.regions.len() {
            let intercepts = self.region_intercepts(slot);
            let Some(resources) = self.regions.get(slot) else {
                continue;
            };
            let region = resources.index;
            if resources.state != MappingState::SectionBacked
                || intercepts <= resources.intercepts_at_mapping
            {
                continue;
            }
            let state = MappingState::InterceptFallback {
                hresult: HResult::S_OK,
            };
            if let Err(error) = self.backends.driver.report_mapping(session, region, state) {
                return Err(self.fail(Step::ReportMapping { region }, Cause::Driver(error)));
            }
            if let Some(resources) = self.regions.get_mut(slot) {
                resources.state = state;
            }
            let intercepts = intercepts.saturating_sub(
                self.regions
                    .get(slot)
                    .map_or(0, |resources| resources.intercepts_at_mapping),
            );
            self.emit(Event::FastPathNotInEffect { region, intercepts });
        }
        Ok(())
    }

    /// Step 8: serves until a stop is requested or the VM is cleaned up, checking the fast
    /// path every `poll`.
    pub fn serve(
        &mut self,
        clock: &dyn Clock,
        stop: &dyn StopSignal,
        poll: Duration,
    ) -> Result<ServeEnd, SequenceError> {
        loop {
            self.check_fast_path()?;
            if stop.stop_requested() {
                self.emit(Event::StopRequested);
                return Ok(ServeEnd::Stopped);
            }
            if self.emulator.torn_down() {
                self.emit(Event::VmTornDown);
                return Ok(ServeEnd::VmTornDown);
            }
            clock.sleep(poll);
        }
    }
}
