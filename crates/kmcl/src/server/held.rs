//! A guest packet held past its ProcessPacket callback, to be completed later.
//!
//! KMCL requires "exactly one `VmbChannelPacketComplete` for every ProcessPacket delivery, either
//! inline or later" (Microsoft's KMCL page `nf-vmbuskernelmodeclientlibapi-vmbchannelpacketcomplete`;
//! kmcl.md §2.2). A protocol that answers a request only when something happens (the guest
//! control protocol's `WAIT_EVENT`, docs/protocol.md) needs the "later": the handler parses the
//! packet inside the callback, turns it into a [`HeldPacket`] with
//! [`IncomingPacket::hold`](super::IncomingPacket::hold), stores it, and completes it when there
//! is news.
//!
//! # What the types guarantee
//! - **Exactly once**: completing consumes the token; dropping it uncompleted completes it
//!   **empty** (as for `IncomingPacket`). Safe code cannot complete twice or leak a completion
//!   except by `mem::forget`, which KMCL then reports as a packet outstanding at Suspend.
//! - **No stale data**: KMCL's buffer is valid only until the completion, and the wrapper lends it
//!   for the callback only. A `HeldPacket` carries no data at all, and `hold` consumes the
//!   `IncomingPacket` whose `data()` borrow therefore ends first: parse, then hold.
//!
//! # What the owner must still do
//! KMCL waits at Suspend until every delivered packet is completed (kmcl.md §3 Suspend, §4
//! step 6; Microsoft's `EVT_VMB_CHANNEL_SUSPEND` page): a held packet must be completed (or
//! dropped) **no later than in the `suspend` callback**. After Closed or Cleanup its completion
//! context names a packet of a channel that no longer exists.

use core::ffi::c_void;
use core::ptr;

use crate::error::{KmclError, KmclFunction};
use crate::raw::{STATUS_INVALID_BUFFER_SIZE, VMBPACKETCOMPLETION};
use crate::table::KmclApi;

/// An incoming packet's completion, owned: no data, only the right (and duty) to complete it once.
///
/// Made by [`IncomingPacket::hold`](super::IncomingPacket::hold). `Send`, so it can be completed
/// from another thread (a DPC, a work item, an IOCTL path). Complete or drop it at IRQL <=
/// DISPATCH_LEVEL, and no later than in the channel's `suspend` callback.
#[must_use = "dropping a held packet completes it empty at once"]
pub struct HeldPacket {
    completion: VMBPACKETCOMPLETION,
    api: &'static KmclApi,
    completed: bool,
}

// SAFETY: a `VMBPACKETCOMPLETION` is an opaque handle naming one delivered packet until it is
// completed, not a pointer this crate dereferences, and it is not tied to the delivering thread:
// KMCL lets the server complete it "either inline or later" (Microsoft's
// `VmbChannelPacketComplete` page; kmcl.md §2.2), i.e. from whatever thread and context runs
// later, at IRQL <= DISPATCH_LEVEL. The token owns the one completion (it is not `Clone`, and
// completion consumes it), so moving it to another thread moves that duty, never duplicates it.
// `&'static KmclApi` is `Send` (the table is immutable function pointers).
unsafe impl Send for HeldPacket {}

impl HeldPacket {
    /// Takes over the completion of one delivery (from `IncomingPacket`).
    pub(crate) fn new(completion: VMBPACKETCOMPLETION, api: &'static KmclApi) -> Self {
        Self {
            completion,
            api,
            completed: false,
        }
    }

    /// Completes the packet with `response` as the completion payload (sent to the guest if it
    /// asked for a completion). IRQL: <= DISPATCH_LEVEL: `VmbChannelPacketComplete` states no
    /// IRQL, but KMCL's own callers make it from ProcessPacket, which runs at <= DISPATCH_LEVEL
    /// (kmcl.md §9 item 18: inferred, undocumented), so that is the bound to keep.
    ///
    /// A response longer than `u32::MAX` bytes cannot be described to KMCL: the packet is then
    /// completed empty and the error names `VmbChannelPacketComplete` with
    /// `STATUS_INVALID_BUFFER_SIZE`.
    pub fn complete(mut self, response: &[u8]) -> Result<(), KmclError> {
        match u32::try_from(response.len()) {
            Ok(length) => {
                self.finish(response, length);
                Ok(())
            }
            Err(_) => {
                self.finish(&[], 0);
                Err(KmclError {
                    call: KmclFunction::VmbChannelPacketComplete,
                    status: STATUS_INVALID_BUFFER_SIZE,
                })
            }
        }
    }

    /// Completes the packet without a payload. IRQL: <= DISPATCH_LEVEL.
    pub fn complete_empty(mut self) {
        self.finish(&[], 0);
    }

    /// The one place `VmbChannelPacketComplete` is called; does nothing the second time.
    fn finish(&mut self, response: &[u8], length: u32) {
        if self.completed {
            return;
        }
        self.completed = true;
        let buffer = if length == 0 {
            ptr::null_mut()
        } else {
            response.as_ptr().cast_mut().cast::<c_void>()
        };
        // SAFETY: `completion` came from KMCL's ProcessPacket for this delivery and has not been
        // completed (the flag above makes this the only call, and the token is neither `Clone`
        // nor `Copy`); `buffer` is NULL with length 0 or points to `length` readable bytes,
        // which KMCL only reads (`_In_reads_bytes_opt_(BufSize)`, kmcl.md §2.2).
        unsafe { (self.api.VmbChannelPacketComplete)(self.completion, buffer, length) };
    }
}

impl Drop for HeldPacket {
    /// Completes the packet empty if it was not completed. IRQL: <= DISPATCH_LEVEL.
    fn drop(&mut self) {
        self.finish(&[], 0);
    }
}

impl core::fmt::Debug for HeldPacket {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HeldPacket")
            .field("completion", &self.completion)
            .field("completed", &self.completed)
            .finish()
    }
}
