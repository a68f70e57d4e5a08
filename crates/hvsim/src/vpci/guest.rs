//! [`GuestPci`]: the guest's PCI view of its vPCI functions, for tests and the demo.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

use vmbmmio_devhost::callbacks::PCI_BAR_COUNT;
use vmbmmio_devhost::guid::Guid;

use super::function::{
    BAR0_OFFSET, COMMAND_MEMORY, COMMAND_OFFSET, Route, STATUS_CAPABILITIES, probed_bar, route,
};
use super::{linux, windows};
use crate::hdv::{HdvSim, VpciError};
use crate::vm::{ClaimError, ClaimOwner, GpaRange, GuestKind, GuestVm};

/// The capabilities pointer of a type-0 header.
const CAPABILITIES_POINTER: u32 = 0x34;
/// At most this many capabilities are walked (a loop guard: 256 bytes / 4-byte minimum, less
/// the header).
const MAX_CAPABILITIES: usize = 48;

/// Why a guest-side PCI operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestPciError {
    /// The platform refused or could not serve the access (VM not running, no such function,
    /// the VM worker crashed, ...).
    Vpci(VpciError),
    /// No memory BAR at that index.
    NoMemoryBar {
        /// The index.
        bar: u8,
    },
    /// The base is not aligned to the BAR's size.
    Misaligned {
        /// The BAR's size.
        size: u64,
    },
    /// The guest's MMIO pool has no room for a bridge window or a BAR (pci-hyperv: "Need %#llx
    /// of low/high MMIO space. Consider reconfiguring the VM.").
    NoMmioSpace {
        /// Whether it was the high (above 4 GiB) space.
        high: bool,
        /// Bytes needed.
        size: u64,
    },
    /// pci-hyperv could not claim its configuration window.
    ConfigWindow(ClaimError),
}

impl fmt::Display for GuestPciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Vpci(error) => write!(f, "vPCI: {error:?}"),
            Self::NoMemoryBar { bar } => write!(f, "no memory BAR at index {bar}"),
            Self::Misaligned { size } => write!(f, "not aligned to the BAR size {size:#x}"),
            Self::NoMmioSpace { high, size } => write!(
                f,
                "Need {size:#x} of {} MMIO space. Consider reconfiguring the VM.",
                if *high { "high" } else { "low" }
            ),
            Self::ConfigWindow(error) => {
                write!(f, "no room for the vPCI configuration window: {error:?}")
            }
        }
    }
}

impl std::error::Error for GuestPciError {}

impl From<VpciError> for GuestPciError {
    fn from(error: VpciError) -> Self {
        Self::Vpci(error)
    }
}

/// A BAR as the guest knows it: from its own shadow of what it wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestBar {
    /// The BAR's (low) index.
    pub bar: u8,
    /// Guest physical base address (0: never written).
    pub base: u64,
    /// Size (from the probed mask).
    pub size: u64,
    /// A 64-bit BAR (it also occupies the next index).
    pub is_64bit: bool,
    /// Whether the BAR lies inside a range the guest's vPCI claimed for this device (a Linux
    /// bridge window, a Windows PnP assignment). False after a deliberate move elsewhere
    /// (platform-paths.md J2): the host accepting such a BAR is an assumption.
    pub inside_own_window: bool,
}

impl GuestBar {
    /// The guest-physical range it covers.
    pub fn range(&self) -> GpaRange {
        GpaRange {
            base: self.base,
            size: self.size,
        }
    }
}

/// A PCI function the guest enumerated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciFunction {
    /// The vPCI device instance (a Linux guest names the PCI domain after it).
    pub instance: Guid,
    /// Vendor ID (configuration offset 0).
    pub vendor_id: u16,
    /// Device ID (configuration offset 2).
    pub device_id: u16,
    /// The probed BAR values the vPCI bus reported.
    pub probed_bars: [u32; PCI_BAR_COUNT],
}

