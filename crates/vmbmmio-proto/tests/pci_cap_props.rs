//! Property tests of the pairing capability: hostile bytes never make the parser or the walk
//! panic (or loop), and what the builder writes parses back to the same values.

use proptest::prelude::*;
use vmbmmio_proto::ioctl::WireGuid;
use vmbmmio_proto::pci_cap::*;
use zerocopy::IntoBytes;

fn pairing() -> impl Strategy<Value = Pairing> {
    (1u128..=u128::MAX, 1u128..=u128::MAX, 1u32..=u32::MAX).prop_map(|(instance, kind, version)| {
        Pairing {
            interface_instance: WireGuid::from_u128(instance),
            interface_type: WireGuid::from_u128(kind),
            protocol_version: version,
        }
    })
}

proptest! {
    #[test]
    fn parsing_any_bytes_returns(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
        let _ = parse_pairing(&bytes);
    }

    #[test]
    fn parsing_mutated_capabilities_returns(pairing in pairing(), at in 0usize..48, value: u8) {
        let mut bytes = PairingCapability::new(&pairing, 0).as_bytes().to_vec();
        // Writing the byte it already holds is no mutation.
        prop_assume!(bytes[at] != value);
        bytes[at] = value;
        if let Ok(parsed) = parse_pairing(&bytes) {
            // Only the next pointer and the payload may change and still parse.
            prop_assert!(at == 1 || (8..44).contains(&at));
            let rebuilt = PairingCapability::new(&parsed, bytes[1]);
            prop_assert_eq!(rebuilt.as_bytes(), &bytes[..]);
        }
    }

    #[test]
    fn walking_any_config_space_returns(bytes in proptest::collection::vec(any::<u8>(), 256)) {
        let mut reads = 0usize;
        let _ = find_pairing(|offset| {
            reads += 1;
            let at = usize::from(offset);
            assert!(at % 4 == 0 && at + 4 <= 256, "read at {at:#x}");
            u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
        });
        // Status, pointer, and per capability at most header + signature + 12 dwords.
        prop_assert!(reads <= 2 + MAX_CAPABILITIES * 14);
    }

    #[test]
    fn build_parse_round_trip(pairing in pairing(), next: u8) {
        let capability = PairingCapability::new(&pairing, next);
        prop_assert_eq!(parse_pairing(capability.as_bytes()), Ok(pairing));
        let dwords = capability.to_dwords();
        let bytes: Vec<u8> = dwords.iter().flat_map(|d| d.to_le_bytes()).collect();
        prop_assert_eq!(parse_pairing(&bytes), Ok(pairing));
    }

    #[test]
    fn the_walk_finds_it_anywhere(pairing in pairing(), slot in 0u16..(256 - 48) / 4 - 15) {
        let offset = 0x40 + slot * 4;
        let mut space = [0u8; 256];
        space[6] = PCI_STATUS_CAP_LIST as u8;
        space[0x34] = offset as u8;
        let at = usize::from(offset);
        space[at..at + 48].copy_from_slice(PairingCapability::new(&pairing, 0).as_bytes());
        let found = find_pairing(|o| {
            let o = usize::from(o);
            u32::from_le_bytes(space[o..o + 4].try_into().unwrap())
        });
        prop_assert_eq!(found, Ok(Some(FoundPairing { offset, pairing })));
    }
}
