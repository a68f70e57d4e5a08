//! The control device's WDF callbacks: mechanical translation into `vmbmmio_core::control`.
//!
//! The root-enumerated device is named `\Device\vmbmmio` (symbolic link `\DosDevices\vmbmmio`,
//! opened from user mode as `\\.\vmbmmio`) with an SDDL that admits only SYSTEM and
//! Administrators. Every IOCTL is handled in `EvtIoInCallerContext`, in the caller's process,
//! because OPEN_SESSION converts the caller's VMBus handle and GET_REGION_SECTION opens a
//! section handle in the caller's process. Other requests go to the default queue, which fails
//! them.
//!
//! Nothing here decides anything: each callback gathers its arguments, has the portable code
//! admit the request (requestor mode; `Caller::admit`, `Opener::admit`) **before** it takes
//! any lock, acquires the rundown reference, and runs the portable sequence
//! (`vmbmmio_core::control::serve`), which takes the table lock (`Table`, one WDF wait lock)
//! only around table work and never across a blocking KMCL call.
//!
//! **No KMCL callback ever takes the table lock** (`VmbChannelDisable` waits for the channel's
//! callbacks, so a callback waiting for the lock would deadlock a close; docs/architecture.md).
//!
//! WAIT_GUEST_EVENT may stay pending: `serve::handle` says so, and module `guest_waits` parks
//! the request in a manual queue and completes it when the core says (docs/ioctl.md).
//!
//! Removal: the device opts into the remove lock for I/O
//! (`WdfDeviceInitSetRemoveLockOptions(WDF_REMOVE_LOCK_OPTION_ACQUIRE_FOR_IO)`, so
//! IRP_MN_REMOVE_DEVICE waits for requests in flight), every callback also holds the portable
//! rundown reference (`RUNDOWN`, a `static` that outlives the state), the device cleanup
//! callback waits for the rundown before it shuts the state down and frees it, and
//! `EvtDeviceQueryRemove` vetoes removal while sessions exist.
//!
//! Caller identity: at file create the glue references the opener's process object
//! (`process::ReferencedProcess`, `ObReferenceObject(PsGetCurrentProcess())`) and hands the
//! reference to the control device, which keeps it until `EvtFileCleanup` (or device cleanup)
//! and compares every request's current process object against it. The requestor mode comes
//! from `WdfRequestGetRequestorMode`.

use core::ffi::c_ulong;
use core::ptr::{self, null_mut};
use core::sync::atomic::{AtomicPtr, Ordering};

use alloc::alloc::Layout;
use alloc::boxed::Box;

use kmcl::server::ParentDevice;
use vmbmmio_proto::ioctl::MAX_REQUEST_SIZE;
use wdk_sys::{
    _MODE, _WDF_FILEOBJECT_CLASS, _WDF_IO_QUEUE_DISPATCH_TYPE, _WDF_REMOVE_LOCK_OPTIONS_FLAGS,
    _WDF_REQUEST_TYPE, _WDF_TRI_STATE, KPROCESSOR_MODE, LARGE_INTEGER, NTSTATUS, PVOID,
    STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_DEVICE_REQUEST, STATUS_SUCCESS, ULONG,
    WDF_FILEOBJECT_CONFIG, WDF_IO_QUEUE_CONFIG, WDF_NO_OBJECT_ATTRIBUTES, WDF_OBJECT_ATTRIBUTES,
    WDF_PNPPOWER_EVENT_CALLBACKS, WDF_REMOVE_LOCK_OPTIONS, WDF_REQUEST_PARAMETERS, WDFDEVICE,
    WDFFILEOBJECT, WDFOBJECT, WDFQUEUE, WDFREQUEST, WDFWAITLOCK, call_unsafe_wdf_function_binding,
};

use super::driver::{object_attributes, wdf_size, wdf_size_u16};
use super::events::{InterruptTime, KernelEvents};
use super::guest_waits::{self, SpinEventLock};
use super::handles::ZwCloseHandles;
use super::process::{ReferencedProcess, current_process_key};
use super::sections::KernelSections;
use super::strings::{unicode, utf16};
use vmbmmio_core::control::serve::{self, TableLock};
use vmbmmio_core::control::{
    Caller, ControlDevice, ControlError, FileKey, Handled, OfferSettings, Opener, Platform,
    RequestorMode, Rundown,
};
use vmbmmio_core::sections::SectionQuotas;