/// One capability in a function's capability list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    /// Capability ID (0x09: vendor specific).
    pub id: u8,
    /// Its offset in configuration space.
    pub offset: u32,
}

/// What the guest's vPCI bus driver did for one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusReport {
    /// The device.
    pub instance: Guid,
    /// pci-hyperv's configuration window (Linux only).
    pub config_window: Option<GpaRange>,
    /// The ranges claimed for the BARs (Linux: bridge windows; Windows: one per BAR).
    pub windows: Vec<GpaRange>,
    /// The BARs as placed.
    pub bars: Vec<GuestBar>,
    /// Whether the bus driver left memory decode on (Windows) or off (Linux).
    pub memory_decode: bool,
}

/// The guest's PCI view of VM `vm`: its vPCI bus driver (by [`GuestKind`]) and the PCI
/// accesses a guest driver makes. Guest code runs only while the VM runs.
pub struct GuestPci {
    pub(super) hdv: HdvSim,
    pub(super) vm: Guid,
    pub(super) guest: GuestVm,
    /// What the guest wrote to each BAR register, by (instance, register index).
    shadow: Mutex<BTreeMap<(Guid, u8), u32>>,
    /// The devices the bus driver brought up, with their probed BARs.
    known: Mutex<BTreeMap<Guid, [u32; PCI_BAR_COUNT]>>,
    /// The guest boot (`GuestVm::boot_count`) the two maps above belong to: after a reset the
    /// guest's PCI state is gone, and it must probe again.
    boot: Mutex<u64>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl GuestPci {
    /// The guest of compute system `vm`.
    pub fn new(hdv: &HdvSim, vm: Guid) -> Result<Self, GuestPciError> {
        let guest = hdv
            .guest_vm(vm)
            .ok_or(GuestPciError::Vpci(VpciError::NoVm))?;
        Ok(Self {
            hdv: hdv.clone(),
            vm,
            boot: Mutex::new(guest.boot_count()),
            guest,
            shadow: Mutex::default(),
            known: Mutex::default(),
        })
    }

    /// The same guest's PCI view in compute system `vm` restored from a save of this one
    /// (`HdvSim::restore_compute_system`): the guest's PCI state is guest memory, so it knows
    /// the same devices and its shadow of the BARs it wrote; the platform restored the BAR
    /// placement and decode, so no probe is needed.
    pub fn restored_into(&self, hdv: &HdvSim, vm: Guid) -> Result<Self, GuestPciError> {
        self.fresh();
        let restored = Self::new(hdv, vm)?;
        *lock(&restored.shadow) = lock(&self.shadow).clone();
        *lock(&restored.known) = lock(&self.known).clone();
        Ok(restored)
    }

    /// Forgets the guest's PCI state if the guest booted again since (a reset): the vPCI
    /// bus driver knows nothing until it probes again.
    fn fresh(&self) {
        let now = self.guest.boot_count();
        let mut boot = lock(&self.boot);
        if *boot != now {
            *boot = now;
            lock(&self.known).clear();
            lock(&self.shadow).clear();
        }
    }

    /// The guest's kind.
    pub fn kind(&self) -> GuestKind {
        self.guest.kind()
    }

    /// The shared VM.
    pub fn guest_vm(&self) -> &GuestVm {
        &self.guest
    }

    /// The guest's vPCI bus driver brings up every vPCI device not brought up yet (the guest
    /// boots, or a device is hot-added): Linux pci-hyperv or Windows vpci.sys, see the module
    /// docs. On failure the device's claims are released and the error says what was missing.
    pub fn probe(&self) -> Result<Vec<BusReport>, GuestPciError> {
        self.fresh();
        let mut reports = Vec::new();
        for device in self.hdv.vpci_devices(self.vm)? {
            if lock(&self.known).contains_key(&device.instance) {
                continue;
            }
            // The bus driver learns the device (and its probed BARs) first.
            lock(&self.known).insert(device.instance, device.probed_bars);
            let report = match self.kind() {
                GuestKind::Linux => linux::bring_up(self, &device),
                GuestKind::Windows => windows::bring_up(self, &device),
            };
            match report {
                Ok(report) => reports.push(report),
                Err(error) => {
                    lock(&self.known).remove(&device.instance);
                    self.release_claims(device.instance);
                    return Err(error);
                }
            }
        }
        Ok(reports)
    }

    /// Releases every claim the bus driver made for `instance`.
    pub(super) fn release_claims(&self, instance: Guid) {
        let id = instance.to_u128();
        for claim in self.guest.claims() {
            let ours = match claim.owner {
                ClaimOwner::VpciConfigWindow(owner) => owner == id,
                ClaimOwner::VpciBridgeWindow { instance, .. } => instance == id,
                ClaimOwner::VpciBar { instance, .. } => instance == id,
                _ => false,
            };
            if ours {
                self.guest.release(claim.range);
            }
        }
    }

    /// The PCI functions the guest enumerated (after [`Self::probe`]), with their IDs read
    /// from configuration space.
    pub fn functions(&self) -> Result<Vec<PciFunction>, GuestPciError> {
        self.fresh();
        let known = lock(&self.known).clone();
        known
            .into_iter()
            .map(|(instance, probed_bars)| {
                let ids = self.config_read(instance, 0)?;
                Ok(PciFunction {
                    instance,
                    vendor_id: (ids & 0xFFFF) as u16,
                    device_id: (ids >> 16) as u16,
                    probed_bars,
                })
            })
            .collect()
    }

    /// A configuration dword read (BAR registers read all ones on this platform: use
    /// [`Self::bar`]).
    pub fn config_read(&self, instance: Guid, offset: u32) -> Result<u32, GuestPciError> {
        Ok(self.hdv.vpci_config_read(self.vm, instance, offset)?)
    }

    /// A configuration dword write; a write to a BAR register is also recorded in the guest's
    /// shadow (what the guest believes it wrote, whether or not the platform took it).
    pub fn config_write(
        &self,
        instance: Guid,
        offset: u32,
        value: u32,
    ) -> Result<(), GuestPciError> {
        self.fresh();
        self.hdv
            .vpci_config_write(self.vm, instance, offset, value)?;
        if let Route::Bar(index) = route(offset) {
            lock(&self.shadow).insert((instance, index), value);
        }
        Ok(())
    }

    /// Records BAR values the guest sent in a message rather than wrote (Windows
    /// `ASSIGNED_RESOURCES`).
    pub(super) fn shadow_bar(&self, instance: Guid, bar: u8, base: u64, is_64bit: bool) {
        let mut shadow = lock(&self.shadow);
        shadow.insert((instance, bar), base as u32);
        if is_64bit {
            shadow.insert((instance, bar + 1), (base >> 32) as u32);
        }
    }

    /// The function's capability list (status bit, pointer at 0x34), walked with a loop guard.
    pub fn capabilities(&self, instance: Guid) -> Result<Vec<Capability>, GuestPciError> {
        let mut found = Vec::new();
        if self.config_read(instance, COMMAND_OFFSET)? & STATUS_CAPABILITIES == 0 {
            return Ok(found);
        }
        let mut next = self.config_read(instance, CAPABILITIES_POINTER)? & 0xFC;
        while next >= 0x40 && found.len() < MAX_CAPABILITIES {
            let header = self.config_read(instance, next)?;
            found.push(Capability {
                id: (header & 0xFF) as u8,
                offset: next,
            });
            next = (header >> 8) & 0xFC;
        }
        Ok(found)
    }

    /// Where the guest believes BAR `bar` of `instance` is (its shadow), with the size from the
    /// probed mask; `None` if the guest does not know the device, has no such memory BAR, or
    /// no longer exists.
    pub fn bar(&self, instance: Guid, bar: u8) -> Option<GuestBar> {
        self.fresh();
        if !self.guest.power().guest_exists() {
            return None;
        }
        let probed = *lock(&self.known).get(&instance)?;
        let (size, is_64bit) = probed_bar(&probed, bar)?;
        let shadow = lock(&self.shadow);
        let register = |index: u8| shadow.get(&(instance, index)).copied().unwrap_or(0);
        let mask = !(size - 1);
        let high = if is_64bit {
            u64::from(register(bar + 1)) << 32
        } else {
            0
        };
        let base = (high | u64::from(register(bar) & !0xF)) & mask;
        let range = GpaRange { base, size };
        let inside_own_window = self
            .own_claims(instance)
            .iter()
            .any(|claim| claim.contains(&range));
        Some(GuestBar {
            bar,
            base,
            size,
            is_64bit,
            inside_own_window,
        })
    }

    /// The ranges the bus driver claimed for `instance`'s BARs.
    fn own_claims(&self, instance: Guid) -> Vec<GpaRange> {
        let id = instance.to_u128();
        self.guest
            .claims()
            .into_iter()
            .filter(|claim| match claim.owner {
                ClaimOwner::VpciBridgeWindow { instance, .. } => instance == id,
                ClaimOwner::VpciBar { instance, .. } => instance == id,
                _ => false,
            })
            .map(|claim| claim.range)
            .collect()
    }

    /// Turns memory decode on or off (a guest driver's `pci_enable_device`, or sysfs `enable`;
    /// on Windows the PnP start). The command register is read, changed and written back.
    pub fn set_memory_decode(&self, instance: Guid, on: bool) -> Result<(), GuestPciError> {
        let dword = self.config_read(instance, COMMAND_OFFSET)?;
        let command = (dword & 0xFFFF) as u16;
        let command = if on {
            command | COMMAND_MEMORY
        } else {
            command & !COMMAND_MEMORY
        };
        self.config_write(instance, COMMAND_OFFSET, u32::from(command))
    }

    /// Writes BAR `bar` (both halves of a 64-bit BAR) as configuration writes, without
    /// touching decode: while decode is on the platform ignores them and only the shadow
    /// changes.
    pub fn write_bar(&self, instance: Guid, bar: u8, base: u64) -> Result<(), GuestPciError> {
        self.fresh();
        let probed = *lock(&self.known)
            .get(&instance)
            .ok_or(GuestPciError::Vpci(VpciError::NoDevice))?;
        let (_, is_64bit) = probed_bar(&probed, bar).ok_or(GuestPciError::NoMemoryBar { bar })?;
        let offset = BAR0_OFFSET + 4 * u32::from(bar);
        self.config_write(instance, offset, base as u32)?;
        if is_64bit {
            self.config_write(instance, offset + 4, (base >> 32) as u32)?;
        }
        Ok(())
    }

    /// Moves BAR `bar` to `base` the way a kernel driver can (platform-paths.md J2): decode
    /// off, BAR written, decode on. `base` must be aligned to the BAR's size; where it lies is
    /// not checked (the platform does not either), but the returned [`GuestBar`] says whether
    /// it is inside the device's own window.
    pub fn move_bar(&self, instance: Guid, bar: u8, base: u64) -> Result<GuestBar, GuestPciError> {
        self.fresh();
        let probed = *lock(&self.known)
            .get(&instance)
            .ok_or(GuestPciError::Vpci(VpciError::NoDevice))?;
        let (size, _) = probed_bar(&probed, bar).ok_or(GuestPciError::NoMemoryBar { bar })?;
        if !base.is_multiple_of(size) {
            return Err(GuestPciError::Misaligned { size });
        }
        self.set_memory_decode(instance, false)?;
        self.write_bar(instance, bar, base)?;
        self.set_memory_decode(instance, true)?;
        self.bar(instance, bar)
            .ok_or(GuestPciError::Vpci(VpciError::VmNotRunning))
    }
}
