//! The `HDV_PCI_DEVICE_INTERFACE` table: `extern "system"` trampolines from HDV into the
//! portable emulator (hdv.md §2 signatures, §3.7 meaning).
//!
//! The device context HDV passes back is a `*const Context` that [`super::hdv::WinHdv`]
//! created with `Box::into_raw` for `HdvCreateDeviceInstance` and frees only after
//! `HdvTeardownDeviceHost` succeeded, so it is valid in every callback. Each trampoline
//! checks its pointers, converts arguments and calls one trait method; nothing else.

use std::ffi::c_void;
use std::sync::Arc;

use windows_sys::Win32::System::Hypervisor::{
    HDV_PCI_BAR_SELECTOR, HDV_PCI_DEVICE_INTERFACE, HDV_PCI_PNP_ID, HdvPciDeviceInterfaceVersion1,
};
use windows_sys::core::{HRESULT, PCWSTR};

use super::wide::from_wide;
use crate::callbacks::PciDeviceCallbacks;
use crate::hresult::HResult;

/// What the device context points to.
pub type Context = Arc<dyn PciDeviceCallbacks>;

/// Longest intercepted access HDV makes (hdv.md §3.7: 1, 2, 4 or 8 bytes). Longer lengths are
/// refused before a slice is built over the caller's buffer.
const MAX_INTERCEPT_LEN: u64 = 8;

/// The interface table handed to `HdvCreateDeviceInstance`; static, so it outlives the device.
pub static INTERFACE: HDV_PCI_DEVICE_INTERFACE = HDV_PCI_DEVICE_INTERFACE {
    Version: HdvPciDeviceInterfaceVersion1,
    Initialize: Some(initialize),
    Teardown: Some(teardown),
    SetConfiguration: Some(set_configuration),
    GetDetails: Some(get_details),
    Start: Some(start),
    Stop: Some(stop),
    ReadConfigSpace: Some(read_config_space),
    WriteConfigSpace: Some(write_config_space),
    ReadInterceptedMemory: Some(read_intercepted_memory),
    WriteInterceptedMemory: Some(write_intercepted_memory),
};

/// The emulator behind a device context.
///
/// # Safety
/// `context` is null or a pointer `WinHdv` registered for a device whose host has not been
/// torn down yet.
unsafe fn device<'a>(context: *const c_void) -> Option<&'a Context> {
    // SAFETY: by the function's contract the pointer is null or a live `Box<Context>`.
    unsafe { context.cast::<Context>().as_ref() }
}

fn code(result: Result<(), HResult>) -> HRESULT {
    HResult::from_result(result).0
}

unsafe extern "system" fn initialize(context: *const c_void) -> HRESULT {
    // SAFETY: HDV passes back the context registered with the device (module docs).
    match unsafe { device(context) } {
        Some(device) => code(device.initialize()),
        None => HResult::E_POINTER.0,
    }
}

unsafe extern "system" fn teardown(context: *const c_void) {
    // SAFETY: as for `initialize`.
    if let Some(device) = unsafe { device(context) } {
        device.teardown();
    }
}

unsafe extern "system" fn set_configuration(
    context: *const c_void,
    count: u32,
    values: *const PCWSTR,
) -> HRESULT {
    // SAFETY: as for `initialize`.
    let Some(device) = (unsafe { device(context) }) else {
        return HResult::E_POINTER.0;
    };
    if values.is_null() && count != 0 {
        return HResult::E_POINTER.0;
    }
    let pointers: &[PCWSTR] = if count == 0 {
        &[]
    } else {
        // SAFETY: HDV passes `count` string pointers (`_In_reads_(configurationValueCount)`).
        unsafe { std::slice::from_raw_parts(values, count as usize) }
    };
    let strings: Vec<String> = pointers
        .iter()
        .map(|&pointer| {
            // SAFETY: each entry is a NUL-terminated string HDV keeps alive for the call.
            unsafe { from_wide(pointer) }
        })
        .collect();
    code(device.set_configuration(&strings))
}

