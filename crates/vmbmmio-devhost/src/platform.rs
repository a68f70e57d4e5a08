//! The HCS and HDV calls the device host makes, as traits.
//!
//! The call sequence (`sequence`) is written against these traits so that it runs unchanged on
//! Windows (`windows` module, windows-sys) and against the simulator (`hvsim::hdv`). Handles are
//! opaque integers: the Windows backend stores pointer values in them, the simulator counters.
//! Every method maps one documented function (hdv.md §3, §4) and returns its HRESULT on failure.

use std::sync::Arc;

use crate::callbacks::PciDeviceCallbacks;
use crate::guid::Guid;
use crate::hresult::HResult;

/// An open compute system (`HCS_SYSTEM`), owned by whoever opened it until `close`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ComputeSystem(pub usize);

/// A device host (`HDV_HOST`), owned until `teardown_device_host`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceHostHandle(pub usize);

/// A device instance (`HDV_DEVICE`); released by the teardown of its device host (hdv.md §3.1:
/// there is no per-device destroy function).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceHandle(pub usize);

/// A section handle value, valid in the device-host process (hdv.md §3.3 "Section handle").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SectionHandle(pub u64);

/// `HDV_DEVICE_HOST_FLAGS` (hdv.md §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceHostFlags {
    /// `HdvDeviceHostFlagNone`.
    None,
    /// `HdvDeviceHostFlagInitializeComSecurity`: HDV initializes COM security for the process
    /// so the VM worker can call back (hdv.md §3.1).
    InitializeComSecurity,
}

impl DeviceHostFlags {
    /// The `HDV_DEVICE_HOST_FLAGS` value.
    pub const fn bits(self) -> i32 {
        match self {
            Self::None => 0,
            Self::InitializeComSecurity => 1,
        }
    }
}

/// `HDV_MMIO_MAPPING_FLAGS` (hdv.md §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MmioMappingFlags {
    /// `HdvMmioMappingFlagWriteable`: the guest may write.
    pub writeable: bool,
    /// `HdvMmioMappingFlagExecutable`.
    pub executable: bool,
}

impl MmioMappingFlags {
    /// The flags the device host uses: a writeable, non-executable mapping.
    pub const WRITEABLE: Self = Self {
        writeable: true,
        executable: false,
    };

    /// The `HDV_MMIO_MAPPING_FLAGS` value.
    pub const fn bits(self) -> i32 {
        (self.writeable as i32) | ((self.executable as i32) << 1)
    }
}

/// The arguments of one `HdvCreateSectionBackedMmioRange` call (hdv.md §3.3), all in pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioRange {
    /// `HDV_PCI_BAR_SELECTOR` (0..=5).
    pub bar: u8,
    /// First BAR page backed by the section.
    pub offset_pages: u64,
    /// Number of pages.
    pub length_pages: u64,
    /// Mapping flags.
    pub flags: MmioMappingFlags,
    /// The section, as a handle of the device-host process.
    pub section: SectionHandle,
    /// First section page.
    pub section_offset_pages: u64,
}

/// The Host Compute Service calls the device host needs (computecore.dll, hdv.md §4).
pub trait HcsApi {
    /// `HcsOpenComputeSystem(id, GENERIC_ALL, &system)`.
    fn open_compute_system(&mut self, vm_id: Guid) -> Result<ComputeSystem, HResult>;
    /// `HcsPauseComputeSystem` and wait for the operation's result.
    fn pause(&mut self, system: ComputeSystem) -> Result<(), HResult>;
    /// `HcsResumeComputeSystem` and wait for the operation's result.
    fn resume(&mut self, system: ComputeSystem) -> Result<(), HResult>;
    /// `HcsCloseComputeSystem` (cannot fail).
    fn close_compute_system(&mut self, system: ComputeSystem);
}

/// The Host Device Virtualization calls the device host needs (vmdevicehost.dll, hdv.md §3).
pub trait HdvApi {
    /// `HdvInitializeDeviceHostEx(system, flags, &host)` (hdv.md §3.1).
    fn initialize_device_host(
        &mut self,
        system: ComputeSystem,
        flags: DeviceHostFlags,
    ) -> Result<DeviceHostHandle, HResult>;

    /// `HdvCreateDeviceInstance(host, HdvDeviceTypePCI, class, instance, iface, ctx, &device)`
    /// with an `HDV_PCI_DEVICE_INTERFACE` whose callbacks reach `emulator` (hdv.md §3.2). The
    /// backend keeps `emulator` alive until the device host is torn down.
    fn create_pci_device(
        &mut self,
        host: DeviceHostHandle,
        class_id: Guid,
        instance_id: Guid,
        emulator: Arc<dyn PciDeviceCallbacks>,
    ) -> Result<DeviceHandle, HResult>;

    /// `HdvCreateSectionBackedMmioRange` (hdv.md §3.3).
    fn create_section_backed_mmio_range(
        &mut self,
        device: DeviceHandle,
        range: &MmioRange,
    ) -> Result<(), HResult>;

    /// `HdvDestroySectionBackedMmioRange`: the range is named by BAR and start page (§3.3).
    fn destroy_section_backed_mmio_range(
        &mut self,
        device: DeviceHandle,
        bar: u8,
        offset_pages: u64,
    ) -> Result<(), HResult>;

    /// `HdvTeardownDeviceHost`: releases the host and its device instances (hdv.md §3.1). Must
    /// run on the thread that initialized the host.
    fn teardown_device_host(&mut self, host: DeviceHostHandle) -> Result<(), HResult>;
}