/// The real platform: KMCL from `vmbkmclr.sys`, `ZwClose`, kernel sections.
pub struct WindowsPlatform;

impl Platform for WindowsPlatform {
    type Kmcl = kmcl::Vmbkmclr;
    type HandleCloser = ZwCloseHandles;
    type Sections = KernelSections;
    type Process = ReferencedProcess;
    type EventLock = SpinEventLock;
    type Clock = InterruptTime;
    type Events = KernelEvents;
}

/// The control state and the lock that serializes it. One per driver (one device).
struct ControlState {
    lock: WDFWAITLOCK,
    control: ControlDevice<WindowsPlatform>,
}

/// Set by device add, taken by the device's cleanup callback.
static STATE: AtomicPtr<ControlState> = AtomicPtr::new(null_mut());

/// In-flight callbacks against removal. A `static`, so it outlives the state it guards; every
/// callback acquires it **before** it loads `STATE`.
static RUNDOWN: Rundown = Rundown::new();

/// The table lock as the portable sequences take it.
struct Table;

impl TableLock<WindowsPlatform> for Table {
    /// IRQL: PASSIVE_LEVEL.
    fn locked<R>(&self, f: impl FnOnce(&mut ControlDevice<WindowsPlatform>) -> R) -> Option<R> {
        with_control(f)
    }

    /// A closed session's pending WAIT_GUEST_EVENT: retrieved and cancelled.
    ///
    /// IRQL: PASSIVE_LEVEL (called without the table lock).
    fn wake(&self, wake: vmbmmio_core::guest_events::Wake) {
        guest_waits::handle_wake(wake);
    }
}

const DEVICE_NAME: &[u16] = utf16!("\\Device\\vmbmmio");
const SYMBOLIC_LINK: &[u16] = utf16!("\\DosDevices\\vmbmmio");
/// Protected DACL: GENERIC_ALL for SYSTEM and the built-in Administrators, nobody else.
const DEVICE_SDDL: &[u16] = utf16!("D:P(A;;GA;;;SY)(A;;GA;;;BA)");

/// The requestor mode of `request` (`WdfRequestGetRequestorMode`).
///
/// IRQL: <= DISPATCH_LEVEL.
fn requestor_mode(request: WDFREQUEST) -> RequestorMode {
    // SAFETY: `request` is the request WDF passed to the calling callback, not yet completed.
    let mode = unsafe { call_unsafe_wdf_function_binding!(WdfRequestGetRequestorMode, request) };
    RequestorMode::from_raw(mode)
}

/// Runs `f` on the control state under the wait lock; `None` if there is no state.
///
/// IRQL: PASSIVE_LEVEL (WdfWaitLockAcquire with an infinite wait).
fn with_control<R>(f: impl FnOnce(&mut ControlDevice<WindowsPlatform>) -> R) -> Option<R> {
    let state = STATE.load(Ordering::Acquire);
    if state.is_null() {
        return None;
    }
    // SAFETY: `state` was published by `configure_control_device` and is only freed by
    // `evt_device_cleanup` after `serve::remove` saw `RUNDOWN` drained. Every caller of
    // `with_control` either holds a `RUNDOWN` reference acquired before it loaded `STATE` (the
    // callbacks below), or is `serve::remove` itself, running in `evt_device_cleanup` before
    // that same function frees the state, so `state` cannot be freed while it is used here.
    let lock = unsafe { (*state).lock };
    // SAFETY: `lock` is a wait lock owned by the device, alive as long as `state`; a NULL
    // timeout waits forever, which is allowed at PASSIVE_LEVEL.
    let _ = unsafe { call_unsafe_wdf_function_binding!(WdfWaitLockAcquire, lock, null_mut()) };
    // SAFETY: the wait lock gives this thread exclusive access to `control`.
    let result = f(unsafe { &mut (*state).control });
    // SAFETY: acquired above on this thread.
    unsafe { call_unsafe_wdf_function_binding!(WdfWaitLockRelease, lock) };
    Some(result)
}

