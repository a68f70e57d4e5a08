//! Pending WAIT_GUEST_EVENT requests: the manual WDF queue they wait in, and the mechanical
//! steps `vmbmmio_core::guest_events` decides (module docs there; docs/ioctl.md).
//!
//! - `EvtIoInCallerContext` runs the request through `serve::handle`; a `Handled::Pending`
//!   comes here ([`pend`]): the `PendingWait` is boxed into the request's context
//!   (`WdfObjectAllocateContext`), and the request goes to the framework
//!   (`WdfDeviceEnqueueRequest`, the only thing `EvtIoInCallerContext` may do with a request it
//!   does not complete), which presents it to the default queue's `EvtIoDeviceControl`.
//! - There ([`forward_to_wait_queue`]) it is forwarded to the manual queue
//!   (`WdfRequestForwardToIoQueue`; only a request delivered by a queue may be forwarded), and
//!   the core is told it is parked (`PendingWait::parked`, on a clone taken before the forward:
//!   once in the queue the request may be cancelled and freed on another thread).
//! - A `Wake` (from a push, a park, or a session's close) is [`handle_wake`]: retrieve the
//!   file's request (`WdfIoQueueRetrieveRequestByFileObject`), ask `PendingWait::deliver`, then
//!   complete, requeue (`WdfRequestRequeue`) or cancel it.
//! - `EvtIoCanceledOnQueue` tells the core (`PendingWait::cancel`) **before** it completes the
//!   request, so the device host's next request is not refused as a second pending one.
//! - The context's cleanup callback (the request object is deleted after any completion) drops
//!   the box, telling the core once more (`cancel` with a delivered or stale ticket is a no-op):
//!   whatever path completes the request, the core never keeps a registration for it.
//!
//! Locks: the core's event lock is a WDF spin lock ([`SpinEventLock`]), because
//! `EvtIoCanceledOnQueue` and object cleanup run at IRQL <= DISPATCH_LEVEL. The core never calls
//! out while holding it, and this module calls WDF only after the core's call returned, so WDF
//! re-entering through `EvtIoCanceledOnQueue` (for instance from `WdfRequestRequeue` of a
//! request cancelled meanwhile) takes the lock afresh. The table lock is never taken here.

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, Ordering};

use alloc::boxed::Box;

use vmbmmio_core::control::{ControlError, Delivered, FileKey, PendingWait};
use vmbmmio_core::guest::GuestShared;
use vmbmmio_core::guest_events::{EventLock, Wake};
use wdk_sys::{
    _WDF_IO_QUEUE_DISPATCH_TYPE, _WDF_TRI_STATE, NTSTATUS, PVOID, STATUS_SUCCESS, ULONG,
    WDF_IO_QUEUE_CONFIG, WDF_NO_OBJECT_ATTRIBUTES, WDF_OBJECT_ATTRIBUTES,
    WDF_OBJECT_CONTEXT_TYPE_INFO, WDFDEVICE, WDFFILEOBJECT, WDFOBJECT, WDFQUEUE, WDFREQUEST,
    WDFSPINLOCK, call_unsafe_wdf_function_binding,
};

use super::control::WindowsPlatform;
use super::driver::{object_attributes, wdf_size};

/// The manual queue pending WAIT_GUEST_EVENT requests wait in; set once at device creation.
static WAIT_QUEUE: AtomicPtr<c_void> = AtomicPtr::new(null_mut());

/// The core's event lock: a WDF spin lock around the session's guest state (the event queue,
/// the guest-protocol engine and the held guest packet).
pub struct SpinEventLock {
    lock: WDFSPINLOCK,
    queue: UnsafeCell<GuestShared>,
}

// SAFETY: `queue` is only reached through `with`, which holds the spin lock; the WDF spin lock
// handle may be used from any thread.
unsafe impl Send for SpinEventLock {}
// SAFETY: as above.
unsafe impl Sync for SpinEventLock {}

