//! The agent's Linux backend end to end: its session over rings in a shared file mapping
//! (`vmbmmio_guest::linux::MmapRing`, as it maps `/dev/uioN`), against a host peer on another
//! thread that maps the same file, carries the guest's packets to the driver's real handler
//! (`hvsim::guest_session`, whose simulated KMCL is thread-local: it lives on the peer thread)
//! and writes the completions back. Then the layout's regions through a mapped BAR file
//! (`vmbmmio_guest::linux::BarMapping`).
#![cfg(target_os = "linux")]

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::{Duration, Instant};

use hvsim::agent_peer::RingHostPeer;
use hvsim::demo::SimPackets;
use hvsim::guest_session::{GuestSession, INTERFACE_INSTANCE};
use vmbmmio_guest::channel::{ChannelError, PacketChannel};
use vmbmmio_guest::linux::{BarMapping, MmapRing};
use vmbmmio_guest::ring::RingPair;
use vmbmmio_guest::ring_channel::{Doorbell, RingChannel};
use vmbmmio_guest::session::{DeviceFacts, ProtocolSession};
use vmbmmio_proto::guest::RegionAccess;
use vmbmmio_proto::ioctl::MappingState;

/// Two rings of 4 KiB control page + 16 KiB data each.
const MAP_SIZE: usize = 2 * (4096 + 16384);

/// A temporary file of `len` zero bytes (a regular file maps like the uio device's pages).
fn temp_file(name: &str, len: u64) -> PathBuf {
    let path = std::env::temp_dir().join(format!("vmbmmio-{name}-{}", std::process::id()));
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(len).unwrap();
    path
}

fn map(path: &PathBuf) -> Arc<MmapRing> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    Arc::new(MmapRing::map(&file, path, 0, MAP_SIZE).unwrap())
}

/// What the guest's thread tells the peer.
enum ToPeer {
    /// The guest signalled (the uio `irqcontrol` write).
    Signal,
    /// Back the regions (what the device host would do).
    Back,
    /// Finish.
    Stop,
}

/// The guest's doorbell: a signal to the peer thread; waiting is for the peer's signal.
struct ThreadBell {
    to_peer: Sender<ToPeer>,
    from_peer: Receiver<()>,
}

impl Doorbell for ThreadBell {
    fn ring(&mut self) -> Result<(), ChannelError> {
        self.to_peer
            .send(ToPeer::Signal)
            .map_err(|_| ChannelError::Closed)
    }

    fn wait(&mut self, timeout_ms: u32) -> Result<(), ChannelError> {
        match self
            .from_peer
            .recv_timeout(Duration::from_millis(u64::from(timeout_ms)))
        {
            Ok(()) | Err(RecvTimeoutError::Timeout) => Ok(()),
            Err(RecvTimeoutError::Disconnected) => Err(ChannelError::Closed),
        }
    }
}

/// The host peer: owns the simulated host (on its own thread) and its side of the rings.
fn host_peer(
    path: PathBuf,
    commands: Receiver<ToPeer>,
    signal: Sender<()>,
    bar_size: Sender<u64>,
) -> String {
    let mut bench = GuestSession::open(&[8 << 10, 4 << 10]).unwrap();
    bar_size.send(bench.bar_size()).unwrap();
    let mut peer = RingHostPeer::new(map(&path), SimPackets::new(bench.guest, bench.channel));
    loop {
        match commands.recv_timeout(Duration::from_millis(5)) {
            Ok(ToPeer::Signal) | Err(RecvTimeoutError::Timeout) => {}
            Ok(ToPeer::Back) => {
                for region in 0..2 {
                    bench
                        .report_mapping(region, MappingState::SectionBacked)
                        .unwrap();
                }
            }
            Ok(ToPeer::Stop) | Err(RecvTimeoutError::Disconnected) => break,
        }
        if peer.pump() {
            let _ = signal.send(());
        }
    }
    drop(peer);
    bench.close()
}

#[test]
fn the_agent_over_mapped_rings_is_backed_by_the_real_driver_on_another_thread() {
    let ring_file = temp_file("agent-rings", MAP_SIZE as u64);
    let (to_peer, commands) = channel();
    let (signal, from_peer) = channel();
    let peer_path = ring_file.clone();
    let (size_tx, size_rx) = channel();
    let peer = std::thread::spawn(move || host_peer(peer_path, commands, signal, size_tx));
    let bar_size = size_rx.recv().unwrap();

    let rings = RingPair::guest(map(&ring_file)).unwrap();
    let bell = ThreadBell {
        to_peer: to_peer.clone(),
        from_peer,
    };
    let facts = DeviceFacts {
        instance: INTERFACE_INSTANCE,
        segment: 0,
        bus: 0,
        devfn: 0,
        bar_index: 2,
        bar_base: 0x10_0000_0000,
        bar_size,
        reservation: None,
    };
    let mut session = ProtocolSession::start(RingChannel::new(rings, bell), facts).unwrap();
    assert!(!session.may_use());

    to_peer.send(ToPeer::Back).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !session.may_use() {
        assert!(
            Instant::now() < deadline,
            "never backed: {:?}",
            session.state()
        );
        let _changes = session.follow().unwrap();
        session.conversation().channel().wait(50).unwrap();
    }
    let layout = *session.layout().unwrap();
    assert_eq!(layout.regions().len(), 2);

    // The regions through a mapped BAR file: each access checked against its region.
    let bar_file = temp_file("agent-bar", layout.bar_size());
    let bar = BarMapping::open_path(&bar_file, layout.bar_size()).unwrap();
    for region in layout.regions() {
        let window = bar.region(region).unwrap();
        if region.access == RegionAccess::ReadWrite {
            window.write(0, b"vmbmmio").unwrap();
            let mut back = [0u8; 7];
            window.read(0, &mut back).unwrap();
            assert_eq!(&back, b"vmbmmio");
        }
        assert!(window.read(window.len(), &mut [0u8; 1]).is_err());
    }

    session.release().unwrap();
    assert!(!session.may_use());
    drop(bar);
    drop(session);
    to_peer.send(ToPeer::Stop).unwrap();
    let left = peer.join().unwrap();
    assert!(left.is_empty(), "{left}");
    let _ = std::fs::remove_file(ring_file);
    let _ = std::fs::remove_file(bar_file);
}
