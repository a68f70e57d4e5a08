//! Property tests of issue 14's IOCTL additions: no input makes a new parser panic, and what a
//! builder or constructor produces parses back to the same values.

use core::num::NonZeroU64;

use proptest::prelude::*;
use vmbmmio_proto::guest::{RegionName, RegionState};
use vmbmmio_proto::ioctl::*;
use zerocopy::IntoBytes;

fn parse_with_every_new_parser(bytes: &[u8]) {
    let _ = parse_open_session_v2(bytes);
    let _ = parse_open_session_any(bytes);
    let _ = parse_list_sessions(bytes);
    let _ = parse_list_sessions_reply(bytes);
    let _ = parse_attach_region(bytes);
    let _ = parse_attach_region_reply(bytes);
    let _ = parse_detach_region(bytes);
    let _ = parse_detach_region_reply(bytes);
    let _ = parse_set_doorbell_event(bytes);
    let _ = parse_set_doorbell_event_reply(bytes);
    let _ = parse_take_doorbells(bytes);
    let _ = parse_take_doorbells_reply(bytes);
    let _ = parse_ring_guest(bytes);
    let _ = parse_ring_guest_reply(bytes);
}

/// A valid required name: 1..=32 printable ASCII bytes.
fn region_name() -> impl Strategy<Value = RegionName> {
    "[ -~]{1,32}".prop_map(|text| RegionName::required(&text).unwrap())
}

fn unique_names(count: usize) -> impl Strategy<Value = Vec<RegionName>> {
    proptest::collection::hash_set("[a-z0-9_.-]{1,32}", count).prop_map(|set| {
        set.iter()
            .map(|t| RegionName::required(t).unwrap())
            .collect()
    })
}

fn non_nil_guid() -> impl Strategy<Value = WireGuid> {
    (1u128..=u128::MAX).prop_map(WireGuid::from_u128)
}

fn access() -> impl Strategy<Value = SectionAccess> {
    prop_oneof![Just(SectionAccess::Read), Just(SectionAccess::ReadWrite)]
}

