//! The agent's session: everything a guest program does with the host over one open channel,
//! in the order `docs/protocol.md` ("The conversation") asks for it.
//!
//! - [`ProtocolSession::start`]: `HELLO` (refused with [`SessionError::UnsupportedVersion`] when the host
//!   speaks no version this agent does), `SELECT_VERSION`, `REPORT_RESERVATION`,
//!   `REPORT_DEVICE` with the BAR where the guest's PCI code placed it and decode on, `READY`,
//!   and a `WAIT_EVENT` the host holds.
//! - [`ProtocolSession::follow`]: takes the host's events as they come, reads the layout whenever the
//!   regions become backed, and keeps one `WAIT_EVENT` outstanding.
//! - [`ProtocolSession::may_use`]: the one question a program asks before it touches the memory: the
//!   regions are backed, for the current layout, on this open channel.
//! - [`ProtocolSession::ring`]: a `DOORBELL` for a region (protocol 1.1); the host's
//!   doorbells come back from [`ProtocolSession::follow`] as [`Change::Doorbell`], and change
//!   nothing else (the layout, the backing and [`ProtocolSession::may_use`] stay as they were).
//! - [`ProtocolSession::release`] before the guest unmaps or turns decode off (`RELEASING`, then the
//!   report that says so), [`ProtocolSession::report`] after the BAR moved or decode came back on.
//!
//! It knows nothing of sysfs, uio or mappings: the caller gives it a [`PacketChannel`] and the
//! device's facts, so the same session runs in the real agent, in its tests and in the
//! simulator's guests.

use std::time::Duration;

use vmbmmio_proto::guest::{
    BarPlacement, ClientError, ClientEvent, ClientState, DeviceReport, ErrorCode, EventKind,
    GuestRange, Layout, has_doorbells,
};
use vmbmmio_proto::ioctl::WireGuid;

use crate::channel::PacketChannel;
use crate::conversation::{Conversation, ConversationError};

/// What the guest knows about its paired device, for its reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceFacts {
    /// The channel instance GUID the function's pairing capability carries.
    pub instance: WireGuid,
    /// PCI segment, bus and `device << 3 | function` (informational for the host).
    pub segment: u16,
    /// See [`Self::segment`].
    pub bus: u8,
    /// See [`Self::segment`].
    pub devfn: u8,
    /// The BAR's index.
    pub bar_index: u8,
    /// Where the BAR is (guest-physical base and size).
    pub bar_base: u64,
    /// See [`Self::bar_base`].
    pub bar_size: u64,
    /// The channel's MMIO range, if the guest has one to report (a Linux guest's VMBus driver
    /// reserves none for the channel).
    pub reservation: Option<GuestRange>,
}

impl DeviceFacts {
    fn report(&self, memory_decode: bool) -> DeviceReport {
        DeviceReport {
            instance: self.instance,
            segment: self.segment,
            bus: self.bus,
            devfn: self.devfn,
            bar_index: self.bar_index,
            bar: BarPlacement {
                base: self.bar_base,
                size: self.bar_size,
                memory_decode,
            },
        }
    }
}

/// Something the session learned while following the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The regions are backed (section-backed, or served by the device host's intercepts);
    /// the layout of this generation is current.
    Backed {
        /// The layout's generation.
        generation: u64,
        /// Whether some region is served by intercepts (slow, but the same bytes).
        intercepted: bool,
    },
    /// The regions are not all backed any more: stop using them.
    Unbacked {
        /// The layout generation the host stated.
        generation: u64,
    },
    /// The layout changed without the backing changing (`LAYOUT_CHANGED`).
    LayoutChanged {
        /// The new generation.
        generation: u64,
    },
    /// A host consumer rang region `region` (`EVENT` `DOORBELL`, protocol 1.1). Doorbells are
    /// interrupts, not a queue: the host coalesces rings the guest has not heard yet, so
    /// `value` is the latest; the data goes through the memory.
    Doorbell {
        /// The region's id.
        region: u32,
        /// The latest value rung.
        value: u64,
    },
    /// The host stopped answering on this channel (it is closing, or the guest misbehaved):
    /// close it and open it again to start over.
    Closed,
}

/// How long a guest refused with `RATE_LIMITED` should wait before it rings again: the
/// driver refills its per-guest doorbell allowance at 10 000 a second (burst 64,
/// `docs/protocol.md`), so a millisecond buys ten rings.
pub const RETRY_AFTER: Duration = Duration::from_millis(1);

