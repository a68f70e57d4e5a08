//! Releasing everything in reverse order, on shutdown, after a failure, and on drop.
//!
//! The device host itself goes last and only once the VM is gone (hdv.md §3.1: hcs-rs's doc
//! comment "call after the compute system has been terminated"; §5 step 6: stop the VM, destroy
//! the ranges, tear the device host down, close the VM). The emulator's lifecycle callbacks say
//! where the VM is (`VmLifecycle`): never powered on → tear down now; cleaned up (`Teardown`) →
//! destroy the ranges without a pause (there is no VM to pause) and tear down; still powered on
//! (Ctrl-C, or a failure while serving) → destroy the ranges under a pause, release views,
//! handles and the session, then wait a bounded time for the VM to stop; if it does not, the
//! device host and the VM handle are kept and the report says the teardown was deferred. The
//! device host does not terminate the VM: it opened a VM someone else owns.

use std::time::Duration;

use super::{Cause, DeviceHost, Event, HostTeardown, Release, START_POLL_INTERVAL, TeardownReport};
use crate::clock::Clock;
use crate::driver::{DriverClient, MappingState};
use crate::emulator::VmLifecycle;
use crate::platform::{HcsApi, HdvApi};
use crate::views::SectionMapper;

/// How often the release tries to destroy one section-backed range before it reports the
/// failure (a refusal may be transient; nothing else would ever destroy the range).
pub const RELEASE_DESTROY_ATTEMPTS: usize = 3;

impl<H: HcsApi, D: HdvApi, C: DriverClient, M: SectionMapper> DeviceHost<H, D, C, M> {
    /// What the process's death does to the device host: nothing of its release path runs.
    /// The backends are dropped as they are (on Windows the OS then closes every handle and
    /// unmaps every view of the process, and the driver's file cleanup ends the session); only
    /// simulators and tests that play a crashed device host call this.
    pub fn abandon(mut self) {
        self.abandoned = true;
    }

    /// Releases everything, in reverse order of acquisition, without waiting: if the VM still
    /// runs, the device host's teardown is deferred (see the module docs). Use
    /// [`Self::shutdown_waiting`] to give a running VM time to stop.
    pub fn shutdown(mut self) -> TeardownReport {
        self.release_all(None)
    }

    /// Releases everything; if the VM still runs once the ranges, views, handles and session
    /// are released, waits up to the configured bound ([`Self::set_vm_stop_wait`]) on `clock`
    /// for it to stop before tearing the device host down.
    pub fn shutdown_waiting(mut self, clock: &dyn Clock) -> TeardownReport {
        self.release_all(Some(clock))
    }