unsafe extern "system" fn get_details(
    context: *const c_void,
    pnp_id: *mut HDV_PCI_PNP_ID,
    probed_bars_count: u32,
    probed_bars: *mut u32,
) -> HRESULT {
    // SAFETY: as for `initialize`.
    let Some(device) = (unsafe { device(context) }) else {
        return HResult::E_POINTER.0;
    };
    if pnp_id.is_null() || (probed_bars.is_null() && probed_bars_count != 0) {
        return HResult::E_POINTER.0;
    }
    let bars: &mut [u32] = if probed_bars_count == 0 {
        &mut []
    } else {
        // SAFETY: HDV provides `probed_bars_count` writable entries
        // (`_Out_writes_(probedBarsCount)`), not aliased during the call.
        unsafe { std::slice::from_raw_parts_mut(probed_bars, probed_bars_count as usize) }
    };
    match device.get_details(bars) {
        Ok(id) => {
            let value = HDV_PCI_PNP_ID {
                VendorID: id.vendor_id,
                DeviceID: id.device_id,
                RevisionID: id.revision_id,
                ProgIf: id.prog_if,
                SubClass: id.sub_class,
                BaseClass: id.base_class,
                SubVendorID: id.subsystem_vendor_id,
                SubSystemID: id.subsystem_id,
            };
            // SAFETY: `pnp_id` is a non-null out pointer (`_Out_ PHDV_PCI_PNP_ID`).
            unsafe { pnp_id.write(value) };
            HResult::S_OK.0
        }
        Err(hr) => hr.0,
    }
}

unsafe extern "system" fn start(context: *const c_void) -> HRESULT {
    // SAFETY: as for `initialize`.
    match unsafe { device(context) } {
        Some(device) => code(device.start()),
        None => HResult::E_POINTER.0,
    }
}

unsafe extern "system" fn stop(context: *const c_void) {
    // SAFETY: as for `initialize`.
    if let Some(device) = unsafe { device(context) } {
        device.stop();
    }
}

unsafe extern "system" fn read_config_space(
    context: *const c_void,
    offset: u32,
    value: *mut u32,
) -> HRESULT {
    // SAFETY: as for `initialize`.
    let Some(device) = (unsafe { device(context) }) else {
        return HResult::E_POINTER.0;
    };
    if value.is_null() {
        return HResult::E_POINTER.0;
    }
    match device.read_config_space(offset) {
        Ok(dword) => {
            // SAFETY: `value` is a non-null out pointer (`_Out_ UINT32*`).
            unsafe { value.write(dword) };
            HResult::S_OK.0
        }
        Err(hr) => hr.0,
    }
}

unsafe extern "system" fn write_config_space(
    context: *const c_void,
    offset: u32,
    value: u32,
) -> HRESULT {
    // SAFETY: as for `initialize`.
    match unsafe { device(context) } {
        Some(device) => code(device.write_config_space(offset, value)),
        None => HResult::E_POINTER.0,
    }
}

unsafe extern "system" fn read_intercepted_memory(
    context: *const c_void,
    bar: HDV_PCI_BAR_SELECTOR,
    offset: u64,
    length: u64,
    value: *mut u8,
) -> HRESULT {
    // SAFETY: as for `initialize`.
    let Some(device) = (unsafe { device(context) }) else {
        return HResult::E_POINTER.0;
    };
    if value.is_null() || length == 0 {
        return HResult::E_POINTER.0;
    }
    if length > MAX_INTERCEPT_LEN {
        return HResult::E_INVALIDARG.0;
    }
    // SAFETY: HDV provides `length` (at most 8, checked) writable bytes
    // (`_Out_writes_(length)`), not aliased during the call.
    let buffer = unsafe { std::slice::from_raw_parts_mut(value, length as usize) };
    code(device.read_intercepted_memory(bar as u32, offset, buffer))
}

unsafe extern "system" fn write_intercepted_memory(
    context: *const c_void,
    bar: HDV_PCI_BAR_SELECTOR,
    offset: u64,
    length: u64,
    value: *const u8,
) -> HRESULT {
    // SAFETY: as for `initialize`.
    let Some(device) = (unsafe { device(context) }) else {
        return HResult::E_POINTER.0;
    };
    if value.is_null() || length == 0 {
        return HResult::E_POINTER.0;
    }
    if length > MAX_INTERCEPT_LEN {
        return HResult::E_INVALIDARG.0;
    }
    // SAFETY: HDV provides `length` (at most 8, checked) readable bytes (`_In_reads_(length)`).
    let buffer = unsafe { std::slice::from_raw_parts(value, length as usize) };
    code(device.write_intercepted_memory(bar as u32, offset, buffer))
}
