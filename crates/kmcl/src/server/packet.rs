//! One incoming guest packet, completed exactly once.
//!
//! kmcl.md §2.2: every ProcessPacket delivery must be balanced by exactly one
//! `VmbChannelPacketComplete`; KMCL blocks Suspend until that happens (§4 step 6), so a packet
//! that is never completed hangs the channel's teardown. [`IncomingPacket`] makes both mistakes
//! impossible in safe code: completing consumes it, and dropping it uncompleted completes it
//! with an **empty** completion (no payload). The wrapper cannot know the control protocol, so
//! "empty" is its error signal: a guest that asked for a completion gets zero bytes, which no
//! protocol message can be.

use core::ffi::c_void;
use core::ptr;

use crate::error::{KmclError, KmclFunction};
use crate::raw::{
    STATUS_INVALID_BUFFER_SIZE, VMBPACKETCOMPLETION,
    VMBUS_CHANNEL_PROCESS_PACKET_FLAG_EXTERNAL_DATA,
};
use crate::table::KmclApi;

/// A packet KMCL delivered to `process_packet`, valid until it is completed.
///
/// Not `Send`, and borrowed for the callback: this wrapper completes every packet before the
/// callback returns (deferred completion is allowed by KMCL but not offered here yet).
pub struct IncomingPacket<'a> {
    completion: VMBPACKETCOMPLETION,
    data: &'a [u8],
    flags: u32,
    api: &'static KmclApi,
    completed: bool,
}

impl<'a> IncomingPacket<'a> {
    /// Wraps one delivery. `data` must stay valid until completion (KMCL guarantees it).
    pub(crate) fn new(
        completion: VMBPACKETCOMPLETION,
        data: &'a [u8],
        flags: u32,
        api: &'static KmclApi,
    ) -> Self {
        Self {
            completion,
            data,
            flags,
            api,
            completed: false,
        }
    }

    /// The packet's payload (VMBus and KMCL headers excluded, kmcl.md §3). Guest-controlled:
    /// validate everything.
    pub fn data(&self) -> &[u8] {
        self.data
    }

    /// ProcessPacket's `Flags` (`VMBUS_CHANNEL_PROCESS_PACKET_FLAGS`).
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// Whether the packet carries external data (`VMBUS_CHANNEL_PROCESS_PACKET_FLAG_EXTERNAL_DATA`).
    pub fn has_external_data(&self) -> bool {
        self.flags & VMBUS_CHANNEL_PROCESS_PACKET_FLAG_EXTERNAL_DATA != 0
    }

    /// Completes the packet with `response` as the completion payload (sent to the guest if it
    /// asked for a completion). IRQL: <= DISPATCH_LEVEL.
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
        // completed (the flag above makes this the only call); `buffer` is NULL with length 0 or
        // points to `length` readable bytes, which KMCL only reads
        // (`_In_reads_bytes_opt_(BufSize)`, kmcl.md §2.2).
        unsafe { (self.api.VmbChannelPacketComplete)(self.completion, buffer, length) };
    }
}

impl Drop for IncomingPacket<'_> {
    fn drop(&mut self) {
        self.finish(&[], 0);
    }
}