    pub(super) fn release_all(&mut self, clock: Option<&dyn Clock>) -> TeardownReport {
        let mut report = TeardownReport::default();
        // First: no request of the device host's may stay pending in the driver once the
        // session closes or the handle does (module `guest_follow`).
        self.stop_guest_loop();
        self.release_ranges(&mut report);
        if let Some(session) = self.session {
            for resources in self.regions.iter_mut().rev().filter(|r| r.reported) {
                resources.reported = false;
                let region = resources.index;
                if let Err(error) = self.backends.driver.report_mapping(
                    session,
                    region,
                    MappingState::Unmapped,
                    self.applied,
                ) {
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
        self.mapped_for = None;
        if let Some(session) = self.session.take()
            && let Err(error) = self.backends.driver.close_session(session)
        {
            report
                .failures
                .push((Release::CloseSession, Cause::Driver(error)));
        }
        report.device_host = self.release_device_host(clock, &mut report);
        if report.deferred() {
            self.emit(Event::TeardownDeferred);
        } else {
            if let Some(system) = self.system.take() {
                self.backends.hcs.close_compute_system(system);
            }
            self.emit(Event::TornDown);
        }
        report
    }

    /// Tears the device host down once the VM allows it (module docs).
    fn release_device_host(
        &mut self,
        clock: Option<&dyn Clock>,
        report: &mut TeardownReport,
    ) -> HostTeardown {
        let Some(host) = self.host else {
            return HostTeardown::NotHeld;
        };
        let outcome = match self.emulator.vm_lifecycle() {
            VmLifecycle::NotStarted => HostTeardown::BeforeVmStarted,
            VmLifecycle::TornDown => HostTeardown::AfterVmTornDown,
            VmLifecycle::PoweredOn => match clock {
                Some(clock) if self.wait_for_vm_stop(clock) => HostTeardown::AfterVmTornDown,
                Some(_) => HostTeardown::DeferredToProcessExit {
                    waited: self.vm_stop_wait,
                },
                None => HostTeardown::DeferredToProcessExit {
                    waited: Duration::ZERO,
                },
            },
        };
        if matches!(outcome, HostTeardown::DeferredToProcessExit { .. }) {
            self.teardown_deferred = true;
            return outcome;
        }
        self.host = None;
        self.teardown_deferred = false;
        // The device instance has no destroy call: the host's teardown releases it (§3.1).
        self.device = None;
        if let Err(hr) = self.backends.hdv.teardown_device_host(host) {
            report
                .failures
                .push((Release::TeardownDeviceHost, Cause::Platform(hr)));
        }
        outcome
    }

    /// Waits up to `vm_stop_wait` for the emulator's `Teardown`; true if it came.
    fn wait_for_vm_stop(&mut self, clock: &dyn Clock) -> bool {
        let timeout = self.vm_stop_wait;
        self.emit(Event::WaitingForVmStop { timeout });
        let deadline = clock.now() + timeout;
        loop {
            if self.emulator.vm_lifecycle() == VmLifecycle::TornDown {
                return true;
            }
            if clock.now() >= deadline {
                return false;
            }
            clock.sleep(START_POLL_INTERVAL);
        }
    }

    fn release_ranges(&mut self, report: &mut TeardownReport) {
        let Some(system) = self.system else {
            return;
        };
        let has_ranges = self
            .regions
            .iter()
            .any(|resources| resources.range.is_some());
        let vm_powered_on = self.emulator.vm_lifecycle() == VmLifecycle::PoweredOn;
        if has_ranges && vm_powered_on && !self.paused {
            // hdv.md §3.3: destroying is not atomic for the guest either; pause while it runs.
            // After the VM was cleaned up there is nothing to pause (§5 step 6 order).
            match self.backends.hcs.pause(system) {
                Ok(()) => self.paused = true,
                Err(hr) => self.emit(Event::UnmapWithoutPause(hr)),
            }
        }
        if let Some(device) = self.device {
            for resources in self.regions.iter_mut().rev() {
                if let Some((bar, offset_pages)) = resources.range.take() {
                    let region = resources.index;
                    // A range left behind lives until HDV tears the device down (a leak in
                    // between), so a refused destruction is tried again, a bounded number of
                    // times, before it is reported.
                    let mut result = Ok(());
                    for _ in 0..RELEASE_DESTROY_ATTEMPTS {
                        result = self.backends.hdv.destroy_section_backed_mmio_range(
                            device,
                            bar,
                            offset_pages,
                        );
                        if result.is_ok() {
                            break;
                        }
                    }
                    if let Err(hr) = result {
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
                Err(hr) => {
                    // A VM cleaned up meanwhile has nothing left to resume.
                    self.paused = false;
                    report
                        .failures
                        .push((Release::ResumeVm, Cause::Platform(hr)));
                }
            }
        }
    }
}

impl<H: HcsApi, D: HdvApi, C: DriverClient, M: SectionMapper> Drop for DeviceHost<H, D, C, M> {
    fn drop(&mut self) {
        if self.abandoned {
            return;
        }
        // Releases whatever a caller did not shut down; a no-op after `shutdown`, except that a
        // deferred device host is torn down now if the VM has stopped meanwhile.
        let holds_more = self.session.is_some()
            || self.guest_loop.is_some()
            || !self.regions.is_empty()
            || (self.host.is_some() && !self.teardown_deferred)
            || (self.system.is_some() && self.host.is_none());
        let vm_gone = self.emulator.vm_lifecycle() == VmLifecycle::TornDown;
        if holds_more || (self.teardown_deferred && vm_gone) {
            self.release_all(None);
        }
    }
}
