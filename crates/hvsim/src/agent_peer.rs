//! **Test facility**: the host side of a fake `uio_hv_generic` device for the Linux guest agent.
//!
//! On a real host the guest's ring packets reach the driver through VMBus and KMCL. Here a
//! peer reads them from the guest's outgoing ring (the agent's own ring code, from the host's
//! side: `RingPair::host`), hands each to the driver's real packet handler through the
//! simulated guest VMBus driver ([`SimPackets`]) and writes every completion the driver made
//! back into the guest's incoming ring. The agent's tests run it on the agent's thread (from
//! its doorbell) or on a thread of its own (over a shared file mapping).
//!
//! [`UioHost`] is the whole host behind one open of a fake `/dev/uioN`: a fresh session of
//! the driver whose channel the guest opened (each open of a real `uio_hv_generic` node opens
//! the channel, `hv_uio_open` in Linux `drivers/uio/uio_hv_generic.c`), the ring peer, and a
//! device host that backs the regions when the guest is READY and unmaps them when it
//! releases. The agent's end-to-end tests step it on a thread while the agent's binary runs.

use vmbmmio_guest::channel::PacketChannel;
use vmbmmio_guest::ring::{IncomingPacket, OnFull, OutgoingPacket, RingMemory, RingPair};
use vmbmmio_guest::session::DeviceFacts;
use vmbmmio_proto::guest::{
    HostInfo, PROTOCOL_VERSION_1_0, ReplyBody, encode_hello_reply, parse_reply,
};
use vmbmmio_proto::ioctl::{BarRegion, GuestSnapshot, MappingState, NamedRegionRequest, WireGuid};

use crate::demo::SimPackets;
use crate::guest_session::{GuestSession, INTERFACE_INSTANCE};

/// The host end of the rings, forwarding to the driver.
pub struct RingHostPeer<M: RingMemory + Clone> {
    rings: RingPair<M>,
    driver: SimPackets,
    only_1_0: bool,
}

impl<M: RingMemory + Clone> RingHostPeer<M> {
    /// The peer of the rings in `map`, forwarding to the channel `driver` reaches.
    ///
    /// # Panics
    /// If the map is not a valid TXRX map (a test setup error).
    pub fn new(map: M, driver: SimPackets) -> Self {
        Self {
            rings: RingPair::host(map).expect("a valid TXRX map"),
            driver,
            only_1_0: false,
        }
    }

    /// From now on the peer states protocol 1.0 as the host's highest version in every
    /// `HELLO_REPLY` (a driver older than 1.1, as a guest sees it: the driver still speaks
    /// 1.0 to a guest that selects it, and has no doorbells in that conversation).
    pub fn state_only_1_0(&mut self) {
        self.only_1_0 = true;
    }

    /// Carries every packet the guest wrote to the driver and every completion the driver
    /// made back; returns whether it wrote a completion (the host would signal the guest).
    ///
    /// # Panics
    /// If the guest broke the ring or the driver refused a packet: a test failure.
    pub fn pump(&mut self) -> bool {
        while let Some(received) = self.rings.incoming.recv(64 * 1024).expect("guest ring") {
            if let IncomingPacket::InBand {
                transaction_id,
                payload,
                ..
            } = received.packet
            {
                // The ring pads payloads to 8 bytes; the protocol header states the length.
                let size = payload
                    .get(4..8)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, |b| u32::from_le_bytes(b) as usize);
                let message = payload.get(..size).unwrap_or(&payload);
                self.driver
                    .send(transaction_id, message)
                    .expect("the driver takes the packet");
            }
        }
        let mut wrote = false;
        while let Some((transaction_id, reply)) =
            self.driver.next_completion().expect("driver completions")
        {
            let reply = if self.only_1_0 {
                as_1_0_host(reply)
            } else {
                reply
            };
            let packet = OutgoingPacket::Completion {
                transaction_id,
                payload: &reply,
            };
            let _sent = self
                .rings
                .outgoing
                .send(&packet, OnFull::Return)
                .expect("room for the completion");
            wrote = true;
        }
        wrote
    }
}

/// `reply` as a host of protocol 1.0 only would send it: a `HELLO_REPLY` states 1.0 as its
/// highest version; every other reply is unchanged.
fn as_1_0_host(reply: Vec<u8>) -> Vec<u8> {
    let Ok(parsed) = parse_reply(&reply) else {
        return reply;
    };
    let ReplyBody::HelloReply(host) = parsed.body else {
        return reply;
    };
    let host = HostInfo {
        max_version: PROTOCOL_VERSION_1_0,
        ..host
    };
    let mut out = vec![0u8; reply.len()];
    let len = encode_hello_reply(&mut out, parsed.request_id, &host).expect("a valid HELLO_REPLY");
    out.truncate(len);
    out
}