impl EventLock for SpinEventLock {
    /// IRQL: <= DISPATCH_LEVEL (`WdfSpinLockCreate`); called at PASSIVE_LEVEL by the core.
    fn new(queue: GuestShared) -> Option<Self> {
        let mut lock: WDFSPINLOCK = null_mut();
        // SAFETY: no attributes (the lock's parent is the driver; it is deleted in `drop`);
        // `lock` is a live out-parameter.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfSpinLockCreate,
                WDF_NO_OBJECT_ATTRIBUTES,
                &raw mut lock
            )
        };
        if status < 0 || lock.is_null() {
            return None;
        }
        Some(Self {
            lock,
            queue: UnsafeCell::new(queue),
        })
    }

    /// IRQL: <= DISPATCH_LEVEL; raises to DISPATCH_LEVEL while `f` runs (bounded, nothing
    /// paged: the state lives in the nonpaged pool; the one call out is
    /// `VmbChannelPacketComplete` of a held guest packet, allowed at DISPATCH_LEVEL).
    fn with<R>(&self, f: impl FnOnce(&mut GuestShared) -> R) -> R {
        // SAFETY: `self.lock` is a live spin lock (deleted only in drop).
        unsafe { call_unsafe_wdf_function_binding!(WdfSpinLockAcquire, self.lock) };
        // SAFETY: the spin lock gives this thread exclusive access to the queue.
        let result = f(unsafe { &mut *self.queue.get() });
        // SAFETY: acquired above on this thread.
        unsafe { call_unsafe_wdf_function_binding!(WdfSpinLockRelease, self.lock) };
        result
    }

    /// A push from the channel's callbacks woke the session's parked request: retrieve and
    /// deliver it now. Called without the event lock and without the table lock.
    ///
    /// IRQL: PASSIVE_LEVEL (a KMCL callback).
    fn wake(&self, wake: Wake) {
        handle_wake(wake);
    }
}

impl Drop for SpinEventLock {
    /// IRQL: <= DISPATCH_LEVEL.
    fn drop(&mut self) {
        // SAFETY: the lock was created in `new`, is not held (no `with` runs: `&mut self`) and is
        // deleted once.
        unsafe { call_unsafe_wdf_function_binding!(WdfObjectDelete, self.lock.cast()) };
    }
}

/// The request context: the boxed `PendingWait` of a pending WAIT_GUEST_EVENT (null once it was
/// taken out).
#[repr(C)]
struct WaitContext {
    pending: *mut PendingWait<WindowsPlatform>,
}

/// `WDF_OBJECT_CONTEXT_TYPE_INFO` wrapper: raw pointers are not `Sync`, the info is read-only.
#[repr(transparent)]
struct ContextTypeInfo(WDF_OBJECT_CONTEXT_TYPE_INFO);

// SAFETY: never written after initialisation; WDF only reads it.
unsafe impl Sync for ContextTypeInfo {}

/// What `WDF_DECLARE_CONTEXT_TYPE_WITH_NAME(WaitContext, ...)` declares: the info's
/// `UniqueType` points at itself.
static WAIT_CONTEXT_TYPE: ContextTypeInfo = ContextTypeInfo(WDF_OBJECT_CONTEXT_TYPE_INFO {
    Size: wdf_size::<WDF_OBJECT_CONTEXT_TYPE_INFO>(),
    ContextName: c"vmbmmio_WaitContext".as_ptr().cast_mut(),
    ContextSize: size_of::<WaitContext>(),
    UniqueType: &raw const WAIT_CONTEXT_TYPE.0,
    EvtDriverGetUniqueContextType: None,
});

/// Creates the manual queue (after the default queue, same device). Cancellation of a request
/// in it calls [`evt_wait_canceled_on_queue`].
///
/// IRQL: PASSIVE_LEVEL.
///
/// # Safety
/// `device` is the device WDF just created for this driver.
pub unsafe fn create_wait_queue(device: WDFDEVICE) -> NTSTATUS {
    // WDF_IO_QUEUE_CONFIG_INIT(&config, WdfIoQueueDispatchManual), not power-managed (the
    // device is a software device; requests must not wait for D0).
    let mut config = WDF_IO_QUEUE_CONFIG {
        Size: const { wdf_size::<WDF_IO_QUEUE_CONFIG>() },
        PowerManaged: _WDF_TRI_STATE::WdfFalse,
        DefaultQueue: 0,
        DispatchType: _WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchManual,
        EvtIoCanceledOnQueue: Some(evt_wait_canceled_on_queue),
        ..WDF_IO_QUEUE_CONFIG::default()
    };
    let mut queue: WDFQUEUE = null_mut();
    // SAFETY: `device` is valid; the config is initialised as the INIT macro would.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoQueueCreate,
            device,
            &raw mut config,
            WDF_NO_OBJECT_ATTRIBUTES,
            &raw mut queue
        )
    };
    if status >= 0 {
        WAIT_QUEUE.store(queue.cast(), Ordering::Release);
    }
    status
}

