//! Steps 7-9: waiting for the VM and for the guest's placement, mapping each region under a
//! pause, and unmapping every region when the placement stops allowing it.

use super::{
    Cause, DeviceHost, Event, Progress, START_POLL_INTERVAL, SequenceError, Step, StepResult,
    UnmapReason,
};
use crate::clock::{Clock, StopSignal};
use crate::driver::{ActedOn, DriverClient, MappingState};
use crate::emulator::VmLifecycle;
use crate::hresult::HResult;
use crate::layout::PAGE_SIZE;
use crate::placement::{AcceptedPlacement, BarState};
use crate::platform::{HcsApi, HdvApi, MmioMappingFlags, MmioRange};
use crate::views::SectionMapper;

impl<H: HcsApi, D: HdvApi, C: DriverClient, M: SectionMapper> DeviceHost<H, D, C, M> {
    /// Steps 7-9: waits for the VM to start, then for the guest to place the BAR with memory
    /// decode on, then maps every region and reports its state. Returns at once if the regions
    /// are already mapped. On failure everything is released (a running VM gets the bounded wait
    /// before the device host's teardown) before the error returns.
    pub fn map_regions(
        &mut self,
        clock: &dyn Clock,
        stop: &dyn StopSignal,
    ) -> Result<Progress, SequenceError> {
        match self.try_map_regions(clock, stop) {
            Ok(progress) => Ok(progress),
            Err((step, cause)) => Err(self.fail(step, cause, Some(clock))),
        }
    }

    fn try_map_regions(
        &mut self,
        clock: &dyn Clock,
        stop: &dyn StopSignal,
    ) -> StepResult<Progress> {
        if self.mapped_for.is_some() {
            return Ok(Progress::Mapped);
        }
        let deadline = self
            .config
            .start_timeout
            .map(|timeout| clock.now() + timeout);
        while !self.emulator.started() {
            self.log_guest_notes();
            if self.guest_stopped {
                return Ok(Progress::GuestStopped);
            }
            if stop.stop_requested() {
                return Ok(Progress::Stopped);
            }
            if deadline.is_some_and(|deadline| clock.now() >= deadline) {
                return Err((Step::WaitForStart, Cause::TimedOut));
            }
            clock.sleep(START_POLL_INTERVAL);
        }
        self.emit(Event::VmStarted);
        let mut announced = false;
        loop {
            if let Some(accepted) = self.poll_placement()
                && let BarState::Decoding { base } = accepted.state
            {
                return self.map_all(base, clock, stop);
            }
            if self.emulator.vm_lifecycle() == VmLifecycle::TornDown {
                return Ok(Progress::VmTornDown);
            }
            if self.guest_stopped {
                return Ok(Progress::GuestStopped);
            }
            if stop.stop_requested() {
                return Ok(Progress::Stopped);
            }
            if !announced {
                announced = true;
                self.emit(Event::WaitingForPlacement);
            }
            clock.sleep(START_POLL_INTERVAL);
        }
    }

    /// The current placement if it is newer than the one acted on (reported as an event), after
    /// reporting any new rejection. Also notes the newest guest event applied with it (one look
    /// at the inbox: the two belong together), which every report made for this look names as
    /// `acted_on`.
    pub(super) fn poll_placement(&mut self) -> Option<AcceptedPlacement> {
        self.log_guest_notes();
        if let Some(rejection) = self.placement.last_rejection()
            && rejection.total > self.seen_rejections
        {
            self.seen_rejections = rejection.total;
            self.emit(Event::PlacementRejected(rejection));
        }
        let look = self.placement.look();
        self.applied = look
            .events_applied
            .map_or(ActedOn::Unknown, ActedOn::Sequence);
        let accepted = look.latest?;
        if accepted.generation <= self.seen_generation {
            return None;
        }
        self.seen_generation = accepted.generation;
        self.emit(Event::PlacementAccepted(accepted));
        Some(accepted)
    }

