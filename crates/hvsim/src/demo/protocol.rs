//! The guest control protocol in the demo: the guest speaks it over the channel, the driver's
//! engine answers, and the device host follows the guest through WAIT_GUEST_EVENT.
//!
//! - [`GuestProtocol`]: the guest's side, `vmbmmio_proto::guest::GuestClient` (the reference
//!   library a guest agent embeds) sending every request as one packet on the simulated channel
//!   and reading the completion (`SimGuest::send`); its `WAIT_EVENT` is held by the driver and
//!   read back when the driver completes it (`SimGuest::completion`).
//! - [`HostWaiter`]: the device host's waiting loop, played on the demo's single thread. On
//!   Windows it is a thread blocked in WAIT_GUEST_EVENT on a second handle to the same file
//!   (`vmbmmio_devhost::sequence::guest_wait`); here it issues the same request on a shared
//!   transport, and polls the parked request after the guest did something. Each event goes
//!   through the device host's own `GuestEventFollower` into its placement signal, exactly as the
//!   loop does.

use vmbmmio_devhost::sequence::guest_wait::{Applied, GuestEventFollower};
use vmbmmio_devhost::{IoctlFailure, IoctlTransport};
use vmbmmio_proto::guest::{ClientError, ClientEvent, GuestClient, LARGEST_MESSAGE, Sent};
use vmbmmio_proto::ioctl::{
    GuestEvent, IoctlCode, WaitGuestEventRequest, WireMessage, parse_wait_guest_event_reply,
};

use kmcl::raw::STATUS_PENDING;

use super::DemoError;
use super::transport::InProcessTransport;
use crate::kmcl::{ChannelId, PacketOutcome, SimGuest};

/// The guest's protocol client on its channel.
pub(crate) struct GuestProtocol {
    pub(crate) client: GuestClient,
    channel: ChannelId,
    /// The simulator's token of the guest's outstanding `WAIT_EVENT`, while the driver holds it.
    wait: Option<u64>,
}

impl GuestProtocol {
    pub(crate) fn new(channel: ChannelId) -> Self {
        Self {
            client: GuestClient::new(),
            channel,
            wait: None,
        }
    }

    /// One request and its reply: `build` writes it with the client, the guest sends it as one
    /// packet, the client checks the completion.
    pub(crate) fn request(
        &mut self,
        vmbus: &SimGuest,
        what: &str,
        build: impl FnOnce(&mut GuestClient, &mut [u8]) -> Result<Sent, ClientError>,
    ) -> Result<ClientEvent, DemoError> {
        let mut buffer = [0u8; LARGEST_MESSAGE];
        let sent = build(&mut self.client, &mut buffer)
            .map_err(|error| DemoError(format!("guest: {what}: {error:?}")))?;
        let bytes = buffer.get(..sent.len).unwrap_or(&[]);
        match vmbus.send(self.channel, bytes) {
            Ok(PacketOutcome::Completed(reply)) => self
                .client
                .on_reply(&reply)
                .map_err(|error| DemoError(format!("guest: {what}: reply refused: {error:?}"))),
            Ok(other) => Err(DemoError(format!(
                "guest: {what}: the driver did not answer at once ({other:?})"
            ))),
            Err(error) => Err(DemoError(format!("guest: {what}: {error:?}"))),
        }
    }

    /// Sends `WAIT_EVENT`: the event if one is there already, else `None` (the driver holds it).
    pub(crate) fn wait(&mut self, vmbus: &SimGuest) -> Result<Option<ClientEvent>, DemoError> {
        let mut buffer = [0u8; LARGEST_MESSAGE];
        let sent = self
            .client
            .wait_event(&mut buffer)
            .map_err(|error| DemoError(format!("guest: waiting for an event: {error:?}")))?;
        let bytes = buffer.get(..sent.len).unwrap_or(&[]);
        match vmbus.send(self.channel, bytes) {
            Ok(PacketOutcome::Completed(reply)) => self.reply(&reply).map(Some),
            Ok(PacketOutcome::Pending(token)) => {
                self.wait = Some(token);
                Ok(None)
            }
            Ok(PacketOutcome::Failed) => Err(DemoError("guest: WAIT_EVENT failed".into())),
            Err(error) => Err(DemoError(format!("guest: waiting for an event: {error:?}"))),
        }
    }

    /// The held `WAIT_EVENT`'s completion, if the driver completed it meanwhile.
    pub(crate) fn poll(&mut self, vmbus: &SimGuest) -> Result<Option<ClientEvent>, DemoError> {
        let Some(token) = self.wait else {
            return Ok(None);
        };
        match vmbus.completion(token) {
            Some(reply) => {
                self.wait = None;
                self.reply(&reply).map(Some)
            }
            None => Ok(None),
        }
    }

    fn reply(&mut self, reply: &[u8]) -> Result<ClientEvent, DemoError> {
        self.client
            .on_reply(reply)
            .map_err(|error| DemoError(format!("guest: event refused: {error:?}")))
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
