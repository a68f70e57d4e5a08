//! The per-channel context: the handler, and the C data KMCL may keep pointers to.
//!
//! KMCL stores one pointer per channel (`VmbChannelSetPointer`) and the trampolines recover it
//! with `VmbChannelGetPointer`. That pointer is this context. It also holds the state-change
//! callback table and the UTF-16 friendly name: the reference does not say whether KMCL copies
//! them or keeps the pointers (kmcl.md §2.1 is silent), so they live as long as the channel.
//!
//! The context is allocated before `VmbChannelAllocate` and freed only after
//! `VmbChannelCleanup`, when KMCL can no longer call back. Allocation is fallible (the kernel
//! allocator may return NULL), which `Box::new` cannot express on stable Rust, hence the manual
//! allocation below.

use alloc::alloc::{Layout, alloc};
use alloc::boxed::Box;
use core::marker::PhantomData;
use core::ptr::NonNull;

use crate::error::SetupError;
use crate::provider::{ContextEvent, KmclProvider};
use crate::raw::VMB_CHANNEL_STATE_CHANGE_CALLBACKS;
use crate::server::name::FriendlyName;

/// What one channel's pointer (`VmbChannelSetPointer`) points to.
pub(crate) struct ChannelContext<H> {
    /// The driver's callback handler.
    pub(crate) handler: H,
    /// Passed to `VmbChannelInitSetStateChangeCallbacks`; kept alive with the channel.
    pub(crate) callbacks: VMB_CHANNEL_STATE_CHANGE_CALLBACKS,
    /// Passed to `VmbChannelInitSetFriendlyName`; kept alive with the channel.
    pub(crate) name: FriendlyName,
}

/// Sole owner of one heap-allocated [`ChannelContext`]; frees it on drop.
pub(crate) struct ContextBox<P: KmclProvider, H> {
    pointer: NonNull<ChannelContext<H>>,
    _provider: PhantomData<fn() -> P>,
}

impl<P: KmclProvider, H> ContextBox<P, H> {
    /// Moves `context` to the heap. IRQL: PASSIVE_LEVEL.
    pub(crate) fn try_new(context: ChannelContext<H>) -> Result<Self, SetupError> {
        // The callback table alone is 48 bytes, so the layout is never zero-sized (a
        // requirement of `alloc`).
        let layout = Layout::new::<ChannelContext<H>>();
        // SAFETY: `layout` has a non-zero size (see above).
        let raw = unsafe { alloc(layout) };
        let pointer =
            NonNull::new(raw.cast::<ChannelContext<H>>()).ok_or(SetupError::OutOfMemory)?;
        // SAFETY: `pointer` is a fresh allocation of `Layout::new::<ChannelContext<H>>()`, so it
        // is valid for a write of one `ChannelContext<H>` and suitably aligned.
        unsafe { pointer.as_ptr().write(context) };
        P::context_event(ContextEvent::Allocated);
        Ok(Self {
            pointer,
            _provider: PhantomData,
        })
    }

    /// The pointer handed to `VmbChannelSetPointer`.
    pub(crate) fn as_ptr(&self) -> *mut ChannelContext<H> {
        self.pointer.as_ptr()
    }

    /// Shared access; the context is never mutated after construction.
    pub(crate) fn get(&self) -> &ChannelContext<H> {
        // SAFETY: `pointer` is a live, initialised allocation owned by `self`; nothing creates a
        // `&mut` to it until `drop`, which takes `&mut self`.
        unsafe { self.pointer.as_ref() }
    }
}

impl<P: KmclProvider, H> Drop for ContextBox<P, H> {
    fn drop(&mut self) {
        // SAFETY: the pointer came from the global allocator with
        // `Layout::new::<ChannelContext<H>>()` and holds an initialised value, which is exactly
        // what `Box::from_raw` requires (see `Box`'s "Memory layout" section); it is released
        // once, here, by its sole owner.
        drop(unsafe { Box::from_raw(self.pointer.as_ptr()) });
        P::context_event(ContextEvent::Freed);
    }
}
