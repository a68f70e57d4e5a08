//! The guest side: a sans-IO state machine a guest driver embeds (a Linux or Windows driver, or
//! `hvsim`'s simulated guests).
//!
//! # Why sans-IO
//! The same logic must run in a Linux module, a Windows KMDF driver and a test: so
//! [`GuestClient`] never sends or waits. Each request method writes the request into a caller
//! buffer and returns its id; the caller sends it as one VMBus in-band packet with a completion
//! requested and hands every completion's payload to [`GuestClient::on_reply`]. Nothing
//! allocates, nothing panics, every step is bounded.
//!
//! # What it guarantees
//! - Request ids start at 1 (or a given value) and strictly increase; each request is checked
//!   by the host's own parser ([`parse_request`]) before it is handed out, so a correct guest
//!   never earns a `MALFORMED`.
//! - Requests follow the conversation's order (`docs/protocol.md`): `HELLO`, then
//!   `SELECT_VERSION` of the highest version both sides speak, then reports, `READY` only after
//!   an acknowledged report with decode on, `RELEASING` only with a device reported. At most one
//!   `WAIT_EVENT` and one other request are outstanding.
//! - A reply is acted on only if it passes [`parse_reply`] and answers an outstanding request:
//!   same id, the reply kind that request gets (or `ERROR` naming that request's kind), an `ACK`
//!   naming the request's kind, an event newer than the wait's `last_seen`, an error allowance
//!   that never grows, a layout within the host's stated limits and the reported BAR's size. A
//!   refused reply changes nothing.
//!
//! # States
//! [`ClientState::Idle`] → `HELLO_REPLY` → [`ClientState::Hello`] → `ACK` of `SELECT_VERSION` →
//! [`ClientState::Versioned`] → `ACK` of `REPORT_DEVICE` with decode on →
//! [`ClientState::Reported`] → `ACK` of `READY` → [`ClientState::Ready`] → `EVENT`
//! `REGIONS_MAPPED` or `REGIONS_INTERCEPTED` → [`ClientState::Mapped`]. `REGIONS_UNMAPPED` and
//! `DEVICE_HOST_RESTARTED` go back to `Ready`; the `ACK` of `RELEASING` back to `Versioned`;
//! `CHANNEL_CLOSING`, or a counted error that leaves no allowance, to [`ClientState::Closed`]
//! (reopen the channel and start with a new client).
//!
//! # Version 1.1
//! The client selects 1.1 when the host offers it ([`CLIENT_VERSIONS`]) and from then on checks
//! requests and replies with 1.1's rules ([`GuestClient::version`] says which was selected):
//! [`GuestClient::doorbell`] exists only there, an `ACK` of `DOORBELL`, `ERROR`
//! `RATE_LIMITED` (not counted) and the `DOORBELL` event are accepted only there, and every
//! other event must still carry `region` and `value` 0. A `DOORBELL` event changes no state.

use core::num::NonZeroU64;

use super::ack::Ack;
use super::error::EncodeError;
use super::error_reply::{ErrorCode, ErrorInfo};
use super::event::{Event, EventKind};
use super::header::Kind;
use super::hello::HostInfo;
use super::layout::Layout;
use super::limits::{CLIENT_VERSIONS, PROTOCOL_VERSION_1_0, has_doorbells};
use super::placement::GuestRange;
use super::reply::{ReplyBody, ReplyError, parse_reply_in};
use super::report::DeviceReport;
use super::request::{RequestBody, RequestError, encode_request, parse_request_in};

/// Where the conversation is, as far as the guest knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientState {
    /// Nothing answered yet: send `HELLO`.
    Idle,
    /// The host stated its range: select a version.
    Hello,
    /// A version is selected: report.
    Versioned,
    /// The device is reported with decode on: send `READY`.
    Reported,
    /// `READY` acknowledged: wait for an event saying the regions are backed.
    Ready,
    /// The regions are backed (section-backed or intercepted): the guest may use them.
    Mapped,
    /// The host stopped answering or the channel is closing: reopen the channel.
    Closed,
}

