//! The guest control protocol: the messages a guest and the driver exchange over the session's
//! VMBus channel (`docs/protocol.md`, versions 1.0 and 1.1).
//!
//! Version 1.1 adds doorbells (`DOORBELL`, the `DOORBELL` event, `RATE_LIMITED`). Whether a
//! message exists depends on the conversation's selected version, so the parsers and checks that
//! differ take it (`*_in`); the functions without it keep the 1.0 rules exactly.
//!
//! # Why it exists
//! VMBus tells the host nothing about where the guest put anything: not the channel's MMIO
//! reservation, not the paired PCI function's BAR, not whether memory decode is on. The guest
//! reports them here, and the host answers with the layout of the shared memory and tells the
//! guest when it changes. The channel is also the guest's only path into the host kernel, so
//! every byte is treated as an attack: one parser, in place, no allocation, no panic, a typed
//! error naming the [`ErrorCode`] the `ERROR` reply carries.
//!
//! # The pieces
//! - [`header`](Header), [`Kind`] and the message structs (one file per group: [`hello`
//!   messages](HelloRequest), [reports](ReportDeviceRequest), [`ACK`](AckReply),
//!   [layout](LayoutReply), [events](EventReply), [`ERROR`](ErrorReply)): zerocopy,
//!   little-endian, alignment 1, sizes and offsets asserted at compile time and checked against
//!   the document by `tests/guest_doc.rs`.
//! - The host side: [`parse_request`] / [`parse_request_after`] (the document's check order,
//!   returning a checked [`Request`] or a [`RequestError`]) and the reply encoders
//!   ([`encode_hello_reply`], [`encode_ack`], [`encode_layout`], [`encode_event`],
//!   [`encode_error`]) writing into a caller buffer.
//! - The guest side: [`parse_reply`], [`encode_request`] and [`GuestClient`], the sans-IO state
//!   machine a guest driver embeds.
//! - [`placement`]: the BAR and reservation checks the driver and the device host share.
//!
//! The conversation's rules (version range, order, replay, pairing, the session's BAR size,
//! `BUSY`, the misbehaviour threshold) need the conversation's state and belong to the host's
//! engine; this module gives them their [`RequestFault`] variants and codes.

mod ack;
mod client;
mod doorbell;
mod error;
mod error_reply;
mod event;
mod header;
mod hello;
mod layout;
mod limits;
pub mod placement;
mod reply;
mod report;
mod request;

pub use ack::{Ack, AckReply};
pub use client::{ClientError, ClientEvent, ClientState, GuestClient, Sent};
pub use doorbell::DoorbellRequest;
pub use error::EncodeError;
pub use error_reply::{ErrorCode, ErrorInfo, ErrorReply};
pub use event::{Event, EventKind, EventReply, WaitEventRequest};
pub use header::{GuestMessage, HEADER_SIZE, Header, Kind, REPLY_BIT};
pub use hello::{HelloReply, HelloRequest, HostInfo, SelectVersionRequest};
pub use layout::{
    GetLayoutRequest, Layout, LayoutReply, NameError, REGION_ENTRY_SIZE, Region, RegionAccess,
    RegionFault, RegionName, RegionState, WireRegion,
};
pub use limits::{
    CLIENT_VERSIONS, ERROR_LIMIT, EVENT_QUEUE, HOST_MAX_VERSION, HOST_MIN_VERSION, LARGEST_MESSAGE,
    MAX_BAR_INDEX, MAX_PACKET_SIZE, MAX_REGIONS, MAX_REGIONS_U32, PROTOCOL_VERSION_1_0,
    PROTOCOL_VERSION_1_1, REGION_NAME_LEN, has_doorbells,
};
pub use placement::{
    BarPlacement, BarState, GuestRange, MAX_GUEST_PHYSICAL_ADDRESS, PlacementError,
    ReservationRelation, check_bar_size, check_placement, check_reservation, classify_reservation,
};
pub use reply::{
    Reply, ReplyBody, ReplyError, encode_ack, encode_error, encode_event, encode_event_in,
    encode_hello_reply, encode_layout, encode_refusal, parse_reply, parse_reply_in, region_name,
};
pub use report::{
    DEVICE_DECODE_ON, DeviceReport, RESERVATION_PRESENT, ReadyRequest, ReleasingRequest,
    ReportDeviceRequest, ReportReservationRequest, reservation_to_wire,
};
pub use request::{
    FramedRequest, Request, RequestBody, RequestError, RequestFault, encode_request, frame_request,
    frame_request_in, parse_request, parse_request_after, parse_request_after_in, parse_request_in,
    received,
};
