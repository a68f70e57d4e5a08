//! The guest control protocol's host side as a stateful sequence: guest packets, interleaved
//! with the device host's IOCTLs and the guest closing and reopening the channel, against one
//! simulated session (`hvsim::guest_session`), through the driver's real packet handler.
//!
//! # What one input does
//! A fresh session is opened and its channel opened by the guest; then up to [`MAX_RECORDS`]
//! records run in order; then the device host exits (the session closes) and everything must
//! balance.
//!
//! # Record format (little-endian; a short input reads as zeros)
//! `op: u8`:
//! - bit 7 clear: a **guest packet**: `len: u16` (capped at [`MAX_PACKET`]), then the bytes.
//! - bit 7 set, by `op & 0x07`: `0` REPORT_MAPPING (`region: u8`, `state: u8`; both taken
//!   modulo a little more than their range, so out-of-range values are tried too); `1`
//!   WAIT_GUEST_EVENT (`last_seen: u8`, below the newest sequence when there is one; a request
//!   that would pend is kept, one at a time, and delivered when the callbacks wake it); `2` the
//!   guest closes the channel; `3` it reopens it; `4` the device host cancels its pending wait;
//!   `5` QUERY_STATUS; `6`, `7` the device host drains every event.
//!
//! # Oracles
//! - Every completion the host sends is a reply the guest library parses (`parse_reply`), whose
//!   `request_id` echoes the packet's when it holds one, and whose `errors_left` never exceeds
//!   the limit; an `EVENT` answers only a `WAIT_EVENT`.
//! - The engine's `internal_errors` stay 0 (no encoder or queue refused what it checked).
//! - Counters balance: the engine counted every delivered packet (QUERY_STATUS agrees), and
//!   every packet was answered with its reply, with `ERROR`, or held.
//! - At the end: no KMCL rule broken (no packet outstanding at Suspend or completed after
//!   Closed), every packet completed, every object released.

use hvsim::guest_session::GuestSession;
use hvsim::kmcl::PacketOutcome;
use hvsim::platform::SimPlatform;
use vmbmmio_core::control::{Delivered, Handled, PendingWait};
use vmbmmio_core::guest::EngineCounters;
use vmbmmio_proto::guest::{
    ERROR_LIMIT, Kind, PROTOCOL_VERSION_1_1, ReplyBody, parse_reply, parse_reply_in, parse_request,
    parse_request_in,
};
use vmbmmio_proto::ioctl::{IoctlCode, MappingState, parse_wait_guest_event_reply};

use crate::Reader;

/// Records run per input.
pub const MAX_RECORDS: usize = 256;
/// Largest guest packet a record sends (the channel's maximum packet size).
pub const MAX_PACKET: usize = 4096;
/// The session's regions: a 1 MiB BAR.
pub const REGIONS: [u64; 2] = [512 << 10, 256 << 10];

const CONTROL: u8 = 0x80;

/// Runs one input; returns the engine's counters at the end (for the tests: they show what a
/// sequence reached).
pub fn run(data: &[u8]) -> EngineCounters {
    let mut bench = Bench::new();
    let mut reader = Reader::new(data);
    for _ in 0..MAX_RECORDS {
        if reader.is_empty() {
            break;
        }
        bench.step(&mut reader);
    }
    bench.finish()
}

struct Bench {
    session: GuestSession,
    /// Packets delivered to the handler.
    delivered: u64,
    /// Packets completed at once, or held (then completed later).
    answered: u64,
    held: u64,
    /// Held packets not yet completed: (token, request id, kind).
    outstanding: Vec<(u64, u64, u16)>,
    pending: Option<PendingWait<SimPlatform>>,
    last_seen: u64,
}

impl Bench {
    fn new() -> Self {
        Self {
            session: GuestSession::open(&REGIONS).expect("the bench opens"),
            delivered: 0,
            answered: 0,
            held: 0,
            outstanding: Vec::new(),
            pending: None,
            last_seen: 0,
        }
    }

    fn step(&mut self, reader: &mut Reader<'_>) {
        let op = reader.u8();
        if op & CONTROL == 0 {
            let len = usize::from(reader.u16()).min(MAX_PACKET);
            let packet = reader.bytes(len).to_vec();
            self.packet(&packet);
        } else {
            self.control(op & 0x07, reader);
        }
        self.check_held();
        self.wakes();
    }

