//! **Test facility**: the host side of a fake `uio_hv_generic` device for the Linux guest agent.
//!
//! On a real host the guest's ring packets reach the driver through VMBus and KMCL. Here a
//! peer reads them from the guest's outgoing ring (the agent's own ring code, from the host's
//! side: `RingPair::host`), hands each to the driver's real packet handler through the
//! simulated guest VMBus driver ([`SimPackets`]) and writes every completion the driver made
//! back into the guest's incoming ring. The agent's tests run it on the agent's thread (from
//! its doorbell) or on a thread of its own (over a shared file mapping).

use vmbmmio_guest::channel::PacketChannel;
use vmbmmio_guest::ring::{IncomingPacket, OnFull, OutgoingPacket, RingMemory, RingPair};
use vmbmmio_guest::session::DeviceFacts;

use crate::demo::SimPackets;
use crate::guest_session::{GuestSession, INTERFACE_INSTANCE};

/// The host end of the rings, forwarding to the driver.
pub struct RingHostPeer<M: RingMemory + Clone> {
    rings: RingPair<M>,
    driver: SimPackets,
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
        }
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
