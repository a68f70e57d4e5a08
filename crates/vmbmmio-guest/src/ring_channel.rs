//! [`PacketChannel`] over the channel's two rings: what the agent runs on a `uio_hv_generic`
//! device, and what its tests run on a fake one.
//!
//! Each request goes out as one in-band packet asking for a completion, its transaction id the
//! protocol's request id; each completion the host writes comes back, cut to the length its
//! protocol header states (the ring pads payloads to 8 bytes). The ring code ([`crate::ring`])
//! decides when the host must be signalled; a [`Doorbell`] does it (on Linux a write to the
//! uio file) and waits for the host's signal (`poll` on the file). Anything the host writes
//! that breaks the ring rules, a packet the protocol does not have, or a completion larger
//! than the largest reply makes the channel [`ChannelError::Broken`]: from then on nothing
//! more is read from or written to the rings.

use vmbmmio_proto::guest::LARGEST_MESSAGE;

use crate::channel::{ChannelError, PacketChannel, Transaction};
use crate::ring::{IncomingPacket, OnFull, OutgoingPacket, RingMemory, RingPair, SendError};

/// How the agent and the host signal each other (`uio_hv_generic`: a write of a non-zero
/// `u32` to `/dev/uioN` signals the host and re-enables the interrupt; `poll` waits for it).
pub trait Doorbell {
    /// Tells the host there is something for it.
    fn ring(&mut self) -> Result<(), ChannelError>;

    /// Waits until the host may have written something, at most `timeout_ms`.
    fn wait(&mut self, timeout_ms: u32) -> Result<(), ChannelError>;
}

/// Where the protocol header states a message's length (`docs/protocol.md`, "Message header":
/// `size` at offset 4, little-endian).
const SIZE_FIELD: core::ops::Range<usize> = 4..8;

/// What went through the channel since it was made (for `status`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChannelCounters {
    /// Request packets written to the outgoing ring.
    pub packets_sent: u64,
    /// Completions taken from the incoming ring.
    pub completions_received: u64,
    /// Times the host was signalled (the ring rules asked for it).
    pub host_signals: u64,
}

/// The rings of one channel, the agent's side.
pub struct RingChannel<M: RingMemory + Clone, D: Doorbell> {
    rings: RingPair<M>,
    doorbell: D,
    broken: Option<String>,
    counters: ChannelCounters,
}

impl<M: RingMemory + Clone, D: Doorbell> RingChannel<M, D> {
    /// The channel over `rings`, signalling through `doorbell`.
    pub fn new(rings: RingPair<M>, doorbell: D) -> Self {
        Self {
            rings,
            doorbell,
            broken: None,
            counters: ChannelCounters::default(),
        }
    }

    /// What went through the channel so far.
    pub fn counters(&self) -> ChannelCounters {
        self.counters
    }

    fn signal_host(&mut self) -> Result<(), ChannelError> {
        self.counters.host_signals = self.counters.host_signals.saturating_add(1);
        self.doorbell.ring()
    }

    /// The doorbell, for its owner.
    pub fn doorbell(&mut self) -> &mut D {
        &mut self.doorbell
    }

    fn check(&self) -> Result<(), ChannelError> {
        match &self.broken {
            Some(why) => Err(ChannelError::Broken(why.clone())),
            None => Ok(()),
        }
    }

    fn break_with(&mut self, why: String) -> ChannelError {
        self.broken = Some(why.clone());
        ChannelError::Broken(why)
    }
}

/// A completion's payload cut to its protocol message (`None`: it states a length the packet
/// does not have, or none at all).
fn message_of(payload: &[u8]) -> Option<&[u8]> {
    let size = payload.get(SIZE_FIELD)?;
    let size = u32::from_le_bytes(size.try_into().ok()?);
    payload.get(..usize::try_from(size).ok()?)
}

impl<M: RingMemory + Clone, D: Doorbell> PacketChannel for RingChannel<M, D> {
    fn send(&mut self, transaction: Transaction, bytes: &[u8]) -> Result<(), ChannelError> {
        self.check()?;
        let packet = OutgoingPacket::request(transaction, bytes);
        match self.rings.outgoing.send(&packet, OnFull::RequestSpace) {
            Ok(sent) => {
                self.counters.packets_sent = self.counters.packets_sent.saturating_add(1);
                if sent.signal {
                    self.signal_host()?;
                }
                Ok(())
            }
            Err(SendError::Full { .. }) => Err(ChannelError::Full),
            Err(error) => Err(self.break_with(format!("sending: {error:?}"))),
        }
    }

    fn next_completion(&mut self) -> Result<Option<(Transaction, Vec<u8>)>, ChannelError> {
        self.check()?;
        // The host sends completions only; each is at most the largest reply, padded to 8.
        let max = LARGEST_MESSAGE.saturating_add(8);
        let received = match self.rings.incoming.recv(max) {
            Ok(None) => return Ok(None),
            Ok(Some(received)) => received,
            Err(error) => return Err(self.break_with(format!("receiving: {error:?}"))),
        };
        self.counters.completions_received = self.counters.completions_received.saturating_add(1);
        if received.signal {
            self.signal_host()?;
        }
        match received.packet {
            IncomingPacket::Completion {
                transaction_id,
                payload,
            } => match message_of(&payload) {
                Some(message) => Ok(Some((transaction_id, message.to_vec()))),
                None => Err(self.break_with(format!(
                    "a completion for {transaction_id} states a length its {} bytes do not have",
                    payload.len()
                ))),
            },
            IncomingPacket::InBand { transaction_id, .. } => Err(self.break_with(format!(
                "an in-band packet ({transaction_id}): the host sends only completions"
            ))),
        }
    }

    fn wait(&mut self, timeout_ms: u32) -> Result<(), ChannelError> {
        self.check()?;
        if self.rings.incoming.is_empty().unwrap_or(false) {
            self.doorbell.wait(timeout_ms)
        } else {
            Ok(())
        }
    }
}
