//! The model's state and the public description types.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::thread::ThreadId;

use vmbmmio_devhost::callbacks::{PCI_BAR_COUNT, PciDeviceCallbacks};
use vmbmmio_devhost::guid::Guid;

use crate::memory::{ProcessId, SectionMemory};
use crate::vm::{GuestVm, Power};
use crate::vpci::function::VpciFunction;

/// `FlexibleIoDeviceHostingModel` (hdv.md §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostingModel {
    /// Emulated inside the VM worker.
    Internal,
    /// Emulated by an external device host (the vmbmmio case).
    External,
}

/// One entry of the VM's `Devices.FlexibleIov` map (hdv.md §5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlexibleIovDevice {
    /// The key: the device instance GUID.
    pub instance_id: Guid,
    /// `EmulatorId`: the emulator class GUID.
    pub emulator_id: Guid,
    /// `HostingModel`.
    pub hosting_model: HostingModel,
    /// `Configuration`: strings handed to `SetConfiguration`.
    pub configuration: Vec<String>,
}

/// The parts of a VM's HCS document the model looks at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmConfig {
    /// `VirtualMachine.Devices.FlexibleIov`.
    pub flexible_iov: Vec<FlexibleIovDevice>,
}

/// Compute-system state: the shared VM's power state ([`crate::vm::Power`]), which the HDV
/// model drives and every other model observes.
pub type VmState = Power;

/// Observed platform behaviour the model can reproduce (off by default: the documented
/// semantics apply). The one observed build (Looking Glass, Windows 10.0.26100, nested
/// Hyper-V) had all three: [`PlatformQuirks::observed_build`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlatformQuirks {
    /// hdv.md §3.3 [observed, 10.0.26100 nested]: a mapping made after the guest placed the
    /// BAR "returns success but has no visible effect". With this set, guest accesses ignore
    /// section-backed ranges and reach the emulator's intercept callbacks.
    pub mapping_has_no_effect: bool,
    /// hdv.md §3.3 [observed, same build]: "guest reads of BAR0/BAR2 returned all ones and
    /// never reached `ReadInterceptedMemory`" — the host (VPCI) handled the BAR itself. With this
    /// set, BAR accesses that no section-backed range serves are refused (reads return all ones,
    /// writes are dropped) instead of reaching the emulator.
    pub bar_accesses_not_forwarded: bool,
    /// hdv.md §3.3 [observed, same build] (Looking Glass `hcs_probe.c` run): a section-backed
    /// range created before the guest enabled memory decode on the device made the VM worker
    /// fast-fail in `vmvpci.dll` (`Vpci::Core::VirtualDevice::CreateNewRangesForSection`,
    /// `E_UNEXPECTED`) when decode went on. With this set, the VM then crashes
    /// ([`crate::vm::Power::Crashed`]): its guest and its devices are gone.
    pub early_mapping_crashes_worker: bool,
}

impl PlatformQuirks {
    /// Everything observed on the one public run (hdv.md §3.3: 10.0.26100, nested).
    pub const fn observed_build() -> Self {
        Self {
            mapping_has_no_effect: true,
            bar_accesses_not_forwarded: true,
            early_mapping_crashes_worker: true,
        }
    }
}

/// Everything created and released, for leak checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HdvCounters {
    /// `HcsOpenComputeSystem` successes.
    pub compute_systems_opened: u64,
    /// `HcsCloseComputeSystem` of an open handle.
    pub compute_systems_closed: u64,
    /// `HcsCloseComputeSystem` of an unknown handle.
    pub invalid_closes: u64,
    /// `HdvInitializeDeviceHost(Ex)` successes.
    pub device_hosts_initialized: u64,
    /// `HdvTeardownDeviceHost` successes.
    pub device_hosts_torn_down: u64,
    /// `HdvCreateDeviceInstance` successes.
    pub devices_created: u64,
    /// Device instances released by their host's teardown.
    pub devices_released: u64,
    /// `HdvCreateSectionBackedMmioRange` successes.
    pub ranges_created: u64,
    /// `HdvDestroySectionBackedMmioRange` successes.
    pub ranges_destroyed: u64,
    /// Ranges still live when their device host was torn down (released by HDV, but never
    /// destroyed by the device host: counted as leaks, hdv.md §5 step 6 destroys them first).
    pub ranges_released_by_teardown: u64,
    /// `HdvTeardownDeviceHost` calls refused because the VM ran or was paused (hdv.md §3.1:
    /// hcs-rs, teardown after the compute system terminated; §5 step 6).
    pub teardowns_refused_while_running: u64,
    /// Section handles HDV duplicated into a VM worker process (hdv.md §3.3,
    /// `system_handle(sh_section)`).
    pub worker_duplicates: u64,
    /// Worker duplicates closed (range destroyed, or the worker exited).
    pub worker_duplicates_closed: u64,
    /// VM workers that crashed (an observed quirk).
    pub worker_crashes: u64,
    /// BAR register writes the vPCI platform ignored because memory decode was on.
    pub bar_writes_ignored_while_decoding: u64,
    /// Memory-decode enables (off to on) the vPCI platform saw.
    pub decode_enables: u64,
    /// Range creations refused because the VM did not run yet (§3.3 observed).
    pub ranges_refused_before_start: u64,
    /// Range creations and destructions made while the VM ran unpaused (§3.3: not atomic for
    /// the guest; the caller is expected to pause).
    pub range_changes_while_running: u64,
    /// Successful pauses.
    pub pauses: u64,
    /// Successful resumes.
    pub resumes: u64,
    /// Guest resets (`HdvSim::reset_compute_system`).
    pub resets: u64,
    /// Successful saves (`HdvSim::save_compute_system`).
    pub saves: u64,
    /// Compute systems created from a saved state (`HdvSim::restore_compute_system`).
    pub restores: u64,
    /// Compute-system handles closed because their process exited (`HdvSim::process_exited`);
    /// also counted in `compute_systems_closed`.
    pub handles_closed_by_exit: u64,
    /// Device hosts released because their process exited without `HdvTeardownDeviceHost`
    /// (model's reading: HDV drops the process's device host and instances).
    pub device_hosts_released_by_exit: u64,
    /// Ranges HDV destroyed because their device host's process exited (their worker
    /// duplicates closed with them). Not leaks: the platform released them.
    pub ranges_released_by_exit: u64,
}