/// Names the device, restricts it with the SDDL and registers the file and in-caller-context
/// callbacks. Called from `EvtDriverDeviceAdd` before `WdfDeviceCreate`.
///
/// IRQL: PASSIVE_LEVEL.
///
/// # Safety
/// `device_init` is the `WDFDEVICE_INIT` WDF passed to device add, not yet consumed.
pub unsafe fn configure_device_init(device_init: wdk_sys::PWDFDEVICE_INIT) -> NTSTATUS {
    let name = unicode(DEVICE_NAME);
    // SAFETY: `device_init` is valid per this function's contract; `name` outlives the call.
    let status =
        unsafe { call_unsafe_wdf_function_binding!(WdfDeviceInitAssignName, device_init, &name) };
    if status < 0 {
        return status;
    }
    let sddl = unicode(DEVICE_SDDL);
    // SAFETY: as above; `sddl` outlives the call.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(WdfDeviceInitAssignSDDLString, device_init, &sddl)
    };
    if status < 0 {
        return status;
    }
    // WDF_FILEOBJECT_CONFIG_INIT (a FORCEINLINE C helper wdk-sys does not generate; KMDF 1.33
    // wdfdevice.h in microsoft/Windows-Driver-Frameworks src/publicinc/wdf/kmdf/1.33): Size, the
    // three callbacks, FileObjectClass = WdfFileObjectWdfCannotUseFsContexts and
    // AutoForwardCleanupClose = WdfUseDefault. Every other member starts from `default()`
    // (bindgen's all-zero value, no `unsafe` here), so a member a newer wdk-sys generates is
    // zero as in C, and never a compile error.
    #[allow(
        clippy::needless_update,
        reason = "wdk-sys 0.5.2 generates exactly these six members; the update keeps a newer \
                  wdk-sys with more members compiling (`expect` would then fail instead)"
    )]
    let mut file_config = WDF_FILEOBJECT_CONFIG {
        Size: const { wdf_size::<WDF_FILEOBJECT_CONFIG>() },
        EvtDeviceFileCreate: Some(evt_device_file_create),
        EvtFileClose: None,
        EvtFileCleanup: Some(evt_file_cleanup),
        AutoForwardCleanupClose: _WDF_TRI_STATE::WdfUseDefault,
        FileObjectClass: _WDF_FILEOBJECT_CLASS::WdfFileObjectWdfCannotUseFsContexts,
        ..WDF_FILEOBJECT_CONFIG::default()
    };
    // SAFETY: `device_init` is valid; `file_config` is fully initialised and outlives the call.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceInitSetFileObjectConfig,
            device_init,
            &raw mut file_config,
            WDF_NO_OBJECT_ATTRIBUTES
        )
    };
    // SAFETY: `device_init` is valid; the callback is a static function.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceInitSetIoInCallerContextCallback,
            device_init,
            Some(evt_io_in_caller_context)
        )
    };
    // The remove lock for I/O (WDF_REMOVE_LOCK_OPTIONS_INIT; Microsoft Learn,
    // "WdfDeviceInitSetRemoveLockOptions" and "WDF_REMOVE_LOCK_OPTIONS_FLAGS"): KMDF then holds
    // the WDM remove lock from the arrival of every I/O request until it completes, so
    // IRP_MN_REMOVE_DEVICE (and with it the device's cleanup callback, which frees the state)
    // waits for requests in flight, and requests arriving after removal started fail with
    // STATUS_DELETE_PENDING before any callback of ours runs.
    let mut remove_lock = WDF_REMOVE_LOCK_OPTIONS {
        Size: const { wdf_size::<WDF_REMOVE_LOCK_OPTIONS>() },
        Flags: _WDF_REMOVE_LOCK_OPTIONS_FLAGS::WDF_REMOVE_LOCK_OPTION_ACQUIRE_FOR_IO as ULONG,
    };
    // SAFETY: `device_init` is valid; `remove_lock` is initialised and outlives the call.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceInitSetRemoveLockOptions,
            device_init,
            &raw mut remove_lock
        )
    };
    // WDF_PNPPOWER_EVENT_CALLBACKS_INIT: zeroed with Size; only the query-remove veto. The
    // device is a PnP device (root-enumerated `Root\vmbmmio`, created in EvtDriverDeviceAdd),
    // not a control device object, so it receives IRP_MN_QUERY_REMOVE_DEVICE.
    let mut pnp = WDF_PNPPOWER_EVENT_CALLBACKS {
        Size: const { wdf_size::<WDF_PNPPOWER_EVENT_CALLBACKS>() },
        EvtDeviceQueryRemove: Some(evt_device_query_remove),
        ..WDF_PNPPOWER_EVENT_CALLBACKS::default()
    };
    // SAFETY: `device_init` is valid; `pnp` is initialised and outlives the call.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceInitSetPnpPowerEventCallbacks,
            device_init,
            &raw mut pnp
        )
    };
    STATUS_SUCCESS
}

