//! Step 10: serving. Follows the guest's placement (unmap on decode off, remap on a BAR move)
//! and watches the fast path's health.

use std::time::Duration;

use super::{Cause, DeviceHost, Event, SequenceError, ServeEnd, Step, StepResult, UnmapReason};
use crate::clock::{Clock, StopSignal};
use crate::driver::{DriverClient, MappingState};
use crate::emulator::VmLifecycle;
use crate::hresult::HResult;
use crate::placement::BarState;
use crate::platform::{HcsApi, HdvApi};
use crate::views::SectionMapper;

impl<H: HcsApi, D: HdvApi, C: DriverClient, M: SectionMapper> DeviceHost<H, D, C, M> {
    /// One look at the placement: acts on a newer one. Decode off unmaps; a BAR at another base
    /// unmaps and maps again there (HDV maps relative to the BAR, and nothing documents what a
    /// live range does when the BAR moves, platform-paths G5/J4, so the device host never
    /// leaves one in place across a move); decode off and on again since the last look (same
    /// base) unmaps and maps again; decode on with nothing mapped maps. On failure everything
    /// is released before the error returns.
    ///
    /// A poll sees only the newest report, so a guest that toggles decode between two polls
    /// does so while the old ranges still exist; only the channel protocol's "releasing"
    /// handshake (the guest waits for the host before it turns decode off) closes that window. Afterwards [`Self::mapped_for`] says
    /// where the regions are mapped.
    pub fn follow_placement(
        &mut self,
        clock: &dyn Clock,
        stop: &dyn StopSignal,
    ) -> Result<(), SequenceError> {
        match self.try_follow_placement(clock, stop) {
            Ok(()) => Ok(()),
            Err((step, cause)) => Err(self.fail(step, cause, Some(clock))),
        }
    }

    fn try_follow_placement(&mut self, clock: &dyn Clock, stop: &dyn StopSignal) -> StepResult<()> {
        if !self.emulator.started() || self.emulator.vm_lifecycle() != VmLifecycle::PoweredOn {
            // Before Start HDV refuses mappings (§3.3); after Teardown there is nothing to map.
            return Ok(());
        }
        let acted_on = self.seen_generation;
        let Some(accepted) = self.poll_placement() else {
            return self.rereport_mapped();
        };
        // Decode went off and on again since the last look: the platform may have dropped the
        // ranges on decode off (platform-paths G2/G4), so treat it as off, then on.
        let toggled = self.placement.last_decode_off() > acted_on;
        match (self.mapped_for, accepted.state) {
            (None, BarState::DecodeOff) => {}
            (Some(mapped), BarState::Decoding { base }) if mapped == base && !toggled => {}
            (Some(mapped), BarState::Decoding { base }) if mapped == base => {
                self.unmap_all(UnmapReason::DecodeOff)?;
                self.map_all(base, clock, stop)?;
            }
            (Some(_), BarState::DecodeOff) => self.unmap_all(UnmapReason::DecodeOff)?,
            (Some(from), BarState::Decoding { base }) => {
                self.unmap_all(UnmapReason::BarMoved { from, to: base })?;
                self.map_all(base, clock, stop)?;
            }
            (None, BarState::Decoding { base }) => {
                self.map_all(base, clock, stop)?;
            }
        }
        // Whatever was mapped or unmapped above was reported as of this look; if nothing was,
        // the backed regions are reported again with the newer events (module `mapping`).
        self.rereport_mapped()
    }

    /// One health check: a section-backed region whose accesses still reach the emulator is
    /// re-reported as served by intercepts (`InterceptFallback` with `S_OK`). On failure
    /// everything is released before the error returns.
    pub fn check_fast_path(&mut self) -> Result<(), SequenceError> {
        match self.try_check_fast_path() {
            Ok(()) => Ok(()),
            Err((step, cause)) => Err(self.fail(step, cause, None)),
        }
    }

    fn try_check_fast_path(&mut self) -> StepResult<()> {
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
            let since_mapping = intercepts.saturating_sub(resources.intercepts_at_mapping);
            let state = MappingState::InterceptFallback {
                hresult: HResult::S_OK,
            };
            self.backends
                .driver
                .report_mapping(session, region, state, self.applied)
                .map_err(|error| (Step::ReportMapping { region }, Cause::Driver(error)))?;
            if let Some(resources) = self.regions.get_mut(slot) {
                resources.state = state;
            }
            self.emit(Event::FastPathNotInEffect {
                region,
                intercepts: since_mapping,
            });
        }
        Ok(())
    }

    /// Step 10: serves until a stop is requested or the VM is cleaned up, following the
    /// placement and checking the fast path every `poll`.
    pub fn serve(
        &mut self,
        clock: &dyn Clock,
        stop: &dyn StopSignal,
        poll: Duration,
    ) -> Result<ServeEnd, SequenceError> {
        loop {
            self.log_guest_notes();
            if self.guest_stopped {
                self.emit(Event::GuestStoppedClosing);
                return Ok(ServeEnd::GuestStopped);
            }
            self.follow_placement(clock, stop)?;
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
