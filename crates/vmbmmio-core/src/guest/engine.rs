//! The host engine: one guest packet in, the reply (or "hold it") and the device host's event
//! out. Sans-IO: no KMCL, no lock, no allocation; the caller ([`super::shared`]) owns the
//! packet, the lock and the device host's queue.
//!
//! # One packet ([`Engine::packet`])
//! 1. Counted (`guest_packets`), then refused with `CHANNEL_CLOSING` at once if the channel is
//!    suspending or the host stopped answering (nothing else changes).
//! 2. Parsed in place by `vmbmmio_proto::guest::parse_request_after` (the document's check
//!    order, `REPLAYED` against the last accepted id).
//! 3. The conversation's rules, in this order: the version (`UNSUPPORTED_VERSION`), the order
//!    (`OUT_OF_ORDER` before a version is selected, `READY` before a decoded device report),
//!    the pairing (`NOT_PAIRED`), the session's limits (`BAD_PLACEMENT`: the BAR's size is the
//!    session's, the BAR and the reservation do not partly overlap), then `BUSY` (a `WAIT_EVENT`
//!    is held, or the device host's queue has no room for the report).
//! 4. A request that changes what the guest reported is committed only once the device host's
//!    event is queued ([`Reports`] is copied, changed, pushed, then stored): a refused request
//!    changes nothing, and nothing reaches the device host that the guest was refused.
//! 5. A counted error lowers the allowance; at zero the host stops answering, completes a held
//!    `WAIT_EVENT` with `CHANNEL_CLOSING` and tells the device host (`GUEST_STOPPED`).
//!
//! # Other inputs
//! The device host's REPORT_MAPPING ([`Engine::mapping`]) changes a region's state, bumps the
//! layout generation and records a guest `EVENT`: `REGIONS_UNMAPPED` when the regions stop being
//! all backed; `REGIONS_MAPPED` or `REGIONS_INTERCEPTED` when they are all backed and differ from
//! what the current conversation was last told ([`Conversation::announced`]; regions unbacked
//! before and after record none).
//! The channel's state callbacks reset the conversation ([`Engine::opened`],
//! [`Engine::closed`]) and complete the held `WAIT_EVENT` ([`Engine::suspend`]).
//!
//! # Which reports may say "backed"
//! The engine remembers the sequence of the newest device-host event it queued
//! ([`Engine::mapping_epoch`]): every event it queues (`GUEST_REPORT`, `GUEST_READY`,
//! `GUEST_RELEASING`, `GUEST_RESET`, `GUEST_STOPPED`, `CHANNEL_CLOSED`) may change what must be
//! mapped. A version-2 REPORT_MAPPING names the newest event the device host had applied when
//! it decided the mapping (`acted_on`); one older than the epoch (the device host decided for
//! an older placement or conversation) still updates the regions' states, which are the truth
//! about HDV, but is not announced as `REGIONS_MAPPED` or `REGIONS_INTERCEPTED`: the guest
//! would otherwise use memory that is not backed for its placement. `REGIONS_UNMAPPED` is
//! announced whatever the report answers (telling a guest too early that memory is gone is
//! safe). A version-1 report (`ActedOn::Unknown`, an older device host) keeps the weaker
//! meaning version 1 always had: it counts as current. A terminal event lost to a full queue
//! moves the epoch past every queued event, so nothing is announced until the device host
//! acts on a later one.
//!
//! Every path is a bounded number of steps over fixed arrays; nothing panics.

use vmbmmio_proto::guest::{
    DeviceReport, ErrorCode, Event, EventKind, GuestRange, HostInfo, Kind, PROTOCOL_VERSION_1_0,
    PlacementError, Request, RequestBody, RequestError, RequestFault, check_placement,
    classify_reservation, encode_ack, encode_error, encode_event_in, encode_hello_reply,
    encode_layout, encode_refusal, parse_request_after_in,
};
use vmbmmio_proto::ioctl::{
    ActedOn, EVENT_FLAG_DEVICE, EVENT_FLAG_RESERVATION, GuestEventKind, GuestSnapshot, MappingState,
};

use super::context::{Backing, SessionContext};
use super::conversation::{Conversation, HeldWait, Reports};
use super::limits::{HELD_REPLY_SIZE, TERMINAL_HEADROOM};
use crate::consumers::TokenBucket;
use crate::guest_events::{CAPACITY_U64, GuestEventQueue, PushError, Wake};

