//! Releasing everything in reverse order, on shutdown, after a failure, and on drop.

use super::{Cause, DeviceHost, Event, Release, TeardownReport};
use crate::driver::{DriverClient, MappingState};
use crate::platform::{HcsApi, HdvApi};
use crate::views::SectionMapper;

impl<H: HcsApi, D: HdvApi, C: DriverClient, M: SectionMapper> DeviceHost<H, D, C, M> {
    /// Releases everything, in reverse order of acquisition.
    pub fn shutdown(mut self) -> TeardownReport {
        self.release_all()
    }

    pub(super) fn release_all(&mut self) -> TeardownReport {
        let mut report = TeardownReport::default();
        self.release_ranges(&mut report);
        if let Some(session) = self.session {
            for resources in self.regions.iter_mut().rev().filter(|r| r.reported) {
                resources.reported = false;
                let region = resources.index;
                if let Err(error) =
                    self.backends
                        .driver
                        .report_mapping(session, region, MappingState::Unmapped)
                {
                    report
                        .failures
                        .push((Release::ReportUnmapped { region }, Cause::Driver(error)));
                }
                resources.state = MappingState::Unmapped;
            }
        }
        while let Some(resources) = self.regions.pop() {
            self.emulator.detach_view(resources.index as usize);
            // The view is unmapped when its last reference (this one) drops.
            drop(resources.view);
            self.backends.mapper.close_handle(resources.handle);
        }
        self.layout = None;
        if let Some(session) = self.session.take()
            && let Err(error) = self.backends.driver.close_session(session)
        {
            report
                .failures
                .push((Release::CloseSession, Cause::Driver(error)));
        }
        // The device instance has no destroy call: the host's teardown releases it (§3.1).
        self.device = None;
        if let Some(host) = self.host.take()
            && let Err(hr) = self.backends.hdv.teardown_device_host(host)
        {
            report
                .failures
                .push((Release::TeardownDeviceHost, Cause::Platform(hr)));
        }
        if let Some(system) = self.system.take() {
            self.backends.hcs.close_compute_system(system);
        }
        self.emit(Event::TornDown);
        report
    }

    fn release_ranges(&mut self, report: &mut TeardownReport) {
        let Some(system) = self.system else {
            return;
        };
        let has_ranges = self
            .regions
            .iter()
            .any(|resources| resources.range.is_some());
        if has_ranges && !self.paused {
            // hdv.md §3.3: destroying is not atomic for the guest either; pause if the VM runs.
            match self.backends.hcs.pause(system) {
                Ok(()) => self.paused = true,
                Err(hr) => self.emit(Event::UnmapWithoutPause(hr)),
            }
        }
        if let Some(device) = self.device {
            for resources in self.regions.iter_mut().rev() {
                if let Some((bar, offset_pages)) = resources.range.take() {
                    let region = resources.index;
                    if let Err(hr) = self.backends.hdv.destroy_section_backed_mmio_range(
                        device,
                        bar,
                        offset_pages,
                    ) {
                        let cause = Cause::Platform(hr);
                        report
                            .failures
                            .push((Release::DestroyRange { region }, cause));
                    }
                }
            }
        }
        // Also resumes a VM a failed forward step left paused.
        if self.paused {
            match self.backends.hcs.resume(system) {
                Ok(()) => self.paused = false,
                Err(hr) => report
                    .failures
                    .push((Release::ResumeVm, Cause::Platform(hr))),
            }
        }
    }
}

impl<H: HcsApi, D: HdvApi, C: DriverClient, M: SectionMapper> Drop for DeviceHost<H, D, C, M> {
    fn drop(&mut self) {
        // Releases whatever a caller did not shut down; a no-op after `shutdown`.
        if self.system.is_some() || self.host.is_some() || self.session.is_some() {
            self.release_all();
        }
    }
}
