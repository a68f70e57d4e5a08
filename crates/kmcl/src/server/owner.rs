//! The owner of one server channel: creates it in the reference's order and tears it down once.

use core::ffi::c_void;
use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::ptr::{self, NonNull};

use crate::error::{KmclError, KmclFunction, SetupError};
use crate::provider::KmclProvider;
use crate::raw::{
    PCUNICODE_STRING, PVMB_CHANNEL_STATE_CHANGE_CALLBACKS, STATUS_UNSUCCESSFUL, TRUE, VMBCHANNEL,
    VMBCHANNEL__,
};
use crate::server::context::{ChannelContext, ContextBox};
use crate::server::handler::{ChannelHandler, ChannelRef, MmioSpace};
use crate::server::name::FriendlyName;
use crate::server::params::ServerChannelParams;
use crate::server::trampolines;

/// An allocated channel that is cleaned up when dropped: the single failure path of `create`.
struct AllocatedChannel<P: KmclProvider> {
    raw: NonNull<VMBCHANNEL__>,
    _provider: PhantomData<fn() -> P>,
}

impl<P: KmclProvider> AllocatedChannel<P> {
    fn raw(&self) -> VMBCHANNEL {
        self.raw.as_ptr()
    }

    /// Hands the channel to its long-term owner without cleaning it up.
    fn keep(self) -> NonNull<VMBCHANNEL__> {
        ManuallyDrop::new(self).raw
    }
}

impl<P: KmclProvider> Drop for AllocatedChannel<P> {
    fn drop(&mut self) {
        // SAFETY: the channel was allocated and never enabled (or its Enable failed), so it is
        // Disabled, the state Cleanup requires (kmcl.md §4 step 8); this is its only release.
        // That a failed Enable leaves the channel Disabled is an inference from the host VSP
        // observed in kmcl.md §4 ("If any step fails: VmbChannelCleanup(ch)", dxgkrnl), which
        // includes Enable; the header does not say it.
        unsafe { (P::api().VmbChannelCleanup)(self.raw()) };
    }
}

/// One enabled and started VMBus server channel, owned by the driver.
///
/// Dropping it runs the documented teardown (kmcl.md §4 "Teardown"): `VmbChannelDisable`, which
/// rescinds the offer and blocks until Suspend and Closed have run, then `VmbChannelCleanup`,
/// then frees the context. IRQL of the drop: PASSIVE_LEVEL, never from inside one of this
/// channel's callbacks — which the types guarantee (see `ChannelHandler`'s module docs): this
/// owner is neither `Send` nor `Sync`, so no handler can hold it.
///
/// A kernel VMBus handle passed in [`ServerChannelParams::vmbus_handle`] stays the caller's; it
/// must be closed after this owner is dropped.
pub struct ServerChannel<P: KmclProvider, H: ChannelHandler> {
    raw: NonNull<VMBCHANNEL__>,
    context: ContextBox<P, H>,
    /// Makes the owner `!Send + !Sync` on purpose (see above).
    _not_send: PhantomData<*mut ()>,
}

