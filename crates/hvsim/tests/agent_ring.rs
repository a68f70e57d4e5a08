//! The agent end to end over a fake `uio_hv_generic` device: its session and its ring code
//! (`vmbmmio_guest::ring_channel`) on a shared ring map, against an in-process host peer that
//! reads the guest's packets from the same map with the ring code's host side and hands them
//! to the driver's real guest-packet handler through the simulated KMCL (`hvsim::guest_session`),
//! writing each completion back into the guest's incoming ring.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use hvsim::agent_peer::{RingHostPeer, bench_facts};
use hvsim::demo::SimPackets;
use hvsim::guest_session::GuestSession;
use vmbmmio_guest::channel::{ChannelError, PacketChannel};
use vmbmmio_guest::ring::{OnFull, OutgoingPacket, RingPair, VecRingMemory};
use vmbmmio_guest::ring_channel::{Doorbell, RingChannel};
use vmbmmio_guest::session::{Change, ProtocolSession};
use vmbmmio_proto::ioctl::MappingState;

/// Two rings of 4 KiB control page + 16 KiB data each.
const MAP_SIZE: usize = 2 * (4096 + 16384);

/// The guest's doorbell: ringing it lets the host peer run, as the host's interrupt would.
struct PeerBell(Rc<RefCell<RingHostPeer<Arc<VecRingMemory>>>>, u64);

impl Doorbell for PeerBell {
    fn ring(&mut self) -> Result<(), ChannelError> {
        self.1 += 1;
        self.0.borrow_mut().pump();
        Ok(())
    }

    fn wait(&mut self, _timeout_ms: u32) -> Result<(), ChannelError> {
        self.0.borrow_mut().pump();
        Ok(())
    }
}

#[test]
fn the_agent_over_a_fake_uio_device_is_backed_by_the_real_driver() {
    let mut bench = GuestSession::open(&[8 << 10, 4 << 10]).unwrap();
    let map = Arc::new(VecRingMemory::new(MAP_SIZE));
    let peer = Rc::new(RefCell::new(RingHostPeer::new(
        map.clone(),
        SimPackets::new(bench.guest, bench.channel),
    )));
    let channel = RingChannel::new(RingPair::guest(map).unwrap(), PeerBell(peer.clone(), 0));
    let mut session = ProtocolSession::start(channel, bench_facts(&bench)).unwrap();
    assert!(
        session.conversation().channel().doorbell().1 > 0,
        "the agent signalled the host"
    );
    assert!(!session.may_use());

    for region in 0..2 {
        bench
            .report_mapping(region, MappingState::SectionBacked)
            .unwrap();
    }
    // The driver completed the held WAIT_EVENT: the host's interrupt lets the peer copy it.
    peer.borrow_mut().pump();
    let changes = session.follow().unwrap();
    assert!(
        matches!(changes.as_slice(), [Change::Backed { .. }]),
        "{changes:?}"
    );
    assert!(session.may_use());
    assert_eq!(session.layout().unwrap().regions().len(), 2);

    session.release().unwrap();
    assert!(!session.may_use());
    drop(session);
    drop(peer);
    let left = bench.close();
    assert!(left.is_empty(), "{left}");
}

#[test]
fn a_host_that_breaks_the_ring_breaks_the_channel_not_the_agent() {
    let map = Arc::new(VecRingMemory::new(MAP_SIZE));
    let mut host = RingPair::host(map.clone()).unwrap();
    struct Quiet;
    impl Doorbell for Quiet {
        fn ring(&mut self) -> Result<(), ChannelError> {
            Ok(())
        }
        fn wait(&mut self, _: u32) -> Result<(), ChannelError> {
            Ok(())
        }
    }
    let mut channel = RingChannel::new(RingPair::guest(map.clone()).unwrap(), Quiet);
    // An in-band packet from the host: the protocol has none.
    let packet = OutgoingPacket::InBand {
        transaction_id: 7,
        completion_requested: false,
        payload: &[0u8; 16],
    };
    let _sent = host.outgoing.send(&packet, OnFull::Return).unwrap();
    assert!(matches!(
        channel.next_completion(),
        Err(ChannelError::Broken(_))
    ));
    assert!(matches!(
        channel.send(1, &[0u8; 16]),
        Err(ChannelError::Broken(_))
    ));
    // A completion stating more bytes than it has.
    let map = Arc::new(VecRingMemory::new(MAP_SIZE));
    let mut host = RingPair::host(map.clone()).unwrap();
    let mut channel = RingChannel::new(RingPair::guest(map).unwrap(), Quiet);
    let mut lying = [0u8; 16];
    lying[4..8].copy_from_slice(&4096u32.to_le_bytes());
    let packet = OutgoingPacket::Completion {
        transaction_id: 1,
        payload: &lying,
    };
    let _sent = host.outgoing.send(&packet, OnFull::Return).unwrap();
    assert!(matches!(
        channel.next_completion(),
        Err(ChannelError::Broken(_))
    ));
}