/// `EvtDeviceQueryRemove`: vetoed (STATUS_UNSUCCESSFUL) while sessions exist, with a debugger
/// message for the administrator; the decision is `serve::query_remove`.
///
/// IRQL: PASSIVE_LEVEL.
extern "C" fn evt_device_query_remove(_device: WDFDEVICE) -> NTSTATUS {
    // Removal already under way: nothing to veto, and the state may be going.
    let Some(_in_flight) = RUNDOWN.acquire() else {
        return STATUS_SUCCESS;
    };
    match serve::query_remove(&Table) {
        Ok(()) => STATUS_SUCCESS,
        Err(error) => {
            let sessions = match error {
                ControlError::SessionsOpen { sessions } => sessions,
                _ => 0,
            };
            let sessions = c_ulong::try_from(sessions).unwrap_or(c_ulong::MAX);
            // SAFETY: a NUL-terminated format string whose one conversion (%lu) matches the one
            // `unsigned long` argument.
            unsafe {
                wdk_sys::ntddk::DbgPrint(
                    c"vmbmmio: removal refused: %lu VM session(s) open; stop the device hosts \
                      (or the VMs) first\n"
                        .as_ptr(),
                    sessions,
                )
            };
            error.to_ntstatus()
        }
    }
}

/// The attributes `WdfDeviceCreate` gets: the device's cleanup callback frees the state.
pub fn device_attributes() -> WDF_OBJECT_ATTRIBUTES {
    WDF_OBJECT_ATTRIBUTES {
        EvtCleanupCallback: Some(evt_device_cleanup),
        ..object_attributes()
    }
}

/// After `WdfDeviceCreate`: symbolic link, default queue, wait lock and the portable state.
///
/// IRQL: PASSIVE_LEVEL.
///
/// # Safety
/// `device` is the device WDF just created for this driver.
pub unsafe fn configure_control_device(device: WDFDEVICE) -> NTSTATUS {
    let link = unicode(SYMBOLIC_LINK);
    // SAFETY: `device` is valid per this function's contract; `link` outlives the call.
    let status =
        unsafe { call_unsafe_wdf_function_binding!(WdfDeviceCreateSymbolicLink, device, &link) };
    if status < 0 {
        return status;
    }

    let mut queue_config = WDF_IO_QUEUE_CONFIG {
        Size: const { wdf_size::<WDF_IO_QUEUE_CONFIG>() },
        PowerManaged: _WDF_TRI_STATE::WdfFalse,
        DefaultQueue: 1,
        DispatchType: _WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchParallel,
        EvtIoDefault: Some(evt_io_default),
        // Only pended WAIT_GUEST_EVENT requests reach the queue as IOCTLs (WdfDeviceEnqueueRequest
        // from EvtIoInCallerContext); they move on to the manual queue.
        EvtIoDeviceControl: Some(guest_waits::evt_io_device_control),
        ..WDF_IO_QUEUE_CONFIG::default()
    };
    queue_config.Settings.Parallel.NumberOfPresentedRequests = ULONG::MAX;
    let mut queue: WDFQUEUE = null_mut();
    // SAFETY: `device` is valid; the config is initialised as WDF_IO_QUEUE_CONFIG_INIT would.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoQueueCreate,
            device,
            &raw mut queue_config,
            WDF_NO_OBJECT_ATTRIBUTES,
            &raw mut queue
        )
    };
    if status < 0 {
        return status;
    }
    // SAFETY: `device` is the device just created (this function's contract).
    let status = unsafe { guest_waits::create_wait_queue(device) };
    if status < 0 {
        return status;
    }

    let mut lock_attributes = WDF_OBJECT_ATTRIBUTES {
        ParentObject: device.cast(),
        ..object_attributes()
    };
    let mut lock: WDFWAITLOCK = null_mut();
    // SAFETY: the attributes parent the lock to `device`, so it lives as long as the device.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfWaitLockCreate,
            &raw mut lock_attributes,
            &raw mut lock
        )
    };
    if status < 0 {
        return status;
    }

    // SAFETY: `device` is valid; the WDM device object lives as long as the WDF device, which
    // outlives every channel (all are closed by `evt_device_cleanup`).
    let wdm = unsafe { call_unsafe_wdf_function_binding!(WdfDeviceWdmGetDeviceObject, device) };
    // SAFETY: as above.
    let Some(parent) = (unsafe { ParentDevice::from_raw(wdm.cast()) }) else {
        return STATUS_INVALID_DEVICE_REQUEST;
    };
    let control = ControlDevice::new(
        parent,
        KernelSections,
        KernelEvents,
        InterruptTime,
        SectionQuotas::default(),
        OfferSettings::default(),
    );
    let Some(state) = try_box(ControlState { lock, control }) else {
        return STATUS_INSUFFICIENT_RESOURCES;
    };
    // A device added again after an earlier removal: the drained rundown is reusable
    // (a fresh one is unchanged by this).
    let _ = RUNDOWN.reinitialize();
    STATE.store(Box::into_raw(state), Ordering::Release);
    STATUS_SUCCESS
}