impl<P: KmclProvider, H: ChannelHandler> ServerChannel<P, H> {
    /// Allocates, initialises, enables and starts a server channel.
    ///
    /// Call order (kmcl.md §4 "Init order", the host dxgkrnl sequence): `VmbChannelAllocate`,
    /// `VmbChannelSetIncomingProcessingAtPassive` (if asked; dxgkrnl's VAIL path calls it right
    /// after Allocate), `VmbServerChannelInitSetVmbusHandle` (unless `vmbus_handle` is `None`),
    /// `VmbChannelInitSetMaximumPacketSize`, `VmbChannelSetPointer`,
    /// `VmbServerChannelInitSetTargetInterfaceId`, `VmbChannelInitSetStateChangeCallbacks`,
    /// `VmbChannelInitSetProcessPacketCallbacks`, `VmbServerChannelInitSetFlags`,
    /// `VmbChannelInitSetFriendlyName`, `VmbServerChannelInitSetMmioMegabytes`,
    /// `VmbChannelEnable`, `VmbChannelStart`.
    ///
    /// On any failure the allocated channel is cleaned up exactly once and the context (with
    /// `handler`) is freed after that; nothing is left behind.
    ///
    /// IRQL: PASSIVE_LEVEL (`VmbChannelAllocate` is annotated `_IRQL_requires_(PASSIVE_LEVEL)`).
    pub fn create(params: ServerChannelParams<'_>, handler: H) -> Result<Self, SetupError> {
        let api = P::api();
        let name = FriendlyName::new(params.friendly_name)?;
        let context = ContextBox::<P, H>::try_new(ChannelContext {
            handler,
            callbacks: trampolines::state_callbacks::<P, H>(),
            name,
        })?;

        let mut raw: VMBCHANNEL = ptr::null_mut();
        // SAFETY: `parent` is a valid device object (ParentDevice's contract) and `raw` is a
        // writable local for the out-parameter.
        let status =
            unsafe { (api.VmbChannelAllocate)(params.parent.as_ptr(), TRUE, &raw mut raw) };
        KmclError::check(KmclFunction::VmbChannelAllocate, status)?;
        let raw = NonNull::new(raw).ok_or(SetupError::Kmcl(KmclError {
            // Success with a NULL channel: nothing to clean up, report it as a failed Allocate.
            call: KmclFunction::VmbChannelAllocate,
            status: STATUS_UNSUCCESSFUL,
        }))?;
        // From here on, every early return drops `allocated` (Cleanup) before `context` (free):
        // locals drop in reverse order of declaration.
        let allocated = AllocatedChannel::<P> {
            raw,
            _provider: PhantomData,
        };
        let channel = allocated.raw();
        let context_ref = context.get();

        if params.incoming_at_passive {
            // SAFETY: `channel` is a live, Disabled channel.
            unsafe { (api.VmbChannelSetIncomingProcessingAtPassive)(channel, TRUE) };
        }
        if let Some(handle) = params.vmbus_handle {
            // SAFETY: `channel` is a live, Disabled channel; the handle is passed by value.
            let status = unsafe { (api.VmbServerChannelInitSetVmbusHandle)(channel, handle) };
            KmclError::check(KmclFunction::VmbServerChannelInitSetVmbusHandle, status)?;
        }
        // SAFETY: `channel` is a live, Disabled channel.
        let status = unsafe {
            (api.VmbChannelInitSetMaximumPacketSize)(channel, params.maximum_packet_size)
        };
        KmclError::check(KmclFunction::VmbChannelInitSetMaximumPacketSize, status)?;
        // SAFETY: `channel` is live; the pointer is the context, which outlives the channel
        // (freed only after Cleanup).
        unsafe { (api.VmbChannelSetPointer)(channel, context.as_ptr().cast::<c_void>()) };
        // SAFETY: `channel` is a live, Disabled channel; GUIDs by value (kmcl.md §2.1).
        let status = unsafe {
            (api.VmbServerChannelInitSetTargetInterfaceId)(
                channel,
                params.interface_type,
                params.interface_instance,
            )
        };
        KmclError::check(
            KmclFunction::VmbServerChannelInitSetTargetInterfaceId,
            status,
        )?;
        let callbacks: PVMB_CHANNEL_STATE_CHANGE_CALLBACKS =
            ptr::from_ref(&context_ref.callbacks).cast_mut();
        // SAFETY: `channel` is a live, Disabled channel; the table is `_In_` (read only) and lives
        // in the context, i.e. as long as the channel.
        let status = unsafe { (api.VmbChannelInitSetStateChangeCallbacks)(channel, callbacks) };
        KmclError::check(KmclFunction::VmbChannelInitSetStateChangeCallbacks, status)?;
        // SAFETY: `channel` is a live, Disabled channel; the trampoline matches
        // PFN_VMB_CHANNEL_PROCESS_PACKET and ProcessingComplete is optional (`_In_opt_`).
        let status = unsafe {
            (api.VmbChannelInitSetProcessPacketCallbacks)(
                channel,
                Some(trampolines::process_packet::<P, H>),
                None,
            )
        };
        KmclError::check(
            KmclFunction::VmbChannelInitSetProcessPacketCallbacks,
            status,
        )?;
        // SAFETY: `channel` is a live, Disabled channel.
        let status = unsafe { (api.VmbServerChannelInitSetFlags)(channel, params.server_flags) };
        KmclError::check(KmclFunction::VmbServerChannelInitSetFlags, status)?;
        let name: PCUNICODE_STRING = context_ref.name.as_unicode_string();
        // SAFETY: `channel` is a live, Disabled channel; the string and its buffer live in the
        // context, i.e. as long as the channel.
        let status = unsafe { (api.VmbChannelInitSetFriendlyName)(channel, name) };
        KmclError::check(KmclFunction::VmbChannelInitSetFriendlyName, status)?;
        // SAFETY: `channel` is a live, Disabled channel.
        let status = unsafe {
            (api.VmbServerChannelInitSetMmioMegabytes)(
                channel,
                params.mmio_megabytes,
                params.mmio_megabytes_optional,
            )
        };
        KmclError::check(KmclFunction::VmbServerChannelInitSetMmioMegabytes, status)?;
        // SAFETY: `channel` is a live, fully initialised, Disabled channel.
        let status = unsafe { (api.VmbChannelEnable)(channel) };
        KmclError::check(KmclFunction::VmbChannelEnable, status)?;
        // SAFETY: `channel` is enabled; Start is called outside every callback (we are in
        // `create`, not in a callback of this channel, which has no owner yet).
        unsafe { (api.VmbChannelStart)(channel) };

        Ok(Self {
            raw: allocated.keep(),
            context,
            _not_send: PhantomData,
        })
    }

    /// The handler (shared with the callbacks).
    pub fn handler(&self) -> &H {
        &self.context.get().handler
    }

    /// The channel as callbacks see it, for the calls allowed anywhere (e.g. `get_mmio_space`).
    pub fn channel_ref(&self) -> ChannelRef<'_> {
        ChannelRef::new(self.raw.as_ptr(), P::api())
    }

    /// `VmbChannelGetMmioSpace`, or `None` when the table lacks it. See
    /// [`ChannelRef::get_mmio_space`]. IRQL: PASSIVE_LEVEL.
    pub fn get_mmio_space(&self) -> Option<MmioSpace> {
        self.channel_ref().get_mmio_space()
    }

    /// Tears the channel down now (same as dropping it). IRQL: PASSIVE_LEVEL.
    pub fn close(self) {
        drop(self);
    }
}

impl<P: KmclProvider, H: ChannelHandler> Drop for ServerChannel<P, H> {
    fn drop(&mut self) {
        let api = P::api();
        let channel = self.raw.as_ptr();
        // SAFETY: `channel` is live and enabled; we are outside its callbacks (the owner is
        // unreachable from them), at PASSIVE_LEVEL (documented on the type). Disable returns
        // after Suspend and Closed have run, and no callback runs afterwards.
        unsafe { (api.VmbChannelDisable)(channel) };
        // SAFETY: the channel is Disabled now (kmcl.md §4 step 8); this is its only Cleanup.
        unsafe { (api.VmbChannelCleanup)(channel) };
        // `self.context` is dropped after this body: the context is freed after Cleanup.
    }
}
