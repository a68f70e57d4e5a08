//! What an encoder can refuse: too small an output buffer, or values the receiving side would
//! refuse anyway (the host never sends a reply the guest library rejects).

use super::header::Kind;
use super::layout::{NameError, RegionFault};

/// Why a message could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The output buffer cannot hold the message; nothing was written.
    OutputTooSmall {
        /// Size of the message.
        needed: usize,
        /// Bytes available.
        got: usize,
    },
    /// `HELLO_REPLY` values the guest would refuse (see [`HostInfo`](super::HostInfo)).
    BadHostInfo,
    /// `ACK` for a kind that is not acknowledged with `ACK`.
    NotAcked {
        /// The kind given.
        kind: Kind,
    },
    /// A layout with more than [`MAX_REGIONS`](super::MAX_REGIONS) regions.
    TooManyRegions {
        /// Regions given.
        got: usize,
    },
    /// A layout whose BAR size is not a power of two of at least one page.
    BadBarSize {
        /// The BAR size given.
        got: u64,
    },
    /// A region the guest would refuse.
    BadRegion {
        /// Index in the list.
        index: usize,
        /// What is wrong.
        fault: RegionFault,
    },
    /// An `EVENT` with sequence 0 (sequences start at 1).
    ZeroSequence,
    /// A region name that cannot be carried.
    BadName(NameError),
    /// An `EVENT` a conversation of `version` cannot carry: `DOORBELL` before 1.1, `region` or
    /// `value` on another event, or a doorbell region at or above 16.
    EventNotInVersion {
        /// The event's kind.
        kind: super::event::EventKind,
        /// The conversation's version.
        version: u32,
    },
}
