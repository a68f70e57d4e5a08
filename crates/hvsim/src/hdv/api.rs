//! The device host's `HcsApi` and `HdvApi` over the model. Every rule cites hdv.md.

use std::collections::BTreeMap;
use std::sync::Arc;

use vmbmmio_devhost::callbacks::{PCI_BAR_COUNT, PciDeviceCallbacks};
use vmbmmio_devhost::guid::Guid;
use vmbmmio_devhost::hresult::HResult;
use vmbmmio_devhost::platform::{
    ComputeSystem, DeviceHandle, DeviceHostFlags, DeviceHostHandle, HcsApi, HdvApi, MmioRange,
};

use super::codes;
use super::faults::HdvCall;
use super::sim::HdvSim;
use super::state::{Device, Host, Range, State, VmState};
use crate::memory::{ResolveError, SectionAccess};
use crate::vm::Power;

/// Page size of every HDV range (hdv.md §3.3 "Granularity").
const PAGE_SIZE: u64 = 4096;

fn system_of(state: &State, system: ComputeSystem) -> Result<Guid, HResult> {
    state
        .handles
        .get(&system.0)
        .copied()
        .ok_or(codes::BAD_HANDLE)
}

fn vm_state(state: &State, vm: Guid) -> Result<VmState, HResult> {
    state
        .systems
        .get(&vm)
        .map(|system| system.guest.power())
        .ok_or(codes::NOT_FOUND)
}

/// The size of BAR `bar` from GetDetails' probed values (hdv.md §3.7: the value the BAR
/// reads back after all ones; bit 0 = I/O, bits 2:1 = 10b for 64-bit, the next index holding
/// the upper 32 bits of the mask; 0 = unused). `None` for an unused or I/O BAR.
fn bar_size(probed: &[u32; PCI_BAR_COUNT], bar: u8) -> Option<u64> {
    let index = usize::from(bar);
    let low = *probed.get(index)?;
    if low == 0 || low & 1 != 0 {
        return None;
    }
    let high = if (low >> 1) & 0b11 == 0b10 {
        u64::from(*probed.get(index + 1)?)
    } else {
        // A 32-bit BAR: the upper half of the mask is all ones.
        u64::from(u32::MAX)
    };
    let mask = (high << 32) | u64::from(low & !0xF);
    Some((!mask).wrapping_add(1))
}

impl HcsApi for HdvSim {
    fn open_compute_system(&mut self, vm_id: Guid) -> Result<ComputeSystem, HResult> {
        if let Some(error) = self.hit(HdvCall::OpenComputeSystem) {
            return Err(error);
        }
        let mut state = self.lock();
        vm_state(&state, vm_id)?;
        let handle = state.new_handle();
        state.handles.insert(handle, vm_id);
        state.handle_owners.insert(handle, self.process);
        state.counters.compute_systems_opened += 1;
        Ok(ComputeSystem(handle))
    }

    fn pause(&mut self, system: ComputeSystem) -> Result<(), HResult> {
        if let Some(error) = self.hit(HdvCall::PauseComputeSystem) {
            return Err(error);
        }
        // Only a running VM can be paused (model: the reference names no error code).
        self.change_power(system, Power::Running, Power::Paused)
    }

    fn resume(&mut self, system: ComputeSystem) -> Result<(), HResult> {
        if let Some(error) = self.hit(HdvCall::ResumeComputeSystem) {
            return Err(error);
        }
        self.change_power(system, Power::Paused, Power::Running)
    }

    fn close_compute_system(&mut self, system: ComputeSystem) {
        // `void`: counted, never failed.
        let _ = self.hit(HdvCall::CloseComputeSystem);
        let mut state = self.lock();
        state.handle_owners.remove(&system.0);
        if state.handles.remove(&system.0).is_some() {
            state.counters.compute_systems_closed += 1;
        } else {
            state.counters.invalid_closes += 1;
        }
    }
}

/// A declared external device of running VM `vm` whose instance has a vPCI function (it
/// started) but no device instance any more (its device host's process exited): `(instance,
/// class)` of the first one.
fn orphaned(state: &State, vm: Guid) -> Option<(Guid, Guid)> {
    let system = state.systems.get(&vm)?;
    system
        .config
        .flexible_iov
        .iter()
        .filter(|entry| entry.hosting_model == super::HostingModel::External)
        .filter(|entry| system.vpci.contains_key(&entry.instance_id))
        .find(|entry| {
            !state
                .devices
                .values()
                .any(|device| device.vm == vm && device.instance_id == entry.instance_id)
        })
        .map(|entry| (entry.instance_id, entry.emulator_id))
}

