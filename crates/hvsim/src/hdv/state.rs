//! The model's state and the public description types.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::ThreadId;

use vmbmmio_devhost::callbacks::{PCI_BAR_COUNT, PciDeviceCallbacks};
use vmbmmio_devhost::guid::Guid;

use crate::memory::SectionMemory;

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

/// Compute-system state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmState {
    /// Created, not started.
    Created,
    /// Running.
    Running,
    /// Paused (`HcsPauseComputeSystem`).
    Paused,
    /// Terminated.
    Stopped,
}

/// Observed platform behaviour the model can reproduce (off by default: the documented
/// semantics apply).
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
    /// Ranges released by their device host's teardown.
    pub ranges_released_by_teardown: u64,
    /// Range creations refused because the VM did not run yet (§3.3 observed).
    pub ranges_refused_before_start: u64,
    /// Range creations and destructions made while the VM ran unpaused (§3.3: not atomic for
    /// the guest; the caller is expected to pause).
    pub range_changes_while_running: u64,
    /// Successful pauses.
    pub pauses: u64,
    /// Successful resumes.
    pub resumes: u64,
}

impl HdvCounters {
    /// Whether everything created was released: handles closed, hosts torn down (releasing
    /// devices), ranges destroyed or released.
    pub fn all_released(&self) -> bool {
        self.compute_systems_opened == self.compute_systems_closed
            && self.device_hosts_initialized == self.device_hosts_torn_down
            && self.devices_created == self.devices_released
            && self.ranges_created == self.ranges_destroyed + self.ranges_released_by_teardown
    }
}

pub(super) struct ComputeSystem {
    pub config: VmConfig,
    pub state: VmState,
}

pub(super) struct Host {
    pub vm: Guid,
    pub thread: ThreadId,
}

/// A section-backed range: pages `[offset_pages, offset_pages + length_pages)` of a BAR.
#[derive(Clone)]
pub(super) struct Range {
    pub length_pages: u64,
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
    pub hosts: BTreeMap<usize, Host>,
    pub devices: BTreeMap<usize, Device>,
    /// hdv.md §3.1 [observed]: COM security can be set once per (device-host) process.
    pub com_security_set: bool,
    pub next_handle: usize,
    pub counters: HdvCounters,
    pub quirks: PlatformQuirks,
}

impl State {
    pub fn new_handle(&mut self) -> usize {
        // Start high and step by 4 so handle values look like (and never equal) small ints.
        self.next_handle += 4;
        0x1000 + self.next_handle
    }
}