/// `Box::new` without the allocation-failure path (which would bugcheck in the kernel).
pub(super) fn try_box<T>(value: T) -> Option<Box<T>> {
    let layout = Layout::new::<T>();
    if layout.size() == 0 {
        return None;
    }
    // SAFETY: `layout` has a non-zero size (checked above).
    let memory = unsafe { alloc::alloc::alloc(layout) }.cast::<T>();
    if memory.is_null() {
        return None;
    }
    // SAFETY: `memory` is a fresh, suitably sized and aligned allocation for one `T`
    // (Layout::new::<T>(); the pool allocator aligns to 16 bytes, more than `T` needs here).
    unsafe { memory.write(value) };
    // SAFETY: `memory` came from the global allocator with `Layout::new::<T>()` and now holds
    // an initialised `T`; the returned box is its only owner.
    Some(unsafe { Box::from_raw(memory) })
}

/// `EvtCleanupCallback` of the device: refuses new callbacks, waits for those in flight
/// (`serve::remove`, polling every 10 ms; with the remove lock for I/O they have normally all
/// completed already), closes every session and only then frees the state.
///
/// IRQL: PASSIVE_LEVEL.
extern "C" fn evt_device_cleanup(_device: WDFOBJECT) {
    serve::remove(&RUNDOWN, &Table, delay);
    let state = STATE.swap(null_mut(), Ordering::AcqRel);
    if state.is_null() {
        return;
    }
    // SAFETY: `state` came from `Box::into_raw` in `configure_control_device` and was just
    // unpublished; the rundown is drained and refuses new references, so no callback holds or
    // can load it: this is the only owner.
    drop(unsafe { Box::from_raw(state) });
}

/// Sleeps 10 ms (`KeDelayExecutionThread`, relative interval in 100 ns units).
///
/// IRQL: PASSIVE_LEVEL.
fn delay() {
    let mut interval = LARGE_INTEGER { QuadPart: -100_000 };
    // SAFETY: a kernel-mode, non-alertable wait at PASSIVE_LEVEL on a live local interval.
    let _ = unsafe {
        wdk_sys::ntddk::KeDelayExecutionThread(
            _MODE::KernelMode as KPROCESSOR_MODE,
            0,
            &raw mut interval,
        )
    };
}

/// `EvtDeviceFileCreate`: a process opened `\\.\vmbmmio`.
///
/// IRQL: PASSIVE_LEVEL, in the opening process's context. A kernel-mode create is refused
/// before any reference or lock is taken; an admitted one hands the opener's process reference
/// to the control device (released by it at file cleanup, or here by drop if refused).
extern "C" fn evt_device_file_create(_device: WDFDEVICE, request: WDFREQUEST, file: WDFFILEOBJECT) {
    let status = match Opener::admit(
        FileKey(file as usize),
        requestor_mode(request),
        ReferencedProcess::current,
    ) {
        Err(error) => error.to_ntstatus(),
        Ok(opener) => match RUNDOWN.acquire() {
            None => ControlError::ShuttingDown.to_ntstatus(),
            Some(in_flight) => match serve::file_create(&in_flight, &Table, opener) {
                Ok(()) => STATUS_SUCCESS,
                Err(error) => error.to_ntstatus(),
            },
        },
    };
    // SAFETY: WDF passed `request` to this callback, which completes it exactly once.
    unsafe { call_unsafe_wdf_function_binding!(WdfRequestComplete, request, status) };
}

