//! The emulated PCI device's side of HDV: the callbacks of `HDV_PCI_DEVICE_INTERFACE`.
//!
//! hdv.md §2 gives the C signatures and §3.7 their meaning. This trait is their Rust form: the
//! Windows backend's `extern "system"` trampolines call it with the context pointer it was
//! given, and the simulator calls it directly. Callbacks arrive on threads HDV chooses, so an
//! implementation is `Send + Sync`.

use crate::hresult::HResult;

/// Number of BAR selectors (`HDV_PCI_BAR_COUNT`, hdv.md §2).
pub const PCI_BAR_COUNT: usize = 6;

/// `HDV_PCI_PNP_ID` (hdv.md §2): identity fields of the configuration header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PciPnpId {
    /// Vendor ID (config 0x00).
    pub vendor_id: u16,
    /// Device ID (config 0x02).
    pub device_id: u16,
    /// Revision ID (config 0x08).
    pub revision_id: u8,
    /// Programming interface (config 0x09).
    pub prog_if: u8,
    /// Sub-class (config 0x0A).
    pub sub_class: u8,
    /// Base class (config 0x0B).
    pub base_class: u8,
    /// Subsystem vendor ID (config 0x2C).
    pub subsystem_vendor_id: u16,
    /// Subsystem ID (config 0x2E).
    pub subsystem_id: u16,
}

/// The callbacks of an emulated PCI device (hdv.md §3.7), in Rust form.
pub trait PciDeviceCallbacks: Send + Sync {
    /// `Initialize`: once, as the VM is powered on.
    fn initialize(&self) -> Result<(), HResult>;
    /// `Teardown`: once, when the VM is cleaned up.
    fn teardown(&self);
    /// `SetConfiguration`: the strings of the FlexibleIov entry's `Configuration` array.
    fn set_configuration(&self, values: &[String]) -> Result<(), HResult>;
    /// `GetDetails`: the PnP ID, and in `probed_bars` (one entry per BAR the caller asks
    /// about) the value each BAR reads back after the guest writes all ones.
    fn get_details(&self, probed_bars: &mut [u32]) -> Result<PciPnpId, HResult>;
    /// `Start`: the VM's virtual processors are about to start.
    fn start(&self) -> Result<(), HResult>;
    /// `Stop`: the VM's virtual processors are about to stop.
    fn stop(&self);
    /// `ReadConfigSpace`: the dword at byte `offset` of configuration space.
    fn read_config_space(&self, offset: u32) -> Result<u32, HResult>;
    /// `WriteConfigSpace`: writes the dword at byte `offset`.
    fn write_config_space(&self, offset: u32, value: u32) -> Result<(), HResult>;
    /// `ReadInterceptedMemory`: a guest read of `value.len()` (1, 2, 4 or 8) bytes at `offset`
    /// of BAR `bar` that no section-backed range serves.
    fn read_intercepted_memory(
        &self,
        bar: u32,
        offset: u64,
        value: &mut [u8],
    ) -> Result<(), HResult>;
    /// `WriteInterceptedMemory`: the matching guest write.
    fn write_intercepted_memory(&self, bar: u32, offset: u64, value: &[u8]) -> Result<(), HResult>;
}