    /// Maps every region into the BAR at `base` (the guest placed it and decode is on).
    pub(super) fn map_all(
        &mut self,
        base: u64,
        clock: &dyn Clock,
        stop: &dyn StopSignal,
    ) -> StepResult<Progress> {
        self.mapped_for = Some(base);
        self.emit(Event::MappingAt { base });
        for slot in 0..self.regions.len() {
            if self.map_region(slot, clock, stop)? == Progress::Stopped {
                return Ok(Progress::Stopped);
            }
        }
        self.note_reported();
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
            // The guest writes through the mapping only where it may (`guest-ro` regions are
            // mapped read-only, like the device host's own handle to them).
            flags: MmioMappingFlags {
                writeable: self
                    .config
                    .regions
                    .get(slot)
                    .is_none_or(|region| region.access.guest_writable()),
                executable: false,
            },
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
                    .report_mapping(session, region, failed, self.applied)
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
            .report_mapping(session, region, state, self.applied)
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

    pub(super) fn region_intercepts(&self, slot: usize) -> u64 {
        self.emulator
            .intercepts()
            .per_region
            .get(slot)
            .copied()
            .unwrap_or(0)
    }

    /// Destroys every range (under a pause while the VM runs, hdv.md §3.3 "same rule for
    /// Destroy") and reports every reported region unmapped. A range HDV fails to destroy stays
    /// recorded, so the release retries it.
    pub(super) fn unmap_all(&mut self, reason: UnmapReason) -> StepResult<()> {
        let has_ranges = self.regions.iter().any(|region| region.range.is_some());
        if let (Some(system), Some(device), true) = (self.system, self.device, has_ranges) {
            if self.emulator.vm_lifecycle() == VmLifecycle::PoweredOn && !self.paused {
                self.backends
                    .hcs
                    .pause(system)
                    .map_err(|hr| (Step::PauseForUnmap, Cause::Platform(hr)))?;
                self.paused = true;
            }
            for resources in self.regions.iter_mut().rev() {
                if let Some((bar, offset_pages)) = resources.range {
                    let region = resources.index;
                    self.backends
                        .hdv
                        .destroy_section_backed_mmio_range(device, bar, offset_pages)
                        .map_err(|hr| (Step::DestroyRange { region }, Cause::Platform(hr)))?;
                    resources.range = None;
                }
            }
            if self.paused {
                self.backends
                    .hcs
                    .resume(system)
                    .map_err(|hr| (Step::ResumeAfterUnmap, Cause::Platform(hr)))?;
                self.paused = false;
            }
        }
        if let Some(session) = self.session {
            for resources in self.regions.iter_mut().rev().filter(|r| r.reported) {
                let region = resources.index;
                self.backends
                    .driver
                    .report_mapping(session, region, MappingState::Unmapped, self.applied)
                    .map_err(|error| (Step::ReportUnmapped { region }, Cause::Driver(error)))?;
                resources.reported = false;
                resources.state = MappingState::Unmapped;
            }
        }
        self.mapped_for = None;
        self.note_reported();
        self.emit(Event::RegionsUnmapped(reason));
        Ok(())
    }

    /// Every region was just reported as of the last look.
    fn note_reported(&mut self) {
        if let ActedOn::Sequence(applied) = self.applied {
            self.reported_through = self.reported_through.max(applied);
        }
    }

    /// The guest's events since the regions were last reported changed nothing mapped (the
    /// look found no new placement, or one that needs no change: a report of the placement
    /// already mapped, a reservation alone, a refused or wrong-BAR report): the regions that
    /// are backed are reported again, same state, with the newer `acted_on`. Without it the
    /// driver, which announces "backed" to the guest only from a report decided after its
    /// newest event, would leave a guest that reported again waiting. One REPORT_MAPPING per
    /// backed region, only in a look that applied new events; nothing while nothing is backed
    /// (the driver has nothing to announce then).
    pub(super) fn rereport_mapped(&mut self) -> StepResult<()> {
        let (ActedOn::Sequence(applied), Some(session)) = (self.applied, self.session) else {
            return Ok(());
        };
        if applied <= self.reported_through {
            return Ok(());
        }
        let mut regions = 0usize;
        for resources in self.regions.iter().filter(|r| r.reported) {
            if !matches!(
                resources.state,
                MappingState::SectionBacked | MappingState::InterceptFallback { .. }
            ) {
                continue;
            }
            let region = resources.index;
            self.backends
                .driver
                .report_mapping(session, region, resources.state, self.applied)
                .map_err(|error| (Step::ReportMapping { region }, Cause::Driver(error)))?;
            regions += 1;
        }
        self.reported_through = applied;
        if regions > 0 {
            self.emit(Event::MappingReReported {
                acted_on: applied,
                regions,
            });
        }
        Ok(())
    }
}