/// A request handed out: send `len` bytes of the buffer as one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Sent {
    /// Its id.
    pub request_id: u64,
    /// Its length in bytes.
    pub len: usize,
}

/// What a reply told the guest (after [`GuestClient::on_reply`] applied it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientEvent {
    /// The host's range and limits; `chosen` is the version [`GuestClient::select_version`]
    /// will select (`None`: no common version).
    HelloReply {
        /// What the host stated.
        host: HostInfo,
        /// The highest version both speak.
        chosen: Option<u32>,
    },
    /// A request was acknowledged.
    Acked(Ack),
    /// A layout arrived; [`GuestClient::layout`] has it.
    Layout {
        /// Its generation.
        generation: u64,
    },
    /// An event arrived; send a new `WAIT_EVENT` to hear the next one.
    Event(Event),
    /// The host refused a request.
    Error(ErrorInfo),
}

/// What the client refuses to do, or why a reply was not acted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// The request could not be written (the buffer is too small).
    Encode(EncodeError),
    /// The host stopped answering or the channel is closing.
    Closed,
    /// The request is not allowed in this state.
    NotAllowed {
        /// The request.
        request: Kind,
        /// The state.
        state: ClientState,
    },
    /// Another request (not `WAIT_EVENT`) is outstanding.
    RequestOutstanding {
        /// Its id.
        request_id: u64,
        /// Its kind.
        kind: Kind,
    },
    /// A `WAIT_EVENT` is outstanding.
    WaitOutstanding {
        /// Its id.
        request_id: u64,
    },
    /// The next id would overflow `u64`.
    IdsExhausted,
    /// The host speaks no version this library speaks.
    NoCommonVersion {
        /// The host's lowest version.
        min: u32,
        /// The host's highest version.
        max: u32,
    },
    /// The request would be refused by the host's parser (for example a BAR that is not aligned
    /// to its size); nothing was handed out.
    Refused(RequestError),
    /// The reply is malformed.
    BadReply(ReplyError),
    /// The reply answers no outstanding request.
    Unsolicited {
        /// Its id.
        request_id: u64,
    },
    /// The reply is not the kind the request gets.
    WrongReply {
        /// The kind expected.
        expected: Kind,
        /// The kind received.
        got: Kind,
    },
    /// The `ACK` names another request kind.
    WrongAckedKind {
        /// The request's kind.
        expected: Kind,
        /// The kind acknowledged.
        got: Kind,
    },
    /// The `ERROR` names another request kind.
    WrongErrorKind {
        /// The request's kind.
        expected: Kind,
        /// The kind named.
        got: u16,
    },
    /// The error allowance grew, or a counted error did not lower it.
    BadErrorsLeft {
        /// The allowance known so far.
        known: u32,
        /// The allowance stated.
        got: u32,
    },
    /// The event is not newer than the wait's `last_seen`.
    StaleEvent {
        /// The `last_seen` sent.
        last_seen: u64,
        /// The event's sequence.
        got: u64,
    },
    /// The layout has more regions than the host said it would send.
    TooManyRegions {
        /// `HELLO_REPLY.max_regions`.
        max: u32,
        /// Regions in the layout.
        got: usize,
    },
    /// The layout's BAR size is not the size of the BAR the guest reported.
    BarSizeMismatch {
        /// The reported BAR's size.
        reported: u64,
        /// The layout's.
        got: u64,
    },
    /// The request does not exist in the selected version (`DOORBELL` before 1.1).
    NotInVersion {
        /// The request.
        request: Kind,
        /// The selected version.
        version: Option<u32>,
    },
    /// `DOORBELL` names a region the latest layout does not have.
    NoSuchRegion {
        /// The region named.
        region: u32,
        /// Regions in the latest layout.
        count: usize,
    },
}

impl From<EncodeError> for ClientError {
    fn from(error: EncodeError) -> Self {
        Self::Encode(error)
    }
}

/// A request awaiting its reply, with what its acknowledgement will mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Outstanding {
    request_id: u64,
    body: RequestBody,
}

