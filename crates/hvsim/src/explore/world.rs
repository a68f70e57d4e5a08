//! One explored world: the simulated host and VM, the driver's real control device, at most one
//! device-host process at a time, and the guest program, with the checks that run after every
//! step.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use vmbmmio_core::control::serve;
use vmbmmio_core::control::{ControlDevice, FileKey, OfferSettings, Rundown};
use vmbmmio_core::sections::SectionQuotas;

use super::device_host::{DeviceHostRun, Tick};
use super::guest::GuestAgent;
use super::platform_ops::{self, Armed};
use super::rng::Rng;
use super::schedule::Step;
use crate::alloc_faults::{self, driver_scope};
use crate::demo::LeakReport;
use crate::demo::build::vm_config;
use crate::demo::transport::Removal;
use crate::demo::world::VM_ID;
use crate::hdv::HdvSim;
use crate::kmcl::{Sim, SimVm};
use crate::lock_rules;
use crate::memory::ProcessId;
use crate::platform::SimPlatform;
use crate::sections::SimKernel;
use crate::table_lock::SimTableLock;
use crate::vm::{GuestKind, GuestVm, Power};

/// The regions every explored session asks for: small, so that ten thousand schedules stay
/// cheap, and two of them, so that region offsets other than 0 are exercised.
pub(super) const REGION_SIZES: [u64; 2] = [8 << 10, 4 << 10];

/// Rounds of "device host, then guest" after each step: enough for a report to reach the
/// device host, its mapping to reach the driver and the driver's event to reach the guest.
const SETTLE_ROUNDS: usize = 4;

/// The simulated platform and the driver, shared by the world's parts.
pub(super) struct Env {
    pub(super) sim: Rc<Sim>,
    pub(super) kernel: SimKernel,
    /// The HCS/HDV model as the platform (and the operator's tools) reach it.
    pub(super) hdv: HdvSim,
    guest_vm: RefCell<GuestVm>,
    vm: Cell<SimVm>,
    pub(super) control: Rc<RefCell<ControlDevice<SimPlatform>>>,
    pub(super) removal: Removal,
    /// The control state's run-down protection (a `static` in the glue).
    pub(super) rundown: Rc<Rundown>,
    /// The device host's events, taken into the notes after each round.
    pub(super) device_host_log: Rc<RefCell<Vec<String>>>,
}

impl Env {
    /// The VM as every model shares it (a restore makes a new one).
    pub(super) fn guest_vm(&self) -> GuestVm {
        self.guest_vm.borrow().clone()
    }

    /// The driver's table lock around its control state.
    pub(super) fn table_lock(&self) -> SimTableLock {
        SimTableLock(self.control.clone())
    }

    /// The VM as the KMCL model knows it (it changes when the VM is restored).
    pub(super) fn vm(&self) -> SimVm {
        self.vm.get()
    }

    /// A process exits: the object manager closes its handles and unmaps its views, HDV
    /// drops what it held. Idempotent.
    pub(super) fn process_exits(&self, process: ProcessId) {
        self.kernel.exit_process(process);
        self.hdv.process_exited(process);
    }
}

/// Where the driver's device is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DriverState {
    Loaded,
    /// Removal started: requests fail; the state is freed once the last handle closed.
    Removing,
    /// The state was freed (`shutdown`).
    Removed,
}

/// What a finished schedule found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Armed failures that fired.
    pub failures_injected: u64,
    /// Objects left after the final teardown, all models together.
    pub leaks: u64,
    /// Broken rules, in the order found.
    pub violations: Vec<String>,
    /// What happened, step by step (for a failing schedule's report).
    pub notes: Vec<String>,
    /// Guest uses that touched shared memory (checked both ways).
    pub pages_checked: u64,
    /// For each `GuestUses` step, in order: how many regions the guest used (0: the protocol
    /// did not let it) and where its BAR was.
    pub uses: Vec<(u32, u64)>,
    /// Device hosts that attached (started and opened their session).
    pub device_hosts_attached: u64,
    /// Channels the guest opened.
    pub guest_opens: u64,
}

/// The world a schedule runs in.
pub(super) struct World {
    pub(super) env: Env,
    device_host: Option<DeviceHostRun>,
    guest: GuestAgent,
    driver: DriverState,
    next_file: usize,
    rng: Rng,
    armed: Vec<Armed>,
    outcome: Outcome,
    /// The device host stalls in the next step's settle: it takes the driver's events but acts
    /// on them only after the step after that.
    stall_next: bool,
    /// ... in this step's settle.
    stall_now: bool,
}