/// The device facts a guest of `bench` reports: the bench's channel instance, BAR2 at a fixed
/// plausible base, no reservation.
pub fn bench_facts(bench: &GuestSession) -> DeviceFacts {
    DeviceFacts {
        instance: INTERFACE_INSTANCE,
        segment: 0,
        bus: 0,
        devfn: 0,
        bar_index: 2,
        bar_base: 0x10_0000_0000,
        bar_size: bench.bar_size(),
        reservation: None,
    }
}

/// The host behind one open of a fake uio device: the driver's session (with the guest's
/// channel open), the peer of the rings in `M`, and a device host following the guest.
///
/// Its simulated KMCL is thread-local: open, step and close it on one thread.
pub struct UioHost<M: RingMemory + Clone> {
    bench: GuestSession,
    peer: RingHostPeer<M>,
    regions: u32,
    backs: bool,
    backed: bool,
    ever_backed: bool,
    saw_releasing: bool,
}

impl<M: RingMemory + Clone> UioHost<M> {
    /// A fresh session with guest-writable regions of `sizes` and the peer of the rings in
    /// `map` (zeroed: the guest's side initializes nothing the host reads first).
    ///
    /// # Panics
    /// If `map` is not a valid TXRX map (a test setup error).
    pub fn open(map: M, sizes: &[u64]) -> Result<Self, String> {
        Self::over(map, GuestSession::open(sizes)?, sizes.len())
    }

    /// As [`Self::open`] with a version-2 session: named regions, visible to host consumers
    /// as VM `vm_id` (they attach and ring through [`Self::session_mut`]).
    ///
    /// # Panics
    /// If `map` is not a valid TXRX map (a test setup error).
    pub fn open_named(
        map: M,
        vm_id: WireGuid,
        regions: &[NamedRegionRequest],
    ) -> Result<Self, String> {
        Self::over(
            map,
            GuestSession::open_named(vm_id, regions)?,
            regions.len(),
        )
    }

    fn over(map: M, bench: GuestSession, regions: usize) -> Result<Self, String> {
        let regions = u32::try_from(regions).map_err(|_| "too many regions")?;
        let peer = RingHostPeer::new(map, SimPackets::new(bench.guest, bench.channel));
        Ok(Self {
            bench,
            peer,
            regions,
            backs: true,
            backed: false,
            ever_backed: false,
            saw_releasing: false,
        })
    }

    /// From now on the device host never backs the regions (a host whose mapping never
    /// comes): the guest waits for `REGIONS_MAPPED` in vain.
    pub fn never_back(&mut self) {
        self.backs = false;
    }

    /// One round of the host: carries the guest's packets to the driver and back; backs every
    /// region (`SectionBacked`) when the guest wants them backed and unmaps them when it stops
    /// wanting them (`RELEASING`, decode off), as a device host does; then carries the
    /// completions that caused back to the rings.
    ///
    /// # Panics
    /// If the guest broke the ring, the driver refused a packet or a mapping report: a test
    /// failure.
    pub fn step(&mut self) {
        self.peer.pump();
        let wants = self.observe();
        if wants && self.backs && !self.backed {
            self.report_all(MappingState::SectionBacked);
            self.backed = true;
            self.ever_backed = true;
        } else if !wants && self.backed {
            self.report_all(MappingState::Unmapped);
            self.backed = false;
        }
        self.peer.pump();
        let _ = self.observe();
    }

    /// From now on the host states protocol 1.0 as its highest version
    /// ([`RingHostPeer::state_only_1_0`]): call before the guest's `HELLO`.
    pub fn state_only_1_0(&mut self) {
        self.peer.state_only_1_0();
    }

    /// The driver's session, for host consumers of a version-2 session (their IOCTLs, in
    /// processes of their own, through its `control` and `kernel`).
    pub fn session_mut(&mut self) -> &mut GuestSession {
        &mut self.bench
    }

    /// The session's BAR size (what the fake PCI function's BAR must be).
    pub fn bar_size(&self) -> u64 {
        self.bench.bar_size()
    }

    /// The regions' places in the BAR (what the guest's layout says once they are backed).
    pub fn bar_regions(&self) -> Vec<BarRegion> {
        self.bench.bar_regions().to_vec()
    }

    /// The facts a guest of this host reports ([`bench_facts`]).
    pub fn facts(&self) -> DeviceFacts {
        bench_facts(&self.bench)
    }

