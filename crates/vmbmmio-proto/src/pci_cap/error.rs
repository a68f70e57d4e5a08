//! What can be wrong with a pairing capability or the capability list that leads to it.

/// Which GUID of the capability a [`PairingError::NilGuid`] names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PairingGuidField {
    /// The channel's interface instance GUID.
    InterfaceInstance,
    /// The channel's interface type GUID.
    InterfaceType,
}

/// Everything the pairing parser or the capability walker rejects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairingError {
    /// The buffer is shorter than the capability.
    TooShort {
        /// Bytes needed.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// The buffer is longer than the capability.
    TooLong {
        /// Bytes expected.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// Byte 0 is not the vendor-specific capability ID (0x09).
    NotVendorSpecific {
        /// The ID found.
        got: u8,
    },
    /// Bytes 4..8 are not the vmbmmio signature.
    BadSignature {
        /// The dword found.
        got: u32,
    },
    /// The layout version is not one this crate reads.
    UnsupportedLayoutVersion {
        /// The version this crate reads.
        expected: u8,
        /// The version found.
        got: u8,
    },
    /// The length byte is not the length of this layout version.
    LengthMismatch {
        /// The length of the layout.
        expected: u8,
        /// The length byte found.
        got: u8,
    },
    /// The reserved dword is not zero.
    ReservedNotZero {
        /// The value found.
        got: u32,
    },
    /// The protocol version is zero.
    ZeroProtocolVersion,
    /// A GUID is all zeros.
    NilGuid {
        /// Which one.
        field: PairingGuidField,
    },
    /// A capability pointer is below the end of the standard header (0x40) or past the end of
    /// configuration space.
    PointerOutOfRange {
        /// The pointer, after masking its two reserved low bits.
        pointer: u16,
    },
    /// The pairing capability does not fit in configuration space.
    OutOfBounds {
        /// Where it starts.
        offset: u16,
    },
    /// The capability list does not end within [`super::MAX_CAPABILITIES`] entries (a loop).
    ListTooLong,
    /// Two capabilities carry the vmbmmio signature.
    Duplicate {
        /// The first one's offset.
        first: u16,
        /// The second one's offset.
        second: u16,
    },
}