impl World {
    /// The host with the driver loaded, the VM created with its paired device declared, a
    /// device host started (it may fail under an armed fault), the VM started and the guest
    /// brought up.
    pub(super) fn new(guest: GuestKind, seed: u64, early: &[Step]) -> Self {
        alloc_faults::disarm();
        lock_rules::take_broken();
        let sim = Rc::new(Sim::new());
        let kernel = SimKernel::new();
        let control = Rc::new(RefCell::new(ControlDevice::new(
            sim.parent_device(),
            kernel.clone(),
            kernel.clone(),
            kernel.clock(),
            SectionQuotas::default(),
            OfferSettings::default(),
        )));
        let guest_vm = GuestVm::with_default_pool(guest);
        let first = kernel.spawn_process();
        let (vm, _assumption) = sim.add_vm_assuming_vmbus_handle_in(guest_vm.clone(), first);
        let hdv = HdvSim::new(Arc::new(kernel.clone()), crate::sections::SYSTEM_PROCESS);
        let env = Env {
            sim,
            kernel,
            hdv,
            guest_vm: RefCell::new(guest_vm),
            vm: Cell::new(vm),
            control,
            removal: Removal::default(),
            device_host_log: Rc::default(),
            rundown: Rc::default(),
        };
        let mut world = Self {
            env,
            device_host: None,
            guest: GuestAgent::default(),
            driver: DriverState::Loaded,
            next_file: 0x100,
            rng: Rng::new(seed ^ 0x5eed),
            armed: Vec::new(),
            outcome: Outcome::default(),
            stall_next: false,
            stall_now: false,
        };
        for step in early {
            world.apply(*step);
        }
        if let Err(error) =
            world
                .env
                .hdv
                .create_compute_system(VM_ID, vm_config(), world.env.guest_vm())
        {
            world.note(format!("creating the VM failed: {error:?}"));
        }
        world.start_device_host(Some(first));
        match world.env.hdv.start_compute_system(VM_ID) {
            Ok(()) => world.note("VM started".into()),
            Err(error) => world.note(format!("starting the VM failed: {error:?}")),
        }
        world.settle();
        world
    }

    fn note(&mut self, note: String) {
        self.take_device_host_log();
        self.outcome.notes.push(note);
    }

    fn take_device_host_log(&mut self) {
        let events = std::mem::take(&mut *self.env.device_host_log.borrow_mut());
        self.outcome.notes.extend(
            events
                .into_iter()
                .filter(|event| !event.ends_with("StopRequested")),
        );
    }

    fn violation(&mut self, violation: String) {
        self.outcome.violations.push(violation);
    }

    /// Applies one step, lets the device host and the guest react, then checks.
    pub(super) fn step(&mut self, step: Step) {
        self.note(format!("step: {step}"));
        if self.stall_next && step != Step::DeviceHostStalls {
            self.stall_next = false;
            self.stall_now = true;
        }
        self.apply(step);
        self.settle();
        self.check();
    }

    fn guest_runs(&self) -> bool {
        self.env.guest_vm().power() == Power::Running
    }