    fn packet(&mut self, bytes: &[u8]) {
        // Protocol 1.1's parsers on the same bytes (the engine states 1.0 until it has
        // doorbells): no panic, and a request 1.0 accepts reads the same in 1.1.
        let in_1_1 = parse_request_in(bytes, PROTOCOL_VERSION_1_1);
        if let Ok(request) = parse_request(bytes) {
            assert_eq!(in_1_1, Ok(request), "1.1 reads a 1.0 request differently");
        }
        let _ = parse_reply_in(bytes, PROTOCOL_VERSION_1_1);
        let Ok(outcome) = self.session.send(bytes) else {
            return; // not delivered (channel closed): nothing to check
        };
        self.delivered += 1;
        let (kind, id) = received(bytes);
        match outcome {
            PacketOutcome::Completed(reply) => {
                self.answered += 1;
                check_reply(&reply, kind, id);
            }
            PacketOutcome::Pending(token) => {
                self.held += 1;
                assert_eq!(kind, Kind::WaitEvent.to_u16(), "only WAIT_EVENT is held");
                self.outstanding.push((token, id, kind));
                assert!(self.outstanding.len() <= 1, "more than one packet held");
            }
            PacketOutcome::Failed => panic!("the host failed a packet"),
        }
    }

    /// Held packets completed since: their replies must parse and echo them.
    fn check_held(&mut self) {
        let session = &self.session;
        self.outstanding
            .retain(|&(token, id, kind)| match session.completion(token) {
                Some(reply) => {
                    check_reply(&reply, kind, id);
                    false
                }
                None => true,
            });
    }

    fn control(&mut self, op: u8, reader: &mut Reader<'_>) {
        match op {
            0 => {
                let region = u32::from(reader.u8() % 4);
                let state = match reader.u8() % 5 {
                    0 => MappingState::Unmapped,
                    1 => MappingState::SectionBacked,
                    2 => MappingState::InterceptFallback,
                    _ => MappingState::Failed,
                };
                let _ = self.session.report_mapping(region, state);
            }
            1 => {
                let back = u64::from(reader.u8());
                let newest = self.session.events().inspect(|q| q.newest());
                self.wait(newest.saturating_sub(back).max(self.last_seen.min(newest)));
            }
            2 => {
                let _ = self.session.guest.close(self.session.channel);
                self.check_held();
                assert!(
                    self.outstanding.is_empty(),
                    "a held packet outlived the close"
                );
            }
            3 => {
                let _ = self.session.guest.open(self.session.channel);
            }
            4 => {
                if let Some(pending) = self.pending.take() {
                    pending.cancel();
                }
            }
            5 => {
                let status = self.session.status().expect("QUERY_STATUS");
                assert_eq!(status.counters.guest_packets, self.delivered);
            }
            _ => self.drain(),
        }
    }

    fn wait(&mut self, last_seen: u64) {
        if self.pending.is_some() {
            return;
        }
        let mut output = vec![0u8; IoctlCode::WaitGuestEvent.reply_size()];
        match self.session.wait_guest_event(last_seen, &mut output) {
            Ok(Handled::Done(written)) => {
                let event = parse_wait_guest_event_reply(&output[..written])
                    .expect("the driver's event parses");
                self.last_seen = event.sequence();
            }
            Ok(Handled::Pending(pending)) => {
                if pending.parked().is_some() {
                    self.deliver(pending);
                } else {
                    self.pending = Some(pending);
                }
            }
            Err(_) => {}
        }
    }

    fn deliver(&mut self, pending: PendingWait<SimPlatform>) {
        let mut output = vec![0u8; IoctlCode::WaitGuestEvent.reply_size()];
        match pending.deliver(&mut output) {
            Delivered::Completed(written) => {
                let event = parse_wait_guest_event_reply(&output[..written])
                    .expect("the driver's event parses");
                self.last_seen = event.sequence();
            }
            Delivered::Requeue => {
                if pending.parked().is_none() {
                    self.pending = Some(pending);
                }
            }
            Delivered::Failed(_) => {}
        }
    }

    /// The glue's part: a wake retrieves the parked request and delivers it.
    fn wakes(&mut self) {
        for _wake in self.session.take_wakes() {
            if let Some(pending) = self.pending.take() {
                self.deliver(pending);
            }
        }
    }

