//! A fake `uio_hv_generic` device whose host is the driver's real guest-packet handler, and the
//! fake guest around it: shared by the agent binary's end-to-end tests and the library
//! session's tests. Include it after `fake_sysfs`:
//!
//! ```ignore
//! #[path = "support/fake_sysfs.rs"]
//! mod fake_sysfs;
//! #[path = "support/fake_uio.rs"]
//! mod fake_uio;
//! ```
//!
//! The host is `hvsim::agent_peer::UioHost`. The fake device is a regular file: its first bytes are the ring map (`txrx_rings`, which
//! the agent maps at offset 0 of the node), and the agent's doorbell appends its 4-byte
//! `irqcontrol` values after them (`O_APPEND`, `src/linux/doorbell.rs`), so the signals are
//! counted from the file's growth. Each open of a real `uio_hv_generic` node opens the channel
//! with fresh rings (`hv_uio_open` → `vmbus_connect_ring`; the last close disconnects it,
//! Linux `drivers/uio/uio_hv_generic.c`), so every open (an invocation of the binary, a library session) gets a zeroed file and a host of
//! its own: a thread owning a fresh simulated host (its KMCL is thread-local) that steps every
//! millisecond over its own mapping of the same file, backing the regions when the guest is
//! READY and unmapping them when it releases. The BAR is the function's `resource2_wc`, a
//! regular file of the BAR's size that persists across invocations.
//!
//! After each open the host is closed: nothing may be left over (the driver's section
//! ledger, objects, KMCL rules) and the guest must have said `RELEASING` before it exited.

#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::thread::JoinHandle;
use std::time::Duration;

use hvsim::agent_peer::UioHost;
use hvsim::guest_session::{INTERFACE_INSTANCE, INTERFACE_TYPE};
use vmbmmio_guest::linux::MmapRing;
use vmbmmio_proto::guest::RegionName;
use vmbmmio_proto::ioctl::{BarRegion, NamedRegionRequest, WireGuid};

use crate::consumer::Consumers;

use crate::fake_sysfs::{FakeSysfs, PciFunction, uio_hv_generic_maps};

/// The simulated session's channel GUIDs (`hvsim::guest_session`), as the fake sysfs wants them.
pub const TYPE: u128 = 0x3c1d_77a0_52e4_4b8e_9d21_6f0a_b5c3_0002;
pub const INSTANCE: u128 = 0x3c1d_77a0_52e4_4b8e_9d21_6f0a_b5c3_2002;
pub const TYPE_TEXT: &str = "3c1d77a0-52e4-4b8e-9d21-6f0ab5c30002";
/// The session's regions.
pub const SIZES: [u64; 2] = [8 << 10, 4 << 10];
/// Their names in a named (version-2) session, and whether host consumers may write them.
pub const NAMES: [(&str, bool); 2] = [("frames", true), ("audio", false)];
/// The VM id host consumers of a named session name.
pub const VM_ID: WireGuid = WireGuid::from_u128(0x5e55_0000_0000_4000_8000_0000_0000_0014);

/// What kind of host a [`Host`] is.
#[derive(Clone, Copy, Debug)]
pub struct HostSetup {
    /// Whether the device host backs the regions when the guest is READY.
    pub backs: bool,
    /// A version-2 session: the regions named [`NAMES`], host consumers may attach as
    /// [`VM_ID`] (otherwise a version-1 session: unnamed regions, no consumers).
    pub named: bool,
    /// The host states protocol 1.0 as its highest version (a driver without doorbells).
    pub only_1_0: bool,
}

impl HostSetup {
    /// A current host: named regions, protocol 1.1, backing.
    pub const NAMED: Self = Self {
        backs: true,
        named: true,
        only_1_0: false,
    };
}

/// The simulated host as a [`Host`]'s commands see it, on its thread.
pub struct HostSide {
    /// The host.
    pub host: UioHost<Arc<MmapRing>>,
    /// Host consumers attached so far (detached and gone when the host closes).
    pub consumers: Consumers,
}

type HostCommand = Box<dyn FnOnce(&mut HostSide) + Send>;
pub const BDF: &str = "7870:00:00.0";
/// A BAR base aligned to any BAR size the session can have (at most 64 GiB here).
pub const BAR_BASE: u64 = 0x10_0000_0000;
/// How long one invocation may take before the test calls it hung.
pub const HARD_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the host steps.
pub const STEP: Duration = Duration::from_millis(1);

/// The size of map 0 (`txrx_rings`) the fake node advertises.
pub fn ring_map_size() -> u64 {
    uio_hv_generic_maps()
        .first()
        .map(|map| map.size)
        .expect("map 0")
}

/// What the host of one invocation saw.
#[derive(Debug)]
pub struct HostReport {
    /// Leftovers when it closed (empty: balanced).
    pub left: String,
    /// Whether it ever backed the regions.
    pub ever_backed: bool,
    /// Whether the guest said RELEASING.
    pub saw_releasing: bool,
    /// Packets the guest sent.
    pub guest_packets: u64,
    /// The regions' places in the BAR, as the driver laid them out.
    pub regions: Vec<BarRegion>,
    /// The BAR bases the host backed the regions at, in order (each once in a row).
    pub backed_at: Vec<u64>,
}

/// A host thread stepping a [`UioHost`] over the fake node until stopped.
pub struct Host {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<HostReport>>,
    commands: Sender<HostCommand>,
}

impl Host {
    /// Recreates `node` as a zeroed ring map (a fresh channel open) and starts a fresh host on
    /// it; returns once the host's session is open.
    pub fn start(node: &Path, backs: bool) -> Self {
        Self::start_with(
            node,
            HostSetup {
                backs,
                named: false,
                only_1_0: false,
            },
        )
    }