/// The first protocol version with doorbells (1.1).
pub const DOORBELL_VERSION: u32 = vmbmmio_proto::guest::PROTOCOL_VERSION_1_1;

/// What the host states in `HELLO_REPLY`: versions 1.0 to 1.1.
const HOST: HostInfo = HostInfo::V1_1;

/// What to do with the packet just processed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Complete it now with the first this-many bytes of the output buffer.
    Reply(usize),
    /// Keep it (a `WAIT_EVENT` with nothing newer): hold its completion until
    /// [`Engine::mapping`], [`Engine::suspend`], a new `HELLO` or the host's stop hands back a
    /// [`HeldReply`].
    Hold,
}

/// The reply a held `WAIT_EVENT` is to be completed with (`EVENT` or `ERROR`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldReply {
    bytes: [u8; HELD_REPLY_SIZE],
    len: usize,
}

impl HeldReply {
    /// The completion payload.
    pub fn bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }
}

/// What a guest `DOORBELL` (protocol 1.1) asks of the session's consumers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestDoorbell {
    /// Admitted by the guest's rate limit: every consumer of `region` hears `value`.
    Rang {
        /// The region's id.
        region: u32,
        /// The guest's value.
        value: u64,
    },
    /// Refused by the guest's rate limit (answered `RATE_LIMITED`; counted).
    Refused,
}

/// Everything one packet led to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "the packet must be completed or held, the held one completed, the wake handed on"]
pub struct Outcome {
    /// The packet's fate.
    pub action: Action,
    /// Complete the held `WAIT_EVENT` with this (a new `HELLO`, the host's stop).
    pub held: Option<HeldReply>,
    /// A pending WAIT_GUEST_EVENT of the device host to wake (after the lock is released).
    pub wake: Option<Wake>,
    /// A guest `DOORBELL` for the session's consumers.
    pub doorbell: Option<GuestDoorbell>,
}

/// The engine's counters over the whole session (every channel open).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineCounters {
    /// Packets received from the guest.
    pub guest_packets: u64,
    /// Packets answered with `ERROR` (every code).
    pub protocol_errors: u64,
    /// Of those, counted against the allowance.
    pub counted_errors: u64,
    /// Packets answered with their reply (a held `WAIT_EVENT` included).
    pub accepted: u64,
    /// Terminal device-host events (`GUEST_STOPPED`, `CHANNEL_CLOSED`) lost to a full queue.
    pub events_lost: u64,
    /// Impossible failures (an encoder or the queue refusing what the engine checked): 0, or a
    /// bug. The fuzz target asserts it stays 0.
    pub internal_errors: u64,
    /// Guest `DOORBELL`s admitted (1.1).
    pub doorbells_from_guest: u64,
    /// Guest `DOORBELL`s refused by the guest's rate limit (answered `RATE_LIMITED`).
    pub doorbells_refused: u64,
    /// Consumer rings the guest was told of (RING_GUEST admitted).
    pub doorbells_to_guest: u64,
    /// Of those, merged into a `DOORBELL` event the guest had not been sent yet.
    pub doorbells_coalesced: u64,
}

/// A request's effect, once its rules passed.
struct Step {
    action: Action,
    held: Option<HeldReply>,
    wake: Option<Wake>,
    doorbell: Option<GuestDoorbell>,
}

impl Step {
    const fn reply(len: usize) -> Self {
        Self {
            action: Action::Reply(len),
            held: None,
            wake: None,
            doorbell: None,
        }
    }
}

/// The host side of one session's guest conversation.
#[derive(Clone, Debug)]
pub struct Engine {
    context: SessionContext,
    /// Layout generation: 1 at the start, +1 with every change of a region's state.
    generation: u64,
    conversation: Conversation,
    counters: EngineCounters,
    /// Sequence of the newest device-host event queued (0: none); past the newest queued one
    /// after a terminal event was lost (module docs).
    mapping_epoch: u64,
    /// The time of the packet being processed ([`Self::packet_at`]).
    now: u64,
    /// The guest's `DOORBELL` rate limit (protocol 1.1), over the whole session.
    doorbell_bucket: TokenBucket,
}

