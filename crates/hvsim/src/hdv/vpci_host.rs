//! The platform side of the vPCI bus: what a guest's vPCI bus driver reaches over the vPCI
//! protocol and configuration space, answered by the VM worker's vPCI (the model of
//! `vmvpci.dll`), which holds the BAR and command registers itself ([`crate::vpci::function`])
//! and forwards every other configuration access to the emulator (hdv.md §3.3 observed).
//!
//! Guest code runs only while the VM runs: every call here fails with
//! [`VpciError::VmNotRunning`] otherwise (paused, stopped, crashed, not started).

use vmbmmio_devhost::callbacks::PCI_BAR_COUNT;
use vmbmmio_devhost::guid::Guid;
use vmbmmio_devhost::hresult::HResult;

use super::sim::{GuestDevice, HdvSim};
use super::state::State;
use crate::vm::Power;
use crate::vpci::function::{
    AssignError, BarWrite, COMMAND_OFFSET, CONFIG_SPACE_SIZE, PlatformBar, Route, route,
};

/// The reason the model's VM worker fast-fails, as the observed run reported it.
pub const EARLY_MAPPING_CRASH: &str = "vmwp.exe fast-fail in vmvpci.dll \
     Vpci::Core::VirtualDevice::CreateNewRangesForSection (E_UNEXPECTED): a section-backed range \
     created before the guest enabled memory decode (observed on Windows 10.0.26100, nested)";

/// A device the vPCI bus offers its guest (pci-hyperv's `QUERY_BUS_RELATIONS` and
/// `QUERY_RESOURCE_REQUIREMENTS`: the instance and the probed BAR values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VpciDevice {
    /// The device instance GUID (a Linux guest names its PCI domain after it).
    pub instance: Guid,
    /// `GetDetails`' probed BAR values (hdv.md §3.7).
    pub probed_bars: [u32; PCI_BAR_COUNT],
}

/// Why a vPCI access failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VpciError {
    /// No compute system with that id.
    NoVm,
    /// The VM does not run, so no guest code does.
    VmNotRunning,
    /// The guest has no such vPCI function.
    NoDevice,
    /// Not a dword-aligned offset inside configuration space.
    BadOffset,
    /// The emulator failed the forwarded access.
    Emulator(HResult),
    /// The platform refused a resource assignment.
    Assign(AssignError),
    /// The access made the VM worker crash (an observed quirk); the VM is gone.
    WorkerCrashed,
}

/// What a configuration write needs after the model's lock is released.
enum After {
    Nothing,
    Forward,
    Crash,
}

impl HdvSim {
    fn running_state(state: &State, vm: Guid) -> Result<(), VpciError> {
        let system = state.systems.get(&vm).ok_or(VpciError::NoVm)?;
        if system.guest.power() != Power::Running {
            return Err(VpciError::VmNotRunning);
        }
        Ok(())
    }

    /// The vPCI devices the bus offers the guest of `vm`.
    pub fn vpci_devices(&self, vm: Guid) -> Result<Vec<VpciDevice>, VpciError> {
        let state = self.lock();
        Self::running_state(&state, vm)?;
        let system = state.systems.get(&vm).ok_or(VpciError::NoVm)?;
        Ok(system
            .vpci
            .iter()
            .map(|(&instance, function)| VpciDevice {
                instance,
                probed_bars: function.probed(),
            })
            .collect())
    }

    /// A guest configuration dword read of function `instance` at `offset`. BAR registers read
    /// all ones (strict reading of platform-paths.md G3 / hdv.md §3.3: unreliable, observed all
    /// ones); the command half of the dword at 0x04 is the platform's, the status half and every
    /// other offset the emulator's (`ReadConfigSpace`).
    pub fn vpci_config_read(
        &self,
        vm: Guid,
        instance: Guid,
        offset: u32,
    ) -> Result<u32, VpciError> {
        if !offset.is_multiple_of(4) || offset >= CONFIG_SPACE_SIZE {
            return Err(VpciError::BadOffset);
        }
        let command = {
            let state = self.lock();
            Self::running_state(&state, vm)?;
            let system = state.systems.get(&vm).ok_or(VpciError::NoVm)?;
            system
                .vpci
                .get(&instance)
                .ok_or(VpciError::NoDevice)?
                .command()
        };
        let device = self
            .guest_device_of(vm, instance)
            .ok_or(VpciError::NoDevice)?;
        match route(offset) {
            Route::Bar(_) => Ok(u32::MAX),
            Route::CommandStatus => device
                .callbacks
                .read_config_space(COMMAND_OFFSET)
                .map(|dword| (dword & 0xFFFF_0000) | u32::from(command))
                .map_err(VpciError::Emulator),
            Route::Emulator => device
                .callbacks
                .read_config_space(offset)
                .map_err(VpciError::Emulator),
        }
    }