    /// As [`Self::start`], for a host as `setup` says.
    pub fn start_with(node: &Path, setup: HostSetup) -> Self {
        let backs = setup.backs;
        let _ = std::fs::remove_file(node);
        File::create(node)
            .and_then(|file| file.set_len(ring_map_size()))
            .expect("create the fake uio node");
        let stop = Arc::new(AtomicBool::new(false));
        let (opened, is_open) = channel();
        let (commands, command_queue) = channel::<HostCommand>();
        let path = node.to_path_buf();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .expect("open the fake uio node");
            let len = usize::try_from(ring_map_size()).expect("ring map size");
            let map = Arc::new(MmapRing::map(&file, &path, 0, len).expect("map the rings"));
            let mut host = if setup.named {
                let regions: Vec<NamedRegionRequest> = SIZES
                    .iter()
                    .zip(NAMES)
                    .map(|(&size, (name, consumer_writable))| NamedRegionRequest {
                        size,
                        guest_writable: true,
                        consumer_writable,
                        name: RegionName::required(name).expect("a valid name"),
                    })
                    .collect();
                UioHost::open_named(map, VM_ID, &regions).expect("the simulated host")
            } else {
                UioHost::open(map, &SIZES).expect("the simulated host")
            };
            if !backs {
                host.never_back();
            }
            if setup.only_1_0 {
                host.state_only_1_0();
            }
            let mut side = HostSide {
                host,
                consumers: Consumers::default(),
            };
            opened.send(side.host.bar_size()).expect("the test waits");
            let mut backed_at = Vec::new();
            let mut note = |host: &UioHost<_>| {
                let device = host.snapshot().device.filter(|_| host.backed());
                if let Some(device) = device
                    && backed_at.last() != Some(&device.bar_base)
                {
                    backed_at.push(device.bar_base);
                }
            };
            while !flag.load(Ordering::SeqCst) {
                while let Ok(command) = command_queue.try_recv() {
                    command(&mut side);
                }
                side.host.step();
                note(&side.host);
                std::thread::sleep(STEP);
            }
            side.host.step();
            note(&side.host);
            let HostSide {
                mut host,
                consumers,
            } = side;
            consumers.close(host.session_mut());
            HostReport {
                ever_backed: host.ever_backed(),
                saw_releasing: host.saw_releasing(),
                guest_packets: host.guest_packets(),
                regions: host.bar_regions(),
                backed_at,
                left: host.close(),
            }
        });
        is_open
            .recv_timeout(Duration::from_secs(30))
            .expect("the host opened its session");
        Self {
            stop,
            thread: Some(thread),
            commands,
        }
    }

    /// Runs `command` on the host's thread (between two steps) and returns its result.
    pub fn run<R: Send + 'static>(
        &self,
        command: impl FnOnce(&mut HostSide) -> R + Send + 'static,
    ) -> R {
        let (done, result) = channel();
        self.commands
            .send(Box::new(move |side: &mut HostSide| {
                let _ = done.send(command(side));
            }))
            .expect("the host thread runs");
        result
            .recv_timeout(Duration::from_secs(30))
            .expect("the host ran the command")
    }

    /// Stops the host and closes it.
    pub fn finish(mut self) -> HostReport {
        self.stop.store(true, Ordering::SeqCst);
        let thread = self.thread.take().expect("running");
        thread.join().expect("the host thread did not panic")
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // A failed test must not leave the thread stepping forever.
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The BAR size of the simulated session (its own host, on a thread of its own).
pub fn session_bar_size() -> u64 {
    std::thread::spawn(|| {
        let bench = hvsim::guest_session::GuestSession::open(&SIZES).expect("a session");
        let size = bench.bar_size();
        let left = bench.close();
        assert!(left.is_empty(), "{left}");
        size
    })
    .join()
    .expect("the bench thread")
}

/// A guest whose channel is bound to `uio_hv_generic` as uio0, paired with a function whose
/// BAR 2 file is as large as the simulated session's BAR.
pub struct World {
    /// The fake sysfs tree (with `dev/` for the node).
    pub sysfs: FakeSysfs,
    /// The simulated session's BAR size.
    pub bar_size: u64,
}

impl World {
    /// The tree, with the BAR files sized.
    pub fn new() -> Self {
        assert_eq!(WireGuid::from_u128(TYPE), INTERFACE_TYPE);
        assert_eq!(WireGuid::from_u128(INSTANCE), INTERFACE_INSTANCE);
        let bar_size = session_bar_size();
        assert!(bar_size.is_power_of_two() && BAR_BASE.is_multiple_of(bar_size));
        let sysfs = FakeSysfs::with_buses();
        sysfs.bound_channel("chan0", TYPE, INSTANCE, 0);
        let dir = sysfs.pci_function(&PciFunction::vmbmmio(
            BDF, TYPE, INSTANCE, BAR_BASE, bar_size,
        ));
        for file in ["resource2", "resource2_wc"] {
            File::options()
                .write(true)
                .open(sysfs.path(&format!("{dir}/{file}")))
                .and_then(|file| file.set_len(bar_size))
                .expect("size the BAR file");
        }
        sysfs.mkdir("dev");
        Self { sysfs, bar_size }
    }

    /// The fake `/dev/uio0`.
    pub fn node(&self) -> PathBuf {
        self.sysfs.path("dev/uio0")
    }

    /// The BAR file the agent maps.
    pub fn bar_file(&self) -> PathBuf {
        self.sysfs
            .path(&format!("bus/pci/devices/{BDF}/resource2_wc"))
    }
}
