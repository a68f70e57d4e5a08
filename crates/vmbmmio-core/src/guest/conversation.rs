//! One channel open's conversation with the guest: what it selected and reported, how many
//! errors it has left, and the `EVENT`s it may still ask for.
//!
//! Everything is a fixed-size field; a new channel open starts from [`Conversation::new`], a
//! new `HELLO` forgets the reports and the events ([`Conversation::restart`]) but keeps what
//! belongs to the channel open: the request-id order, the error allowance and the event
//! sequence (docs/protocol.md, "Versions" and "Misbehaviour").

use vmbmmio_proto::guest::{DeviceReport, Event, EventKind, GuestRange};
use vmbmmio_proto::ioctl::{GuestDevice, GuestReservation, GuestSnapshot};

use super::context::Backing;
use super::limits::{ERROR_LIMIT, GUEST_EVENT_RING};

/// What the guest reported in the current conversation (copied, changed and committed as a
/// whole, so a refused request changes nothing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reports {
    /// `None`: not reported; `Some(None)`: reported that there is none.
    pub reservation: Option<Option<GuestRange>>,
    /// The accepted device report.
    pub device: Option<DeviceReport>,
    /// `READY` accepted since that report.
    pub ready: bool,
    /// `RELEASING` accepted since that report.
    pub releasing: bool,
}

impl Reports {
    /// Whether nothing is reported.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The reservation, if one is reported.
    pub fn reservation(&self) -> Option<GuestRange> {
        self.reservation.flatten()
    }
}

/// A held `WAIT_EVENT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldWait {
    /// Its request id (the reply echoes it).
    pub request_id: u64,
    /// Its `last_seen`.
    pub last_seen: u64,
}

/// The guest's `EVENT`s of this conversation, newest [`GUEST_EVENT_RING`] kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventRing {
    slots: [Option<Event>; GUEST_EVENT_RING],
    /// Sequence of the newest event recorded on this channel open (0: none).
    newest: u64,
    /// Highest sequence sent to the guest in an `EVENT` (0: none): events above it have not
    /// been delivered, and a `DOORBELL` event among them takes a newer ring's value in place.
    sent: u64,
}

impl EventRing {
    const fn new() -> Self {
        Self {
            slots: [None; GUEST_EVENT_RING],
            newest: 0,
            sent: 0,
        }
    }

    fn index(sequence: u64) -> Option<usize> {
        let ring = u64::try_from(GUEST_EVENT_RING).ok()?;
        usize::try_from(sequence.checked_rem(ring)?).ok()
    }

    /// Records the next event; `None` if the sequence would overflow (2^64 events, never).
    pub fn record(&mut self, kind: EventKind, generation: u64) -> Option<Event> {
        let sequence = self.newest.checked_add(1)?;
        let event = Event::new(sequence, kind, generation);
        *self.slots.get_mut(Self::index(sequence)?)? = Some(event);
        self.newest = sequence;
        Some(event)
    }

    /// Records the next event, a `DOORBELL` for `region` with `value` (1.1).
    pub fn record_doorbell(&mut self, region: u32, value: u64, generation: u64) -> Option<Event> {
        let sequence = self.newest.checked_add(1)?;
        let event = Event::doorbell(sequence, generation, region, value);
        *self.slots.get_mut(Self::index(sequence)?)? = Some(event);
        self.newest = sequence;
        Some(event)
    }

    /// Coalescing (docs/protocol.md, `DOORBELL` event): if a `DOORBELL` event for `region` is
    /// kept and has not been sent to the guest, it takes `value` (and the current
    /// `generation`) in place; whether it did.
    pub fn coalesce_doorbell(&mut self, region: u32, value: u64, generation: u64) -> bool {
        let sent = self.sent;
        match self.slots.iter_mut().flatten().find(|event| {
            event.kind == EventKind::Doorbell && event.region == region && event.sequence > sent
        }) {
            Some(event) => {
                event.value = value;
                event.generation = generation;
                true
            }
            None => false,
        }
    }

    /// The guest was sent the event `sequence` (an `EVENT` reply).
    pub fn mark_sent(&mut self, sequence: u64) {
        self.sent = self.sent.max(sequence);
    }

    /// The first kept event whose sequence is greater than `last_seen`.
    pub fn first_after(&self, last_seen: u64) -> Option<Event> {
        // At most GUEST_EVENT_RING slots: bounded.
        self.slots
            .iter()
            .flatten()
            .filter(|event| event.sequence > last_seen)
            .min_by_key(|event| event.sequence)
            .copied()
    }

