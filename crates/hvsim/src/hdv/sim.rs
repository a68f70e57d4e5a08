//! [`HdvSim`]: the shared model, the harness's VM lifecycle calls, and the guest's view.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use vmbmmio_devhost::callbacks::{PCI_BAR_COUNT, PciDeviceCallbacks};
use vmbmmio_devhost::guid::Guid;
use vmbmmio_devhost::hresult::HResult;
use vmbmmio_devhost::platform::DeviceHandle;

use super::codes;
use super::faults::HdvCall;
use super::state::{
    ComputeSystem, Device, HdvCounters, HostingModel, PlatformQuirks, State, VmConfig, VmState,
};
use crate::memory::{ProcessId, SectionMemory, SectionResolver};
use crate::vm::{GuestVm, Power, PowerChange};
use crate::vpci::function::{PlatformBar, VpciFunction};

type Resolver = Arc<dyn SectionResolver + Send + Sync>;

/// The HDV/HCS model. Cheap to clone; clones share the state.
#[derive(Clone)]
pub struct HdvSim {
    pub(super) state: Arc<Mutex<State>>,
    pub(super) resolver: Resolver,
    pub(super) process: ProcessId,
}

/// A section-backed range as the guest's memory model sees it.
#[derive(Clone, Debug)]
pub struct GuestRange {
    /// BAR selector.
    pub bar: u8,
    /// First BAR page.
    pub offset_pages: u64,
    /// Pages.
    pub length_pages: u64,
    /// Whether the guest may write.
    pub writeable: bool,
    /// The section.
    pub memory: Arc<SectionMemory>,
    /// First section page.
    pub section_offset_pages: u64,
}

