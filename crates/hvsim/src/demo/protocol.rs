//! The guest control protocol in the demo: the guest speaks it over the channel, the driver's
//! engine answers, and the device host follows the guest through WAIT_GUEST_EVENT.
//!
//! - [`GuestProtocol`]: the guest's side is the Linux guest agent's own conversation
//!   (`vmbmmio_guest::conversation::Conversation`, around the reference library
//!   `vmbmmio_proto::guest::GuestClient`) over [`SimPackets`], the simulated guest VMBus
//!   driver's channel: every request one packet (`SimGuest::send`), its `WAIT_EVENT` held by the
//!   driver and read back when the driver completes it (`SimGuest::completion`).
//! - [`HostWaiter`]: the device host's waiting loop, played on the demo's single thread. On
//!   Windows it is a thread blocked in WAIT_GUEST_EVENT on a second handle to the same file
//!   (`vmbmmio_devhost::sequence::guest_wait`); here it issues the same request on a shared
//!   transport, and polls the parked request after the guest did something. Each event goes
//!   through the device host's own `GuestEventFollower` into its placement signal, exactly as the
//!   loop does.

use std::collections::VecDeque;
use vmbmmio_devhost::sequence::guest_wait::{Applied, GuestEventFollower};
use vmbmmio_devhost::{IoctlFailure, IoctlTransport};

use vmbmmio_guest::channel::{ChannelError, PacketChannel, Transaction};
use vmbmmio_guest::conversation::{Conversation, ConversationError};
use vmbmmio_proto::ioctl::{
    GuestEvent, IoctlCode, WaitGuestEventRequest, WireMessage, parse_wait_guest_event_reply,
};

use kmcl::raw::STATUS_PENDING;

use super::DemoError;
use super::transport::InProcessTransport;
use crate::kmcl::{ChannelId, PacketOutcome, SimGuest};

/// The guest's protocol client on its channel: the agent's own conversation
/// (`vmbmmio_guest::conversation`) over the simulated guest VMBus driver.
pub(crate) type GuestProtocol = Conversation<SimPackets>;

/// A channel of the simulated guest VMBus driver as the agent's [`PacketChannel`]: a packet the
/// driver completes during delivery is ready at once; one it holds (`WAIT_EVENT`) is looked up
/// by its token until the driver completes it.
pub struct SimPackets {
    vmbus: SimGuest,
    channel: ChannelId,
    ready: VecDeque<(Transaction, Vec<u8>)>,
    pending: Vec<(Transaction, u64)>,
}

impl SimPackets {
    /// Channel `channel` of the guest `vmbus`.
    pub fn new(vmbus: SimGuest, channel: ChannelId) -> Self {
        Self {
            vmbus,
            channel,
            ready: VecDeque::new(),
            pending: Vec::new(),
        }
    }
}

impl PacketChannel for SimPackets {
    fn send(&mut self, transaction: Transaction, bytes: &[u8]) -> Result<(), ChannelError> {
        match self.vmbus.send(self.channel, bytes) {
            Ok(PacketOutcome::Completed(reply)) => {
                self.ready.push_back((transaction, reply));
                Ok(())
            }
            Ok(PacketOutcome::Pending(token)) => {
                self.pending.push((transaction, token));
                Ok(())
            }
            Ok(PacketOutcome::Failed) => {
                Err(ChannelError::Broken("the host failed the packet".into()))
            }
            Err(error) => Err(ChannelError::Io(format!("{error:?}"))),
        }
    }

    fn next_completion(&mut self) -> Result<Option<(Transaction, Vec<u8>)>, ChannelError> {
        if let Some(ready) = self.ready.pop_front() {
            return Ok(Some(ready));
        }
        let vmbus = self.vmbus;
        let done = self
            .pending
            .iter()
            .position(|(_, token)| vmbus.completion(*token).is_some());
        Ok(done.and_then(|index| {
            let (transaction, token) = self.pending.remove(index);
            vmbus.completion(token).map(|reply| (transaction, reply))
        }))
    }

    fn wait(&mut self, _timeout_ms: u32) -> Result<(), ChannelError> {
        // The simulated driver completes inline or holds until a later step: nothing to wait
        // for on this thread.
        Ok(())
    }
}

/// A conversation on `channel` of `vmbus`.
pub(crate) fn conversation(vmbus: SimGuest, channel: ChannelId) -> GuestProtocol {
    Conversation::new(SimPackets::new(vmbus, channel))
}

impl From<ConversationError> for DemoError {
    fn from(error: ConversationError) -> Self {
        DemoError(format!("guest: {error}"))
    }
}

/// The device host's side: WAIT_GUEST_EVENT on a transport sharing its file handle.
pub(crate) struct HostWaiter {
    transport: InProcessTransport,
    follower: GuestEventFollower,
    last_seen: u64,
}

impl HostWaiter {
    pub(crate) fn new(transport: InProcessTransport, follower: GuestEventFollower) -> Self {
        Self {
            transport,
            follower,
            last_seen: 0,
        }
    }

    /// Every event the driver has for the device host now, each applied to its placement
    /// signal, in order; leaves one request parked (as the loop does) when there is no more.
    pub(crate) fn drain(&mut self) -> Result<Vec<(GuestEvent, Applied)>, DemoError> {
        let mut seen = Vec::new();
        let mut output = [0u8; 256];
        // Bounded: the driver keeps at most 32 events per session.
        for _ in 0..64 {
            let reply = if self.transport.guest_event_pending() {
                match self.transport.poll_guest_event(&mut output) {
                    None => return Ok(seen),
                    Some(reply) => reply,
                }
            } else {
                let request = WaitGuestEventRequest::new(self.last_seen);
                let mut input = vec![0u8; WaitGuestEventRequest::SIZE];
                request
                    .encode(&mut input)
                    .map_err(|error| DemoError(format!("WAIT_GUEST_EVENT: {error:?}")))?;
                match self
                    .transport
                    .ioctl(IoctlCode::WaitGuestEvent.code(), &input, &mut output)
                {
                    Err(IoctlFailure::NtStatus(STATUS_PENDING)) => continue,
                    other => other,
                }
            };
            let written = reply.map_err(|error| {
                DemoError(format!("device host: WAIT_GUEST_EVENT failed: {error:?}"))
            })?;
            let event = parse_wait_guest_event_reply(output.get(..written).unwrap_or(&[]))
                .map_err(|error| DemoError(format!("device host: bad event: {error:?}")))?;
            self.last_seen = event.sequence();
            seen.push((event, self.follower.apply(&event)));
        }
        Err(DemoError("the driver kept producing events".into()))
    }
}
