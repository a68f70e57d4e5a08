//! The kernel VMBus handle that selects the target VM, with one owner and one release.
//!
//! kmcl.md §6: the VM worker process's user-mode VMBus handle is converted with
//! `VmbConvertVmbusHandleToKernelHandle`, in that process's context; the driver then owns the
//! kernel handle and closes it (`ZwClose`). kmcl.md §4 "Teardown": whether the handle may be
//! closed before `VmbChannelCleanup` is UNCERTAIN, so it is closed only after: a
//! [`KernelVmbusHandle`] lives in the `VmChannel`, which drops its server channel (Disable,
//! Cleanup) first.

use core::marker::PhantomData;
use core::num::NonZeroUsize;
use core::ptr;

use kmcl::KmclProvider;
use kmcl::raw::HANDLE;

use super::error::{ChannelError, ConfigError};

/// Closes kernel handles: `ZwClose` in the Windows glue, a counting model in `hvsim`.
pub trait KernelHandleCloser: 'static {
    /// Closes `handle`. IRQL: PASSIVE_LEVEL.
    ///
    /// # Safety
    /// The caller owns `handle` (an open kernel handle) and never uses or closes it again.
    /// Only `KernelVmbusHandle`'s drop calls this.
    unsafe fn close(handle: KernelHandleValue);
}

/// The numeric value of a kernel handle (handles are table indices, not pointers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KernelHandleValue(NonZeroUsize);

impl KernelHandleValue {
    /// The value as a `HANDLE` for KMCL or `ZwClose`.
    pub fn as_handle(self) -> HANDLE {
        ptr::without_provenance_mut(self.0.get())
    }

    /// The number.
    pub fn get(self) -> usize {
        self.0.get()
    }
}

/// A user-mode VMBus handle value as the VM worker process passes it (e.g. in an IOCTL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserVmbusHandle(NonZeroUsize);

impl UserVmbusHandle {
    /// Validates a handle value from user mode: non-zero and pointer-sized.
    pub fn new(value: u64) -> Result<Self, ConfigError> {
        usize::try_from(value)
            .ok()
            .and_then(NonZeroUsize::new)
            .map(Self)
            .ok_or(ConfigError::InvalidVmbusHandle)
    }

    /// The number.
    pub fn get(self) -> usize {
        self.0.get()
    }
}

/// An owned kernel VMBus handle; closed through `C` when dropped.
pub struct KernelVmbusHandle<C: KernelHandleCloser> {
    value: KernelHandleValue,
    _closer: PhantomData<fn() -> C>,
}

impl<C: KernelHandleCloser> KernelVmbusHandle<C> {
    /// Takes ownership of a kernel handle (the glue's own conversions, and tests).
    ///
    /// Returns `None` for the NULL handle, which owns nothing.
    ///
    /// # Safety
    /// `handle` is an open kernel handle that nobody else owns or closes: the returned value
    /// closes it (through `C`) when dropped.
    pub unsafe fn from_owned(handle: HANDLE) -> Option<Self> {
        NonZeroUsize::new(handle.addr()).map(|value| Self {
            value: KernelHandleValue(value),
            _closer: PhantomData,
        })
    }

    /// The handle, for `VmbServerChannelInitSetVmbusHandle`; still owned by `self`.
    pub fn as_handle(&self) -> HANDLE {
        self.value.as_handle()
    }

    /// The number.
    pub fn value(&self) -> KernelHandleValue {
        self.value
    }
}

impl<C: KernelHandleCloser> core::fmt::Debug for KernelVmbusHandle<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("KernelVmbusHandle")
            .field(&self.value)
            .finish()
    }
}

impl<C: KernelHandleCloser> Drop for KernelVmbusHandle<C> {
    fn drop(&mut self) {
        // SAFETY: `self` owns the handle (`from_owned`'s contract) and is being dropped, so the
        // value is never used again.
        unsafe { C::close(self.value) };
    }
}

/// Converts the VM worker process's VMBus handle into an owned kernel handle
/// (`VmbConvertVmbusHandleToKernelHandle`, kmcl.md §6).
///
/// IRQL: PASSIVE_LEVEL. **Must be called in the context of the process that owns `user`** (the
/// target VM's worker process): in the driver, from the IOCTL's `EvtIoInCallerContext`
/// callback, before the request reaches a queue (a queue callback may run in any process, and
/// there the same number names another handle or none). The returned handle must outlive every
/// channel bound to it, which `VmChannel` guarantees by owning it.
pub fn convert_vmbus_handle<P: KmclProvider, C: KernelHandleCloser>(
    user: UserVmbusHandle,
) -> Result<KernelVmbusHandle<C>, ChannelError> {
    let kernel =
        kmcl::convert_vmbus_handle::<P>(user.get()).map_err(ChannelError::HandleConversion)?;
    // kmcl reports a NULL kernel handle as an error, so this is always `Some`; map the
    // impossible case to the same error instead of panicking.
    // SAFETY: VmbConvertVmbusHandleToKernelHandle just returned this kernel handle to us and
    // the caller closes it (kmcl.md §6); nothing else holds it.
    unsafe { KernelVmbusHandle::from_owned(kernel) }
        .ok_or(ChannelError::Config(ConfigError::InvalidVmbusHandle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::{AtomicUsize, Ordering};

    static CLOSED: AtomicUsize = AtomicUsize::new(0);
    struct Counting;
    impl KernelHandleCloser for Counting {
        unsafe fn close(handle: KernelHandleValue) {
            assert_eq!(handle.get(), 0x88);
            CLOSED.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn owned_handle_closes_once_and_null_owns_nothing() {
        // SAFETY: NULL owns nothing.
        assert!(unsafe { KernelVmbusHandle::<Counting>::from_owned(ptr::null_mut()) }.is_none());
        // SAFETY: 0x88 is a made-up value only the counting closer sees; nobody else owns it.
        let handle =
            unsafe { KernelVmbusHandle::<Counting>::from_owned(ptr::without_provenance_mut(0x88)) };
        let handle = handle.unwrap();
        assert_eq!(handle.as_handle().addr(), 0x88);
        drop(handle);
        assert_eq!(CLOSED.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn user_handles_must_be_nonzero() {
        assert_eq!(
            UserVmbusHandle::new(0),
            Err(ConfigError::InvalidVmbusHandle)
        );
        assert_eq!(UserVmbusHandle::new(0x1a4).unwrap().get(), 0x1a4);
    }
}