impl Engine {
    /// The engine of a session laid out as `context`; its channel is not open yet.
    pub const fn new(context: SessionContext) -> Self {
        Self {
            context,
            generation: 1,
            conversation: Conversation::new(false),
            counters: EngineCounters {
                guest_packets: 0,
                protocol_errors: 0,
                counted_errors: 0,
                accepted: 0,
                events_lost: 0,
                internal_errors: 0,
                doorbells_from_guest: 0,
                doorbells_refused: 0,
                doorbells_to_guest: 0,
                doorbells_coalesced: 0,
            },
            mapping_epoch: 0,
            now: 0,
            doorbell_bucket: TokenBucket::new(0),
        }
    }

    /// The oldest `acted_on` a REPORT_MAPPING may name to be announced: the sequence of the
    /// newest device-host event queued (module docs).
    pub const fn mapping_epoch(&self) -> u64 {
        self.mapping_epoch
    }

    /// Whether a report answering `acted_on` was decided after every event queued so far.
    pub const fn is_current(&self, acted_on: ActedOn) -> bool {
        match acted_on {
            ActedOn::Unknown => true,
            ActedOn::Sequence(sequence) => sequence >= self.mapping_epoch,
        }
    }

    /// The current conversation.
    pub const fn conversation(&self) -> &Conversation {
        &self.conversation
    }

    /// The session as the engine sees it.
    pub const fn context(&self) -> &SessionContext {
        &self.context
    }

    /// The counters.
    pub const fn counters(&self) -> EngineCounters {
        self.counters
    }

    /// The layout generation.
    pub const fn generation(&self) -> u64 {
        self.generation
    }

    /// One guest packet. `out` receives the reply; it must hold
    /// [`LARGEST_MESSAGE`](super::limits::LARGEST_MESSAGE) bytes (a shorter one gets an empty
    /// completion where the reply does not fit, counted in `internal_errors`).
    pub fn packet(&mut self, queue: &mut GuestEventQueue, bytes: &[u8], out: &mut [u8]) -> Outcome {
        self.packet_at(queue, bytes, out, 0)
    }

    /// [`Self::packet`] at time `now` (the platform's clock, 100 ns): the time the guest's
    /// `DOORBELL` rate limit counts with.
    pub fn packet_at(
        &mut self,
        queue: &mut GuestEventQueue,
        bytes: &[u8],
        out: &mut [u8],
        now: u64,
    ) -> Outcome {
        self.now = now;
        self.counters.guest_packets = self.counters.guest_packets.saturating_add(1);
        let conversation = &mut self.conversation;
        conversation.packets = conversation.packets.saturating_add(1);
        if !conversation.open || conversation.closing || conversation.stopped {
            let (received_kind, request_id) = vmbmmio_proto::guest::received(bytes);
            let refusal = RequestError {
                received_kind,
                request_id,
                fault: RequestFault::ChannelClosing,
            };
            return self.refuse(queue, &refusal, out);
        }
        // Before SELECT_VERSION the conversation speaks 1.0 (no DOORBELL).
        let version = conversation.version.unwrap_or(PROTOCOL_VERSION_1_0);
        let request = match parse_request_after_in(bytes, conversation.last_accepted, version) {
            Ok(request) => request,
            Err(refusal) => return self.refuse(queue, &refusal, out),
        };
        match self.apply(queue, &request, out) {
            Ok(step) => {
                self.conversation.last_accepted = request.request_id;
                self.counters.accepted = self.counters.accepted.saturating_add(1);
                Outcome {
                    action: step.action,
                    held: step.held,
                    wake: step.wake,
                    doorbell: step.doorbell,
                }
            }
            Err(fault) => {
                let mut outcome = self.refuse(queue, &request.refuse(fault), out);
                if fault == RequestFault::RateLimited {
                    outcome.doorbell = Some(GuestDoorbell::Refused);
                }
                outcome
            }
        }
    }

    /// The device host reported region `index` as `state`, decided after applying its events
    /// up to `acted_on` (REPORT_MAPPING, already checked against the session). The region's
    /// state follows in any case. The guest hears `REGIONS_UNMAPPED` from any report that makes
    /// the regions stop being all backed; `REGIONS_MAPPED`/`REGIONS_INTERCEPTED` only from a
    /// current report ([`Self::is_current`]) and when the regions as a whole differ from what
    /// the conversation was last told. The held `WAIT_EVENT`'s completion, if that made an
    /// event it waits for.
    pub fn mapping(
        &mut self,
        index: usize,
        state: MappingState,
        acted_on: ActedOn,
    ) -> Option<HeldReply> {
        let before = self.context.backing();
        if self.context.set_state(index, state) {
            self.generation = self.generation.saturating_add(1);
        }
        let after = self.context.backing();
        let kind = match after {
            // The regions stopped being all backed (or the guest was told they were): said
            // whatever the report answers, as before `acted_on` existed.
            Backing::Incomplete
                if before != Backing::Incomplete
                    || self.conversation.announced != Backing::Incomplete =>
            {
                EventKind::RegionsUnmapped
            }
            Backing::Incomplete => return None,
            _ if after == self.conversation.announced || !self.is_current(acted_on) => {
                return None;
            }
            Backing::Mapped => EventKind::RegionsMapped,
            Backing::Intercepted => EventKind::RegionsIntercepted,
        };
        self.announce(after, kind)
    }