/// Why the session cannot go on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionError {
    /// The host speaks no protocol version this agent does (its range, then ours).
    UnsupportedVersion {
        /// The host's lowest and highest version.
        host: (u32, u32),
    },
    /// A request failed (transport, timeout, refused reply).
    Conversation(ConversationError),
    /// Doorbells need protocol 1.1; the conversation selected an older version (the host's
    /// driver predates doorbells).
    DoorbellsUnsupported {
        /// The selected version (`None`: none yet).
        version: Option<u32>,
    },
    /// The host refused a `DOORBELL` for now (`RATE_LIMITED`): not counted as misbehaviour;
    /// ring again after `retry_after`.
    RateLimited {
        /// The region rung.
        region: u32,
        /// How long to wait before ringing again ([`RETRY_AFTER`]).
        retry_after: Duration,
    },
    /// The host answered a request with an error.
    Refused {
        /// What was asked.
        what: &'static str,
        /// The error the host gave.
        error: String,
    },
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnsupportedVersion { host } => write!(
                f,
                "the host speaks guest-protocol versions {:#x}..={:#x}, none of which this agent \
                 speaks; update the agent or the host driver",
                host.0, host.1
            ),
            Self::Conversation(error) => write!(f, "{error}"),
            Self::DoorbellsUnsupported { version } => write!(
                f,
                "doorbells need guest-protocol 1.1 and this conversation speaks {}: update the \
                 host's driver",
                version.map_or_else(|| "no version yet".to_owned(), |v| format!("{v:#x}"))
            ),
            Self::RateLimited {
                region,
                retry_after,
            } => write!(
                f,
                "the host refused the doorbell for region {region} for now (rate limited): ring \
                 again after {} µs",
                retry_after.as_micros()
            ),
            Self::Refused { what, error } => write!(f, "the host refused {what}: {error}"),
        }
    }
}

impl SessionError {
    /// A stable snake_case name of the error (`docs/guest-agent.md`, "Errors").
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnsupportedVersion { .. } => "unsupported_version",
            Self::DoorbellsUnsupported { .. } => "doorbells_unsupported",
            Self::RateLimited { .. } => "rate_limited",
            Self::Conversation(_) | Self::Refused { .. } => "session",
        }
    }
}

impl std::error::Error for SessionError {}

impl From<ConversationError> for SessionError {
    fn from(error: ConversationError) -> Self {
        Self::Conversation(error)
    }
}

/// One conversation with the host, on one open channel.
pub struct ProtocolSession<C: PacketChannel> {
    conversation: Conversation<C>,
    facts: DeviceFacts,
}

impl<C: PacketChannel> ProtocolSession<C> {
    /// Negotiates and reports on `channel`, ending with `READY` and a held `WAIT_EVENT`.
    pub fn start(channel: C, facts: DeviceFacts) -> Result<Self, SessionError> {
        let mut session = Self {
            conversation: Conversation::new(channel),
            facts,
        };
        let hello = session.conversation.request("HELLO", |c, b| c.hello(b))?;
        if let ClientEvent::HelloReply { host, chosen: None } = hello {
            return Err(SessionError::UnsupportedVersion {
                host: (host.min_version, host.max_version),
            });
        }
        session.ask("SELECT_VERSION", |c, b| c.select_version(b))?;
        let reservation = facts.reservation;
        session.ask("REPORT_RESERVATION", |c, b| {
            c.report_reservation(b, reservation)
        })?;
        session.report(facts)?;
        Ok(session)
    }

    /// Reports the device as `facts` say, with decode on, and says `READY`; then keeps a
    /// `WAIT_EVENT` outstanding. After the BAR moved or decode came back on.
    pub fn report(&mut self, facts: DeviceFacts) -> Result<(), SessionError> {
        self.facts = facts;
        let report = facts.report(true);
        self.ask("REPORT_DEVICE", |c, b| c.report_device(b, &report))?;
        self.ask("READY", |c, b| c.ready(b))?;
        self.keep_waiting()?;
        Ok(())
    }

    /// `RELEASING`, then the report that decode is off: before the guest unmaps the BAR, turns
    /// decode off, moves the BAR or exits. The memory must not be touched from here on until
    /// [`Self::may_use`] says so again.
    pub fn release(&mut self) -> Result<(), SessionError> {
        self.ask("RELEASING", |c, b| c.releasing(b))?;
        let report = self.facts.report(false);
        self.ask("REPORT_DEVICE", |c, b| c.report_device(b, &report))?;
        Ok(())
    }

