//! VM lifecycle events beyond start, pause, resume and terminate: a guest reset, save and
//! restore, and a device-host process that exits without tearing down. Each is the model's
//! reading where no source states the behaviour; `docs/simulator.md` ("Lifecycle events the
//! model supports") says which parts are sourced.

use std::collections::BTreeMap;

use vmbmmio_devhost::guid::Guid;
use vmbmmio_devhost::hresult::HResult;

use super::codes;
use super::sim::HdvSim;
use super::state::{ComputeSystem, VmConfig};
use crate::memory::ProcessId;
use crate::vm::{Claim, GuestKind, GuestVm, Power, SavedGuest};
use crate::vpci::PlatformBar;
use crate::vpci::function::VpciFunction;

/// A compute system's saved state (`HcsSaveComputeSystem`), to restore with
/// [`HdvSim::restore_compute_system`]. What it keeps is the guest's: its kind, its MMIO claims,
/// its vPCI functions' BAR placement and decode, and what its VMBus driver knew (guest
/// memory). No device host, device instance, range or host-side channel is part of it.
#[derive(Clone, Debug)]
pub struct SavedVm {
    vm: Guid,
    guest: SavedGuest,
    vpci: BTreeMap<Guid, VpciFunction>,
}

impl SavedVm {
    /// The compute system's id.
    pub fn vm(&self) -> Guid {
        self.vm
    }

    /// The guest's kind.
    pub fn kind(&self) -> GuestKind {
        self.guest.kind
    }

    /// The guest's MMIO claims at the save.
    pub fn claims(&self) -> Vec<Claim> {
        self.guest.claims()
    }

    /// The offers the guest's VMBus driver knew (host channel ids of the KMCL model).
    pub fn vmbus_offers(&self) -> &[u32] {
        &self.guest.vmbus_offers
    }

    /// The saved BARs and decode state of the vPCI function `instance`.
    pub fn vpci_bars(&self, instance: Guid) -> Option<(Vec<PlatformBar>, bool)> {
        self.vpci
            .get(&instance)
            .map(|function| (function.bars(), function.memory_decode()))
    }
}

impl HdvSim {
    /// A reset of running compute system `vm` (a guest-initiated reboot or a host reset).
    /// **Model's reading** (no HDV callback exists for a reset: `HDV_PCI_DEVICE_INTERFACE` has
    /// none): the VM worker keeps running, so device hosts, device instances and their ranges
    /// stay, and the emulator gets no Stop or Teardown; the guest's state is lost. The VM goes
    /// [`Power::Running`] → [`Power::Resetting`] → [`Power::Running`], so every observer sees
    /// the guest go and come back: the KMCL model closes the guest's channels (Suspend if
    /// running, then Closed) and offers every still-enabled channel again; the guest's MMIO
    /// claims go; the vPCI bus is reset (every BAR unplaced, memory decode off), so the guest
    /// must probe and place again ([`crate::vpci::GuestPci::probe`]).
    ///
    /// Refused with [`codes::INVALID_STATE`] unless the VM runs (model choice), with
    /// [`codes::NOT_FOUND`] for an unknown id.
    pub fn reset_compute_system(&self, vm: Guid) -> Result<(), HResult> {
        let guest = {
            let mut state = self.lock();
            let system = state.systems.get(&vm).ok_or(codes::NOT_FOUND)?;
            if system.guest.power() != Power::Running {
                return Err(codes::INVALID_STATE);
            }
            let guest = system.guest.clone();
            state.counters.resets += 1;
            guest
        };
        guest.set_power(Power::Resetting);
        guest.set_power(Power::Running);
        Ok(())
    }

    /// `HcsSaveComputeSystem`: only a paused system can be saved; a running one is refused with
    /// `HCS_E_INVALID_STATE` ([`codes::HCS_INVALID_STATE`], Microsoft's `HcsSaveComputeSystem`
    /// page: "cannot be saved as it is still running"). Anything else that is not paused
    /// (created, stopped, crashed) is refused the same way (strict reading). The system stays
    /// paused; the caller terminates it ([`HdvSim::terminate_compute_system`]) as after any
    /// save, which gives the emulator Stop and Teardown and ends the device host's run.
    pub fn save_compute_system(&self, vm: Guid) -> Result<SavedVm, HResult> {
        let mut state = self.lock();
        let system = state.systems.get(&vm).ok_or(codes::NOT_FOUND)?;
        if system.guest.power() != Power::Paused {
            return Err(codes::HCS_INVALID_STATE);
        }
        let saved = SavedVm {
            vm,
            guest: system.guest.save(),
            vpci: system.vpci.clone(),
        };
        state.counters.saves += 1;
        Ok(saved)
    }

