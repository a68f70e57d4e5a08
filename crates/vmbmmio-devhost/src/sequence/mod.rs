//! The device host's HCS/HDV/driver call sequence, as a state machine over the platform traits.
//!
//! Forward (each step owns what it acquired until the matching release):
//! 1. open the VM (`HcsOpenComputeSystem`);
//! 2. initialize the device host (`HdvInitializeDeviceHostEx` with InitializeComSecurity,
//!    retried without the flag on `RPC_E_TOO_LATE`, hdv.md §3.1 observed);
//! 3. create the PCI device instance with the emulator as its callback context (§3.2);
//! 4. open the driver session and check its layout;
//! 5. per region: fetch the section handle, map the device host's view, attach it to the
//!    emulator (the intercept fallback serves from it);
//!    -- ready: the VM may start (hdv.md §5: the device host must exist before the start) --
//! 6. wait for the emulator's `Start` (the VM runs; HDV refuses mappings before, §3.3);
//! 7. per region: pause the VM, `HdvCreateSectionBackedMmioRange`, resume (§3.3: the change is
//!    not atomic for the guest otherwise); a refusal with `ERROR_INVALID_STATE` is retried with
//!    the VM running in between, up to the configured bound; any other refusal falls back to
//!    intercepts (or fails, if the fallback is off); the result is reported to the driver;
//! 8. serve until stopped or the VM is cleaned up, watching the intercept counters.
//!
//! Release (on exit, on Ctrl-C, and after any failure, in reverse): destroy the ranges (under
//! one pause if the VM still runs), report the regions unmapped, detach and unmap the views and
//! close the section handles, close the session, tear the device host down (which releases the
//! device instance, §3.1), close the VM. Every release step runs even if an earlier one
//! failed; failures are collected in a [`TeardownReport`]. Dropping a [`DeviceHost`] releases
//! whatever it still holds, so no path leaks.

mod errors;
mod events;
mod mapping;
mod release;
mod run;

use std::sync::Arc;
use std::time::Duration;

pub use errors::{Cause, Release, SequenceError, Step, TeardownReport};
pub use events::Event;
pub use run::{RunSummary, run};

use crate::callbacks::PciDeviceCallbacks;
use crate::config::DeviceHostConfig;
use crate::driver::{
    DriverClient, DriverError, MappingState, SectionAccess, SessionId, SessionRequest,
    SessionStatus,
};
use crate::emulator::Emulator;
use crate::hresult::HResult;
use crate::layout::BarLayout;
use crate::platform::{
    ComputeSystem, DeviceHandle, DeviceHostFlags, DeviceHostHandle, HcsApi, HdvApi, SectionHandle,
};
use crate::views::SectionMapper;

/// How often the device host looks for the emulator's `Start` while waiting.
pub const START_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How often the device host checks the intercept counters while serving.
pub const SERVE_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Where the sequence reports its progress (main prints, tests record).
pub type EventLog = Box<dyn FnMut(&Event)>;

/// The platform and driver the sequence runs against.
pub struct Backends<H, D, C, M> {
    /// HCS.
    pub hcs: H,
    /// HDV.
    pub hdv: D,
    /// The vmbmmio driver.
    pub driver: C,
    /// Section views and handle closing.
    pub mapper: M,
}

/// How waiting for the VM or mapping ended when it did not fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Every region has its mapping state.
    Mapped,
    /// A stop was requested first.
    Stopped,
}

/// Why serving ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServeEnd {
    /// A stop was requested (Ctrl-C).
    Stopped,
    /// The VM was cleaned up (the emulator's `Teardown`).
    VmTornDown,
}

/// Everything held for one region.
struct RegionResources<V> {
    index: u32,
    handle: SectionHandle,
    view: Option<Arc<V>>,
    /// `(bar, offset_pages)` of the section-backed range, once created.
    range: Option<(u8, u64)>,
    state: MappingState,
    reported: bool,
    /// Intercepts counted for the region when its state was decided.
    intercepts_at_mapping: u64,
}

/// A running device host: what it acquired, and the backends to release it with.
pub struct DeviceHost<H: HcsApi, D: HdvApi, C: DriverClient, M: SectionMapper> {
    config: DeviceHostConfig,
    backends: Backends<H, D, C, M>,
    emulator: Arc<Emulator>,
    log: EventLog,
    system: Option<ComputeSystem>,
    host: Option<DeviceHostHandle>,
    device: Option<DeviceHandle>,
    session: Option<SessionId>,
    layout: Option<BarLayout>,
    regions: Vec<RegionResources<M::View>>,
    /// The VM is paused by this device host (a pause is owned until its resume succeeds).
    paused: bool,
}

type StepResult<T> = Result<T, (Step, Cause)>;