fn wait_queue() -> WDFQUEUE {
    WAIT_QUEUE.load(Ordering::Acquire).cast()
}

/// The context of `request`, or null if it has none.
///
/// IRQL: <= DISPATCH_LEVEL.
fn context(request: WDFREQUEST) -> *mut WaitContext {
    // SAFETY: `request` is a live request the caller owns; the type info is static.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfObjectGetTypedContextWorker,
            request.cast(),
            &raw const WAIT_CONTEXT_TYPE.0
        )
    }
    .cast()
}

/// A clone of the request's `PendingWait`, if it carries one.
///
/// IRQL: <= DISPATCH_LEVEL.
fn pending_of(request: WDFREQUEST) -> Option<PendingWait<WindowsPlatform>> {
    let context = context(request);
    if context.is_null() {
        return None;
    }
    // SAFETY: the context was allocated by `pend` and holds null or a pointer from
    // `Box::into_raw`, freed only by `take_pending` / the cleanup callback, neither of which
    // runs while the caller owns the request.
    let pending = unsafe { (*context).pending };
    // SAFETY: as above: non-null means a live box.
    (!pending.is_null()).then(|| unsafe { (*pending).clone() })
}

/// Takes the box out of the request's context (the cleanup callback then finds null).
///
/// IRQL: <= DISPATCH_LEVEL.
fn take_pending(request: WDFREQUEST) -> Option<Box<PendingWait<WindowsPlatform>>> {
    let context = context(request);
    if context.is_null() {
        return None;
    }
    // SAFETY: see `pending_of`; the caller owns the request, so nothing else reads the context.
    let pending = unsafe { core::mem::take(&mut (*context).pending) };
    // SAFETY: non-null pointers in the context come from `Box::into_raw` and are taken once.
    (!pending.is_null()).then(|| unsafe { Box::from_raw(pending) })
}

/// `EvtCleanupCallback` of the context: the request object is being deleted (after whatever
/// completed it). A box still there means no delivery happened: the core forgets the ticket.
///
/// IRQL: <= DISPATCH_LEVEL.
extern "C" fn evt_wait_context_cleanup(object: WDFOBJECT) {
    if let Some(pending) = take_pending(object.cast()) {
        pending.cancel();
    }
}

/// A pending WAIT_GUEST_EVENT leaves `EvtIoInCallerContext`: its `PendingWait` goes into the
/// request's context and the request to the framework (default queue). On any failure the
/// request is completed here and the core forgets it.
///
/// IRQL: PASSIVE_LEVEL (`EvtIoInCallerContext`).
pub fn pend(device: WDFDEVICE, request: WDFREQUEST, pending: PendingWait<WindowsPlatform>) {
    let Some(boxed) = super::control::try_box(pending.clone()) else {
        pending.cancel();
        return super::control::complete(request, ControlError::OutOfMemory.to_ntstatus(), 0);
    };
    let mut attributes = WDF_OBJECT_ATTRIBUTES {
        ContextTypeInfo: &raw const WAIT_CONTEXT_TYPE.0,
        EvtCleanupCallback: Some(evt_wait_context_cleanup),
        ..object_attributes()
    };
    let mut memory: PVOID = null_mut();
    // SAFETY: `request` is owned by this callback; the attributes name the static type info.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfObjectAllocateContext,
            request.cast(),
            &raw mut attributes,
            &raw mut memory
        )
    };
    if status < 0 || memory.is_null() {
        drop(boxed);
        pending.cancel();
        return super::control::complete(request, status, 0);
    }
    // SAFETY: `memory` is the fresh, suitably sized context (ContextSize of the type info).
    unsafe {
        memory.cast::<WaitContext>().write(WaitContext {
            pending: Box::into_raw(boxed),
        })
    };
    // SAFETY: `device` and `request` are valid; called from EvtIoInCallerContext as required.
    let status =
        unsafe { call_unsafe_wdf_function_binding!(WdfDeviceEnqueueRequest, device, request) };
    if status < 0 {
        // Still ours: complete it; the context cleanup tells the core.
        super::control::complete(request, status, 0);
    }
    // On success the request may already be gone: not touched again.
}

