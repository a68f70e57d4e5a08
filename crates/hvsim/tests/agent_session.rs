//! The Linux guest agent's session (`vmbmmio_guest::session`) against the driver's real guest
//! engine, over the simulated guest VMBus driver: the same code the agent runs over its
//! `uio_hv_generic` ring, here with the host side played by `hvsim::guest_session`.

use hvsim::agent_peer::bench_facts;
use hvsim::demo::SimPackets;
use hvsim::guest_session::GuestSession;
use vmbmmio_guest::session::{Change, ProtocolSession};
use vmbmmio_proto::ioctl::MappingState;

#[test]
fn the_session_may_use_the_memory_only_between_mapped_and_release() {
    let mut bench = GuestSession::open(&[8 << 10, 4 << 10]).unwrap();
    let facts = bench_facts(&bench);
    let mut session =
        ProtocolSession::start(SimPackets::new(bench.guest, bench.channel), facts).unwrap();
    assert!(!session.may_use(), "nothing is mapped yet");
    assert_eq!(session.follow().unwrap(), []);

    for region in 0..2 {
        bench
            .report_mapping(region, MappingState::SectionBacked)
            .unwrap();
    }
    let changes = session.follow().unwrap();
    assert!(
        matches!(
            changes.as_slice(),
            [Change::Backed {
                intercepted: false,
                ..
            }]
        ),
        "{changes:?}"
    );
    assert!(session.may_use());
    assert_eq!(session.layout().unwrap().regions().len(), 2);

    session.release().unwrap();
    assert!(
        !session.may_use(),
        "after RELEASING the memory is not the guest's"
    );
    for region in 0..2 {
        bench
            .report_mapping(region, MappingState::Unmapped)
            .unwrap();
    }
    let changes = session.follow().unwrap();
    assert!(
        changes
            .iter()
            .any(|change| matches!(change, Change::Unbacked { .. })),
        "{changes:?}"
    );
    assert!(!session.may_use());

    // Reported again (the BAR came back): backed again once the host maps.
    session.report(facts).unwrap();
    for region in 0..2 {
        bench
            .report_mapping(region, MappingState::SectionBacked)
            .unwrap();
    }
    session.follow().unwrap();
    assert!(session.may_use());
    drop(session);
    let left = bench.close();
    assert!(left.is_empty(), "{left}");
}

#[test]
fn a_closed_channel_ends_the_session() {
    let bench = GuestSession::open(&[4 << 10]).unwrap();
    let facts = bench_facts(&bench);
    let mut session =
        ProtocolSession::start(SimPackets::new(bench.guest, bench.channel), facts).unwrap();
    bench.guest.close(bench.channel).unwrap();
    // The held WAIT_EVENT is completed with CHANNEL_CLOSING when the channel suspends.
    let changes = session.follow().unwrap();
    assert!(changes.contains(&Change::Closed), "{changes:?}");
    assert!(session.closed() && !session.may_use());
    drop(session);
    let left = bench.close();
    assert!(left.is_empty(), "{left}");
}