impl HdvCounters {
    /// Whether everything created was released: handles closed, hosts torn down (releasing
    /// devices) or dropped with their exited process, every range **destroyed** by its device
    /// host or by HDV when that process exited (a range only its host's teardown released is a
    /// leak), every worker duplicate closed.
    pub fn all_released(&self) -> bool {
        self.compute_systems_opened == self.compute_systems_closed
            && self.device_hosts_initialized
                == self.device_hosts_torn_down + self.device_hosts_released_by_exit
            && self.devices_created == self.devices_released
            && self.ranges_created == self.ranges_destroyed + self.ranges_released_by_exit
            && self.worker_duplicates == self.worker_duplicates_closed
    }
}

pub(super) struct ComputeSystem {
    pub config: VmConfig,
    /// The shared VM: its power state is the compute system's state.
    pub guest: GuestVm,
    /// The VM worker process (`vmwp.exe`) while the VM exists (started, not stopped).
    pub worker: Option<ProcessId>,
    /// The vPCI functions the platform presents to the guest, by device instance, while the
    /// guest exists.
    pub vpci: BTreeMap<Guid, VpciFunction>,
    /// A restored system's saved vPCI functions, applied at its start.
    pub restored_vpci: Option<BTreeMap<Guid, VpciFunction>>,
}

impl ComputeSystem {
    /// A created (not started) system, restored from `restored_vpci` if it comes from a save.
    pub fn created(
        config: VmConfig,
        guest: GuestVm,
        restored_vpci: Option<BTreeMap<Guid, VpciFunction>>,
    ) -> Self {
        Self {
            config,
            guest,
            worker: None,
            vpci: BTreeMap::new(),
            restored_vpci,
        }
    }
}

pub(super) struct Host {
    pub vm: Guid,
    pub thread: ThreadId,
    /// The device-host process that initialized it.
    pub process: ProcessId,
}

/// A section-backed range: pages `[offset_pages, offset_pages + length_pages)` of a BAR.
#[derive(Clone)]
pub(super) struct Range {
    pub length_pages: u64,
    /// HDV's duplicate of the section handle in the VM worker, until closed.
    pub worker_handle: Option<(ProcessId, u64)>,
    /// Whether the device decoded memory when the range was created (the observed crash,
    /// [`PlatformQuirks::early_mapping_crashes_worker`], needs a range made before decode on).
    pub made_while_decoding: bool,
    pub writeable: bool,
    pub memory: Arc<SectionMemory>,
    pub section_offset_pages: u64,
}

pub(super) struct Device {
    pub host: usize,
    pub vm: Guid,
    pub class_id: Guid,
    pub instance_id: Guid,
    pub callbacks: Arc<dyn PciDeviceCallbacks>,
    /// GetDetails' probed BARs, once the VM started.
    pub probed: Option<[u32; PCI_BAR_COUNT]>,
    /// Initialize was called and Teardown not yet.
    pub active: bool,
    /// Ranges by `(bar, offset_pages)`.
    pub ranges: BTreeMap<(u8, u64), Range>,
}

#[derive(Default)]
pub(super) struct State {
    pub systems: BTreeMap<Guid, ComputeSystem>,
    pub handles: BTreeMap<usize, Guid>,
    /// The process that opened each compute-system handle.
    pub handle_owners: BTreeMap<usize, ProcessId>,
    pub hosts: BTreeMap<usize, Host>,
    pub devices: BTreeMap<usize, Device>,
    /// hdv.md §3.1 [observed]: COM security can be set once per (device-host) process.
    pub com_security_set: BTreeSet<ProcessId>,
    pub faults: super::faults::HdvFaults,
    pub next_handle: usize,
    pub counters: HdvCounters,
    pub quirks: PlatformQuirks,
}

impl State {
    /// Records a new device instance of `host` and returns its handle (counted). `probed`
    /// and `active` are set when the device is created on a VM that already runs.
    pub fn insert_device(&mut self, device: Device) -> usize {
        let handle = self.new_handle();
        self.devices.insert(handle, device);
        self.counters.devices_created += 1;
        handle
    }

    pub fn new_handle(&mut self) -> usize {
        // Start high and step by 4 so handle values look like (and never equal) small ints.
        self.next_handle += 4;
        0x1000 + self.next_handle
    }
}