    fn apply(&mut self, step: Step) {
        let mut notes = Vec::new();
        match step {
            Step::GuestUses => self.guest_uses(),
            Step::GuestTogglesDecode if self.guest_runs() => {
                self.guest.toggles_decode(&self.env, &mut notes);
            }
            Step::GuestMovesBar if self.guest_runs() => {
                self.guest.moves_bar(&self.env, &mut notes);
            }
            Step::GuestClosesChannel if self.guest_runs() => {
                self.guest.closes_channel(&self.env, &mut notes);
            }
            Step::GuestOpensChannel if self.guest_runs() => {
                self.guest.bring_up(&self.env, &mut notes);
            }
            Step::GuestSendsGarbage(seed) if self.guest_runs() => {
                self.guest.sends_garbage(&self.env, seed);
            }
            Step::VmPauses => {
                if let Err(error) = platform_ops::pause(&self.env) {
                    notes.push(format!("pause refused: {error}"));
                }
            }
            Step::VmResumes => match self.env.guest_vm().power() {
                Power::Created => {
                    if let Err(error) = self.env.hdv.start_compute_system(VM_ID) {
                        notes.push(format!("start refused: {error:?}"));
                    }
                }
                _ => {
                    if let Err(error) = platform_ops::resume(&self.env) {
                        notes.push(format!("resume refused: {error}"));
                    }
                }
            },
            Step::VmResets => match platform_ops::reset(&self.env) {
                Ok(()) => self.guest.forget(),
                Err(error) => notes.push(format!("reset refused: {error}")),
            },
            Step::VmSavedAndRestored => self.save_and_restore(&mut notes),
            Step::VmStops => {
                if let Err(error) = self.env.hdv.terminate_compute_system(VM_ID) {
                    notes.push(format!("terminate refused: {error:?}"));
                }
                self.guest.forget();
            }
            Step::DeviceHostCrashes => {
                if let Some(mut host) = self.device_host.take() {
                    host.crash(&self.env);
                }
            }
            Step::DeviceHostQuits => {
                if let Some(mut host) = self.device_host.take() {
                    host.quit(&self.env);
                }
            }
            Step::DeviceHostStarts => self.start_device_host(None),
            Step::DeviceHostStalls => self.stall_next = true,
            Step::SurpriseRemoval => {
                if self.driver == DriverState::Loaded {
                    self.env.removal.begin();
                    self.driver = DriverState::Removing;
                }
            }
            Step::QueryRemove => {
                if self.driver == DriverState::Loaded {
                    match driver_scope(|| serve::query_remove(&self.env.table_lock())) {
                        Ok(()) => {
                            notes.push("query-remove accepted: the device is removed".into());
                            self.env.removal.begin();
                            self.driver = DriverState::Removing;
                        }
                        Err(error) => notes.push(format!("query-remove vetoed: {error:?}")),
                    }
                }
            }
            Step::Arm(fault) => {
                let armed = platform_ops::arm(&self.env, fault);
                self.armed.push(armed);
            }
            _ => notes.push("the guest does nothing while its VM does not run".into()),
        }
        self.outcome.notes.extend(notes);
    }

    /// A device-host process attaches, if none runs and the driver takes requests.
    fn start_device_host(&mut self, process: Option<ProcessId>) {
        if self.device_host.is_some() || self.driver != DriverState::Loaded {
            return;
        }
        let (process, vmbus_handle) = match process {
            Some(first) => (first, self.env.vm().user_handle),
            None => {
                let process = self.env.kernel.spawn_process();
                let (granted, _) = self.env.sim.grant_vmbus_handle(self.env.vm().id, process);
                (process, granted.user_handle)
            }
        };
        let file = FileKey(self.next_file);
        self.next_file += 1;
        let hdv = platform_ops::hdv_for(&self.env, process);
        match DeviceHostRun::start(&self.env, &hdv, process, vmbus_handle, file, &REGION_SIZES) {
            Ok(host) => {
                self.note(format!("device host {process:?} attached on file {file:?}"));
                self.outcome.device_hosts_attached += 1;
                self.device_host = Some(host);
            }
            Err(error) => self.note(format!("device host {process:?}: {error}")),
        }
    }

    /// Pause, save, terminate (the device host of the old compute system sees it torn down and
    /// ends), restore into a new compute system, a new device host attaches to it (with a VMBus
    /// handle to the restored VM's new VMBus), start; the guest resumes from its saved state.
    fn save_and_restore(&mut self, notes: &mut Vec<String>) {
        if let Err(error) = platform_ops::pause(&self.env) {
            notes.push(format!("save: pause refused: {error}"));
            return;
        }
        let saved = match self.env.hdv.save_compute_system(VM_ID) {
            Ok(saved) => saved,
            Err(error) => {
                notes.push(format!("save refused: {error:?}"));
                if let Err(error) = platform_ops::resume(&self.env) {
                    notes.push(format!("resume refused: {error}"));
                }
                return;
            }
        };
        if let Err(error) = self.env.hdv.terminate_compute_system(VM_ID) {
            notes.push(format!("terminate after the save refused: {error:?}"));
            return;
        }
        if let Some(mut host) = self.device_host.take() {
            match host.tick(&self.env) {
                Tick::Ended(why) => notes.push(format!("device host ended: {why}")),
                Tick::Running => {
                    notes
                        .push("device host still running after the VM stopped: stopping it".into());
                    host.quit(&self.env);
                }
            }
        }
        if let Err(error) = self.env.hdv.restore_compute_system(saved, vm_config()) {
            notes.push(format!("restore refused: {error:?}"));
            return;
        }
        let Some(restored) = self.env.hdv.guest_vm(VM_ID) else {
            notes.push("restore: no VM".into());
            return;
        };
        *self.env.guest_vm.borrow_mut() = restored.clone();
        if self.driver == DriverState::Loaded {
            let process = self.env.kernel.spawn_process();
            let (vm, _) = self
                .env
                .sim
                .add_vm_assuming_vmbus_handle_in(restored, process);
            self.env.vm.set(vm);
            self.start_device_host(Some(process));
        }
        match self.env.hdv.start_compute_system(VM_ID) {
            Ok(()) => {
                notes.push("VM restored and started".into());
                self.guest.restored(&self.env, notes);
            }
            Err(error) => notes.push(format!("starting the restored VM refused: {error:?}")),
        }
    }