/// `EvtFileCleanup`: the last handle to `file` was closed (or its process exited). The control
/// device forgets the file and releases the opener's process reference.
///
/// IRQL: PASSIVE_LEVEL. The session's channel is disabled without the table lock. During
/// removal the rundown refuses, and `serve::remove`'s shutdown closes the file instead.
extern "C" fn evt_file_cleanup(file: WDFFILEOBJECT) {
    if let Some(in_flight) = RUNDOWN.acquire() {
        serve::file_cleanup(&in_flight, &Table, FileKey(file as usize));
        // Whatever WAIT_GUEST_EVENT of the file still waits (the session is gone) is cancelled.
        // Under the rundown reference, so the manual queue still exists; during removal WDF's
        // own purge of the queue ends them.
        guest_waits::cancel_file_waits(FileKey(file as usize));
    }
}

/// `EvtIoDefault` of the default queue: anything that is not one of our IOCTLs.
///
/// IRQL: <= DISPATCH_LEVEL.
extern "C" fn evt_io_default(_queue: WDFQUEUE, request: WDFREQUEST) {
    // SAFETY: WDF presented `request` to this callback, which completes it exactly once.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfRequestComplete,
            request,
            STATUS_INVALID_DEVICE_REQUEST
        )
    };
}

/// `EvtIoInCallerContext`: every request, in the requesting thread's process.
///
/// IRQL: PASSIVE_LEVEL for IOCTLs from user mode (METHOD_BUFFERED). Requests whose requestor
/// mode is not user mode are refused first, before any lock is taken or buffer touched. The
/// rundown reference is held for the whole callback; OPEN_SESSION and CLOSE_SESSION do their
/// KMCL work without the table lock (`serve::dispatch`).
extern "C" fn evt_io_in_caller_context(device: WDFDEVICE, request: WDFREQUEST) {
    // SAFETY: `request` is valid; the file object is the one the request was sent through.
    let file = unsafe { call_unsafe_wdf_function_binding!(WdfRequestGetFileObject, request) };
    // Admission first, as at file create: a non-user-mode request touches nothing.
    let caller = match Caller::admit(
        FileKey(file as usize),
        current_process_key(),
        requestor_mode(request),
    ) {
        Ok(caller) => caller,
        Err(error) => return complete(request, error.to_ntstatus(), 0),
    };
    let Some(in_flight) = RUNDOWN.acquire() else {
        return complete(request, ControlError::ShuttingDown.to_ntstatus(), 0);
    };
    let mut params = WDF_REQUEST_PARAMETERS {
        Size: const { wdf_size_u16::<WDF_REQUEST_PARAMETERS>() },
        ..WDF_REQUEST_PARAMETERS::default()
    };
    // SAFETY: `request` is the request WDF passed in; `params` is initialised as
    // WDF_REQUEST_PARAMETERS_INIT would.
    unsafe { call_unsafe_wdf_function_binding!(WdfRequestGetParameters, request, &raw mut params) };
    if params.Type != _WDF_REQUEST_TYPE::WdfRequestTypeDeviceControl {
        // SAFETY: `device` and `request` are valid; on failure the request is still ours.
        let status =
            unsafe { call_unsafe_wdf_function_binding!(WdfDeviceEnqueueRequest, device, request) };
        if status < 0 {
            complete(request, status, 0);
        }
        return;
    }
    // SAFETY: for a device-control request the DeviceIoControl member is the active one.
    let (code, input_len, output_len) = unsafe {
        let io = params.Parameters.DeviceIoControl;
        (
            io.IoControlCode,
            io.InputBufferLength,
            io.OutputBufferLength,
        )
    };
    // Code and lengths first, before any buffer is touched (the portable code decides).
    match with_control(|control| control.precheck(caller, code, input_len, output_len)) {
        Some(Ok(())) => {}
        Some(Err(error)) => return complete(request, error.to_ntstatus(), 0),
        None => return complete(request, ControlError::NotReady.to_ntstatus(), 0),
    }

    // METHOD_BUFFERED: input and output share one system buffer. Copy the input out first so
    // the portable code never holds two views of the same bytes. `precheck` guaranteed
    // `input_len <= MAX_REQUEST_SIZE`.
    let mut input = [0u8; MAX_REQUEST_SIZE];
    let Some(input_copy) = input.get_mut(..input_len) else {
        return complete(request, ControlError::BufferUnavailable.to_ntstatus(), 0);
    };
    if !input_copy.is_empty() {
        let (buffer, length) = match retrieve_buffer(request, Buffer::Input) {
            Ok(found) => found,
            Err(status) => return complete(request, status, 0),
        };
        if length < input_copy.len() {
            return complete(request, ControlError::BufferUnavailable.to_ntstatus(), 0);
        }
        // SAFETY: WDF returned `length >= input_copy.len()` readable bytes at `buffer`; they
        // are copied into the local array, which does not overlap the system buffer.
        unsafe {
            ptr::copy_nonoverlapping(buffer, input_copy.as_mut_ptr(), input_copy.len());
        }
    }
    let output: &mut [u8] = if output_len > 0 {
        match retrieve_buffer(request, Buffer::Output) {
            // SAFETY: WDF returned `length` writable bytes at `buffer`, valid until the request
            // completes (below, or, for a pended WAIT_GUEST_EVENT, elsewhere: then `output` is
            // not used after the request was handed to WDF); no other reference to them exists
            // (the input was copied).
            Ok((buffer, length)) => unsafe { core::slice::from_raw_parts_mut(buffer, length) },
            Err(status) => return complete(request, status, 0),
        }
    } else {
        &mut []
    };

    let input: &[u8] = input_copy;
    match serve::handle(&in_flight, &Table, caller, code, input, output) {
        Ok(Handled::Done(written)) => complete(request, STATUS_SUCCESS, written),
        // WAIT_GUEST_EVENT with nothing to report: parked (module `guest_waits`).
        Ok(Handled::Pending(pending)) => guest_waits::pend(device, request, pending),
        Err(error) => complete(request, error.to_ntstatus(), 0),
    }
}