    /// Whether the guest can hear a consumer's doorbell: the channel is open, answered, and
    /// the conversation selected protocol 1.1 or later.
    pub fn doorbells_supported(&self) -> bool {
        let conversation = &self.conversation;
        conversation.open
            && !conversation.stopped
            && conversation
                .version
                .is_some_and(|version| version >= DOORBELL_VERSION)
    }

    /// A consumer rang the guest for `region` with `value` (RING_GUEST, admitted): the
    /// conversation's `DOORBELL` event for the region is updated in place while the guest has
    /// not been sent it (coalesced), else a new one is recorded; a held `WAIT_EVENT` waiting
    /// for it is answered.
    pub fn doorbell_event(&mut self, region: u32, value: u64) -> Option<HeldReply> {
        if !self.doorbells_supported() {
            return None;
        }
        self.counters.doorbells_to_guest = self.counters.doorbells_to_guest.saturating_add(1);
        if self
            .conversation
            .events
            .coalesce_doorbell(region, value, self.generation)
        {
            self.counters.doorbells_coalesced = self.counters.doorbells_coalesced.saturating_add(1);
            // The event was recorded before: a held wait it could answer was answered then.
            return None;
        }
        let conversation = &mut self.conversation;
        let Some(event) = conversation
            .events
            .record_doorbell(region, value, self.generation)
        else {
            self.counters.internal_errors = self.counters.internal_errors.saturating_add(1);
            return None;
        };
        let wait = conversation
            .wait
            .filter(|wait| event.sequence > wait.last_seen)?;
        conversation.wait = None;
        self.held_event(wait, &event)
    }

    /// The guest opened the channel: a fresh conversation and allowance.
    pub fn opened(&mut self) {
        self.conversation = Conversation::new(true);
    }

    /// The channel started (again, after a pause): packets are answered again.
    pub fn started(&mut self) {
        self.conversation.closing = false;
    }

    /// The channel is suspending: later packets (if any) get `CHANNEL_CLOSING`; the held
    /// `WAIT_EVENT` must be completed now, with `CHANNEL_CLOSING`.
    pub fn suspend(&mut self) -> Option<HeldReply> {
        self.conversation.closing = true;
        self.release_wait(ErrorCode::ChannelClosing)
    }

    /// The channel closed: the conversation is forgotten and the device host told
    /// (`CHANNEL_CLOSED`, if the channel was open). Returns the held `WAIT_EVENT`'s completion
    /// (none in practice: `suspend` completed it) and the device host's wake.
    pub fn closed(&mut self, queue: &mut GuestEventQueue) -> (Option<HeldReply>, Option<Wake>) {
        let held = self.release_wait(ErrorCode::ChannelClosing);
        let was_open = self.conversation.open;
        let snapshot = self.conversation.snapshot(None, &Reports::default());
        self.conversation = Conversation::new(false);
        let wake = if was_open {
            self.push_terminal(queue, GuestEventKind::ChannelClosed, snapshot)
        } else {
            None
        };
        (held, wake)
    }