    /// The device host and the guest react until nothing more happens (bounded).
    fn settle(&mut self) {
        let stall = std::mem::take(&mut self.stall_now);
        for round in 0..SETTLE_ROUNDS {
            // After a stall the guest goes first: it acts (reopens, reports, says READY) while
            // the device host still has the events it took before in hand.
            if stall {
                // The device host's loops are late for this whole step: it took the events, and
                // only the guest moves until the next step.
                if let Some(host) = self.device_host.as_mut().filter(|_| round == 0) {
                    host.stall();
                    self.outcome
                        .notes
                        .push("device host: stalled after taking its events".into());
                }
                self.guest_round();
                self.finish_removal();
                continue;
            }
            let guest_first = self
                .device_host
                .as_ref()
                .is_some_and(DeviceHostRun::acts_first);
            if guest_first {
                self.guest_round();
                // The late serve loop acts on what it took before the guest's newest doing;
                // the guest hears the result before the loop takes the newer events.
                if let Some(host) = self.device_host.as_mut()
                    && let Tick::Ended(why) = host.act_on_held(&self.env)
                {
                    self.outcome.notes.push(format!("device host ended: {why}"));
                    self.device_host = None;
                }
                self.guest_round();
            }
            if let Some(host) = self.device_host.as_mut()
                && let Tick::Ended(why) = host.tick(&self.env)
            {
                self.outcome.notes.push(format!("device host ended: {why}"));
                self.device_host = None;
            }
            if !guest_first {
                self.guest_round();
            }
            self.take_device_host_log();
            self.finish_removal();
        }
    }

    /// The guest takes what the driver completed and brings up what it lacks.
    /// A program that was waiting for the memory uses it as soon as it is told it may.
    fn guest_round(&mut self) {
        let mut notes = Vec::new();
        let could = self.guest.may_use();
        if self.guest_runs() {
            self.guest.follow(&self.env, &mut notes);
            self.guest.bring_up(&self.env, &mut notes);
        }
        self.take_device_host_log();
        self.outcome.notes.extend(notes);
        if !could && self.guest.may_use() {
            self.note("guest: told the memory is backed, uses it at once".into());
            self.touch_memory();
        }
    }

    /// A removed device's state is freed once the last handle to it closed.
    fn finish_removal(&mut self) {
        if self.driver == DriverState::Removing && self.env.control.borrow().open_files() == 0 {
            self.remove_device();
            self.driver = DriverState::Removed;
            self.note("driver: the removed device's state freed".into());
        }
    }

    /// The device's removal (the glue's cleanup callback): new requests refused, in-flight ones
    /// drained (none: the simulator is single-threaded), the state shut down under the lock
    /// (the documented exception to "nothing blocks under the table lock").
    fn remove_device(&mut self) {
        let lock = self.env.table_lock();
        driver_scope(|| lock_rules::unload(|| serve::remove(&self.env.rundown, &lock, || {})));
        self.driver = DriverState::Removed;
    }

    /// The guest program touches each region once, if it may; the bytes must be the driver's
    /// sections' both ways.
    fn guest_uses(&mut self) {
        let used = self.touch_memory();
        let bar = self.guest.bar().map_or(0, |bar| bar.base);
        self.outcome.uses.push((used, bar));
    }

