//! The version-1 layout of the pairing capability, its builder and its parser.

use zerocopy::byteorder::little_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::error::{PairingError, PairingGuidField};
use crate::ioctl::WireGuid;

/// PCI capability ID of a vendor-specific capability (PCI Local Bus Specification 3.0,
/// appendix H; Linux `include/uapi/linux/pci_regs.h` `PCI_CAP_ID_VNDR`).
pub const PCI_CAP_ID_VENDOR: u8 = 0x09;
/// The signature at byte 4: the bytes `b"VMBP"` read as a little-endian `u32`.
pub const PAIRING_SIGNATURE: u32 = u32::from_le_bytes(*b"VMBP");
/// The capability layout version this crate writes and reads.
pub const PAIRING_LAYOUT_VERSION: u8 = 1;
/// Size of the version-1 capability in bytes.
pub const PAIRING_CAP_SIZE: usize = 48;
/// [`PAIRING_CAP_SIZE`] as the capability's length byte.
pub const PAIRING_CAP_LENGTH: u8 = 48;
/// [`PAIRING_CAP_SIZE`] in dwords (configuration space is read one dword at a time).
pub const PAIRING_CAP_DWORDS: usize = 12;
/// The guest-control protocol version the host states until the channel protocol defines its
/// own constant: major 1, minor 0, spelled like VMBus versions (`major << 16 | minor`, Linux
/// `include/linux/hyperv.h` `VERSION_WIN10_V5`). The guest still negotiates over the channel;
/// this field only lets it refuse a host that is too old before it opens anything.
pub const CHANNEL_PROTOCOL_VERSION: u32 = 0x0001_0000;

/// The pairing capability as it sits in configuration space.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct PairingCapability {
    /// [`PCI_CAP_ID_VENDOR`].
    pub cap_id: u8,
    /// Offset of the next capability, 0 at the end of the list.
    pub next: u8,
    /// [`PAIRING_CAP_LENGTH`].
    pub length: u8,
    /// [`PAIRING_LAYOUT_VERSION`].
    pub layout_version: u8,
    /// [`PAIRING_SIGNATURE`].
    pub signature: U32,
    /// The channel offer's interface instance GUID.
    pub interface_instance: WireGuid,
    /// The channel offer's interface type GUID.
    pub interface_type: WireGuid,
    /// Highest guest-control protocol version the host speaks; non-zero.
    pub protocol_version: U32,
    /// Must be zero.
    pub reserved: U32,
}

const _: () = assert!(size_of::<PairingCapability>() == PAIRING_CAP_SIZE);
const _: () = assert!(PAIRING_CAP_DWORDS.checked_mul(4).is_some());
const _: () = assert!(PAIRING_CAP_DWORDS * 4 == PAIRING_CAP_SIZE);
const _: () = assert!(PAIRING_CAP_LENGTH as usize == PAIRING_CAP_SIZE);

/// What the capability tells the guest: the checked values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pairing {
    /// The channel offer's interface instance GUID; not nil.
    pub interface_instance: WireGuid,
    /// The channel offer's interface type GUID; not nil.
    pub interface_type: WireGuid,
    /// Highest guest-control protocol version the host speaks; non-zero.
    pub protocol_version: u32,
}

impl PairingCapability {
    /// The capability carrying `pairing`, with `next` as its next pointer.
    pub const fn new(pairing: &Pairing, next: u8) -> Self {
        Self {
            cap_id: PCI_CAP_ID_VENDOR,
            next,
            length: PAIRING_CAP_LENGTH,
            layout_version: PAIRING_LAYOUT_VERSION,
            signature: U32::new(PAIRING_SIGNATURE),
            interface_instance: pairing.interface_instance,
            interface_type: pairing.interface_type,
            protocol_version: U32::new(pairing.protocol_version),
            reserved: U32::new(0),
        }
    }

    /// The capability as the dwords a configuration-space read returns, first dword first.
    pub fn to_dwords(&self) -> [u32; PAIRING_CAP_DWORDS] {
        let mut dwords = [0u32; PAIRING_CAP_DWORDS];
        for (dword, chunk) in dwords.iter_mut().zip(self.as_bytes().chunks_exact(4)) {
            let mut bytes = [0u8; 4];
            bytes.copy_from_slice(chunk);
            *dword = u32::from_le_bytes(bytes);
        }
        dwords
    }
}

/// Checks `bytes` as exactly one version-1 pairing capability (checks in the order of the module
/// docs; the first failure is returned).
pub fn parse_pairing(bytes: &[u8]) -> Result<Pairing, PairingError> {
    let got = bytes.len();
    let too_short = PairingError::TooShort {
        expected: PAIRING_CAP_SIZE,
        got,
    };
    let Some(&cap_id) = bytes.first() else {
        return Err(too_short);
    };
    if cap_id != PCI_CAP_ID_VENDOR {
        return Err(PairingError::NotVendorSpecific { got: cap_id });
    }
    let signature = match bytes.get(4..8) {
        Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]),
        _ => return Err(too_short),
    };
    if signature != PAIRING_SIGNATURE {
        return Err(PairingError::BadSignature { got: signature });
    }
    let version = bytes.get(3).copied().unwrap_or(0);
    if version != PAIRING_LAYOUT_VERSION {
        return Err(PairingError::UnsupportedLayoutVersion {
            expected: PAIRING_LAYOUT_VERSION,
            got: version,
        });
    }
    let length = bytes.get(2).copied().unwrap_or(0);
    if length != PAIRING_CAP_LENGTH {
        return Err(PairingError::LengthMismatch {
            expected: PAIRING_CAP_LENGTH,
            got: length,
        });
    }
    if got > PAIRING_CAP_SIZE {
        return Err(PairingError::TooLong {
            expected: PAIRING_CAP_SIZE,
            got,
        });
    }
    let capability = PairingCapability::ref_from_bytes(bytes).map_err(|_| too_short)?;
    let reserved = capability.reserved.get();
    if reserved != 0 {
        return Err(PairingError::ReservedNotZero { got: reserved });
    }
    let protocol_version = capability.protocol_version.get();
    if protocol_version == 0 {
        return Err(PairingError::ZeroProtocolVersion);
    }
    if capability.interface_instance.is_nil() {
        return Err(PairingError::NilGuid {
            field: PairingGuidField::InterfaceInstance,
        });
    }
    if capability.interface_type.is_nil() {
        return Err(PairingError::NilGuid {
            field: PairingGuidField::InterfaceType,
        });
    }
    Ok(Pairing {
        interface_instance: capability.interface_instance,
        interface_type: capability.interface_type,
        protocol_version,
    })
}
