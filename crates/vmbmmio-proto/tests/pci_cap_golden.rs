//! Golden bytes and one test per validation rule of the pairing capability.

use vmbmmio_proto::ioctl::WireGuid;
use vmbmmio_proto::pci_cap::*;
use zerocopy::IntoBytes;

const INSTANCE: u128 = 0x3c1d77a0_52e4_4b8e_9d21_6f0ab5c31001;
const TYPE: u128 = 0x9d0ee607_90ef_4c63_8f88_a81dcbc7ca83;

fn pairing() -> Pairing {
    Pairing {
        interface_instance: WireGuid::from_u128(INSTANCE),
        interface_type: WireGuid::from_u128(TYPE),
        protocol_version: CHANNEL_PROTOCOL_VERSION,
    }
}

/// The capability, as a guest reads it: 48 bytes.
const GOLDEN: [u8; 48] = [
    0x09, 0x00, 0x30, 0x01, // ID vendor-specific, next 0, length 48, layout version 1
    b'V', b'M', b'B', b'P', // signature
    // instance {3c1d77a0-52e4-4b8e-9d21-6f0ab5c31001}, Windows GUID layout
    0xa0, 0x77, 0x1d, 0x3c, 0xe4, 0x52, 0x8e, 0x4b, 0x9d, 0x21, 0x6f, 0x0a, 0xb5, 0xc3, 0x10, 0x01,
    // type {9d0ee607-90ef-4c63-8f88-a81dcbc7ca83}
    0x07, 0xe6, 0x0e, 0x9d, 0xef, 0x90, 0x63, 0x4c, 0x8f, 0x88, 0xa8, 0x1d, 0xcb, 0xc7, 0xca, 0x83,
    0x00, 0x00, 0x01, 0x00, // protocol version 1.0 (0x0001_0000)
    0x00, 0x00, 0x00, 0x00, // reserved
];

#[test]
fn golden_bytes_and_dwords() {
    let capability = PairingCapability::new(&pairing(), 0);
    assert_eq!(capability.as_bytes(), GOLDEN);
    assert_eq!(
        capability.to_dwords(),
        [
            0x0130_0009,
            0x5042_4D56,
            0x3c1d_77a0,
            0x4b8e_52e4,
            0x0a6f_219d,
            0x0110_c3b5,
            0x9d0e_e607,
            0x4c63_90ef,
            0x1da8_888f,
            0x83ca_c7cb,
            0x0001_0000,
            0
        ]
    );
    assert_eq!(parse_pairing(&GOLDEN), Ok(pairing()));
    let chained = PairingCapability::new(&pairing(), 0x70);
    assert_eq!(chained.as_bytes()[1], 0x70);
}

fn broken(at: usize, value: u8) -> [u8; 48] {
    let mut bytes = GOLDEN;
    bytes[at] = value;
    bytes
}

#[test]
fn every_rule_has_its_error() {
    assert_eq!(
        parse_pairing(&[]),
        Err(PairingError::TooShort {
            expected: 48,
            got: 0
        })
    );
    assert_eq!(
        parse_pairing(&GOLDEN[..7]),
        Err(PairingError::TooShort {
            expected: 48,
            got: 7
        })
    );
    assert_eq!(
        parse_pairing(&broken(0, 0x10)),
        Err(PairingError::NotVendorSpecific { got: 0x10 })
    );
    assert_eq!(
        parse_pairing(&broken(4, b'X')),
        Err(PairingError::BadSignature {
            got: u32::from_le_bytes(*b"XMBP")
        })
    );
    assert_eq!(
        parse_pairing(&broken(3, 2)),
        Err(PairingError::UnsupportedLayoutVersion {
            expected: 1,
            got: 2
        })
    );
    assert_eq!(
        parse_pairing(&broken(2, 44)),
        Err(PairingError::LengthMismatch {
            expected: 48,
            got: 44
        })
    );
    assert_eq!(
        parse_pairing(&GOLDEN[..47]),
        Err(PairingError::TooShort {
            expected: 48,
            got: 47
        })
    );
    let mut long = GOLDEN.to_vec();
    long.push(0);
    assert_eq!(
        parse_pairing(&long),
        Err(PairingError::TooLong {
            expected: 48,
            got: 49
        })
    );
    assert_eq!(
        parse_pairing(&broken(47, 1)),
        Err(PairingError::ReservedNotZero { got: 0x0100_0000 })
    );
    let mut zero_version = GOLDEN;
    zero_version[40..44].fill(0);
    assert_eq!(
        parse_pairing(&zero_version),
        Err(PairingError::ZeroProtocolVersion)
    );
    let mut nil_instance = GOLDEN;
    nil_instance[8..24].fill(0);
    assert_eq!(
        parse_pairing(&nil_instance),
        Err(PairingError::NilGuid {
            field: PairingGuidField::InterfaceInstance
        })
    );
    let mut nil_type = GOLDEN;
    nil_type[24..40].fill(0);
    assert_eq!(
        parse_pairing(&nil_type),
        Err(PairingError::NilGuid {
            field: PairingGuidField::InterfaceType
        })
    );
}

