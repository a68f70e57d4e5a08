//! [`HdvApi`] over vmdevicehost.dll (hdv.md §3, §4), through the run-time table
//! [`HdvEntries`] (`super::hyperv`), never the import table.
//!
//! Owns the device contexts: each `HdvCreateDeviceInstance` gets a `Box<Context>` pointer that
//! is freed only after `HdvTeardownDeviceHost` of its host succeeded (after which HDV makes no
//! more callbacks, §3.1). If teardown fails or never happens, the context is deliberately
//! leaked: a late callback must never see freed memory.

use std::ffi::c_void;
use std::ptr::null_mut;
use std::sync::Arc;

use windows_sys::Win32::Foundation::HANDLE;
use windows_sys::Win32::System::HostComputeSystem::HCS_SYSTEM;
use windows_sys::Win32::System::Hypervisor::HdvDeviceTypePCI;
use windows_sys::core::GUID;

use super::hyperv::HdvEntries;
use super::trampolines::{Context, INTERFACE};
use crate::callbacks::PciDeviceCallbacks;
use crate::guid::Guid;
use crate::hresult::HResult;
use crate::platform::{
    ComputeSystem, DeviceHandle, DeviceHostFlags, DeviceHostHandle, HdvApi, MmioRange,
};

/// The HDV backend.
#[derive(Debug)]
pub struct WinHdv {
    /// The resolved vmdevicehost.dll functions.
    hdv: &'static HdvEntries,
    /// Device contexts still registered with HDV, by device host.
    contexts: Vec<(DeviceHostHandle, *mut Context)>,
}

impl WinHdv {
    /// The backend over the resolved functions (`super::hyperv::hyperv()`).
    pub fn new(hdv: &'static HdvEntries) -> Self {
        Self {
            hdv,
            contexts: Vec::new(),
        }
    }
}

fn guid(value: Guid) -> GUID {
    GUID {
        data1: value.data1,
        data2: value.data2,
        data3: value.data3,
        data4: value.data4,
    }
}

impl HdvApi for WinHdv {
    fn initialize_device_host(
        &mut self,
        system: ComputeSystem,
        flags: DeviceHostFlags,
    ) -> Result<DeviceHostHandle, HResult> {
        let mut host: *mut c_void = null_mut();
        // SAFETY: `system` is an open compute system; `host` is a valid out pointer.
        let hr = unsafe {
            (self.hdv.initialize_device_host_ex)(system.0 as HCS_SYSTEM, flags.bits(), &mut host)
        };
        HResult(hr).ok()?;
        Ok(DeviceHostHandle(host as usize))
    }

    fn create_pci_device(
        &mut self,
        host: DeviceHostHandle,
        class_id: Guid,
        instance_id: Guid,
        emulator: Arc<dyn PciDeviceCallbacks>,
    ) -> Result<DeviceHandle, HResult> {
        let (class_id, instance_id) = (guid(class_id), guid(instance_id));
        let context: *mut Context = Box::into_raw(Box::new(emulator));
        let mut device: *mut c_void = null_mut();
        // SAFETY: the GUIDs live across the call; INTERFACE is a static
        // HDV_PCI_DEVICE_INTERFACE of version 1; `context` stays valid until the host's
        // teardown succeeds (type docs); `device` is a valid out pointer.
        let hr = unsafe {
            (self.hdv.create_device_instance)(
                host.0 as *const c_void,
                HdvDeviceTypePCI,
                &class_id,
                &instance_id,
                (&raw const INTERFACE).cast(),
                context.cast_const().cast(),
                &mut device,
            )
        };
        if let Err(hr) = HResult(hr).ok() {
            // SAFETY: HDV refused the device, so it holds no copy of `context`, which came
            // from Box::into_raw above and is freed once here.
            drop(unsafe { Box::from_raw(context) });
            return Err(hr);
        }
        self.contexts.push((host, context));
        Ok(DeviceHandle(device as usize))
    }

    fn create_section_backed_mmio_range(
        &mut self,
        device: DeviceHandle,
        range: &MmioRange,
    ) -> Result<(), HResult> {
        // SAFETY: `device` is a live device instance; the section handle is a handle of this
        // process that HDV duplicates for the VM worker (hdv.md §3.3).
        let hr = unsafe {
            (self.hdv.create_section_backed_mmio_range)(
                device.0 as *const c_void,
                i32::from(range.bar),
                range.offset_pages,
                range.length_pages,
                range.flags.bits(),
                range.section.0 as HANDLE,
                range.section_offset_pages,
            )
        };
        HResult(hr).ok()
    }

    fn destroy_section_backed_mmio_range(
        &mut self,
        device: DeviceHandle,
        bar: u8,
        offset_pages: u64,
    ) -> Result<(), HResult> {
        // SAFETY: `device` is a live device instance.
        let hr = unsafe {
            (self.hdv.destroy_section_backed_mmio_range)(
                device.0 as *const c_void,
                i32::from(bar),
                offset_pages,
            )
        };
        HResult(hr).ok()
    }

    fn teardown_device_host(&mut self, host: DeviceHostHandle) -> Result<(), HResult> {
        // SAFETY: `host` was initialized on this thread and is torn down once (the sequence
        // owns it and runs on one thread).
        let hr = unsafe { (self.hdv.teardown_device_host)(host.0 as *const c_void) };
        HResult(hr).ok()?;
        let (released, kept): (Vec<_>, Vec<_>) = self
            .contexts
            .drain(..)
            .partition(|&(owner, _)| owner == host);
        self.contexts = kept;
        for (_, context) in released {
            // SAFETY: the host's teardown succeeded, so HDV makes no more callbacks with this
            // context, which came from Box::into_raw and is freed once here.
            drop(unsafe { Box::from_raw(context) });
        }
        Ok(())
    }
}