    /// A guest configuration dword write of function `instance` at `offset`. The command
    /// register and the BARs are the platform's (not forwarded: strict reading); BAR writes
    /// are ignored while memory decode is on (pci-hyperv `prepopulate_bars`, OpenVMM
    /// `write_bar`); every other offset reaches the emulator's `WriteConfigSpace`. Turning
    /// memory decode on with a range mapped before decode was on crashes the VM worker when
    /// [`super::PlatformQuirks::early_mapping_crashes_worker`] is set (hdv.md §3.3 observed).
    pub fn vpci_config_write(
        &self,
        vm: Guid,
        instance: Guid,
        offset: u32,
        value: u32,
    ) -> Result<(), VpciError> {
        if !offset.is_multiple_of(4) || offset >= CONFIG_SPACE_SIZE {
            return Err(VpciError::BadOffset);
        }
        let after = {
            let mut state = self.lock();
            Self::running_state(&state, vm)?;
            let crash_quirk = state.quirks.early_mapping_crashes_worker;
            let early_range = state.devices.values().any(|device| {
                device.vm == vm
                    && device.active
                    && device.instance_id == instance
                    && device
                        .ranges
                        .values()
                        .any(|range| !range.made_while_decoding)
            });
            let system = state.systems.get_mut(&vm).ok_or(VpciError::NoVm)?;
            let function = system.vpci.get_mut(&instance).ok_or(VpciError::NoDevice)?;
            match route(offset) {
                Route::CommandStatus => {
                    // The status half (RW1C bits) is not forwarded either (strict reading).
                    let (before, now) = function.write_command((value & 0xFFFF) as u16);
                    if !before && now {
                        state.counters.decode_enables += 1;
                        if crash_quirk && early_range {
                            After::Crash
                        } else {
                            After::Nothing
                        }
                    } else {
                        After::Nothing
                    }
                }
                Route::Bar(index) => {
                    if function.write_bar(index, value) == BarWrite::IgnoredDecodeOn {
                        state.counters.bar_writes_ignored_while_decoding += 1;
                    }
                    After::Nothing
                }
                // Forwarded below, without the model's lock held.
                Route::Emulator => After::Forward,
            }
        };
        match after {
            After::Nothing => Ok(()),
            After::Crash => {
                self.crash_worker(vm, EARLY_MAPPING_CRASH);
                Err(VpciError::WorkerCrashed)
            }
            After::Forward => {
                let device = self
                    .guest_device_of(vm, instance)
                    .ok_or(VpciError::NoDevice)?;
                device
                    .callbacks
                    .write_config_space(offset, value)
                    .map_err(VpciError::Emulator)
            }
        }
    }

    /// A Windows guest's resource assignment for function `instance` (vpci.sys sends the BARs
    /// PnP assigned in `ASSIGNED_RESOURCES`; platform-paths.md G3, G6), applied like OpenVMM
    /// `set_bars`: alignment checked against the mask, no range check; refused while memory
    /// decode is on.
    pub fn vpci_assign_resources(
        &self,
        vm: Guid,
        instance: Guid,
        bars: &[(u8, u64)],
    ) -> Result<(), VpciError> {
        let mut state = self.lock();
        Self::running_state(&state, vm)?;
        let system = state.systems.get_mut(&vm).ok_or(VpciError::NoVm)?;
        system
            .vpci
            .get_mut(&instance)
            .ok_or(VpciError::NoDevice)?
            .assign(bars)
            .map_err(VpciError::Assign)
    }

    /// The platform's view of function `instance`: its BARs and whether memory decode is on.
    /// A simulator-only view (no guest or host can read it on Hyper-V), for checks and
    /// narration.
    pub fn vpci_platform_bars(&self, vm: Guid, instance: Guid) -> Option<(Vec<PlatformBar>, bool)> {
        let state = self.lock();
        let function = state.systems.get(&vm)?.vpci.get(&instance)?;
        Some((function.bars(), function.memory_decode()))
    }

    /// The device BAR that decodes guest physical address `gpa` of `vm`, and the offset in it:
    /// a placed BAR of a function with memory decode on, from the platform's registers (never
    /// the emulator's configuration space).
    pub(crate) fn decode_gpa(&self, vm: Guid, gpa: u64) -> Option<(GuestDevice, PlatformBar, u64)> {
        let hit = {
            let state = self.lock();
            let system = state.systems.get(&vm)?;
            system.vpci.iter().find_map(|(&instance, function)| {
                function
                    .decode(gpa)
                    .map(|(bar, offset)| (instance, bar, offset))
            })?
        };
        let (instance, bar, offset) = hit;
        let device = self.guest_device_of(vm, instance)?;
        Some((device, bar, offset))
    }
}