    /// `HcsCreateComputeSystem` with the saved state as its `RestoreState` (the HCS schema's
    /// `RestoreState.SaveStateFilePath`, microsoft/hcsshim `internal/hcs/schema2/
    /// restore_state.go`): a compute system with the same id whose guest is the saved one — a
    /// new [`GuestVm`] of the same [`GuestKind`] with the saved MMIO claims — created, not
    /// started. As for any compute system, device hosts attach now and
    /// [`HdvSim::start_compute_system`] starts it; at the start each declared device's vPCI
    /// function takes the saved BAR placement and decode (no re-probe needed) when the device
    /// reports the same probed BARs.
    ///
    /// The old system must be gone: terminated (stopped or crashed), every compute-system
    /// handle to it closed and every device host of it torn down or exited; else
    /// `HCS_E_SYSTEM_ALREADY_EXISTS` ([`codes::SYSTEM_ALREADY_EXISTS`]; model choice of
    /// code). The restored system has a new VM worker and, **model's reading**, a new VMBus:
    /// link [`HdvSim::guest_vm`] to the KMCL model as a new VM (`kmcl::Sim::add_vm` or
    /// `add_vm_assuming_vmbus_handle_in`, a new user handle); channels bound to the old VM's
    /// handle never reach it, and its guest learns that the channels it knew are gone
    /// (`kmcl::GuestEvent::RestoredChannelGone`).
    pub fn restore_compute_system(&self, saved: SavedVm, config: VmConfig) -> Result<(), HResult> {
        let vm = saved.vm;
        let guest = GuestVm::restore(&saved.guest);
        {
            let mut state = self.lock();
            if let Some(old) = state.systems.get(&vm) {
                let gone = matches!(old.guest.power(), Power::Stopped | Power::Crashed)
                    && !state.handles.values().any(|&system| system == vm)
                    && !state.hosts.values().any(|host| host.vm == vm)
                    && !state.devices.values().any(|device| device.vm == vm);
                if !gone {
                    return Err(codes::SYSTEM_ALREADY_EXISTS);
                }
            }
            state.systems.insert(
                vm,
                ComputeSystem::created(config, guest.clone(), Some(saved.vpci)),
            );
            state.counters.restores += 1;
        }
        self.watch(vm, &guest);
        Ok(())
    }

    /// The device-host process `process` exited (call it after the process model's
    /// `exit_process`, e.g. `SimKernel::exit_process`). **Model's reading** (no source states
    /// it): HDV drops what that process held, without any callback (the process is gone):
    /// its compute-system handles close; each device host it initialized and not torn down is
    /// released with its device instances; each of their section-backed ranges is destroyed
    /// and the VM worker closes its duplicate of the section handle (counted in
    /// [`super::HdvCounters`], so no leak remains). The guest's vPCI function stays as the
    /// guest programmed it (BAR placement, decode: the guest did nothing), but its BAR
    /// accesses reach no emulator and no section any more (refused, all ones), and its
    /// forwarded configuration accesses fail. A new device-host process may then
    /// `HdvInitializeDeviceHost` for the same running VM and create the declared device
    /// instance again ([`HdvSim::for_process`]).
    pub fn process_exited(&self, process: ProcessId) {
        let mut state = self.lock();
        let state = &mut *state;
        state.com_security_set.remove(&process);
        let handles: Vec<usize> = state
            .handle_owners
            .iter()
            .filter(|&(_, &owner)| owner == process)
            .map(|(&handle, _)| handle)
            .collect();
        for handle in handles {
            state.handle_owners.remove(&handle);
            if state.handles.remove(&handle).is_some() {
                state.counters.compute_systems_closed += 1;
                state.counters.handles_closed_by_exit += 1;
            }
        }
        let hosts: Vec<usize> = state
            .hosts
            .iter()
            .filter(|(_, host)| host.process == process)
            .map(|(&handle, _)| handle)
            .collect();
        for host in hosts {
            state.hosts.remove(&host);
            state.counters.device_hosts_released_by_exit += 1;
            let devices: Vec<usize> = state
                .devices
                .iter()
                .filter(|(_, device)| device.host == host)
                .map(|(&id, _)| id)
                .collect();
            for id in devices {
                let Some(device) = state.devices.remove(&id) else {
                    continue;
                };
                state.counters.devices_released += 1;
                for range in device.ranges.into_values() {
                    state.counters.ranges_released_by_exit += 1;
                    if let Some((worker, duplicate)) = range.worker_handle {
                        // HDV's own duplicate; closing fails only if the worker is gone.
                        let _ = self.resolver.close_handle(worker, duplicate);
                        state.counters.worker_duplicates_closed += 1;
                    }
                }
            }
        }
    }
}
