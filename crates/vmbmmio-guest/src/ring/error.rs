//! What can go wrong: the host broke the ring's rules ([`Corruption`]), the ring is full, a
//! packet is too large, or the memory refused an access.
//!
//! Every error leaves the ring as it was: nothing was written to shared memory and no index
//! moved, so the caller may retry a `Full` send once signalled, and may treat any other error
//! as a broken channel (close it; the host is not following the protocol).

use super::memory::MemoryError;

/// A value the host wrote that breaks the ring's rules. Carries the offending values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corruption {
    /// A `read_index` outside the data area or not 8-aligned.
    ReadIndex {
        /// The value found.
        value: u32,
        /// The data area's size.
        data_size: u32,
    },
    /// A `write_index` outside the data area or not 8-aligned.
    WriteIndex {
        /// The value found.
        value: u32,
        /// The data area's size.
        data_size: u32,
    },
    /// The host published fewer bytes than a descriptor and a trailer.
    Truncated {
        /// Bytes between the read and write indices.
        available: u32,
    },
    /// `offset8`/`len8` break `len8 * 8 >= offset8 * 8 >= 16`, or the packet and its trailer
    /// are longer than the bytes the host published.
    DescriptorLengths {
        /// The descriptor's `offset8`.
        offset8: u16,
        /// The descriptor's `len8`.
        len8: u16,
        /// Bytes between the read and write indices.
        available: u32,
    },
    /// A packet type other than `VM_PKT_DATA_INBAND` and `VM_PKT_COMP`.
    PacketType {
        /// The type found.
        value: u16,
    },
    /// Flags other than `VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED`.
    Flags {
        /// The flags found.
        value: u16,
    },
}

impl core::fmt::Display for Corruption {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::ReadIndex { value, data_size } => write!(
                f,
                "read index {value:#x} is not an 8-aligned offset in the {data_size}-byte data area"
            ),
            Self::WriteIndex { value, data_size } => write!(
                f,
                "write index {value:#x} is not an 8-aligned offset in the {data_size}-byte data area"
            ),
            Self::Truncated { available } => write!(
                f,
                "only {available} bytes published, fewer than a descriptor and a trailer"
            ),
            Self::DescriptorLengths {
                offset8,
                len8,
                available,
            } => write!(
                f,
                "descriptor offset8 {offset8} / len8 {len8} do not fit the {available} bytes published"
            ),
            Self::PacketType { value } => write!(f, "unexpected packet type {value:#x}"),
            Self::Flags { value } => write!(f, "unknown packet flags {value:#x}"),
        }
    }
}

impl std::error::Error for Corruption {}

/// Why a ring could not be set up over a memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeometryError {
    /// The data area (region size minus the control page) is not a positive multiple of 8 no
    /// larger than [`super::MAX_DATA_SIZE`] and no smaller than [`super::MIN_DATA_SIZE`].
    DataSize {
        /// The region's size in bytes.
        region_size: usize,
    },
    /// A TXRX map whose size is not twice a ring of whole 4 KiB pages.
    TxRxSize {
        /// The map's size in bytes.
        map_size: usize,
    },
    /// The memory refused to be cut into a ring.
    Memory(MemoryError),
}

impl core::fmt::Display for GeometryError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::DataSize { region_size } => write!(
                f,
                "a {region_size}-byte region is not a control page followed by a valid data area"
            ),
            Self::TxRxSize { map_size } => write!(
                f,
                "a {map_size}-byte TXRX map is not two rings of whole 4 KiB pages"
            ),
            Self::Memory(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for GeometryError {}

/// Why a ring could not be attached: its geometry, or an index already out of range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachError {
    /// The region is not a ring.
    Geometry(GeometryError),
    /// The ring's own index (the write index of an outgoing ring, the read index of an incoming
    /// one) is already invalid.
    Corrupt(Corruption),
    /// The memory refused an access.
    Memory(MemoryError),
}

impl core::fmt::Display for AttachError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Geometry(e) => write!(f, "{e}"),
            Self::Corrupt(e) => write!(f, "ring corrupt at attach: {e}"),
            Self::Memory(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for AttachError {}

impl From<GeometryError> for AttachError {
    fn from(e: GeometryError) -> Self {
        Self::Geometry(e)
    }
}

impl From<MemoryError> for AttachError {
    fn from(e: MemoryError) -> Self {
        Self::Memory(e)
    }
}

/// Why a packet was not sent. Nothing was written (except `pending_send_sz` when asked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// Not enough room now: the ring accepts the packet once more than `needed` bytes are free
    /// (one byte always stays free, so a full ring never looks empty).
    Full {
        /// The packet's bytes, trailer included.
        needed: u32,
        /// The bytes free now.
        free: u32,
    },
    /// The packet can never be sent on this ring: its `len8` would not fit in 16 bits, or it
    /// and its trailer do not fit in the data area with one byte left free.
    TooLarge {
        /// The packet's bytes (descriptor, payload, padding, trailer), saturating.
        len: usize,
        /// The most this ring accepts.
        max: usize,
    },
    /// The host's `read_index` is invalid.
    Corrupt(Corruption),
    /// The memory refused an access.
    Memory(MemoryError),
}

impl core::fmt::Display for SendError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Full { needed, free } => write!(
                f,
                "ring full: the packet needs more than {needed} free bytes, {free} are free"
            ),
            Self::TooLarge { len, max } => write!(
                f,
                "a {len}-byte packet never fits this ring (at most {max} bytes)"
            ),
            Self::Corrupt(e) => write!(f, "outgoing ring corrupt: {e}"),
            Self::Memory(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SendError {}

impl From<MemoryError> for SendError {
    fn from(e: MemoryError) -> Self {
        Self::Memory(e)
    }
}

impl From<Corruption> for SendError {
    fn from(e: Corruption) -> Self {
        Self::Corrupt(e)
    }
}

/// Why no packet was received. Nothing was consumed: the read index did not move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvError {
    /// The host broke the ring's rules.
    Corrupt(Corruption),
    /// The packet's payload is longer than the caller's maximum.
    PayloadTooLarge {
        /// The payload's length (`(len8 - offset8) * 8`).
        len: u32,
        /// The caller's maximum.
        max: usize,
    },
    /// The memory refused an access.
    Memory(MemoryError),
}

impl core::fmt::Display for RecvError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Corrupt(e) => write!(f, "incoming ring corrupt: {e}"),
            Self::PayloadTooLarge { len, max } => write!(
                f,
                "incoming payload of {len} bytes exceeds the maximum of {max}"
            ),
            Self::Memory(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for RecvError {}

impl From<MemoryError> for RecvError {
    fn from(e: MemoryError) -> Self {
        Self::Memory(e)
    }
}

impl From<Corruption> for RecvError {
    fn from(e: Corruption) -> Self {
        Self::Corrupt(e)
    }
}