    /// Touches each region's first page if the guest may, checks the bytes both ways and that
    /// the device host has the memory mapped where the guest's BAR is; returns how many
    /// regions it touched.
    fn touch_memory(&mut self) -> u32 {
        let mut notes = Vec::new();
        let touched = if self.guest_runs() {
            self.guest.uses(&mut self.rng, &mut notes)
        } else {
            Vec::new()
        };
        self.outcome.notes.extend(notes);
        let bar = self.guest.bar().map_or(0, |bar| bar.base);
        let count = u32::try_from(touched.len()).unwrap_or(u32::MAX);
        if touched.is_empty() {
            return 0;
        }
        self.note(format!("guest: used {} regions", touched.len()));
        let mapped_for = self
            .device_host
            .as_ref()
            .and_then(DeviceHostRun::mapped_for);
        if mapped_for != Some(bar) {
            self.violation(format!(
                "the guest was told its memory is backed, but the device host has it mapped at \
                 {mapped_for:x?}, not at the guest's BAR {bar:#x}"
            ));
        }
        let Some(file) = self.device_host.as_ref().map(|host| host.file) else {
            self.violation(
                "the guest used the shared memory while no device host held a session".into(),
            );
            return count;
        };
        for (touch, written, read) in touched {
            self.outcome.pages_checked += 1;
            let memory = {
                let control = self.env.control.borrow();
                control
                    .region_section(file, touch.region)
                    .and_then(|section| self.env.kernel.kernel_memory(section))
            };
            let Some(memory) = memory else {
                self.violation(format!(
                    "the guest used region {} while the driver holds no section for it",
                    touch.region
                ));
                continue;
            };
            let mut host = [0u8; 16];
            let _ = memory.read(0, &mut host);
            if read != written || host != written {
                self.violation(format!(
                    "region {} page {}: the guest wrote {written:02x?}, read back {read:02x?}, \
                     the driver's section holds {host:02x?}",
                    touch.region, touch.page
                ));
            }
            let reply: [u8; 16] = std::array::from_fn(|i| written[i] ^ 0xA5);
            let _ = memory.write(0, &reply);
            if let Some(seen) = self.guest.read_region(touch.page)
                && seen != reply
            {
                self.violation(format!(
                    "region {} page {}: the host wrote {reply:02x?}, the guest read {seen:02x?}",
                    touch.region, touch.page
                ));
            }
        }
        count
    }

    /// The rules checked after every step.
    fn check(&mut self) {
        for broken in lock_rules::take_broken() {
            self.violation(format!("locking rule broken: {broken}"));
        }
        for violation in self.env.sim.take_violations() {
            self.violation(format!("KMCL rule broken: {violation:?}"));
        }
        let files: Vec<FileKey> = self.env.control.borrow().session_files().collect();
        for file in files {
            let stats = self.env.control.borrow().channel_stats(file);
            if let Some(stats) = stats
                && stats.unexpected_events > 0
            {
                self.violation(format!(
                    "the channel of file {file:?} saw {} state callbacks out of order",
                    stats.unexpected_events
                ));
            }
            let owned = self
                .device_host
                .as_ref()
                .is_some_and(|host| host.file == file);
            if !owned {
                self.violation(format!(
                    "file {file:?} keeps a session although its device host is gone"
                ));
            }
        }
        for stale in platform_ops::ranges_without_live_section(&self.env) {
            self.violation(format!(
                "a section-backed range still maps a section the driver released: {stale}"
            ));
        }
    }

    /// The end of every schedule: the VM stops, the device host stops, the driver unloads;
    /// then every model says what it still holds.
    pub(super) fn finish(mut self) -> Outcome {
        if self.env.guest_vm().power().guest_exists()
            && let Err(error) = self.env.hdv.terminate_compute_system(VM_ID)
        {
            self.note(format!("terminating the VM failed: {error:?}"));
        }
        if let Some(mut host) = self.device_host.take() {
            let _ = host.tick(&self.env);
            host.quit(&self.env);
        }
        if self.driver != DriverState::Removed {
            self.remove_device();
        }
        self.check();
        self.guest.forget();
        let report = LeakReport::measure(
            &self.env.sim,
            &self.env.kernel,
            &self.env.control.borrow(),
            &self.env.hdv,
        );
        let guest = self.env.sim.guest(self.env.vm().id).offers().len() as u64;
        self.outcome.leaks = report.total() + guest;
        if self.outcome.leaks > 0 {
            self.note(format!("left behind: {report:?}, guest offers {guest}"));
        }
        alloc_faults::disarm();
        self.outcome.guest_opens = self.guest.opens;
        self.outcome.failures_injected = self
            .armed
            .iter()
            .filter(|armed| armed.fired(&self.env))
            .count() as u64;
        self.outcome
    }
}