impl HdvSim {
    /// `HdvCreateDeviceInstance` for a VM that already runs: **model's reading** (no source),
    /// a device host re-attaching after the previous one's process exited
    /// ([`HdvSim::process_exited`]). Only a declared external device (same instance and class)
    /// whose vPCI function exists and which has no device instance may be created. Its
    /// emulator gets Initialize, SetConfiguration, GetDetails and Start at once (the order of
    /// a VM start, hdv.md §3.7); GetDetails must report the BARs the guest already probed,
    /// else the device is torn down and the call refused. The guest's vPCI function (BAR
    /// placement, decode) is unchanged.
    fn reattach_device(
        &self,
        host: DeviceHostHandle,
        vm: Guid,
        class_id: Guid,
        instance_id: Guid,
        emulator: Arc<dyn PciDeviceCallbacks>,
    ) -> Result<DeviceHandle, HResult> {
        let (configuration, function_probed) = {
            let state = self.lock();
            let system = state.systems.get(&vm).ok_or(codes::NOT_FOUND)?;
            let entry = system
                .config
                .flexible_iov
                .iter()
                .find(|entry| {
                    entry.instance_id == instance_id
                        && entry.emulator_id == class_id
                        && entry.hosting_model == super::HostingModel::External
                })
                .ok_or(codes::INVALID_STATE)?;
            let function = system.vpci.get(&instance_id).ok_or(codes::INVALID_STATE)?;
            if state
                .devices
                .values()
                .any(|device| device.vm == vm && device.instance_id == instance_id)
            {
                return Err(codes::INVALID_ARGUMENT);
            }
            (entry.configuration.clone(), function.probed())
        };
        emulator.initialize()?;
        let started = emulator
            .set_configuration(&configuration)
            .and_then(|()| {
                let mut bars = [0; PCI_BAR_COUNT];
                emulator.get_details(&mut bars).map(|_| bars)
            })
            .and_then(|bars| {
                if bars == function_probed {
                    Ok(bars)
                } else {
                    Err(codes::INVALID_ARGUMENT)
                }
            })
            .and_then(|bars| emulator.start().map(|()| bars));
        let bars = match started {
            Ok(bars) => bars,
            Err(error) => {
                emulator.teardown();
                return Err(error);
            }
        };
        let mut state = self.lock();
        if !state.hosts.contains_key(&host.0) {
            drop(state);
            emulator.stop();
            emulator.teardown();
            return Err(codes::BAD_HANDLE);
        }
        let handle = state.insert_device(Device {
            host: host.0,
            vm,
            class_id,
            instance_id,
            callbacks: emulator,
            probed: Some(bars),
            active: true,
            ranges: BTreeMap::new(),
        });
        Ok(DeviceHandle(handle))
    }

    /// `HcsPauseComputeSystem` / `HcsResumeComputeSystem`: the VM must be in `from`; it goes to
    /// `to`, counted. The shared VM's observers run without the model's lock held.
    fn change_power(&self, system: ComputeSystem, from: Power, to: Power) -> Result<(), HResult> {
        let guest = {
            let mut state = self.lock();
            let vm = system_of(&state, system)?;
            let guest = state
                .systems
                .get(&vm)
                .map(|entry| entry.guest.clone())
                .ok_or(codes::NOT_FOUND)?;
            if guest.power() != from {
                return Err(codes::INVALID_STATE);
            }
            if to == Power::Paused {
                state.counters.pauses += 1;
            } else {
                state.counters.resumes += 1;
            }
            guest
        };
        guest.set_power(to);
        Ok(())
    }
}

impl HdvApi for HdvSim {
    fn initialize_device_host(
        &mut self,
        system: ComputeSystem,
        flags: DeviceHostFlags,
    ) -> Result<DeviceHostHandle, HResult> {
        if let Some(error) = self.hit(HdvCall::InitializeDeviceHost) {
            return Err(error);
        }
        let mut state = self.lock();
        let vm = system_of(&state, system)?;
        // hdv.md §3.1 (hcs-rs doc comments): initialize after the compute system is created
        // and before it is started. Stricter reading: refused once it started, except (model's
        // reading, `HdvSim::process_exited`) to re-attach to a running or paused VM one of
        // whose declared external devices lost its device host.
        let power = vm_state(&state, vm)?;
        if power != VmState::Created && !(power.guest_exists() && orphaned(&state, vm).is_some()) {
            return Err(codes::INVALID_STATE);
        }
        // hdv.md §3.1 [observed]: COM security can be set only once per process; a second
        // request returns RPC_E_TOO_LATE.
        if flags == DeviceHostFlags::InitializeComSecurity
            && !state.com_security_set.insert(self.process)
        {
            return Err(HResult::RPC_E_TOO_LATE);
        }
        let handle = state.new_handle();
        // hdv.md §3.1: teardown must happen on the same thread.
        state.hosts.insert(
            handle,
            Host {
                vm,
                thread: std::thread::current().id(),
                process: self.process,
            },
        );
        state.counters.device_hosts_initialized += 1;
        Ok(DeviceHostHandle(handle))
    }