impl<H: HcsApi, D: HdvApi, C: DriverClient, M: SectionMapper> DeviceHost<H, D, C, M> {
    /// Runs steps 1-5. On failure everything acquired is released before the error returns.
    pub fn start(
        config: &DeviceHostConfig,
        backends: Backends<H, D, C, M>,
        log: EventLog,
    ) -> Result<Self, SequenceError> {
        let emulator = Arc::new(Emulator::new(config.pnp_id, config.bar_index));
        let mut host = Self {
            config: config.clone(),
            backends,
            emulator,
            log,
            system: None,
            host: None,
            device: None,
            session: None,
            layout: None,
            regions: Vec::new(),
            paused: false,
        };
        match host.acquire() {
            Ok(()) => {
                host.emit(Event::Ready);
                Ok(host)
            }
            Err((step, cause)) => Err(host.fail(step, cause)),
        }
    }

    /// The emulator (its counters are the fast path's health signal).
    pub fn emulator(&self) -> &Arc<Emulator> {
        &self.emulator
    }

    /// The layout the driver returned.
    pub fn layout(&self) -> Option<&BarLayout> {
        self.layout.as_ref()
    }

    /// The mapping state of each region.
    pub fn mapping_states(&self) -> Vec<MappingState> {
        self.regions.iter().map(|region| region.state).collect()
    }

    /// The backends (tests inspect their fakes).
    pub fn backends(&self) -> &Backends<H, D, C, M> {
        &self.backends
    }

    /// The driver's view of the session.
    pub fn driver_status(&mut self) -> Result<SessionStatus, DriverError> {
        match self.session {
            Some(session) => self.backends.driver.status(session),
            None => Err(DriverError::Rejected {
                reason: "no session".to_string(),
            }),
        }
    }

    fn emit(&mut self, event: Event) {
        (self.log)(&event);
    }

    fn fail(&mut self, step: Step, cause: Cause) -> SequenceError {
        let teardown = self.release_all();
        SequenceError {
            step,
            cause,
            teardown,
        }
    }

    fn acquire(&mut self) -> StepResult<()> {
        let config = self.config.clone();
        let system = self
            .backends
            .hcs
            .open_compute_system(config.vm_id)
            .map_err(|hr| (Step::OpenComputeSystem, Cause::Platform(hr)))?;
        self.system = Some(system);
        self.emit(Event::ComputeSystemOpened);

        let host = self.initialize_device_host(system)?;
        self.host = Some(host);

        let callbacks: Arc<dyn PciDeviceCallbacks> = self.emulator.clone();
        let device = self
            .backends
            .hdv
            .create_pci_device(
                host,
                config.emulator_class_id,
                config.instance_id,
                callbacks,
            )
            .map_err(|hr| (Step::CreateDeviceInstance, Cause::Platform(hr)))?;
        self.device = Some(device);
        self.emit(Event::DeviceCreated);

        let request = SessionRequest {
            target: config.vm_id,
            region_sizes: config.region_sizes.clone(),
        };
        let info = self
            .backends
            .driver
            .open_session(&request)
            .map_err(|error| (Step::OpenSession, Cause::Driver(error)))?;
        self.session = Some(info.session);
        let layout = BarLayout::from_session(&info, &config.region_sizes)
            .map_err(|error| (Step::CheckLayout, Cause::Layout(error)))?;
        self.emulator.set_layout(layout.clone());
        self.emit(Event::SessionOpened {
            bar_size: layout.bar_size(),
            regions: layout.regions().len(),
        });
        let regions = layout.regions().to_vec();
        self.layout = Some(layout);

        for (index, region) in (0u32..).zip(regions) {
            let handle = self
                .backends
                .driver
                .region_section(info.session, index, SectionAccess::ReadWrite)
                .map_err(|error| (Step::GetSection { region: index }, Cause::Driver(error)))?;
            self.regions.push(RegionResources {
                index,
                handle,
                view: None,
                range: None,
                state: MappingState::Unmapped,
                reported: false,
                intercepts_at_mapping: 0,
            });
            let view = self
                .backends
                .mapper
                .map_view(handle, region.size, SectionAccess::ReadWrite)
                .map_err(|error| (Step::MapView { region: index }, Cause::View(error)))?;
            let view = Arc::new(view);
            self.emulator.attach_view(index as usize, view.clone());
            if let Some(resources) = self.regions.last_mut() {
                resources.view = Some(view);
            }
        }
        Ok(())
    }

    fn initialize_device_host(&mut self, system: ComputeSystem) -> StepResult<DeviceHostHandle> {
        let hdv = &mut self.backends.hdv;
        let (result, com_security) =
            match hdv.initialize_device_host(system, DeviceHostFlags::InitializeComSecurity) {
                // hdv.md §3.1 [observed]: COM security can be set once per process.
                Err(HResult::RPC_E_TOO_LATE) => (
                    hdv.initialize_device_host(system, DeviceHostFlags::None),
                    false,
                ),
                other => (other, true),
            };
        let host = result.map_err(|hr| (Step::InitializeDeviceHost, Cause::Platform(hr)))?;
        self.emit(Event::DeviceHostInitialized { com_security });
        Ok(host)
    }
}