/// The output buffer of a request the glue retrieved from its manual queue (METHOD_BUFFERED:
/// the nonpaged system buffer, valid until the request completes).
///
/// IRQL: <= DISPATCH_LEVEL.
pub(super) fn retrieve_output<'a>(request: WDFREQUEST) -> Result<&'a mut [u8], NTSTATUS> {
    let (buffer, length) = retrieve_buffer(request, Buffer::Output)?;
    // SAFETY: WDF returned `length` writable bytes at `buffer`, valid until the request
    // completes; the caller completes it right after writing and holds no other view.
    Ok(unsafe { core::slice::from_raw_parts_mut(buffer, length) })
}

/// Which of a request's buffers to retrieve.
enum Buffer {
    Input,
    Output,
}

/// `WdfRequestRetrieve{Input,Output}Buffer` with no minimum length: the system buffer and its
/// length (never NULL on success).
fn retrieve_buffer(request: WDFREQUEST, which: Buffer) -> Result<(*mut u8, usize), NTSTATUS> {
    let mut buffer: PVOID = null_mut();
    let mut length: usize = 0;
    let status = match which {
        // SAFETY: `request` is the request WDF passed to the caller; both out-parameters are
        // live locals for the duration of the call.
        Buffer::Input => unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestRetrieveInputBuffer,
                request,
                0,
                &raw mut buffer,
                &raw mut length
            )
        },
        // SAFETY: as above.
        Buffer::Output => unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestRetrieveOutputBuffer,
                request,
                0,
                &raw mut buffer,
                &raw mut length
            )
        },
    };
    if status < 0 {
        return Err(status);
    }
    if buffer.is_null() {
        return Err(ControlError::BufferUnavailable.to_ntstatus());
    }
    Ok((buffer.cast(), length))
}

/// Completes `request` with `status` and `information` bytes.
pub(super) fn complete(request: WDFREQUEST, status: NTSTATUS, information: usize) {
    // SAFETY: every caller owns `request` and completes it exactly once, here.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfRequestCompleteWithInformation,
            request,
            status,
            information as u64
        )
    };
}