    /// Forgets the events (a new `HELLO`); the sequence goes on.
    pub fn clear(&mut self) {
        self.slots = [None; GUEST_EVENT_RING];
    }

    /// Sequence of the newest event recorded on this channel open.
    pub const fn newest(&self) -> u64 {
        self.newest
    }
}

/// One channel open's conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conversation {
    /// The channel is open (between Opened and Closed).
    pub open: bool,
    /// The channel is suspending or suspended: packets get `CHANNEL_CLOSING`.
    pub closing: bool,
    /// The allowance ran out: the host stopped answering.
    pub stopped: bool,
    /// The selected version.
    pub version: Option<u32>,
    /// The last request id answered with its reply (0: none).
    pub last_accepted: u64,
    /// The reports.
    pub reports: Reports,
    /// Counted errors left.
    pub errors_left: u32,
    /// Packets received on this channel open.
    pub packets: u64,
    /// Counted errors on this channel open.
    pub counted_errors: u64,
    /// The guest's events.
    pub events: EventRing,
    /// The held `WAIT_EVENT`, if any.
    pub wait: Option<HeldWait>,
    /// What this conversation's guest was last told of the regions as a whole (the newest
    /// `REGIONS_*` event recorded for it; [`Backing::Incomplete`] before any): the engine
    /// announces "backed" against this, not against the regions' previous states, because a
    /// stale REPORT_MAPPING changes the states without being announced.
    pub announced: Backing,
}

impl Conversation {
    /// A fresh channel open (or a closed channel, with `open` false).
    pub const fn new(open: bool) -> Self {
        Self {
            open,
            closing: false,
            stopped: false,
            version: None,
            last_accepted: 0,
            reports: Reports {
                reservation: None,
                device: None,
                ready: false,
                releasing: false,
            },
            errors_left: ERROR_LIMIT,
            packets: 0,
            counted_errors: 0,
            events: EventRing::new(),
            wait: None,
            announced: Backing::Incomplete,
        }
    }

    /// A new `HELLO`: the version, the reports and the events are forgotten, and so is what the
    /// guest was told of the regions (the new guest was told nothing).
    pub fn restart(&mut self) {
        self.version = None;
        self.reports = Reports::default();
        self.events.clear();
        self.announced = Backing::Incomplete;
    }

    /// Whether there is anything a `HELLO` would make the device host forget.
    pub fn has_state(&self) -> bool {
        self.version.is_some() || !self.reports.is_empty()
    }

    /// What the device host is told with every event: `version` and `reports` (this
    /// conversation's, or the ones about to be committed) and the counters.
    pub fn snapshot(&self, version: Option<u32>, reports: &Reports) -> GuestSnapshot {
        GuestSnapshot {
            reservation: reports.reservation().map(|range| GuestReservation {
                base: range.base,
                size: range.size,
            }),
            device: reports.device.map(|device| GuestDevice {
                bar_index: device.bar_index,
                // With decode off the base is not decoded (and not checked): not passed on.
                bar_base: if device.bar.memory_decode {
                    device.bar.base
                } else {
                    0
                },
                bar_size: device.bar.size,
                decode_on: device.bar.memory_decode,
                ready: reports.ready,
                releasing: reports.releasing,
            }),
            protocol_version: version.unwrap_or(0),
            guest_packets: self.packets,
            counted_errors: self.counted_errors,
            errors_left: self.errors_left,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_doorbell_event_coalesces_only_until_it_is_sent() {
        let mut ring = EventRing::new();
        assert!(!ring.coalesce_doorbell(0, 1, 1), "nothing to coalesce into");
        let first = ring.record_doorbell(0, 1, 1).unwrap();
        assert!(ring.coalesce_doorbell(0, 2, 3));
        assert!(
            !ring.coalesce_doorbell(1, 5, 3),
            "another region's event is separate"
        );
        let kept = ring.first_after(0).unwrap();
        assert_eq!(
            (kept.sequence, kept.value, kept.generation),
            (first.sequence, 2, 3)
        );
        ring.mark_sent(kept.sequence);
        assert!(
            !ring.coalesce_doorbell(0, 3, 3),
            "a sent event is never rewritten"
        );
        let next = ring.record_doorbell(0, 3, 3).unwrap();
        assert_eq!(next.sequence, 2);
        assert_eq!(ring.first_after(1).unwrap().value, 3);
        // Other events never take a doorbell's value.
        ring.record(EventKind::RegionsMapped, 3).unwrap();
        assert!(ring.coalesce_doorbell(0, 4, 3));
        assert_eq!(ring.first_after(1).unwrap().value, 4);
        assert_eq!(ring.first_after(2).unwrap().value, 0);
    }
}