/// An outstanding `WAIT_EVENT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Wait {
    request_id: u64,
    last_seen: u64,
}

/// The guest's side of one channel open. Create a new one for every open of the channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestClient {
    next_id: u64,
    state: ClientState,
    host: Option<HostInfo>,
    chosen: Option<u32>,
    version: Option<u32>,
    control: Option<Outstanding>,
    wait: Option<Wait>,
    reservation: Option<Option<GuestRange>>,
    device: Option<DeviceReport>,
    last_seen: u64,
    generation: u64,
    layout: Option<Layout>,
    errors_left: Option<u32>,
    last_error: Option<ErrorInfo>,
}

impl Default for GuestClient {
    fn default() -> Self {
        Self::new()
    }
}

impl GuestClient {
    /// A client whose first request id is 1.
    pub const fn new() -> Self {
        Self::starting_at(NonZeroU64::MIN)
    }

    /// A client whose first request id is `first` (a guest that reuses an open channel after
    /// kexec continues above its predecessor's ids).
    pub const fn starting_at(first: NonZeroU64) -> Self {
        Self {
            next_id: first.get(),
            state: ClientState::Idle,
            host: None,
            chosen: None,
            version: None,
            control: None,
            wait: None,
            reservation: None,
            device: None,
            last_seen: 0,
            generation: 0,
            layout: None,
            errors_left: None,
            last_error: None,
        }
    }

    /// The conversation's state.
    pub const fn state(&self) -> ClientState {
        self.state
    }

    /// What the host stated in its latest `HELLO_REPLY`.
    pub const fn host(&self) -> Option<HostInfo> {
        self.host
    }

    /// The selected (acknowledged) version.
    pub const fn version(&self) -> Option<u32> {
        self.version
    }

    /// The id the next request will carry.
    pub const fn next_request_id(&self) -> u64 {
        self.next_id
    }

    /// The highest event sequence seen (0: none).
    pub const fn last_seen(&self) -> u64 {
        self.last_seen
    }

    /// The newest layout generation an `ACK`, `EVENT` or `LAYOUT` stated.
    pub const fn generation(&self) -> u64 {
        self.generation
    }

    /// The latest layout.
    pub const fn layout(&self) -> Option<&Layout> {
        self.layout.as_ref()
    }

    /// Whether the latest layout is as new as the newest generation the host stated.
    pub fn layout_is_current(&self) -> bool {
        self.layout
            .is_some_and(|layout| layout.generation() == self.generation)
    }

    /// Counted errors the host says are left (`None` before it said).
    pub const fn errors_left(&self) -> Option<u32> {
        self.errors_left
    }

    /// The latest `ERROR` received.
    pub const fn last_error(&self) -> Option<ErrorInfo> {
        self.last_error
    }

    /// The acknowledged device report.
    pub const fn device(&self) -> Option<DeviceReport> {
        self.device
    }

    /// The acknowledged reservation report (`Some(None)`: reported that there is none).
    pub const fn reservation(&self) -> Option<Option<GuestRange>> {
        self.reservation
    }

    /// The outstanding request other than `WAIT_EVENT`: its id and kind.
    pub fn outstanding(&self) -> Option<(u64, Kind)> {
        self.control.map(|o| (o.request_id, o.body.kind()))
    }

    /// The outstanding `WAIT_EVENT`'s id.
    pub fn waiting(&self) -> Option<u64> {
        self.wait.map(|w| w.request_id)
    }

    /// `HELLO`: allowed in every state but `Closed` (a new `HELLO` starts the conversation over).
    pub fn hello(&mut self, out: &mut [u8]) -> Result<Sent, ClientError> {
        self.send(out, RequestBody::Hello)
    }

