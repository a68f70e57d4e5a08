//! DriverEntry and the WDF driver/device callbacks.

use super::{control, event_log, host_library};

use wdk_sys::{
    _WDF_EXECUTION_LEVEL, _WDF_SYNCHRONIZATION_SCOPE, DRIVER_OBJECT, NTSTATUS, PCUNICODE_STRING,
    PDRIVER_OBJECT, PWDFDEVICE_INIT, ULONG, WDF_DRIVER_CONFIG, WDF_NO_HANDLE,
    WDF_NO_OBJECT_ATTRIBUTES, WDF_OBJECT_ATTRIBUTES, WDFDEVICE, WDFDRIVER,
    call_unsafe_wdf_function_binding,
};

/// The `Size` member of a WDF structure (`ULONG`). Use as `const { wdf_size::<T>() }` so the
/// range check runs at compile time.
pub(super) const fn wdf_size<T>() -> ULONG {
    let size = size_of::<T>();
    assert!(size <= ULONG::MAX as usize);
    size as ULONG
}

/// The `Size` member of a WDF structure that declares it `USHORT`; checked the same way.
pub(super) const fn wdf_size_u16<T>() -> u16 {
    let size = size_of::<T>();
    assert!(size <= u16::MAX as usize);
    size as u16
}

/// `WDF_DRIVER_CONFIG.Size`.
const WDF_DRIVER_CONFIG_SIZE: ULONG = wdf_size::<WDF_DRIVER_CONFIG>();
/// `WDF_OBJECT_ATTRIBUTES.Size`.
const WDF_OBJECT_ATTRIBUTES_SIZE: ULONG = wdf_size::<WDF_OBJECT_ATTRIBUTES>();

/// `WDF_OBJECT_ATTRIBUTES_INIT` (a FORCEINLINE C helper wdk-sys does not generate): zeroed,
/// with the execution level and synchronization scope inherited from the parent.
pub(super) fn object_attributes() -> WDF_OBJECT_ATTRIBUTES {
    WDF_OBJECT_ATTRIBUTES {
        Size: WDF_OBJECT_ATTRIBUTES_SIZE,
        ExecutionLevel: _WDF_EXECUTION_LEVEL::WdfExecutionLevelInheritFromParent,
        SynchronizationScope: _WDF_SYNCHRONIZATION_SCOPE::WdfSynchronizationScopeInheritFromParent,
        ..WDF_OBJECT_ATTRIBUTES::default()
    }
}

/// The driver's entry point, called by `FxDriverEntry` after WDF is bound.
///
/// First resolves the KMCL table from the loaded `vmbkmclr.sys` (`host_library`): a missing
/// required entry fails the load here, with every missing name in the System event log and the
/// debugger; missing optional entries are printed and reported to device hosts (QUERY_DRIVER).
///
/// IRQL: PASSIVE_LEVEL, in the system process.
///
/// # Safety
/// Called once by the kernel with a valid driver object and registry path.
#[cfg_attr(not(test), unsafe(export_name = "DriverEntry"))]
pub unsafe extern "system" fn driver_entry(
    driver: &mut DRIVER_OBJECT,
    registry_path: PCUNICODE_STRING,
) -> NTSTATUS {
    let driver_object: PDRIVER_OBJECT = driver;
    match host_library::install() {
        Ok(missing) => kmcl::resolve::optional_lines(missing, |line| {
            event_log::debug_line(&line);
        }),
        Err(error) => {
            event_log::report_failure(driver_object, &error);
            return error.ntstatus();
        }
    }
    let mut config = WDF_DRIVER_CONFIG {
        Size: WDF_DRIVER_CONFIG_SIZE,
        EvtDriverDeviceAdd: Some(evt_driver_device_add),
        ..WDF_DRIVER_CONFIG::default()
    };
    // SAFETY: `driver_object` and `registry_path` come straight from the kernel and are valid for
    // the duration of DriverEntry; `config` is a fully initialised WDF_DRIVER_CONFIG that lives
    // across the call; WDF_NO_OBJECT_ATTRIBUTES and WDF_NO_HANDLE are the documented "none"
    // values of the optional parameters.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDriverCreate,
            driver_object,
            registry_path,
            WDF_NO_OBJECT_ATTRIBUTES,
            &raw mut config,
            WDF_NO_HANDLE.cast::<WDFDRIVER>()
        )
    }
}

/// `EvtDriverDeviceAdd`: PnP found the root-enumerated `Root\vmbmmio` device. It becomes the
/// control device (`super::control`).
///
/// IRQL: PASSIVE_LEVEL.
extern "C" fn evt_driver_device_add(_driver: WDFDRIVER, device_init: PWDFDEVICE_INIT) -> NTSTATUS {
    let mut device_init = device_init;
    // SAFETY: WDF passes a valid, unconsumed WDFDEVICE_INIT to device add.
    let status = unsafe { control::configure_device_init(device_init) };
    if status < 0 {
        return status;
    }
    let mut attributes = control::device_attributes();
    let mut device: WDFDEVICE = core::ptr::null_mut();
    // SAFETY: WDF passes a valid WDFDEVICE_INIT that this callback owns until WdfDeviceCreate;
    // WdfDeviceCreate takes the address of that pointer, and `attributes` and `device` are live
    // locals for the whole call.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceCreate,
            &raw mut device_init,
            &raw mut attributes,
            &raw mut device
        )
    };
    if status < 0 {
        return status;
    }
    // SAFETY: `device` was just created by WdfDeviceCreate for this driver.
    unsafe { control::configure_control_device(device) }
}