    fn drain(&mut self) {
        if let Some(pending) = self.pending.take() {
            pending.cancel();
        }
        for _ in 0..64 {
            let before = self.last_seen;
            self.wait(self.last_seen);
            if let Some(pending) = self.pending.take() {
                pending.cancel();
                return;
            }
            if self.last_seen == before {
                return;
            }
        }
    }

    fn finish(mut self) -> EngineCounters {
        if let Some(pending) = self.pending.take() {
            pending.cancel();
        }
        let counters = self.session.events().counters();
        assert_eq!(counters.internal_errors, 0, "{counters:?}");
        assert_eq!(counters.guest_packets, self.delivered, "{counters:?}");
        assert_eq!(self.answered + self.held, self.delivered);
        assert_eq!(
            counters.accepted + counters.protocol_errors,
            counters.guest_packets,
            "every packet is accepted or refused: {counters:?}"
        );
        assert!(counters.counted_errors <= counters.protocol_errors);
        let session = self.session;
        let guest = session.guest;
        let left = session.close();
        assert!(left.is_empty(), "left over: {left}");
        for (token, id, kind) in self.outstanding {
            let reply = guest.completion(token).expect("completed at the close");
            check_reply(&reply, kind, id);
        }
        counters
    }
}

/// The kind and id a packet holds (0 for what it does not).
fn received(bytes: &[u8]) -> (u16, u64) {
    let kind = bytes
        .first_chunk::<2>()
        .map_or(0, |k| u16::from_le_bytes(*k));
    let id = if bytes.len() >= 16 {
        bytes[8..16].try_into().map_or(0, u64::from_le_bytes)
    } else {
        0
    };
    (kind, id)
}

/// A reply the host sent for a packet of `kind` and `id`.
fn check_reply(reply: &[u8], kind: u16, id: u64) {
    let parsed = parse_reply(reply).unwrap_or_else(|error| {
        panic!("the host sent a reply the guest refuses: {error:?}: {reply:02x?}")
    });
    assert_eq!(parsed.request_id, id, "the reply echoes the request id");
    match parsed.body {
        ReplyBody::Error(info) => {
            assert_eq!(info.request_kind, kind);
            assert!(info.errors_left <= ERROR_LIMIT);
        }
        body => {
            let expected = Kind::from_u16(kind).and_then(Kind::reply_kind);
            assert_eq!(
                Some(body.kind()),
                expected,
                "the reply kind answers the request"
            );
        }
    }
}

/// Writes records in the format [`run`] reads (for seeds and tests).
#[derive(Clone, Debug, Default)]
pub struct GuestScript {
    bytes: Vec<u8>,
}

/// A control record of a [`GuestScript`].
#[derive(Clone, Copy, Debug)]
pub enum Control {
    /// REPORT_MAPPING of a region (index, state as on the wire).
    ReportMapping(u8, u8),
    /// WAIT_GUEST_EVENT, `last_seen` this far below the newest event.
    Wait(u8),
    /// The guest closes the channel.
    Close,
    /// The guest reopens it.
    Reopen,
    /// The device host cancels its pending wait.
    Cancel,
    /// QUERY_STATUS.
    Status,
    /// The device host drains every event.
    Drain,
}

impl GuestScript {
    /// An empty script.
    pub fn new() -> Self {
        Self::default()
    }

    /// A guest packet.
    pub fn packet(mut self, bytes: &[u8]) -> Self {
        let len = u16::try_from(bytes.len()).expect("a packet fits a u16 length");
        self.bytes.push(0);
        self.bytes.extend_from_slice(&len.to_le_bytes());
        self.bytes.extend_from_slice(bytes);
        self
    }

    /// A control record.
    pub fn control(mut self, control: Control) -> Self {
        match control {
            Control::ReportMapping(region, state) => {
                self.bytes.extend_from_slice(&[CONTROL, region, state]);
            }
            Control::Wait(back) => self.bytes.extend_from_slice(&[CONTROL | 1, back]),
            Control::Close => self.bytes.push(CONTROL | 2),
            Control::Reopen => self.bytes.push(CONTROL | 3),
            Control::Cancel => self.bytes.push(CONTROL | 4),
            Control::Status => self.bytes.push(CONTROL | 5),
            Control::Drain => self.bytes.push(CONTROL | 6),
        }
        self
    }

    /// The input bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}