    fn apply(
        &mut self,
        queue: &mut GuestEventQueue,
        request: &Request,
        out: &mut [u8],
    ) -> Result<Step, RequestFault> {
        let id = request.request_id;
        let conversation = &self.conversation;
        let reports = conversation.reports;
        match request.body {
            RequestBody::Hello => Ok(self.hello(queue, id, out)?),
            RequestBody::SelectVersion { version } => {
                if !HOST.supports(version) {
                    return Err(RequestFault::UnsupportedVersion { version });
                }
                self.conversation.version = Some(version);
                Ok(Step::reply(self.ack(out, id, Kind::SelectVersion)))
            }
            _ if conversation.version.is_none() => Err(RequestFault::OutOfOrder),
            RequestBody::ReportReservation(reservation) => {
                if let (Some(range), Some(device)) = (reservation, reports.device)
                    && device.bar.memory_decode
                {
                    overlap(Some(range), &device)?;
                }
                let next = Reports {
                    reservation: Some(reservation),
                    ..reports
                };
                self.commit(
                    queue,
                    out,
                    id,
                    Kind::ReportReservation,
                    next,
                    report_event(EVENT_FLAG_RESERVATION),
                )
            }
            RequestBody::ReportDevice(device) => {
                if device.instance != self.context.instance() {
                    return Err(RequestFault::NotPaired);
                }
                check_placement(&device.bar, self.context.bar_size())
                    .map_err(RequestFault::BadPlacement)?;
                if device.bar.memory_decode {
                    overlap(reports.reservation(), &device)?;
                }
                let next = Reports {
                    device: Some(device),
                    ready: false,
                    releasing: false,
                    ..reports
                };
                self.commit(
                    queue,
                    out,
                    id,
                    Kind::ReportDevice,
                    next,
                    report_event(EVENT_FLAG_DEVICE),
                )
            }
            RequestBody::Ready => {
                let decoded = reports
                    .device
                    .is_some_and(|device| device.bar.memory_decode && !reports.releasing);
                if !decoded {
                    return Err(RequestFault::OutOfOrder);
                }
                if reports.ready {
                    return Ok(Step::reply(self.ack(out, id, Kind::Ready)));
                }
                let next = Reports {
                    ready: true,
                    ..reports
                };
                self.commit(
                    queue,
                    out,
                    id,
                    Kind::Ready,
                    next,
                    Some((GuestEventKind::GuestReady, 0)),
                )
            }
            RequestBody::Releasing => {
                if reports.device.is_none() || reports.releasing {
                    return Ok(Step::reply(self.ack(out, id, Kind::Releasing)));
                }
                let next = Reports {
                    ready: false,
                    releasing: true,
                    ..reports
                };
                self.commit(
                    queue,
                    out,
                    id,
                    Kind::Releasing,
                    next,
                    Some((GuestEventKind::GuestReleasing, 0)),
                )
            }
            RequestBody::GetLayout => {
                let len = encode_layout(
                    out,
                    id,
                    self.generation,
                    self.context.bar_size(),
                    self.context.regions(),
                );
                Ok(Step::reply(self.written(len)))
            }
            // Only parsed in a 1.1 conversation (a 1.0 one gets UNKNOWN_KIND from the parser).
            RequestBody::Doorbell { region, value } => self.guest_doorbell(out, id, region, value),
            RequestBody::WaitEvent { last_seen } => {
                if conversation.wait.is_some() {
                    return Err(RequestFault::Busy);
                }
                match conversation.events.first_after(last_seen) {
                    Some(event) => {
                        let len = self.encode_event(out, id, &event);
                        Ok(Step::reply(self.written(len)))
                    }
                    None => {
                        self.conversation.wait = Some(HeldWait {
                            request_id: id,
                            last_seen,
                        });
                        Ok(Step {
                            action: Action::Hold,
                            held: None,
                            wake: None,
                            doorbell: None,
                        })
                    }
                }
            }
        }
    }

    /// `HELLO`: the device host hears `GUEST_RESET` if there was anything to forget (refused
    /// with `BUSY` if it has no room); the held `WAIT_EVENT` is completed with `BUSY` (the
    /// guest that sent it may be gone: a kexec that reuses the open channel).
    fn hello(
        &mut self,
        queue: &mut GuestEventQueue,
        id: u64,
        out: &mut [u8],
    ) -> Result<Step, RequestFault> {
        let wake = if self.conversation.has_state() {
            let snapshot = self.conversation.snapshot(None, &Reports::default());
            self.push_report(queue, GuestEventKind::GuestReset, 0, snapshot)?
        } else {
            None
        };
        self.conversation.restart();
        let held = self.release_wait(ErrorCode::Busy);
        let len = encode_hello_reply(out, id, &HOST);
        Ok(Step {
            action: Action::Reply(self.written(len)),
            held,
            wake,
            doorbell: None,
        })
    }