    fn create_pci_device(
        &mut self,
        host: DeviceHostHandle,
        class_id: Guid,
        instance_id: Guid,
        emulator: Arc<dyn PciDeviceCallbacks>,
    ) -> Result<DeviceHandle, HResult> {
        if let Some(error) = self.hit(HdvCall::CreateDeviceInstance) {
            return Err(error);
        }
        let mut state = self.lock();
        let vm = state.hosts.get(&host.0).ok_or(codes::BAD_HANDLE)?.vm;
        // hdv.md §5 step 3: devices are created before HcsStartComputeSystem (stricter:
        // refused after), except to re-attach a declared device that lost its device host.
        let power = vm_state(&state, vm)?;
        if power != VmState::Created {
            if !power.guest_exists() {
                return Err(codes::INVALID_STATE);
            }
            drop(state);
            return self.reattach_device(host, vm, class_id, instance_id, emulator);
        }
        // Two instances with one GUID in one VM: undocumented, refused (stricter reading).
        if state
            .devices
            .values()
            .any(|device| device.vm == vm && device.instance_id == instance_id)
        {
            return Err(codes::INVALID_ARGUMENT);
        }
        let handle = state.insert_device(Device {
            host: host.0,
            vm,
            class_id,
            instance_id,
            callbacks: emulator,
            probed: None,
            active: false,
            ranges: BTreeMap::new(),
        });
        Ok(DeviceHandle(handle))
    }

    fn create_section_backed_mmio_range(
        &mut self,
        device: DeviceHandle,
        range: &MmioRange,
    ) -> Result<(), HResult> {
        if let Some(error) = self.hit(HdvCall::CreateSectionBackedMmioRange) {
            return Err(error);
        }
        let mut state = self.lock();
        let entry = state.devices.get(&device.0).ok_or(codes::BAD_HANDLE)?;
        let vm_state = vm_state(&state, entry.vm)?;
        // hdv.md §3.3 [observed, 10.0.26100]: refused with ERROR_INVALID_STATE until the VM
        // runs. A paused VM has run: §3.3 tells callers to pause around the call.
        if !matches!(vm_state, VmState::Running | VmState::Paused) {
            state.counters.ranges_refused_before_start += 1;
            return Err(HResult::INVALID_STATE);
        }
        // hdv.md §2: HDV_PCI_BAR_SELECTOR is 0..5. A range has at least one page (stricter).
        if usize::from(range.bar) >= PCI_BAR_COUNT || range.length_pages == 0 {
            return Err(codes::INVALID_ARGUMENT);
        }
        // hdv.md §3.3 "BAR bounds / overlap": the reference calls this undocumented; the only
        // safe assumption is offset + length <= BAR size / 4096 with the size GetDetails
        // reported (§3.7), so the model refuses anything else.
        let bar_pages = entry
            .probed
            .and_then(|probed| bar_size(&probed, range.bar))
            .map(|size| size / PAGE_SIZE)
            .ok_or(codes::INVALID_ARGUMENT)?;
        let end = range
            .offset_pages
            .checked_add(range.length_pages)
            .ok_or(codes::INVALID_ARGUMENT)?;
        if end > bar_pages {
            return Err(codes::INVALID_ARGUMENT);
        }
        // hdv.md §3.3: overlapping ranges are undocumented too; refused.
        let overlaps = entry.ranges.iter().any(|(&(bar, start), existing)| {
            bar == range.bar && start < end && range.offset_pages < start + existing.length_pages
        });
        if overlaps {
            return Err(codes::INVALID_ARGUMENT);
        }
        // The section handle must be valid in the device-host process with the rights the
        // mapping needs (hdv.md §3.3 "Section handle"). The model's handles have no execute
        // right, so an executable mapping is refused (stricter reading).
        if range.flags.executable {
            return Err(codes::ACCESS_DENIED);
        }
        // hdv.md §3.3: map read (and write for a writeable mapping) and query.
        let access = if range.flags.writeable {
            SectionAccess::HDV_READ_WRITE
        } else {
            SectionAccess::HDV_READ
        };
        let memory = self
            .resolver
            .resolve(self.process, range.section.0, access)
            .map_err(|error| match error {
                ResolveError::InvalidHandle => codes::BAD_HANDLE,
                ResolveError::AccessDenied => codes::ACCESS_DENIED,
            })?;
        // hdv.md §3.3 [inference]: the section holds at least
        // (sectionOffsetInPages + lengthInPages) * 4096 bytes.
        let needed = range
            .section_offset_pages
            .checked_add(range.length_pages)
            .and_then(|pages| pages.checked_mul(PAGE_SIZE))
            .ok_or(codes::INVALID_ARGUMENT)?;
        if memory.size() < needed {
            return Err(codes::INVALID_ARGUMENT);
        }
        let instance = entry.instance_id;
        let vm = entry.vm;
        let system = state.systems.get(&vm).ok_or(codes::NOT_FOUND)?;
        let made_while_decoding = system
            .vpci
            .get(&instance)
            .is_some_and(|function| function.memory_decode());
        // hdv.md §3.3: the COM layer marshals the handle (`system_handle(sh_section)`), i.e.
        // duplicates it into the VM worker process, which then holds the section too.
        let worker = system.worker.ok_or(codes::INVALID_STATE)?;
        let duplicate = self
            .resolver
            .duplicate_handle(self.process, range.section.0, worker)
            .map_err(|error| match error {
                ResolveError::InvalidHandle => codes::BAD_HANDLE,
                ResolveError::AccessDenied => codes::ACCESS_DENIED,
            })?;
        state.counters.worker_duplicates += 1;
        let stored = Range {
            worker_handle: Some((worker, duplicate)),
            made_while_decoding,
            length_pages: range.length_pages,
            writeable: range.flags.writeable,
            memory,
            section_offset_pages: range.section_offset_pages,
        };
        if let Some(entry) = state.devices.get_mut(&device.0) {
            entry.ranges.insert((range.bar, range.offset_pages), stored);
        }
        state.counters.ranges_created += 1;
        // hdv.md §3.3: not atomic for the guest unless the caller paused it.
        if vm_state == VmState::Running {
            state.counters.range_changes_while_running += 1;
        }
        Ok(())
    }