    /// `SELECT_VERSION` of the highest version both sides speak; after `HELLO_REPLY`.
    pub fn select_version(&mut self, out: &mut [u8]) -> Result<Sent, ClientError> {
        self.check_allowed(Kind::SelectVersion)?;
        let version = match (self.chosen, self.host) {
            (Some(version), _) => version,
            (None, Some(host)) => {
                return Err(ClientError::NoCommonVersion {
                    min: host.min_version,
                    max: host.max_version,
                });
            }
            (None, None) => {
                return Err(ClientError::NotAllowed {
                    request: Kind::SelectVersion,
                    state: self.state,
                });
            }
        };
        self.send(out, RequestBody::SelectVersion { version })
    }

    /// `REPORT_RESERVATION` (`None`: the guest made no reservation); once versioned.
    pub fn report_reservation(
        &mut self,
        out: &mut [u8],
        reservation: Option<GuestRange>,
    ) -> Result<Sent, ClientError> {
        self.send(out, RequestBody::ReportReservation(reservation))
    }

    /// `REPORT_DEVICE`; once versioned.
    pub fn report_device(
        &mut self,
        out: &mut [u8],
        report: &DeviceReport,
    ) -> Result<Sent, ClientError> {
        self.send(out, RequestBody::ReportDevice(*report))
    }

    /// `READY`; only after an acknowledged `REPORT_DEVICE` with decode on.
    pub fn ready(&mut self, out: &mut [u8]) -> Result<Sent, ClientError> {
        self.send(out, RequestBody::Ready)
    }

    /// `RELEASING`; only with a device reported with decode on.
    pub fn releasing(&mut self, out: &mut [u8]) -> Result<Sent, ClientError> {
        self.send(out, RequestBody::Releasing)
    }

    /// `GET_LAYOUT`; once versioned.
    pub fn get_layout(&mut self, out: &mut [u8]) -> Result<Sent, ClientError> {
        self.send(out, RequestBody::GetLayout)
    }

    /// `WAIT_EVENT` with the highest sequence seen; once versioned, one at a time.
    pub fn wait_event(&mut self, out: &mut [u8]) -> Result<Sent, ClientError> {
        let last_seen = self.last_seen;
        self.send(out, RequestBody::WaitEvent { last_seen })
    }

    /// `DOORBELL` for `region` with `value`; once version 1.1 is selected. With a layout known,
    /// `region` must be one of its regions (the host refuses others with `MALFORMED`).
    pub fn doorbell(
        &mut self,
        out: &mut [u8],
        region: u32,
        value: u64,
    ) -> Result<Sent, ClientError> {
        if let Some(layout) = self.layout {
            let count = layout.regions().len();
            if usize::try_from(region).map_or(true, |index| index >= count) {
                return Err(ClientError::NoSuchRegion { region, count });
            }
        }
        self.send(out, RequestBody::Doorbell { region, value })
    }

    /// The version requests and replies are checked in: the selected one, 1.0 before.
    fn rules(&self) -> u32 {
        self.version.unwrap_or(PROTOCOL_VERSION_1_0)
    }

    fn check_allowed(&self, kind: Kind) -> Result<(), ClientError> {
        use ClientState as S;
        let state = self.state;
        if state == S::Closed {
            return Err(ClientError::Closed);
        }
        let allowed = match kind {
            Kind::Hello => true,
            Kind::SelectVersion => state == S::Hello,
            Kind::ReportReservation | Kind::ReportDevice | Kind::GetLayout | Kind::WaitEvent => {
                !matches!(state, S::Idle | S::Hello)
            }
            Kind::Ready => state == S::Reported,
            Kind::Releasing => matches!(state, S::Reported | S::Ready | S::Mapped),
            Kind::Doorbell => {
                if !self.version.is_some_and(has_doorbells) {
                    return Err(ClientError::NotInVersion {
                        request: kind,
                        version: self.version,
                    });
                }
                !matches!(state, S::Idle | S::Hello)
            }
            Kind::HelloReply | Kind::Ack | Kind::Layout | Kind::Event | Kind::Error => false,
        };
        if !allowed {
            return Err(ClientError::NotAllowed {
                request: kind,
                state,
            });
        }
        if kind == Kind::WaitEvent {
            if let Some(wait) = self.wait {
                return Err(ClientError::WaitOutstanding {
                    request_id: wait.request_id,
                });
            }
        } else if let Some(control) = self.control {
            return Err(ClientError::RequestOutstanding {
                request_id: control.request_id,
                kind: control.body.kind(),
            });
        }
        Ok(())
    }

