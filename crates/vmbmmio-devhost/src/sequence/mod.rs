//! The device host's HCS/HDV/driver call sequence, as a state machine over the platform traits.
//!
//! Forward (each step owns what it acquired until the matching release):
//! 1. open the VM (`HcsOpenComputeSystem`);
//! 2. decide the channel identity (the driver client's offer GUIDs, which must match the
//!    configuration's) and put the pairing capability into the emulator's configuration space,
//!    so the guest finds it at its first enumeration;
//! 3. initialize the device host (`HdvInitializeDeviceHostEx` with InitializeComSecurity,
//!    retried without the flag on `RPC_E_TOO_LATE`, hdv.md §3.1 observed);
//! 4. ask the driver what it runs without (QUERY_DRIVER: the optional KMCL entries it lacks;
//!    logged, never fatal), then open the driver session and check its layout (the BAR size
//!    reaches the emulator and the placement checks);
//! 5. create the PCI device instance with the emulator as its callback context (§3.2). After
//!    the layout, because a device host attaching to a VM that already runs (after another one
//!    exited) is asked for the device's BARs at once; then start following the guest's events
//!    (WAIT_GUEST_EVENT pending on a thread of its own, `guest_follow`, `guest_wait`), if the
//!    driver client offers them: each event becomes a placement (step 8);
//! 6. per region: fetch the section handle, map the device host's view, attach it to the
//!    emulator (the intercept fallback serves from it);
//!    -- ready: the VM may start (hdv.md §5: the device host must exist before the start) --
//! 7. wait for the emulator's `Start` (the VM runs; HDV refuses mappings before, §3.3);
//! 8. wait for the placement signal to say "BAR placed, memory decode on" (`placement`: from the
//!    emulator's configuration space if the platform forwards the guest's writes, or from the
//!    guest's own report). Never earlier: on the observed build a range mapped before the guest
//!    enabled decode crashed the VM worker (§3.3);
//! 9. per region: pause the VM, `HdvCreateSectionBackedMmioRange`, resume (§3.3: the change is
//!    not atomic for the guest otherwise); a refusal with `ERROR_INVALID_STATE` is retried with
//!    the VM running in between, up to the configured bound; any other refusal falls back to
//!    intercepts (or fails, if the fallback is off); the result is reported to the driver;
//! 10. serve until stopped or the VM is cleaned up, watching the intercept counters and the
//!     placement: decode off → destroy every range under a pause and report the regions
//!     unmapped; BAR moved → the same, then map again at the new base; decode on again → map.
//!
//! Release (on exit, on Ctrl-C, and after any failure, in reverse): stop the guest-event loop
//! (cancel its pending wait, join its thread: nothing of the device host's stays pending in the
//! driver once the session closes), destroy the ranges (under one pause if the VM still runs;
//! without one after it was cleaned up), report the regions unmapped, detach and unmap the
//! views and close the section handles, close the session; then the device host (which
//! releases the device instance, §3.1) and the VM handle. hdv.md §3.1/§5:
//! `HdvTeardownDeviceHost` comes after the VM was terminated, so if the VM still runs the
//! release waits for it (bounded, [`DEFAULT_VM_STOP_WAIT`]) and otherwise defers the teardown
//! ([`HostTeardown::DeferredToProcessExit`]); the device host never terminates a VM it does not
//! own. Every release step runs even if an earlier one failed; failures are collected in a
//! [`TeardownReport`]. Dropping a [`DeviceHost`] releases whatever it still holds, so no path
//! leaks.

mod errors;
mod events;
mod guest_follow;
pub mod guest_wait;
mod mapping;
mod release;
mod run;
mod serve;

use std::sync::Arc;
use std::time::Duration;

pub use errors::{Cause, HostTeardown, Release, SequenceError, Step, TeardownReport};
pub use events::{Event, GuestAction, UnmapReason};
pub use release::RELEASE_DESTROY_ATTEMPTS;
pub use run::{RunHooks, RunSummary, run, run_with};

use crate::callbacks::PciDeviceCallbacks;
use crate::clock::Clock;
use crate::config::DeviceHostConfig;
use crate::driver::{
    ActedOn, ChannelIdentity, DriverClient, DriverError, MappingState, SectionAccess, SessionId,
    SessionRequest, SessionStatus,
};
use crate::emulator::Emulator;
use crate::hresult::HResult;
use crate::layout::BarLayout;
use crate::placement::{
    AcceptedPlacement, GuestReport, PlacementError, PlacementSignal, PlacementSource,
};
use crate::platform::{
    ComputeSystem, DeviceHandle, DeviceHostFlags, DeviceHostHandle, HcsApi, HdvApi, SectionHandle,
};
use crate::views::SectionMapper;
use guest_wait::{GuestEventLoop, GuestNotes};
use vmbmmio_proto::ioctl::WireGuid;
use vmbmmio_proto::pci_cap::{CHANNEL_PROTOCOL_VERSION, Pairing};