/// `EvtIoDeviceControl` of the default queue: only pended WAIT_GUEST_EVENT requests get here
/// (every other IOCTL is completed in `EvtIoInCallerContext`). Forwards it to the manual queue
/// and tells the core it is parked.
///
/// IRQL: <= DISPATCH_LEVEL.
pub extern "C" fn evt_io_device_control(
    _queue: WDFQUEUE,
    request: WDFREQUEST,
    _output_length: usize,
    _input_length: usize,
    _code: ULONG,
) {
    let Some(pending) = pending_of(request) else {
        return super::control::complete(request, ControlError::BufferUnavailable.to_ntstatus(), 0);
    };
    forward_to_wait_queue(request, &pending);
}

/// A counted reference on a request's framework file object, taken while the request is still
/// owned. Once a request has gone into the manual queue it may be cancelled and completed on
/// another CPU, and its file closed; a wake handled after that passes the file object to
/// `WdfIoQueueRetrieveRequestByFileObject`, which reads the object, so the object must still
/// exist (a reference keeps it, and the lookup then simply finds no request).
struct FileRef(WDFFILEOBJECT);

impl FileRef {
    /// References `request`'s file object. IRQL: <= DISPATCH_LEVEL.
    fn of(request: WDFREQUEST) -> Self {
        // SAFETY: the caller owns `request` (not yet forwarded, or just retrieved from the queue).
        let file = unsafe { call_unsafe_wdf_function_binding!(WdfRequestGetFileObject, request) };
        if !file.is_null() {
            // SAFETY: `file` is the live file object of a request the caller owns; the reference
            // is released exactly once, in `drop`.
            unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfObjectReferenceActual,
                    file.cast(),
                    null_mut(),
                    0,
                    c"guest_waits.rs".as_ptr().cast_mut()
                )
            };
        }
        Self(file)
    }
}

impl Drop for FileRef {
    /// IRQL: <= DISPATCH_LEVEL.
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: releases the one reference `of` took on this object.
            unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfObjectDereferenceActual,
                    self.0.cast(),
                    null_mut(),
                    0,
                    c"guest_waits.rs".as_ptr().cast_mut()
                )
            };
        }
    }
}

/// Forwards `request`, whose clone is `pending`, to the manual queue, then parks it in the core;
/// handles the wake that may come back (with its file object referenced: see [`FileRef`]).
///
/// IRQL: <= DISPATCH_LEVEL.
fn forward_to_wait_queue(request: WDFREQUEST, pending: &PendingWait<WindowsPlatform>) {
    let _file = FileRef::of(request);
    // SAFETY: the caller owns `request`; the manual queue lives as long as the device.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(WdfRequestForwardToIoQueue, request, wait_queue())
    };
    if status < 0 {
        pending.cancel();
        return super::control::complete(request, status, 0);
    }
    // From here the request belongs to the queue: only the clone is used.
    if let Some(wake) = pending.parked() {
        handle_wake(wake);
    }
}

/// Most requests of one file taken out of the manual queue by one wake. The core allows one
/// pending WAIT_GUEST_EVENT per session; more are only stale requests of a closed session on the
/// same file (see [`handle_wake`]), so a few slots are plenty; any beyond stay queued and are
/// reached by a later wake or ended by cancellation or file cleanup.
const WAKE_BATCH: usize = 4;

/// A wake: take **every** request of the file out of the manual queue, then let each one's own
/// ticket decide (`PendingWait::deliver`): complete it, or put it back.
///
/// A wake names the file, not the request: after CLOSE_SESSION and a new OPEN_SESSION on the same
/// handle, the request the wake is for may sit behind the new session's request, which the core
/// rightly puts back; taking only the first would strand the old one until the device host
/// cancelled it (found by the loom model, `crates/vmbmmio-core/tests/loom_guest_events.rs`,
/// `close_then_reopen_on_the_same_file_*`). All are taken out before any is requeued, so a
/// requeued request is not retrieved again by the same wake.
///
/// IRQL: <= DISPATCH_LEVEL. Never called with the event lock or the table lock held.
pub fn handle_wake(wake: Wake) {
    // A loop, not recursion: a re-park may produce another wake for the same file. The file
    // object stays referenced from one round to the next (requests that left may complete and
    // their file close meanwhile).
    let mut next = Some(wake);
    let mut _held: Option<FileRef> = None;
    while let Some(wake) = next.take() {
        let (again, file) = drain_once(wake);
        if file.is_some() {
            _held = file;
        }
        next = again;
    }
}