    /// Pushes the device host's event for `next`, then commits it and acknowledges.
    fn commit(
        &mut self,
        queue: &mut GuestEventQueue,
        out: &mut [u8],
        id: u64,
        kind: Kind,
        next: Reports,
        event: Option<(GuestEventKind, u32)>,
    ) -> Result<Step, RequestFault> {
        let wake = match event {
            Some((event, flags)) => {
                let snapshot = self.conversation.snapshot(self.conversation.version, &next);
                self.push_report(queue, event, flags, snapshot)?
            }
            None => None,
        };
        self.conversation.reports = next;
        Ok(Step {
            action: Action::Reply(self.ack(out, id, kind)),
            held: None,
            wake,
            doorbell: None,
        })
    }

    fn ack(&mut self, out: &mut [u8], id: u64, kind: Kind) -> usize {
        let len = encode_ack(out, id, kind, self.generation);
        self.written(len)
    }

    /// A reply's length, or 0 (an empty completion) if the encoder refused.
    fn written<E>(&mut self, len: Result<usize, E>) -> usize {
        len.unwrap_or_else(|_| {
            self.counters.internal_errors = self.counters.internal_errors.saturating_add(1);
            0
        })
    }

    /// An event the guest may refuse to cause: refused with `BUSY` unless the queue keeps
    /// [`TERMINAL_HEADROOM`] slots free after it.
    fn push_report(
        &mut self,
        queue: &mut GuestEventQueue,
        kind: GuestEventKind,
        flags: u32,
        snapshot: GuestSnapshot,
    ) -> Result<Option<Wake>, RequestFault> {
        if queue.is_closed() {
            return Err(RequestFault::ChannelClosing);
        }
        let capacity = CAPACITY_U64;
        if queue.len().saturating_add(TERMINAL_HEADROOM) >= capacity {
            return Err(RequestFault::Busy);
        }
        match queue.push(kind, flags, snapshot) {
            Ok((sequence, wake)) => {
                self.mapping_epoch = sequence;
                Ok(wake)
            }
            Err(PushError::Full) => Err(RequestFault::Busy),
            Err(PushError::Closed) => Err(RequestFault::ChannelClosing),
            Err(PushError::Invalid(_) | PushError::Exhausted) => {
                self.counters.internal_errors = self.counters.internal_errors.saturating_add(1);
                Err(RequestFault::Busy)
            }
        }
    }

    /// An event that happens whatever the queue holds (the host stopped answering, the channel
    /// closed); a full queue loses it (counted).
    fn push_terminal(
        &mut self,
        queue: &mut GuestEventQueue,
        kind: GuestEventKind,
        snapshot: GuestSnapshot,
    ) -> Option<Wake> {
        match queue.push(kind, 0, snapshot) {
            Ok((sequence, wake)) => {
                self.mapping_epoch = sequence;
                wake
            }
            Err(PushError::Closed) => None,
            Err(PushError::Full) => {
                self.counters.events_lost = self.counters.events_lost.saturating_add(1);
                // The device host never hears of it: no report it makes before a later event
                // may be announced (module docs).
                self.mapping_epoch = queue.newest().saturating_add(1);
                None
            }
            Err(PushError::Invalid(_) | PushError::Exhausted) => {
                self.counters.internal_errors = self.counters.internal_errors.saturating_add(1);
                None
            }
        }
    }

    /// Answers a refused packet with `ERROR`; a counted error lowers the allowance, and the
    /// last one stops the conversation.
    fn refuse(
        &mut self,
        queue: &mut GuestEventQueue,
        refusal: &RequestError,
        out: &mut [u8],
    ) -> Outcome {
        self.counters.protocol_errors = self.counters.protocol_errors.saturating_add(1);
        let mut held = None;
        let mut wake = None;
        if refusal.counted() {
            self.counters.counted_errors = self.counters.counted_errors.saturating_add(1);
            let conversation = &mut self.conversation;
            conversation.counted_errors = conversation.counted_errors.saturating_add(1);
            conversation.errors_left = conversation.errors_left.saturating_sub(1);
            if conversation.errors_left == 0 && !conversation.stopped {
                conversation.stopped = true;
                held = self.release_wait(ErrorCode::ChannelClosing);
                let snapshot = self
                    .conversation
                    .snapshot(self.conversation.version, &self.conversation.reports);
                wake = self.push_terminal(queue, GuestEventKind::GuestStopped, snapshot);
            }
        }
        let len = encode_refusal(out, refusal, self.errors_left());
        Outcome {
            action: Action::Reply(self.written(len)),
            held,
            wake,
            doorbell: None,
        }
    }