fn state() -> impl Strategy<Value = RegionState> {
    prop_oneof![
        Just(RegionState::Unmapped),
        Just(RegionState::Mapped),
        Just(RegionState::Intercepted)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..900)) {
        parse_with_every_new_parser(&bytes);
    }

    #[test]
    fn random_bodies_behind_a_valid_header_never_panic(
        kind_index in 0usize..MessageKind::ALL.len(),
        version in 1u16..=2,
        body in proptest::collection::vec(any::<u8>(), 0..900),
    ) {
        let kind = MessageKind::ALL[kind_index];
        let size = 16 + body.len();
        let mut bytes = MessageHeader::versioned(kind, size as u32, version).as_bytes().to_vec();
        bytes.extend_from_slice(&body);
        parse_with_every_new_parser(&bytes);
    }

    #[test]
    fn open_session_v2_round_trips(
        names in (1usize..=16).prop_flat_map(unique_names),
        sizes in proptest::collection::vec(1u64..=(1 << 20), 16),
        flags in proptest::collection::vec((any::<bool>(), any::<bool>()), 16),
        vm_id in non_nil_guid(),
    ) {
        let regions: Vec<NamedRegionRequest> = names
            .iter()
            .zip(&sizes)
            .zip(&flags)
            .map(|((name, &size), &(guest, consumer))| NamedRegionRequest {
                size,
                guest_writable: guest,
                consumer_writable: consumer,
                name: *name,
            })
            .collect();
        let request = OpenSessionV2Request::build(
            Target::Loopback,
            WireGuid::from_u128(1),
            WireGuid::from_u128(2),
            vm_id,
            &regions,
        )
        .unwrap();
        let params = parse_open_session_any(request.as_bytes()).unwrap();
        prop_assert_eq!(params.vm_id(), Some(vm_id));
        prop_assert_eq!(params.regions().len(), regions.len());
        for (valid, asked) in params.regions().iter().zip(&regions) {
            prop_assert_eq!(valid.requested_size, asked.size);
            prop_assert_eq!(valid.guest_writable, asked.guest_writable);
            prop_assert_eq!(valid.consumer_writable, asked.consumer_writable);
            prop_assert_eq!(valid.name, asked.name);
        }
    }

    #[test]
    fn session_listing_round_trips(
        names in (1usize..=16).prop_flat_map(unique_names),
        pages in proptest::collection::vec(1u64..=(1 << 20), 16),
        states in proptest::collection::vec(state(), 16),
        total in 1u32..=u32::MAX,
        index_seed in any::<u32>(),
        vm_id in non_nil_guid(),
        session_id in any::<u64>(),
    ) {
        let regions: Vec<ListedRegion> = names
            .iter()
            .zip(&pages)
            .zip(&states)
            .map(|((name, &pages), &state)| ListedRegion {
                size: pages * 4096,
                guest_writable: pages % 2 == 0,
                consumer_writable: pages % 3 == 0,
                state,
                name: *name,
            })
            .collect();
        let index = index_seed % total;
        let listing = SessionListing::new(total, index, vm_id, session_id, &regions).unwrap();
        let parsed = parse_list_sessions_reply(listing.to_reply().as_bytes()).unwrap();
        prop_assert_eq!(parsed, listing);
        prop_assert_eq!(parsed.regions(), regions.as_slice());
    }

    #[test]
    fn attach_round_trips(
        vm_id in non_nil_guid(),
        name in region_name(),
        access in access(),
        id in 1u64..=u64::MAX,
        handle in 1u64..=u64::MAX,
        pages in 1u64..=(1 << 20),
        region_index in 0u32..16,
    ) {
        let request = AttachRegionRequest::build(vm_id, &name, access).unwrap();
        prop_assert_eq!(
            parse_attach_region(request.as_bytes()),
            Ok(AttachRegionParams { vm_id, name, access })
        );
        let id = AttachmentId::new(id).unwrap();
        let attached = RegionAttached::new(id, handle, pages * 4096, access, region_index).unwrap();
        prop_assert_eq!(parse_attach_region_reply(attached.to_reply().as_bytes()), Ok(attached));
    }

    #[test]
    fn attachment_messages_round_trip(
        id in 1u64..=u64::MAX,
        handle in any::<u64>(),
        value in any::<u64>(),
        counters in any::<[u64; 4]>(),
    ) {
        let id = AttachmentId::new(id).unwrap();
        prop_assert_eq!(parse_detach_region(DetachRegionRequest::build(id).as_bytes()), Ok(id));
        prop_assert_eq!(parse_detach_region_reply(DetachRegionReply::new(id).as_bytes()), Ok(id));
        let handle = NonZeroU64::new(handle);
        prop_assert_eq!(
            parse_set_doorbell_event(SetDoorbellEventRequest::build(id, handle).as_bytes()),
            Ok(DoorbellEventParams { attachment: id, event_handle: handle })
        );
        prop_assert_eq!(
            parse_set_doorbell_event_reply(SetDoorbellEventReply::new(id).as_bytes()),
            Ok(id)
        );
        prop_assert_eq!(parse_take_doorbells(TakeDoorbellsRequest::build(id).as_bytes()), Ok(id));
        let tally = DoorbellTally {
            attachment: id,
            count: counters[0],
            last_value: counters[1],
            refused_from_guest: counters[2],
            refused_to_guest: counters[3],
        };
        prop_assert_eq!(parse_take_doorbells_reply(tally.to_reply().as_bytes()), Ok(tally));
        prop_assert_eq!(
            parse_ring_guest(RingGuestRequest::build(id, value).as_bytes()),
            Ok(RingGuestParams { attachment: id, value })
        );
        prop_assert_eq!(parse_ring_guest_reply(RingGuestReply::new(id).as_bytes()), Ok(id));
    }
}