/// One round of [`handle_wake`]: takes out up to [`WAKE_BATCH`] requests of the file and settles
/// each; returns a wake for another round (a re-park produced one, or the batch was full).
/// Also returns the reference it took on the file while it owned the requests.
fn drain_once(wake: Wake) -> (Option<Wake>, Option<FileRef>) {
    let file = wake.file.0 as WDFFILEOBJECT;
    let mut taken: [WDFREQUEST; WAKE_BATCH] = [null_mut(); WAKE_BATCH];
    let mut full = true;
    for slot in &mut taken {
        let mut request: WDFREQUEST = null_mut();
        // SAFETY: the manual queue is live; `file` is alive: a wake from a KMCL callback,
        // CLOSE_SESSION or file cleanup comes while the file is open, and one produced by a
        // re-park after the request left is handled while its file object is referenced
        // ([`FileRef`]); `request` is an out-parameter.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfIoQueueRetrieveRequestByFileObject,
                wait_queue(),
                file,
                &raw mut request
            )
        };
        if status < 0 || request.is_null() {
            // None left (cancelled meanwhile, or a stale wake): nothing was consumed.
            full = false;
            break;
        }
        *slot = request;
    }
    // The taken requests are owned here: reference the file before any of them leaves again.
    let file_ref = taken
        .first()
        .filter(|r| !r.is_null())
        .map(|&r| FileRef::of(r));
    let mut again = full.then_some(wake);
    for request in taken.into_iter().filter(|request| !request.is_null()) {
        if let Some(wake) = settle(request) {
            again = Some(wake);
        }
    }
    (again, file_ref)
}

/// One request taken out of the manual queue by a wake: complete it or put it back, as the
/// core says. Returns the wake its re-park produced, if any.
///
/// IRQL: <= DISPATCH_LEVEL.
fn settle(request: WDFREQUEST) -> Option<Wake> {
    let Some(pending) = pending_of(request) else {
        super::control::complete(request, ControlError::Cancelled.to_ntstatus(), 0);
        return None;
    };
    let delivered = match super::control::retrieve_output(request) {
        Ok(output) => pending.deliver(output),
        Err(status) => {
            pending.cancel();
            super::control::complete(request, status, 0);
            return None;
        }
    };
    match delivered {
        Delivered::Completed(written) => {
            drop(take_pending(request));
            super::control::complete(request, STATUS_SUCCESS, written);
            None
        }
        Delivered::Requeue => {
            // SAFETY: retrieved from the manual queue by the caller, so it may be requeued there.
            let status = unsafe { call_unsafe_wdf_function_binding!(WdfRequestRequeue, request) };
            if status < 0 {
                pending.cancel();
                super::control::complete(request, status, 0);
                return None;
            }
            pending.parked()
        }
        Delivered::Failed(error) => {
            super::control::complete(request, error.to_ntstatus(), 0);
            None
        }
    }
}

/// `EvtIoCanceledOnQueue` of the manual queue: the device host cancelled its wait (or exited).
/// The core forgets it first, then the request completes with `STATUS_CANCELLED`.
///
/// IRQL: <= DISPATCH_LEVEL.
extern "C" fn evt_wait_canceled_on_queue(_queue: WDFQUEUE, request: WDFREQUEST) {
    if let Some(pending) = take_pending(request) {
        pending.cancel();
    }
    super::control::complete(request, ControlError::Cancelled.to_ntstatus(), 0);
}

/// File cleanup: every request of `file` still in the manual queue is cancelled (the session
/// is gone; the I/O manager would otherwise keep them until the thread exits).
///
/// IRQL: PASSIVE_LEVEL.
pub fn cancel_file_waits(file: FileKey) {
    loop {
        let mut request: WDFREQUEST = null_mut();
        // SAFETY: the manual queue is live; `file` is alive: this runs in its own EvtFileCleanup;
        // `request` is an out-parameter.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfIoQueueRetrieveRequestByFileObject,
                wait_queue(),
                file.0 as WDFFILEOBJECT,
                &raw mut request
            )
        };
        if status < 0 || request.is_null() {
            return;
        }
        if let Some(pending) = take_pending(request) {
            pending.cancel();
        }
        super::control::complete(request, ControlError::Cancelled.to_ntstatus(), 0);
    }
}
