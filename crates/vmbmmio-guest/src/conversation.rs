//! The guest's side of the control protocol over a [`PacketChannel`]: the reference state
//! machine (`vmbmmio_proto::guest::GuestClient`) plus what it needs from a transport — sending
//! each request as one packet, matching completions to requests, keeping one `WAIT_EVENT`
//! outstanding and taking its completion whenever it comes.
//!
//! The agent's session ([`crate::session`]) and the simulator's guests (`hvsim`) drive the host
//! through this one type, so what the tests prove about the conversation is what the agent does.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use vmbmmio_proto::guest::{ClientError, ClientEvent, GuestClient, LARGEST_MESSAGE, Sent};

use crate::channel::{ChannelError, PacketChannel, Transaction};

/// How long one request waits for its completion, in total.
pub const REQUEST_TIMEOUT_MS: u32 = 5_000;
/// The step of that wait.
const WAIT_STEP_MS: u32 = 50;

/// Why a request did not get its answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConversationError {
    /// The client refused to build it in this state (or the host already stopped answering).
    Client(ClientError),
    /// The transport failed.
    Channel(ChannelError),
    /// The host did not complete it within [`REQUEST_TIMEOUT_MS`].
    TimedOut(&'static str),
    /// The completion was not a valid reply to it.
    BadReply(&'static str, ClientError),
}

impl std::fmt::Display for ConversationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Client(error) => write!(f, "the request is not allowed now: {error:?}"),
            Self::Channel(error) => write!(f, "{error}"),
            Self::TimedOut(what) => write!(f, "{what}: the host did not answer"),
            Self::BadReply(what, error) => {
                write!(f, "{what}: the host's reply was refused: {error:?}")
            }
        }
    }
}

impl std::error::Error for ConversationError {}

impl From<ChannelError> for ConversationError {
    fn from(error: ChannelError) -> Self {
        Self::Channel(error)
    }
}

/// The conversation on one open channel.
pub struct Conversation<C: PacketChannel> {
    /// The reference state machine (its state, layout and generation are the truth).
    pub client: GuestClient,
    channel: C,
    /// The outstanding `WAIT_EVENT`'s transaction, while the host holds it.
    wait: Option<Transaction>,
    /// Completions that arrived for a transaction other than the one being waited for.
    early: VecDeque<(Transaction, Vec<u8>)>,
}

impl<C: PacketChannel> Conversation<C> {
    /// A new conversation (a fresh client) on `channel`.
    pub fn new(channel: C) -> Self {
        Self {
            client: GuestClient::new(),
            channel,
            wait: None,
            early: VecDeque::new(),
        }
    }

    /// The channel, for its owner.
    pub fn channel(&mut self) -> &mut C {
        &mut self.channel
    }

    /// One request and its reply: `build` writes it with the client, it goes out as one packet,
    /// the completion (waited for, bounded) goes back to the client.
    pub fn request(
        &mut self,
        what: &'static str,
        build: impl FnOnce(&mut GuestClient, &mut [u8]) -> Result<Sent, ClientError>,
    ) -> Result<ClientEvent, ConversationError> {
        let mut buffer = [0u8; LARGEST_MESSAGE];
        let sent = build(&mut self.client, &mut buffer).map_err(ConversationError::Client)?;
        let bytes = buffer.get(..sent.len).unwrap_or(&[]);
        self.channel.send(sent.request_id, bytes)?;
        let reply = self.completion_of(sent.request_id, what)?;
        self.client
            .on_reply(&reply)
            .map_err(|error| ConversationError::BadReply(what, error))
    }

    /// Sends `WAIT_EVENT` if none is outstanding; returns the event if the host answered at
    /// once (then the caller waits again), `None` while the host holds it.
    pub fn wait_event(&mut self) -> Result<Option<ClientEvent>, ConversationError> {
        if self.wait.is_some() {
            return self.poll_event();
        }
        let mut buffer = [0u8; LARGEST_MESSAGE];
        let sent = self
            .client
            .wait_event(&mut buffer)
            .map_err(ConversationError::Client)?;
        let bytes = buffer.get(..sent.len).unwrap_or(&[]);
        self.channel.send(sent.request_id, bytes)?;
        self.wait = Some(sent.request_id);
        self.poll_event()
    }

    /// The outstanding `WAIT_EVENT`'s completion, if it arrived (without waiting).
    pub fn poll_event(&mut self) -> Result<Option<ClientEvent>, ConversationError> {
        let Some(transaction) = self.wait else {
            return Ok(None);
        };
        let Some(reply) = self.take(transaction)? else {
            return Ok(None);
        };
        self.wait = None;
        self.client
            .on_reply(&reply)
            .map(Some)
            .map_err(|error| ConversationError::BadReply("WAIT_EVENT", error))
    }

    /// Whether a `WAIT_EVENT` is outstanding.
    pub fn waiting(&self) -> bool {
        self.wait.is_some()
    }

    /// Waits (bounded) for the completion of `transaction`.
    fn completion_of(
        &mut self,
        transaction: Transaction,
        what: &'static str,
    ) -> Result<Vec<u8>, ConversationError> {
        // Time actually spent, each wait counted as at least 1 ms: a wait returns early on any
        // signal (a real device) and at once where completions come inline (the simulator),
        // so counting the step asked for would end the wait too soon, and counting nothing
        // would never end it.
        let mut waited = Duration::ZERO;
        let limit = Duration::from_millis(u64::from(REQUEST_TIMEOUT_MS));
        loop {
            if let Some(reply) = self.take(transaction)? {
                return Ok(reply);
            }
            if waited >= limit {
                return Err(ConversationError::TimedOut(what));
            }
            let started = Instant::now();
            self.channel.wait(WAIT_STEP_MS)?;
            waited = waited.saturating_add(started.elapsed().max(Duration::from_millis(1)));
        }
    }

    /// The completion of `transaction` if it arrived; completions of others are kept. A
    /// completion for a transaction nobody sent is the host's error: refused by the client
    /// when it is handed over, so it is kept only while a request is outstanding for it.
    fn take(&mut self, transaction: Transaction) -> Result<Option<Vec<u8>>, ConversationError> {
        if let Some(index) = self.early.iter().position(|(t, _)| *t == transaction) {
            return Ok(self.early.remove(index).map(|(_, reply)| reply));
        }
        while let Some((arrived, reply)) = self.channel.next_completion()? {
            if arrived == transaction {
                return Ok(Some(reply));
            }
            // At most one control request and one WAIT_EVENT are outstanding, so anything
            // else is unsolicited: keep only what answers the other outstanding one.
            if Some(arrived) == self.wait && self.early.is_empty() {
                self.early.push_back((arrived, reply));
            }
        }
        Ok(None)
    }
}