    fn send(&mut self, out: &mut [u8], body: RequestBody) -> Result<Sent, ClientError> {
        self.check_allowed(body.kind())?;
        let request_id = self.next_id;
        let next_id = request_id.checked_add(1).ok_or(ClientError::IdsExhausted)?;
        let len = encode_request(out, request_id, &body)?;
        let written = out
            .get(..len)
            .ok_or(ClientError::Encode(EncodeError::OutputTooSmall {
                needed: len,
                got: out.len(),
            }))?;
        parse_request_in(written, self.rules()).map_err(ClientError::Refused)?;
        self.next_id = next_id;
        if let RequestBody::WaitEvent { last_seen } = body {
            self.wait = Some(Wait {
                request_id,
                last_seen,
            });
        } else {
            self.control = Some(Outstanding { request_id, body });
        }
        Ok(Sent { request_id, len })
    }

    /// Takes one completion's payload. Checks it (module docs) and, only if it passes, applies
    /// it and forgets the request it answers; a refused reply changes nothing.
    pub fn on_reply(&mut self, bytes: &[u8]) -> Result<ClientEvent, ClientError> {
        let reply = parse_reply_in(bytes, self.rules()).map_err(ClientError::BadReply)?;
        let id = reply.request_id;
        if let Some(wait) = self.wait.filter(|w| w.request_id == id) {
            let event = self.check_wait_reply(wait, &reply.body)?;
            self.wait = None;
            return Ok(self.apply(event));
        }
        if let Some(control) = self.control.filter(|c| c.request_id == id) {
            let event = self.check_control_reply(control, &reply.body)?;
            self.control = None;
            if let ReplyBody::Layout(layout) = reply.body {
                self.layout = Some(layout);
            }
            return Ok(self.apply_control(control, event));
        }
        Err(ClientError::Unsolicited { request_id: id })
    }

    fn check_wait_reply(&self, wait: Wait, body: &ReplyBody) -> Result<ClientEvent, ClientError> {
        match body {
            ReplyBody::Event(event) if event.sequence > wait.last_seen => {
                Ok(ClientEvent::Event(*event))
            }
            ReplyBody::Event(event) => Err(ClientError::StaleEvent {
                last_seen: wait.last_seen,
                got: event.sequence,
            }),
            ReplyBody::Error(error) => self.check_error(Kind::WaitEvent, error),
            other => Err(ClientError::WrongReply {
                expected: Kind::Event,
                got: other.kind(),
            }),
        }
    }

    fn check_control_reply(
        &self,
        control: Outstanding,
        body: &ReplyBody,
    ) -> Result<ClientEvent, ClientError> {
        let kind = control.body.kind();
        let expected = kind.reply_kind().unwrap_or(Kind::Error);
        match body {
            ReplyBody::Error(error) => self.check_error(kind, error),
            _ if body.kind() != expected => Err(ClientError::WrongReply {
                expected,
                got: body.kind(),
            }),
            ReplyBody::Ack(ack) if ack.acked_kind != kind => Err(ClientError::WrongAckedKind {
                expected: kind,
                got: ack.acked_kind,
            }),
            ReplyBody::Ack(ack) => Ok(ClientEvent::Acked(*ack)),
            ReplyBody::HelloReply(host) => Ok(ClientEvent::HelloReply {
                host: *host,
                chosen: CLIENT_VERSIONS
                    .iter()
                    .rev()
                    .copied()
                    .find(|&version| host.supports(version)),
            }),
            ReplyBody::Layout(layout) => {
                self.check_layout(layout)?;
                Ok(ClientEvent::Layout {
                    generation: layout.generation(),
                })
            }
            ReplyBody::Event(event) => Ok(ClientEvent::Event(*event)),
        }
    }