    /// The allowance the guest is told: 0 once the host stopped answering.
    fn errors_left(&self) -> u32 {
        if self.conversation.stopped {
            0
        } else {
            self.conversation.errors_left
        }
    }

    /// Records the `REGIONS_*` event `kind` for the regions now `backing` (not while the
    /// channel is closed or once the host stopped answering; then the guest was told nothing
    /// and [`Conversation::announced`] stays).
    fn announce(&mut self, backing: Backing, kind: EventKind) -> Option<HeldReply> {
        let conversation = &self.conversation;
        if !conversation.open || conversation.stopped {
            return None;
        }
        self.conversation.announced = backing;
        self.record(kind)
    }

    /// Records a guest `EVENT` (not once the host stopped answering) and completes the held
    /// `WAIT_EVENT` with it if it is newer than the wait's `last_seen`.
    fn record(&mut self, kind: EventKind) -> Option<HeldReply> {
        let conversation = &mut self.conversation;
        if !conversation.open || conversation.stopped {
            return None;
        }
        let Some(event) = conversation.events.record(kind, self.generation) else {
            self.counters.internal_errors = self.counters.internal_errors.saturating_add(1);
            return None;
        };
        let wait = conversation
            .wait
            .filter(|wait| event.sequence > wait.last_seen)?;
        conversation.wait = None;
        self.held_event(wait, &event)
    }

    fn held_event(&mut self, wait: HeldWait, event: &Event) -> Option<HeldReply> {
        let mut reply = HeldReply {
            bytes: [0; HELD_REPLY_SIZE],
            len: 0,
        };
        let len = self.encode_event(&mut reply.bytes, wait.request_id, event);
        reply.len = self.written(len);
        Some(reply)
    }

    /// `EVENT` in the conversation's version; the guest has now been sent `event` (a
    /// `DOORBELL` event is no longer coalesced into).
    fn encode_event(
        &mut self,
        out: &mut [u8],
        request_id: u64,
        event: &Event,
    ) -> Result<usize, vmbmmio_proto::guest::EncodeError> {
        let version = self.conversation.version.unwrap_or(PROTOCOL_VERSION_1_0);
        self.conversation.events.mark_sent(event.sequence);
        encode_event_in(out, request_id, event, version)
    }

    /// A guest `DOORBELL` (1.1): the region must be the session's, then the guest's rate
    /// limit; admitted, it is `ACK`ed and handed to the session's consumers
    /// ([`GuestDoorbell::Rang`]).
    fn guest_doorbell(
        &mut self,
        out: &mut [u8],
        id: u64,
        region: u32,
        value: u64,
    ) -> Result<Step, RequestFault> {
        let count = u32::try_from(self.context.regions().len()).unwrap_or(u32::MAX);
        if region >= count {
            return Err(RequestFault::BadDoorbellRegion {
                region,
                limit: count,
            });
        }
        if !self.doorbell_bucket.try_take(self.now) {
            self.counters.doorbells_refused = self.counters.doorbells_refused.saturating_add(1);
            return Err(RequestFault::RateLimited);
        }
        self.counters.doorbells_from_guest = self.counters.doorbells_from_guest.saturating_add(1);
        Ok(Step {
            doorbell: Some(GuestDoorbell::Rang { region, value }),
            ..Step::reply(self.ack(out, id, Kind::Doorbell))
        })
    }

    /// Takes the held `WAIT_EVENT`, if any, and answers it with `ERROR` `code`.
    fn release_wait(&mut self, code: ErrorCode) -> Option<HeldReply> {
        let wait = self.conversation.wait.take()?;
        let mut reply = HeldReply {
            bytes: [0; HELD_REPLY_SIZE],
            len: 0,
        };
        let len = encode_error(
            &mut reply.bytes,
            wait.request_id,
            code,
            Kind::WaitEvent.to_u16(),
            self.errors_left(),
        );
        reply.len = self.written(len);
        Some(reply)
    }
}

/// `GUEST_REPORT` with `flags`.
const fn report_event(flags: u32) -> Option<(GuestEventKind, u32)> {
    Some((GuestEventKind::GuestReport, flags))
}

/// A decoded BAR must not partly overlap the channel's reservation.
fn overlap(reservation: Option<GuestRange>, device: &DeviceReport) -> Result<(), RequestFault> {
    classify_reservation(reservation, device.bar_range())
        .map(drop)
        .map_err(|error: PlacementError| RequestFault::BadPlacement(error))
}
