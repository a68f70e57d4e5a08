//! `WAIT_EVENT` → `EVENT`: how the host tells the guest that something changed, without ever
//! sending a packet of its own.
//!
//! The host answers only through completions (sending needs KMCL entries the driver treats as
//! optional), so the guest keeps one `WAIT_EVENT` outstanding and the host completes it when
//! there is news. Events are numbered 1, 2, 3, … per channel open; the guest says which it has
//! seen (`last_seen`) and gets the first newer one, so none is lost or delivered twice when a
//! wait is completed and re-sent.

use core::mem::offset_of;

use zerocopy::byteorder::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::header::{GuestMessage, Header, Kind, kind_size};

/// `WAIT_EVENT`, 24 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct WaitEventRequest {
    /// Kind [`Kind::WaitEvent`].
    pub header: Header,
    /// The highest event sequence the guest has seen (0: none).
    pub last_seen: U64,
}

impl GuestMessage for WaitEventRequest {
    const KIND: Kind = Kind::WaitEvent;
}
kind_size!(WaitEventRequest);
const _: () = assert!(offset_of!(WaitEventRequest, last_seen) == 16);

/// `EVENT`, 48 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct EventReply {
    /// Kind [`Kind::Event`]; echoes the `WAIT_EVENT`'s id.
    pub header: Header,
    /// 1, 2, 3, … per channel open.
    pub sequence: U64,
    /// An [`EventKind`].
    pub event: U32,
    /// Version 1.1, `DOORBELL` event: the region rung. Otherwise (and in 1.0, where it is
    /// reserved) 0.
    pub region: U32,
    /// The layout generation after the event.
    pub generation: U64,
    /// Version 1.1, `DOORBELL` event: the value rung (the latest one). Otherwise (and in 1.0,
    /// where it is reserved) 0.
    pub value: U64,
}

impl GuestMessage for EventReply {
    const KIND: Kind = Kind::Event;
}
kind_size!(EventReply);
const _: () = assert!(offset_of!(EventReply, sequence) == 16);
const _: () = assert!(offset_of!(EventReply, event) == 24);
const _: () = assert!(offset_of!(EventReply, region) == 28);
const _: () = assert!(offset_of!(EventReply, generation) == 32);
const _: () = assert!(offset_of!(EventReply, value) == 40);

/// What happened.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The layout changed; `GET_LAYOUT` gives the details.
    LayoutChanged = 1,
    /// The regions are section-backed: the guest may use them.
    RegionsMapped = 2,
    /// The regions are served by the device host's intercept fallback: usable, slowly.
    RegionsIntercepted = 3,
    /// The regions are no longer backed: the guest must stop touching them.
    RegionsUnmapped = 4,
    /// The device host restarted; nothing is backed until it maps again.
    DeviceHostRestarted = 5,
    /// Version 1.1: a host consumer rang the guest's doorbell for `region` with `value`
    /// (the latest ring wins: rings the guest has not fetched yet coalesce).
    Doorbell = 6,
}

impl EventKind {
    /// Every event kind, in order.
    pub const ALL: [Self; 6] = [
        Self::LayoutChanged,
        Self::RegionsMapped,
        Self::RegionsIntercepted,
        Self::RegionsUnmapped,
        Self::DeviceHostRestarted,
        Self::Doorbell,
    ];

    /// The wire value.
    pub const fn to_u32(self) -> u32 {
        self as u32
    }

    /// The event kind with this wire value, if any.
    pub const fn from_u32(value: u32) -> Option<Self> {
        Some(match value {
            1 => Self::LayoutChanged,
            2 => Self::RegionsMapped,
            3 => Self::RegionsIntercepted,
            4 => Self::RegionsUnmapped,
            5 => Self::DeviceHostRestarted,
            6 => Self::Doorbell,
            _ => return None,
        })
    }

    /// The name the document uses.
    pub const fn name(self) -> &'static str {
        match self {
            Self::LayoutChanged => "LAYOUT_CHANGED",
            Self::RegionsMapped => "REGIONS_MAPPED",
            Self::RegionsIntercepted => "REGIONS_INTERCEPTED",
            Self::RegionsUnmapped => "REGIONS_UNMAPPED",
            Self::DeviceHostRestarted => "DEVICE_HOST_RESTARTED",
            Self::Doorbell => "DOORBELL",
        }
    }

    /// The protocol version that introduced this event: 1.1 for `DOORBELL`, 1.0 for the rest.
    pub const fn since(self) -> u32 {
        match self {
            Self::Doorbell => super::limits::PROTOCOL_VERSION_1_1,
            _ => super::limits::PROTOCOL_VERSION_1_0,
        }
    }
}

/// The content of an `EVENT`, checked (sequence at least 1, a known kind; `region` and
/// `value` 0 unless it is a `DOORBELL` event of a 1.1 conversation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Event {
    /// Its sequence number (from 1).
    pub sequence: u64,
    /// What happened.
    pub kind: EventKind,
    /// The layout generation after the event.
    pub generation: u64,
    /// [`EventKind::Doorbell`]: the region rung (below [`MAX_REGIONS`](super::MAX_REGIONS));
    /// 0 for every other event.
    pub region: u32,
    /// [`EventKind::Doorbell`]: the value rung; 0 for every other event.
    pub value: u64,
}

impl Event {
    /// An event without doorbell fields (`region` and `value` 0): every kind but
    /// [`EventKind::Doorbell`].
    pub const fn new(sequence: u64, kind: EventKind, generation: u64) -> Self {
        Self {
            sequence,
            kind,
            generation,
            region: 0,
            value: 0,
        }
    }

    /// A `DOORBELL` event (version 1.1).
    pub const fn doorbell(sequence: u64, generation: u64, region: u32, value: u64) -> Self {
        Self {
            sequence,
            kind: EventKind::Doorbell,
            generation,
            region,
            value,
        }
    }

    /// Whether a conversation of `version` may carry this event: its kind exists there, and
    /// `region` and `value` are 0 unless it is a `DOORBELL` event (whose region is below
    /// [`MAX_REGIONS`](super::MAX_REGIONS)).
    pub const fn fits(&self, version: u32) -> bool {
        if self.kind.since() > version {
            return false;
        }
        match self.kind {
            EventKind::Doorbell => self.region < super::limits::MAX_REGIONS_U32,
            _ => self.region == 0 && self.value == 0,
        }
    }

    /// The wire message answering `request_id`.
    pub const fn to_wire(&self, request_id: u64) -> EventReply {
        EventReply {
            header: Header::new(Kind::Event, request_id),
            sequence: U64::new(self.sequence),
            event: U32::new(self.kind.to_u32()),
            region: U32::new(self.region),
            generation: U64::new(self.generation),
            value: U64::new(self.value),
        }
    }
}