    fn check_error(&self, kind: Kind, error: &ErrorInfo) -> Result<ClientEvent, ClientError> {
        if error.request_kind != kind.to_u16() {
            return Err(ClientError::WrongErrorKind {
                expected: kind,
                got: error.request_kind,
            });
        }
        if let Some(known) = self.errors_left {
            let lowered = error.errors_left < known || known == 0;
            let fine = error.errors_left <= known && (!error.code.counted() || lowered);
            if !fine {
                return Err(ClientError::BadErrorsLeft {
                    known,
                    got: error.errors_left,
                });
            }
        }
        Ok(ClientEvent::Error(*error))
    }

    fn check_layout(&self, layout: &Layout) -> Result<(), ClientError> {
        if let Some(host) = self.host {
            let max = host.max_regions;
            let fits = u32::try_from(layout.regions().len()).is_ok_and(|count| count <= max);
            if !fits {
                return Err(ClientError::TooManyRegions {
                    max,
                    got: layout.regions().len(),
                });
            }
        }
        if let Some(device) = self.device
            && device.bar.size != layout.bar_size()
        {
            return Err(ClientError::BarSizeMismatch {
                reported: device.bar.size,
                got: layout.bar_size(),
            });
        }
        Ok(())
    }

    fn apply_control(&mut self, control: Outstanding, event: ClientEvent) -> ClientEvent {
        if let (ClientEvent::Acked(_), body) = (&event, control.body) {
            match body {
                RequestBody::SelectVersion { version } => {
                    self.version = Some(version);
                    self.state = ClientState::Versioned;
                }
                RequestBody::ReportReservation(reservation) => {
                    self.reservation = Some(reservation);
                }
                RequestBody::ReportDevice(report) => {
                    self.device = Some(report);
                    self.state = if report.bar.memory_decode {
                        ClientState::Reported
                    } else {
                        ClientState::Versioned
                    };
                }
                RequestBody::Ready => self.state = ClientState::Ready,
                RequestBody::Releasing => {
                    self.device = None;
                    self.state = ClientState::Versioned;
                }
                RequestBody::Hello
                | RequestBody::GetLayout
                | RequestBody::WaitEvent { .. }
                | RequestBody::Doorbell { .. } => {}
            }
        }
        self.apply(event)
    }

    fn apply(&mut self, event: ClientEvent) -> ClientEvent {
        match event {
            ClientEvent::HelloReply { host, chosen } => {
                self.host = Some(host);
                self.chosen = chosen;
                self.version = None;
                self.reservation = None;
                self.device = None;
                self.layout = None;
                self.errors_left = Some(
                    self.errors_left
                        .map_or(host.error_limit, |left| left.min(host.error_limit)),
                );
                self.state = ClientState::Hello;
            }
            ClientEvent::Acked(ack) => self.generation = ack.generation,
            ClientEvent::Layout { generation } => self.generation = generation,
            ClientEvent::Event(event) => {
                self.last_seen = event.sequence;
                self.generation = event.generation;
                self.state = match (event.kind, self.state) {
                    (
                        EventKind::RegionsMapped | EventKind::RegionsIntercepted,
                        ClientState::Ready | ClientState::Mapped,
                    ) => ClientState::Mapped,
                    (
                        EventKind::RegionsUnmapped | EventKind::DeviceHostRestarted,
                        ClientState::Mapped,
                    ) => ClientState::Ready,
                    (_, state) => state,
                };
            }
            ClientEvent::Error(error) => {
                self.last_error = Some(error);
                self.errors_left = Some(error.errors_left);
                let exhausted = error.code.counted() && error.errors_left == 0;
                if error.code == ErrorCode::ChannelClosing || exhausted {
                    self.state = ClientState::Closed;
                }
            }
        }
        event
    }

    /// Forgets every outstanding request (for example when the channel was closed under them);
    /// replies to them are then refused as unsolicited.
    pub fn abandon_outstanding(&mut self) {
        self.control = None;
        self.wait = None;
    }
}