/// A device the guest can reach.
#[derive(Clone)]
pub struct GuestDevice {
    /// The device instance GUID.
    pub instance_id: Guid,
    /// The emulator's callbacks.
    pub callbacks: Arc<dyn PciDeviceCallbacks>,
    /// What GetDetails reported for each BAR.
    pub probed_bars: [u32; PCI_BAR_COUNT],
    /// Section-backed ranges (empty when the observed no-effect quirk is on).
    pub ranges: Vec<GuestRange>,
    /// The BARs as the vPCI platform holds them (base 0: not placed).
    pub bars: Vec<PlatformBar>,
    /// Whether the platform's command register has memory decode on.
    pub memory_decode: bool,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl HdvSim {
    /// A model whose device host runs as `device_host_process` and resolves section handles
    /// through `resolver` (hdv.md §3.3: the handle must be valid in the device-host process).
    pub fn new(resolver: Resolver, device_host_process: ProcessId) -> Self {
        Self {
            state: Arc::default(),
            resolver,
            process: device_host_process,
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The same model (shared state) as seen by the device-host process `process`: a second
    /// device host, e.g. one started after the first exited ([`HdvSim::process_exited`]),
    /// resolves section handles in its own process and owns what it creates.
    pub fn for_process(&self, process: ProcessId) -> Self {
        Self {
            state: self.state.clone(),
            resolver: self.resolver.clone(),
            process,
        }
    }

    /// The device-host process this handle acts for.
    pub fn process(&self) -> ProcessId {
        self.process
    }

    /// Makes the `nth` call of `call` from now (1-based) fail with `error`, once, with no
    /// effect on the model (see [`HdvCall`]'s module docs).
    ///
    /// # Panics
    /// If `call` cannot fail ([`HdvCall::can_fail`]: `HcsCloseComputeSystem` returns `void`).
    pub fn fail_nth(&self, call: HdvCall, nth: u64, error: HResult) {
        assert!(call.can_fail(), "{call:?} cannot fail: it returns nothing");
        self.lock().faults.arm(call, nth, error);
    }

    /// Calls of `call` so far (failed ones included), over every clone of this model.
    pub fn calls(&self, call: HdvCall) -> u64 {
        self.lock().faults.calls(call)
    }

    /// Counts a call of `call`; the injected error, if this call is the one armed.
    pub(super) fn hit(&self, call: HdvCall) -> Option<HResult> {
        self.lock().faults.hit(call)
    }

    /// Sets the observed-behaviour switches.
    pub fn set_quirks(&self, quirks: PlatformQuirks) {
        self.lock().quirks = quirks;
    }

    /// The observed-behaviour switches in force.
    pub fn quirks(&self) -> PlatformQuirks {
        self.lock().quirks
    }

    /// The counters.
    pub fn counters(&self) -> HdvCounters {
        self.lock().counters
    }

    /// The section bytes behind every live section-backed range (the explorer checks each is
    /// a section the driver still holds).
    pub fn live_range_memories(&self) -> Vec<Arc<SectionMemory>> {
        self.lock()
            .devices
            .values()
            .flat_map(|device| device.ranges.values().map(|range| range.memory.clone()))
            .collect()
    }

    /// Live section-backed ranges over all devices.
    pub fn live_ranges(&self) -> usize {
        self.lock()
            .devices
            .values()
            .map(|device| device.ranges.len())
            .sum()
    }

    /// The state of compute system `vm`: its shared VM's power state.
    pub fn vm_state(&self, vm: Guid) -> Option<VmState> {
        self.lock()
            .systems
            .get(&vm)
            .map(|system| system.guest.power())
    }

    /// The shared VM behind compute system `vm`.
    pub fn guest_vm(&self, vm: Guid) -> Option<GuestVm> {
        self.lock()
            .systems
            .get(&vm)
            .map(|system| system.guest.clone())
    }

    /// The handle of the device instance `instance` some device host created for `vm` (the
    /// device host keeps its own private; a test that calls HDV directly needs it).
    pub fn device_handle(&self, vm: Guid, instance: Guid) -> Option<DeviceHandle> {
        self.lock()
            .devices
            .iter()
            .find(|(_, device)| device.vm == vm && device.instance_id == instance)
            .map(|(&handle, _)| DeviceHandle(handle))
    }

    /// The VM worker process of `vm` while the VM exists.
    pub fn worker_process(&self, vm: Guid) -> Option<ProcessId> {
        self.lock()
            .systems
            .get(&vm)
            .and_then(|system| system.worker)
    }

    /// `HcsCreateComputeSystem` as the VM's owner makes it: compute system `vm`, whose power
    /// state is `guest`'s (the one VM the KMCL and memory models observe too). `guest` must be
    /// newly created ([`Power::Created`]) and belong to no other compute system.
    pub fn create_compute_system(
        &self,
        vm: Guid,
        config: VmConfig,
        guest: GuestVm,
    ) -> Result<(), HResult> {
        {
            let mut state = self.lock();
            if state.systems.contains_key(&vm)
                || state.systems.values().any(|s| s.guest.same_vm(&guest))
                || guest.power() != Power::Created
            {
                return Err(codes::INVALID_ARGUMENT);
            }
            state
                .systems
                .insert(vm, ComputeSystem::created(config, guest.clone(), None));
        }
        self.watch(vm, &guest);
        Ok(())
    }

    /// Registers the power observer of compute system `vm`.
    pub(super) fn watch(&self, vm: Guid, guest: &GuestVm) {
        // When the guest goes away (terminated or crashed), its worker, its vPCI bus and its
        // devices' runtime go with it, whoever changed the power state.
        let weak = Arc::downgrade(&self.state);
        let resolver = self.resolver.clone();
        guest.on_power_change(move |_, change| guest_gone(&weak, &resolver, vm, change));
    }

    /// `HcsStartComputeSystem`. hdv.md §3.1 / §5: the start fails if a device the
    /// configuration announces as externally hosted has no device host (this model, stricter:
    /// no device instance with the declared instance and class GUIDs). The VM worker process
    /// starts, the VM runs, then each declared device gets Initialize, SetConfiguration,
    /// GetDetails and Start, in the order observed (§3.7); a failing callback fails the start.
    /// Each started device then reaches the guest as a vPCI function ([`crate::vpci`]) with
    /// its BARs unplaced and memory decode off.
    pub fn start_compute_system(&self, vm: Guid) -> Result<(), HResult> {
        let mut started = Vec::new();
        let guest = {
            let mut state = self.lock();
            let system = state.systems.get(&vm).ok_or(codes::NOT_FOUND)?;
            if system.guest.power() != Power::Created {
                return Err(codes::INVALID_STATE);
            }
            let declared: Vec<_> = system
                .config
                .flexible_iov
                .iter()
                .filter(|entry| entry.hosting_model == HostingModel::External)
                .cloned()
                .collect();
            for entry in declared {
                let found = state.devices.iter().find(|(_, device)| {
                    device.vm == vm
                        && device.instance_id == entry.instance_id
                        && device.class_id == entry.emulator_id
                });
                let Some((&id, device)) = found else {
                    return Err(codes::DEVICE_HOST_MISSING);
                };
                started.push((id, device.callbacks.clone(), entry.configuration));
            }
            let worker = self.resolver.spawn_process();
            let system = state.systems.get_mut(&vm).ok_or(codes::NOT_FOUND)?;
            system.worker = Some(worker);
            system.guest.clone()
        };
        // Observers and callbacks run without the model's lock held.
        guest.set_power(Power::Running);
        let mut probed = Vec::new();
        let mut failure = None;
        for (id, callbacks, configuration) in &started {
            if let Err(hr) = callbacks.initialize() {
                failure = Some(hr);
                break;
            }
            let result = callbacks.set_configuration(configuration).and_then(|()| {
                let mut bars = [0; PCI_BAR_COUNT];
                callbacks.get_details(&mut bars).map(|_| bars)
            });
            match result.and_then(|bars| callbacks.start().map(|()| bars)) {
                Ok(bars) => probed.push((*id, bars)),
                Err(hr) => {
                    // Initialized but not started: only its Teardown is owed.
                    callbacks.teardown();
                    failure = Some(hr);
                    break;
                }
            }
        }
        {
            let mut state = self.lock();
            for (id, bars) in &probed {
                let Some(device) = state.devices.get_mut(id) else {
                    continue;
                };
                device.probed = Some(*bars);
                device.active = true;
                let instance = device.instance_id;
                if let Some(system) = state.systems.get_mut(&vm) {
                    // A restored system's guest keeps the BAR placement and decode it had at
                    // the save, if the device reports the same BARs (else the function starts
                    // reset: the saved registers would not fit).
                    let saved = system
                        .restored_vpci
                        .as_ref()
                        .and_then(|saved| saved.get(&instance))
                        .filter(|function| function.probed() == *bars)
                        .cloned();
                    system
                        .vpci
                        .insert(instance, saved.unwrap_or_else(|| VpciFunction::new(*bars)));
                }
            }
            if let Some(system) = state.systems.get_mut(&vm) {
                system.restored_vpci = None;
            }
        }
        match failure {
            None => Ok(()),
            Some(hr) => {
                // The failed start cleans the VM up: started devices get Stop and Teardown.
                self.terminate_compute_system(vm).ok();
                Err(hr)
            }
        }
    }

    /// `HcsTerminateComputeSystem`: the VM stops; its worker exits (closing HDV's duplicates of
    /// the section handles), its vPCI bus and every guest claim go, and each active device gets
    /// Stop and Teardown (hdv.md §3.7). Ranges stay until destroyed (§5 step 6 destroys them
    /// after the VM stopped).
    pub fn terminate_compute_system(&self, vm: Guid) -> Result<(), HResult> {
        let guest = {
            let state = self.lock();
            let system = state.systems.get(&vm).ok_or(codes::NOT_FOUND)?;
            if matches!(system.guest.power(), Power::Stopped | Power::Crashed) {
                return Err(codes::INVALID_STATE);
            }
            system.guest.clone()
        };
        guest.set_power(Power::Stopped);
        Ok(())
    }

    /// The VM worker fast-fails (an observed quirk): the VM is [`Power::Crashed`] with `reason`.
    pub(super) fn crash_worker(&self, vm: Guid, reason: &str) {
        let guest = {
            let mut state = self.lock();
            state.counters.worker_crashes += 1;
            state.systems.get(&vm).map(|system| system.guest.clone())
        };
        if let Some(guest) = guest {
            guest.crash(reason);
        }
    }

    /// The devices the guest of `vm` can reach: declared in its configuration (hdv.md §5,
    /// observed: the HCS offers only declared devices), started, and not torn down.
    pub fn guest_devices(&self, vm: Guid) -> Vec<GuestDevice> {
        let state = self.lock();
        let Some(system) = state.systems.get(&vm) else {
            return Vec::new();
        };
        state
            .devices
            .values()
            .filter(|device| device.vm == vm && device.active)
            .filter_map(|device| guest_device(&state, system, device))
            .collect()
    }

    /// The guest view of the device `instance` of `vm`, if the guest can reach it.
    pub(crate) fn guest_device_of(&self, vm: Guid, instance: Guid) -> Option<GuestDevice> {
        let state = self.lock();
        let system = state.systems.get(&vm)?;
        let device = state
            .devices
            .values()
            .find(|d| d.vm == vm && d.active && d.instance_id == instance)?;
        guest_device(&state, system, device)
    }
}

/// `device` as its guest sees it, if its configuration declares it and it started.
fn guest_device(state: &State, system: &ComputeSystem, device: &Device) -> Option<GuestDevice> {
    let declared = system.config.flexible_iov.iter().any(|entry| {
        entry.instance_id == device.instance_id && entry.emulator_id == device.class_id
    });
    if !declared {
        return None;
    }
    let probed_bars = device.probed?;
    let function = system.vpci.get(&device.instance_id)?;
    let ranges = if state.quirks.mapping_has_no_effect {
        Vec::new()
    } else {
        device
            .ranges
            .iter()
            .map(|(&(bar, offset_pages), range)| GuestRange {
                bar,
                offset_pages,
                length_pages: range.length_pages,
                writeable: range.writeable,
                memory: range.memory.clone(),
                section_offset_pages: range.section_offset_pages,
            })
            .collect()
    };
    Some(GuestDevice {
        instance_id: device.instance_id,
        callbacks: device.callbacks.clone(),
        probed_bars,
        ranges,
        bars: function.bars(),
        memory_decode: function.memory_decode(),
    })
}

/// The power observer of compute system `vm`: on a reset only the vPCI bus is reset; when its
/// guest stops existing (terminated or crashed), the VM worker exits, which closes HDV's duplicates of the section handles
/// (general Windows semantics: process exit closes its handles), the vPCI bus goes, and the
/// devices stop. Stop and Teardown (hdv.md §3.7) are delivered on an orderly stop only: after a
/// worker crash no callback comes (strict reading; the process that calls them is gone).
fn guest_gone(state: &Weak<Mutex<State>>, resolver: &Resolver, vm: Guid, change: PowerChange) {
    if change.to.guest_exists() {
        return;
    }
    let Some(state) = state.upgrade() else {
        return;
    };
    if change.to == Power::Resetting {
        // A reset: the worker, the device hosts, their devices and ranges stay (no HDV
        // callback exists for a reset); the guest's vPCI bus is reset: every BAR unplaced,
        // memory decode off (model's reading, docs/simulator.md).
        let mut state = lock(&state);
        if let Some(system) = state.systems.get_mut(&vm) {
            for function in system.vpci.values_mut() {
                *function = VpciFunction::new(function.probed());
            }
        }
        return;
    }
    let (worker, stopping) = {
        let mut state = lock(&state);
        let Some(system) = state.systems.get_mut(&vm) else {
            return;
        };
        let worker = system.worker.take();
        system.vpci.clear();
        let mut stopping = Vec::new();
        let mut closed = 0;
        for device in state.devices.values_mut().filter(|device| device.vm == vm) {
            if device.active {
                device.active = false;
                if change.to != Power::Crashed {
                    stopping.push(device.callbacks.clone());
                }
            }
            for range in device.ranges.values_mut() {
                if range.worker_handle.take().is_some() {
                    closed += 1;
                }
            }
        }
        state.counters.worker_duplicates_closed += closed;
        (worker, stopping)
    };
    if let Some(worker) = worker {
        resolver.exit_process(worker);
    }
    for callbacks in stopping {
        callbacks.stop();
        callbacks.teardown();
    }
}