/// A 256-byte configuration space with the status bit, the pointer at 0x34 and `caps` placed at
/// their offsets.
fn space(pointer: u8, caps: &[(usize, &[u8])]) -> [u8; 256] {
    let mut bytes = [0u8; 256];
    bytes[0..4].copy_from_slice(&0x1110_1af4u32.to_le_bytes());
    bytes[6] = PCI_STATUS_CAP_LIST as u8;
    bytes[0x34] = pointer;
    for (at, cap) in caps {
        bytes[*at..*at + cap.len()].copy_from_slice(cap);
    }
    bytes
}

fn reader(bytes: &[u8; 256]) -> impl FnMut(u16) -> u32 + '_ {
    |offset| {
        assert_eq!(offset % 4, 0, "dword reads only");
        let at = usize::from(offset);
        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
    }
}

#[test]
fn the_walk_finds_the_capability_behind_others() {
    // A power-management capability at 0x40, another vendor's vendor-specific one at 0x48,
    // then the pairing capability at 0x80 (pointer low bits set: they are masked).
    let other_vendor = [0x09, 0x81, 0x08, 0x01, b'A', b'C', b'M', b'E'];
    let space = space(
        0x40,
        &[
            (0x40, &[0x01, 0x4B, 0, 0]),
            (0x48, &other_vendor),
            (0x80, &GOLDEN),
        ],
    );
    assert_eq!(
        find_pairing(reader(&space)),
        Ok(Some(FoundPairing {
            offset: 0x80,
            pairing: pairing()
        }))
    );
}

#[test]
fn the_walk_refuses_broken_lists() {
    // No capability list bit: no pairing, nothing else read.
    let mut bytes = space(0x40, &[(0x40, &GOLDEN)]);
    bytes[6] = 0;
    assert_eq!(find_pairing(reader(&bytes)), Ok(None));
    // An empty list.
    assert_eq!(find_pairing(reader(&space(0, &[]))), Ok(None));
    // A pointer into the standard header.
    assert_eq!(
        find_pairing(reader(&space(0x10, &[]))),
        Err(PairingError::PointerOutOfRange { pointer: 0x10 })
    );
    // A loop.
    assert_eq!(
        find_pairing(reader(&space(0x40, &[(0x40, &[0x01, 0x40, 0, 0])]))),
        Err(PairingError::ListTooLong)
    );
    // A capability that runs past 0x100.
    let mut tail = GOLDEN;
    tail[1] = 0;
    assert_eq!(
        find_pairing(reader(&space(0xF0, &[(0xF0, &tail[..16])]))),
        Err(PairingError::OutOfBounds { offset: 0xF0 })
    );
    // Two of them.
    let mut first = GOLDEN;
    first[1] = 0x80;
    assert_eq!(
        find_pairing(reader(&space(0x40, &[(0x40, &first), (0x80, &GOLDEN)]))),
        Err(PairingError::Duplicate {
            first: 0x40,
            second: 0x80
        })
    );
    // Our signature with a broken body is an error, not a skip.
    let mut bad = GOLDEN;
    bad[44] = 1;
    assert_eq!(
        find_pairing(reader(&space(0x40, &[(0x40, &bad)]))),
        Err(PairingError::ReservedNotZero { got: 1 })
    );
    // All ones, as an absent function reads: a loop at 0xFC, refused.
    let ones = [0xFFu8; 256];
    assert_eq!(find_pairing(reader(&ones)), Err(PairingError::ListTooLong));
}
