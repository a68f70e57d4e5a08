//! How the agent reaches the host: request packets out, their completions back.
//!
//! The guest protocol is request/completion (`docs/protocol.md`, "Transport"): every guest
//! message is one VMBus packet that asks for a completion, and the host's reply is that
//! packet's completion, at once or later (a held `WAIT_EVENT`). [`PacketChannel`] is that and
//! nothing more, so the conversation ([`crate::conversation`]) runs unchanged over the real
//! ring buffer of a `uio_hv_generic` device, over the fake uio device of the tests, and over the
//! simulator's guest VMBus driver.

use std::fmt;

/// A request handed to the channel, identified by the protocol's request id (the VMBus
/// transaction id carries the same value).
pub type Transaction = u64;

/// Why the channel cannot carry a packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelError {
    /// The channel is closed or was rescinded: the conversation is over; reopen to start over.
    Closed,
    /// The outgoing ring has no room now (the host is not reading); try again later.
    Full,
    /// The host broke the transport (a corrupt ring, a completion for nothing): the channel
    /// cannot be trusted any more.
    Broken(String),
    /// The operating system refused (with what it said).
    Io(String),
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("the channel is closed"),
            Self::Full => f.write_str("the channel's outgoing ring is full"),
            Self::Broken(why) => write!(f, "the host broke the channel: {why}"),
            Self::Io(why) => write!(f, "channel I/O failed: {why}"),
        }
    }
}

impl std::error::Error for ChannelError {}

/// One VMBus channel as the guest protocol uses it.
pub trait PacketChannel {
    /// Sends `bytes` as one packet asking for a completion, tagged `transaction`.
    fn send(&mut self, transaction: Transaction, bytes: &[u8]) -> Result<(), ChannelError>;

    /// The next completion that arrived (its transaction and its payload), without waiting.
    fn next_completion(&mut self) -> Result<Option<(Transaction, Vec<u8>)>, ChannelError>;

    /// Waits until something may have arrived (a signal from the host) or `timeout_ms` passed;
    /// returns at once where completions come inline (the simulator).
    fn wait(&mut self, timeout_ms: u32) -> Result<(), ChannelError>;
}