    /// Takes every event the host completed meanwhile (without waiting), reads the layout
    /// when the regions became backed, and waits again. Returns what changed, in order.
    pub fn follow(&mut self) -> Result<Vec<Change>, SessionError> {
        let mut changes = Vec::new();
        // Bounded: the host keeps a few dozen events at most per conversation.
        for _ in 0..64 {
            let heard = if self.conversation.waiting() {
                self.conversation.poll_event()?
            } else if self.conversation.client.state() == ClientState::Closed {
                None
            } else {
                self.conversation.wait_event()?
            };
            match heard {
                Some(ClientEvent::Event(event)) => changes.push(match event.kind {
                    EventKind::RegionsMapped | EventKind::RegionsIntercepted => Change::Backed {
                        generation: event.generation,
                        intercepted: event.kind == EventKind::RegionsIntercepted,
                    },
                    EventKind::LayoutChanged => Change::LayoutChanged {
                        generation: event.generation,
                    },
                    // A doorbell changes neither the layout nor the backing (the client keeps
                    // its state for it).
                    EventKind::Doorbell => Change::Doorbell {
                        region: event.region,
                        value: event.value,
                    },
                    EventKind::RegionsUnmapped | EventKind::DeviceHostRestarted => {
                        Change::Unbacked {
                            generation: event.generation,
                        }
                    }
                }),
                Some(ClientEvent::Error(_)) if self.closed() => {
                    changes.push(Change::Closed);
                    break;
                }
                Some(_) => {}
                None => break,
            }
        }
        if self.conversation.client.state() == ClientState::Mapped
            && !self.conversation.client.layout_is_current()
        {
            self.conversation
                .request("GET_LAYOUT", |c, b| c.get_layout(b))?;
        }
        Ok(changes)
    }

    /// Whether the conversation has doorbells (protocol 1.1 or later was selected).
    pub fn doorbells(&self) -> bool {
        self.conversation
            .client
            .version()
            .is_some_and(has_doorbells)
    }

    /// `DOORBELL` for region `region` (its id) with `value`: the host signals every host
    /// consumer attached to the region. Put the data in the region first: the doorbell only
    /// says "look". Fails with [`SessionError::DoorbellsUnsupported`] in a 1.0 conversation
    /// (nothing is sent) and [`SessionError::RateLimited`] when the host refuses it for now;
    /// neither ends the session.
    pub fn ring(&mut self, region: u32, value: u64) -> Result<(), SessionError> {
        if !self.doorbells() {
            return Err(SessionError::DoorbellsUnsupported {
                version: self.conversation.client.version(),
            });
        }
        match self
            .conversation
            .request("DOORBELL", |c, b| c.doorbell(b, region, value))?
        {
            ClientEvent::Error(error) if error.code == ErrorCode::RateLimited => {
                Err(SessionError::RateLimited {
                    region,
                    retry_after: RETRY_AFTER,
                })
            }
            ClientEvent::Error(error) => Err(SessionError::Refused {
                what: "DOORBELL",
                error: format!("{:?}", error.code),
            }),
            _ => Ok(()),
        }
    }

    /// Whether the program may touch the regions now.
    pub fn may_use(&self) -> bool {
        self.conversation.client.state() == ClientState::Mapped
            && self.conversation.client.layout_is_current()
    }

    /// Where the conversation is (the reference client's state).
    pub fn state(&self) -> ClientState {
        self.conversation.client.state()
    }

    /// Whether the host stopped answering on this channel.
    pub fn closed(&self) -> bool {
        self.conversation.client.state() == ClientState::Closed
    }

    /// The latest layout the host gave (current or not: see [`Self::may_use`]).
    pub fn layout(&self) -> Option<&Layout> {
        self.conversation.client.layout()
    }

    /// The device facts last reported.
    pub fn facts(&self) -> DeviceFacts {
        self.facts
    }

    /// The conversation, for status and tests.
    pub fn conversation(&mut self) -> &mut Conversation<C> {
        &mut self.conversation
    }

    /// A request whose reply must not be a host error.
    fn ask(
        &mut self,
        what: &'static str,
        build: impl FnOnce(
            &mut vmbmmio_proto::guest::GuestClient,
            &mut [u8],
        ) -> Result<vmbmmio_proto::guest::Sent, ClientError>,
    ) -> Result<(), SessionError> {
        match self.conversation.request(what, build)? {
            ClientEvent::Error(error) => Err(SessionError::Refused {
                what,
                error: format!("{:?}", error.code),
            }),
            _ => Ok(()),
        }
    }

    fn keep_waiting(&mut self) -> Result<(), SessionError> {
        if !self.conversation.waiting() && !self.closed() {
            // An event answered at once is applied by the client; `follow` reports it later
            // through the client's state (a held one comes back through `follow`).
            let _ = self.conversation.wait_event()?;
        }
        Ok(())
    }
}
