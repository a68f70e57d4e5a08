//! The numbers of the protocol's contract: version, packet size, region count, the
//! misbehaviour threshold and the event queue (`docs/protocol.md`).
//!
//! They are constants of versions 1.0 and 1.1 (1.1 changes none of the limits), stated by the
//! host in `HELLO_REPLY` where the guest needs them; `tests/guest_doc.rs` checks them against the document.

/// Version 1.0 (`major << 16 | minor`): the value the pairing capability carries
/// ([`crate::pci_cap::CHANNEL_PROTOCOL_VERSION`]).
pub const PROTOCOL_VERSION_1_0: u32 = crate::pci_cap::CHANNEL_PROTOCOL_VERSION;

/// Version 1.1: adds `DOORBELL`, the `DOORBELL` event and `RATE_LIMITED` (`docs/protocol.md`).
pub const PROTOCOL_VERSION_1_1: u32 = 0x0001_0001;

/// Lowest version the host implements.
pub const HOST_MIN_VERSION: u32 = PROTOCOL_VERSION_1_0;

/// Highest version the protocol's host side defines: 1.1. What a host actually states is its
/// [`HostInfo`](super::HostInfo): [`HostInfo::V1`](super::HostInfo::V1) (1.0 only, what a host
/// without doorbells states) or [`HostInfo::V1_1`](super::HostInfo::V1_1) (1.0 to 1.1).
pub const HOST_MAX_VERSION: u32 = PROTOCOL_VERSION_1_1;

/// The versions the guest library speaks, lowest first; it picks the highest the host also
/// speaks.
pub const CLIENT_VERSIONS: [u32; 2] = [PROTOCOL_VERSION_1_0, PROTOCOL_VERSION_1_1];

/// Whether a conversation in `version` has doorbells (`DOORBELL`, the `DOORBELL` event,
/// `RATE_LIMITED`): 1.1 and later.
pub const fn has_doorbells(version: u32) -> bool {
    version >= PROTOCOL_VERSION_1_1
}

/// The channel's maximum packet size in bytes.
pub const MAX_PACKET_SIZE: u32 = 4096;

/// Most regions a layout describes: the IOCTL interface's limit per session
/// ([`crate::ioctl::MAX_REGIONS`]).
pub const MAX_REGIONS: usize = crate::ioctl::MAX_REGIONS;

/// [`MAX_REGIONS`] as the `u32` the wire carries.
pub const MAX_REGIONS_U32: u32 = crate::ioctl::MAX_REGIONS_U32;

/// Counted errors a guest may cause per channel open before the host stops answering.
pub const ERROR_LIMIT: u32 = 16;

/// Events the host queues per channel for the device host before it refuses reports with
/// `BUSY`.
pub const EVENT_QUEUE: usize = 32;

/// Bytes of a region's name on the wire (UTF-8, NUL-padded).
pub const REGION_NAME_LEN: usize = 32;

/// Size of the largest message (`LAYOUT`).
pub const LARGEST_MESSAGE: usize = 1064;

/// Highest PCI BAR index (a type-0 header has BARs 0 to 5).
pub const MAX_BAR_INDEX: u8 = 5;

const _: () = assert!(LARGEST_MESSAGE <= MAX_PACKET_SIZE as usize);