    /// Whether the device host backed the regions at some point.
    pub fn ever_backed(&self) -> bool {
        self.ever_backed
    }

    /// Whether the device host backs the regions now.
    pub fn backed(&self) -> bool {
        self.backed
    }

    /// Whether the guest said `RELEASING` (with a device reported) at some point.
    pub fn saw_releasing(&self) -> bool {
        self.saw_releasing
    }

    /// What the guest has reported so far (the driver's snapshot).
    pub fn snapshot(&self) -> GuestSnapshot {
        self.bench.events().inspect(|queue| queue.current())
    }

    /// Packets the guest sent on this open of the channel.
    pub fn guest_packets(&self) -> u64 {
        self.snapshot().guest_packets
    }

    /// The device host exits (the session's channel closes): what is left over, as text
    /// (empty when everything balanced), as [`GuestSession::close`].
    pub fn close(self) -> String {
        drop(self.peer);
        self.bench.close()
    }

    /// Notes what the guest said; whether it wants the regions backed now.
    fn observe(&mut self) -> bool {
        let device = self.snapshot().device;
        if device.is_some_and(|device| device.releasing) {
            self.saw_releasing = true;
        }
        device.is_some_and(|device| device.wants_backing())
    }

    fn report_all(&mut self, state: MappingState) {
        for region in 0..self.regions {
            self.bench
                .report_mapping(region, state)
                .unwrap_or_else(|status| panic!("REPORT_MAPPING {region} {state:?}: {status:#x}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::sync::Arc;

    use vmbmmio_guest::channel::{ChannelError, PacketChannel};
    use vmbmmio_guest::ring::VecRingMemory;
    use vmbmmio_guest::ring_channel::{Doorbell, RingChannel};
    use vmbmmio_guest::session::ProtocolSession;

    use super::*;

    /// Two rings of 4 KiB control page + 16 KiB data each.
    const MAP_SIZE: usize = 2 * (4096 + 16384);

    type Host = Rc<RefCell<UioHost<Arc<VecRingMemory>>>>;

    /// The guest's doorbell: every signal and every wait lets the host take a step.
    struct StepBell(Host);

    impl Doorbell for StepBell {
        fn ring(&mut self) -> Result<(), ChannelError> {
            self.0.borrow_mut().step();
            Ok(())
        }

        fn wait(&mut self, _timeout_ms: u32) -> Result<(), ChannelError> {
            self.0.borrow_mut().step();
            Ok(())
        }
    }

    fn guest(
        backs: bool,
    ) -> (
        Host,
        ProtocolSession<RingChannel<Arc<VecRingMemory>, StepBell>>,
    ) {
        let map = Arc::new(VecRingMemory::new(MAP_SIZE));
        let mut host = UioHost::open(map.clone(), &[8 << 10, 4 << 10]).unwrap();
        if !backs {
            host.never_back();
        }
        let facts = host.facts();
        let host = Rc::new(RefCell::new(host));
        let channel = RingChannel::new(RingPair::guest(map).unwrap(), StepBell(host.clone()));
        (host, ProtocolSession::start(channel, facts).unwrap())
    }

    #[test]
    fn the_host_backs_a_ready_guest_and_unmaps_when_it_releases() {
        let (host, mut session) = guest(true);
        for _ in 0..100 {
            if session.may_use() {
                break;
            }
            let _changes = session.follow().unwrap();
            session.conversation().channel().wait(1).unwrap();
        }
        assert!(session.may_use());
        assert!(host.borrow().ever_backed() && host.borrow().backed());
        assert!(!host.borrow().saw_releasing());

        session.release().unwrap();
        host.borrow_mut().step();
        assert!(host.borrow().saw_releasing());
        assert!(!host.borrow().backed());
        assert!(host.borrow().guest_packets() >= 7);
        drop(session);
        let host = Rc::into_inner(host).unwrap().into_inner();
        let left = host.close();
        assert!(left.is_empty(), "{left}");
    }

    #[test]
    fn a_host_that_never_backs_leaves_the_guest_waiting() {
        let (host, mut session) = guest(false);
        for _ in 0..20 {
            let _changes = session.follow().unwrap();
            session.conversation().channel().wait(1).unwrap();
        }
        assert!(!session.may_use());
        assert!(!host.borrow().ever_backed());
        session.release().unwrap();
        host.borrow_mut().step();
        assert!(host.borrow().saw_releasing());
        drop(session);
        let host = Rc::into_inner(host).unwrap().into_inner();
        let left = host.close();
        assert!(left.is_empty(), "{left}");
    }
}