    fn destroy_section_backed_mmio_range(
        &mut self,
        device: DeviceHandle,
        bar: u8,
        offset_pages: u64,
    ) -> Result<(), HResult> {
        if let Some(error) = self.hit(HdvCall::DestroySectionBackedMmioRange) {
            return Err(error);
        }
        let mut state = self.lock();
        let entry = state.devices.get_mut(&device.0).ok_or(codes::BAD_HANDLE)?;
        let vm = entry.vm;
        // hdv.md §3.3: a range is identified by BAR and start page only.
        let removed = entry
            .ranges
            .remove(&(bar, offset_pages))
            .ok_or(codes::INVALID_ARGUMENT)?;
        state.counters.ranges_destroyed += 1;
        // The worker's duplicate goes with the range (if the worker has not exited already).
        if let Some((worker, duplicate)) = removed.worker_handle {
            // The duplicate is HDV's own; closing it cannot fail unless the worker is gone.
            let _ = self.resolver.close_handle(worker, duplicate);
            state.counters.worker_duplicates_closed += 1;
        }
        if vm_state(&state, vm)? == VmState::Running {
            state.counters.range_changes_while_running += 1;
        }
        Ok(())
    }

    fn teardown_device_host(&mut self, host: DeviceHostHandle) -> Result<(), HResult> {
        if let Some(error) = self.hit(HdvCall::TeardownDeviceHost) {
            return Err(error);
        }
        let mut state = self.lock();
        let entry = state.hosts.get(&host.0).ok_or(codes::BAD_HANDLE)?;
        // hdv.md §3.1: balanced by HdvTeardownDeviceHost on the same thread.
        if entry.thread != std::thread::current().id() {
            return Err(codes::WRONG_THREAD);
        }
        // hdv.md §3.1 (hcs-rs doc comments): teardown after the compute system has been
        // terminated; §5 step 6: stop the VM, destroy the ranges, then tear down. Refused (and
        // counted) while the VM runs or is paused; the reference names no error code.
        let vm = entry.vm;
        if vm_state(&state, vm).is_ok_and(Power::guest_exists) {
            state.counters.teardowns_refused_while_running += 1;
            return Err(codes::INVALID_STATE);
        }
        state.hosts.remove(&host.0);
        // hdv.md §3.1: the host's device instances stop working; their ranges go with them
        // (counted apart: a range the device host never destroyed is a leak).
        let released: Vec<usize> = state
            .devices
            .iter()
            .filter(|(_, device)| device.host == host.0)
            .map(|(&id, _)| id)
            .collect();
        for id in released {
            if let Some(device) = state.devices.remove(&id) {
                state.counters.devices_released += 1;
                state.counters.ranges_released_by_teardown += device.ranges.len() as u64;
            }
        }
        state.counters.device_hosts_torn_down += 1;
        Ok(())
    }
}