/// How often the device host looks for the emulator's `Start` while waiting.
pub const START_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How often the device host checks the intercept counters and the placement while serving.
pub const SERVE_POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How long a shutdown with the VM still running waits for the VM to stop before it defers the
/// device host's teardown (hdv.md §3.1, §5). Long enough for an operator's `Stop-VM` after
/// Ctrl-C, short enough that Ctrl-C still ends the process promptly.
pub const DEFAULT_VM_STOP_WAIT: Duration = Duration::from_secs(10);

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
    /// The VM was cleaned up (the emulator's `Teardown`) first.
    VmTornDown,
    /// The driver stopped answering the guest (GUEST_STOPPED: it misbehaved past the
    /// protocol's threshold) first; the device host closes the session, which closes the channel.
    GuestStopped,
}

/// Why serving ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServeEnd {
    /// A stop was requested (Ctrl-C).
    Stopped,
    /// The VM was cleaned up (the emulator's `Teardown`).
    VmTornDown,
    /// The driver stopped answering a misbehaving guest (GUEST_STOPPED): the device host ends
    /// the session, which disables the channel (docs/protocol.md, "Misbehaviour").
    GuestStopped,
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
    /// The placement inbox (shared with the emulator and with reporters).
    placement: PlacementSignal,
    /// Generation of the newest placement acted on.
    seen_generation: u64,
    /// Rejections already reported as events.
    seen_rejections: u64,
    /// The newest guest event applied at the last look at the placement (REPORT_MAPPING's
    /// `acted_on`; `Unknown` while nothing follows the guest's events).
    applied: ActedOn,
    /// The newest `acted_on` the regions were reported with (0: none).
    reported_through: u64,
    /// The BAR base the current ranges were created for; `None` while unmapped.
    mapped_for: Option<u64>,
    /// How long a shutdown waits for a running VM to stop.
    vm_stop_wait: Duration,
    /// The device host's teardown was deferred (the VM still ran).
    teardown_deferred: bool,
    /// The guest-event loop, from OPEN_SESSION until the first release step
    /// (`guest_follow`).
    guest_loop: Option<GuestEventLoop>,
    /// What the loop left for the log.
    guest_notes: GuestNotes,
    /// The driver reported GUEST_STOPPED: the run ends and the session closes.
    guest_stopped: bool,
    /// The process died ([`DeviceHost::abandon`]): dropping releases nothing.
    abandoned: bool,
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
        let placement = emulator.placement_signal().clone();
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
            placement,
            seen_generation: 0,
            seen_rejections: 0,
            applied: ActedOn::Unknown,
            reported_through: 0,
            mapped_for: None,
            vm_stop_wait: DEFAULT_VM_STOP_WAIT,
            teardown_deferred: false,
            guest_loop: None,
            guest_notes: GuestNotes::new(),
            guest_stopped: false,
            abandoned: false,
        };
        match host.acquire() {
            Ok(()) => {
                host.emit(Event::Ready);
                Ok(host)
            }
            Err((step, cause)) => Err(host.fail(step, cause, None)),
        }
    }

    /// The guest's report of where it placed the BAR (and, optionally, the channel's MMIO
    /// reservation). Checked at once; if it passes it becomes the current placement, which
    /// `map_regions` waits for and `serve` follows. The guest-event loop feeds the same inbox
    /// from the driver's WAIT_GUEST_EVENT (`guest_follow`); anything else that learns the
    /// guest's placement calls this.
    pub fn placement_reported(
        &self,
        report: impl Into<GuestReport>,
    ) -> Result<AcceptedPlacement, PlacementError> {
        self.placement
            .report(PlacementSource::GuestReport, report.into())
    }

    /// The placement inbox, for a reporter on another thread (clones share it).
    pub fn placement_signal(&self) -> PlacementSignal {
        self.placement.clone()
    }

    /// The queue a guest-event loop leaves its notes in (clones share it): a loop played
    /// elsewhere (a simulator's, on the caller's thread) gives it to its
    /// [`guest_wait::GuestEventFollower::with_notes`], so the device host logs its events and
    /// ends its run on `GUEST_STOPPED` as with its own loop.
    pub fn guest_notes(&self) -> GuestNotes {
        self.guest_notes.clone()
    }

    /// How long a shutdown with the VM still running waits for it to stop
    /// ([`DEFAULT_VM_STOP_WAIT`] unless set).
    pub fn set_vm_stop_wait(&mut self, wait: Duration) {
        self.vm_stop_wait = wait;
    }

    /// The BAR base the regions are mapped for, `None` while unmapped.
    pub fn mapped_for(&self) -> Option<u64> {
        self.mapped_for
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

    /// Releases everything after a failed step; with a clock, a running VM gets the bounded
    /// wait before the device host's teardown.
    fn fail(&mut self, step: Step, cause: Cause, clock: Option<&dyn Clock>) -> SequenceError {
        let teardown = self.release_all(clock);
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

        self.expose_pairing()?;

        let host = self.initialize_device_host(system)?;
        self.host = Some(host);

        self.report_driver();

        let request: SessionRequest = config.session_request();
        let info = self
            .backends
            .driver
            .open_session(&request)
            .map_err(|error| (Step::OpenSession, Cause::Driver(error)))?;
        self.session = Some(info.session);
        let layout = BarLayout::from_session(&info, &request.region_sizes)
            .map_err(|error| (Step::CheckLayout, Cause::Layout(error)))?;
        self.emulator.set_layout(layout.clone());
        self.emit(Event::SessionOpened {
            bar_size: layout.bar_size(),
            regions: layout.regions().len(),
        });
        if self.backends.driver.consumers_can_attach() == Some(false) {
            self.emit(Event::ConsumersCannotAttach);
        }
        // The device instance only now: on a VM that already runs (a device host attaching
        // after another one exited) HDV asks the emulator for its BARs at once, and their size
        // comes from the driver's layout.
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

        // From here the guest's events may arrive (the driver keeps them per session).
        self.start_guest_loop(layout.bar_size());
        let regions = layout.regions().to_vec();
        self.layout = Some(layout);

        for (index, region) in (0u32..).zip(regions) {
            // The device host's handle and view are writable iff the guest may write
            // (docs/ioctl.md: the driver refuses a read-write handle to a guest-ro region).
            let access = config
                .regions
                .get(index as usize)
                .map_or(SectionAccess::ReadWrite, |region| {
                    region.access.device_host_access()
                });
            let handle = self
                .backends
                .driver
                .region_section(info.session, index, access)
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
                .map_view(handle, region.size, access)
                .map_err(|error| (Step::MapView { region: index }, Cause::View(error)))?;
            let view = Arc::new(view);
            self.emulator.attach_view(index as usize, view.clone());
            if let Some(resources) = self.regions.last_mut() {
                resources.view = Some(view);
            }
        }
        Ok(())
    }

    /// Logs what the driver runs without (QUERY_DRIVER). Never fails the start: a driver older
    /// than the request refuses it, and the device host works the same either way.
    fn report_driver(&mut self) {
        match self.backends.driver.driver_facts() {
            Some(Ok(facts)) => self.emit(Event::DriverFacts(facts)),
            Some(Err(error)) => self.emit(Event::DriverFactsUnavailable(error.to_string())),
            None => {}
        }
    }

    /// Puts the channel's identity into the emulator's configuration space. The driver client's
    /// offer GUIDs are what the guest will see offered; the configuration's must agree.
    fn expose_pairing(&mut self) -> StepResult<()> {
        let configured = ChannelIdentity {
            interface_type: self.config.interface_type,
            interface_instance: self.config.interface_instance,
        };
        let identity = match self.backends.driver.channel_identity() {
            Some(driver) if driver != configured => {
                return Err((
                    Step::CheckPairing,
                    Cause::PairingMismatch { configured, driver },
                ));
            }
            Some(driver) => driver,
            None => configured,
        };
        let pairing = Pairing {
            interface_instance: WireGuid::from_u128(identity.interface_instance.to_u128()),
            interface_type: WireGuid::from_u128(identity.interface_type.to_u128()),
            protocol_version: CHANNEL_PROTOCOL_VERSION,
        };
        self.emulator.set_pairing(&pairing);
        self.emit(Event::PairingExposed {
            interface_type: identity.interface_type,
            interface_instance: identity.interface_instance,
            protocol_version: pairing.protocol_version,
        });
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
