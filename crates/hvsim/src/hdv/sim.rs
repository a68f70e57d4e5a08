//! [`HdvSim`]: the shared model, the harness's VM lifecycle calls, and the guest's view.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use vmbmmio_devhost::callbacks::{PCI_BAR_COUNT, PciDeviceCallbacks};
use vmbmmio_devhost::guid::Guid;
use vmbmmio_devhost::hresult::HResult;

use super::codes;
use super::state::{
    ComputeSystem, HdvCounters, HostingModel, PlatformQuirks, State, VmConfig, VmState,
};
use crate::memory::{ProcessId, SectionMemory, SectionResolver};

/// The HDV/HCS model. Cheap to clone; clones share the state.
#[derive(Clone)]
pub struct HdvSim {
    pub(super) state: Arc<Mutex<State>>,
    pub(super) resolver: Arc<dyn SectionResolver + Send + Sync>,
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
}

impl HdvSim {
    /// A model whose device host runs as `device_host_process` and resolves section handles
    /// through `resolver` (hdv.md §3.3: the handle must be valid in the device-host process).
    pub fn new(
        resolver: Arc<dyn SectionResolver + Send + Sync>,
        device_host_process: ProcessId,
    ) -> Self {
        Self {
            state: Arc::default(),
            resolver,
            process: device_host_process,
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
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

    /// Live section-backed ranges over all devices.
    pub fn live_ranges(&self) -> usize {
        self.lock()
            .devices
            .values()
            .map(|device| device.ranges.len())
            .sum()
    }

    /// The state of compute system `vm`.
    pub fn vm_state(&self, vm: Guid) -> Option<VmState> {
        self.lock().systems.get(&vm).map(|system| system.state)
    }

    /// `HcsCreateComputeSystem` as the VM's owner makes it.
    pub fn create_compute_system(&self, vm: Guid, config: VmConfig) -> Result<(), HResult> {
        let mut state = self.lock();
        if state.systems.contains_key(&vm) {
            return Err(codes::INVALID_ARGUMENT);
        }
        state.systems.insert(
            vm,
            ComputeSystem {
                config,
                state: VmState::Created,
            },
        );
        Ok(())
    }

    /// `HcsStartComputeSystem`. hdv.md §3.1 / §5: the start fails if a device the
    /// configuration announces as externally hosted has no device host (this model, stricter:
    /// no device instance with the declared instance and class GUIDs). Then each declared
    /// device gets Initialize, SetConfiguration, GetDetails and Start, in the order observed
    /// (§3.7); a failing callback fails the start.
    pub fn start_compute_system(&self, vm: Guid) -> Result<(), HResult> {
        let mut started = Vec::new();
        {
            let mut state = self.lock();
            let system = state.systems.get(&vm).ok_or(codes::NOT_FOUND)?;
            if system.state != VmState::Created {
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
            // Callbacks run without the model's lock held.
            if let Some(system) = state.systems.get_mut(&vm) {
                system.state = VmState::Running;
            }
        }
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
                if let Some(device) = state.devices.get_mut(id) {
                    device.probed = Some(*bars);
                    device.active = true;
                }
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

    /// `HcsTerminateComputeSystem`: the VM stops and is cleaned up, so each active device gets
    /// Stop and Teardown (hdv.md §3.7). Ranges stay until destroyed (§5 step 6 destroys them
    /// after the VM stopped).
    pub fn terminate_compute_system(&self, vm: Guid) -> Result<(), HResult> {
        let mut stopping = Vec::new();
        {
            let mut state = self.lock();
            let system = state.systems.get_mut(&vm).ok_or(codes::NOT_FOUND)?;
            if system.state == VmState::Stopped {
                return Err(codes::INVALID_STATE);
            }
            system.state = VmState::Stopped;
            for device in state.devices.values_mut().filter(|device| device.vm == vm) {
                if device.active {
                    device.active = false;
                    stopping.push(device.callbacks.clone());
                }
            }
        }
        for callbacks in stopping {
            callbacks.stop();
            callbacks.teardown();
        }
        Ok(())
    }

    /// The devices the guest of `vm` can reach: declared in its configuration (hdv.md §5,
    /// observed: the HCS offers only declared devices), started, and not torn down.
    pub fn guest_devices(&self, vm: Guid) -> Vec<GuestDevice> {
        let state = self.lock();
        let Some(system) = state.systems.get(&vm) else {
            return Vec::new();
        };
        let no_effect = state.quirks.mapping_has_no_effect;
        state
            .devices
            .values()
            .filter(|device| device.vm == vm && device.active)
            .filter(|device| {
                system.config.flexible_iov.iter().any(|entry| {
                    entry.instance_id == device.instance_id && entry.emulator_id == device.class_id
                })
            })
            .filter_map(|device| {
                let probed_bars = device.probed?;
                let ranges = if no_effect {
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
                })
            })
            .collect()
    }
}
