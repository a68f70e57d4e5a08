//! The end-to-end demo: the real driver code and the real device-host logic against the
//! simulated host and guest.
//!
//! Everything the driver and the device host do runs unchanged: the driver's `ControlDevice`
//! (MMIO plan, sections, KMCL channel through the `extern "system"` table) receives the device
//! host's IOCTL bytes (precheck, then dispatch, as the glue calls them); the device host's
//! HCS/HDV/driver sequence exposes the pairing capability and maps the sections into its BAR
//! once the guest has placed it and turned memory decode on. Only the platform is simulated:
//! one VM shared by KMCL and the guest's VMBus driver (`kmcl`), HDV/HCS and the guest's vPCI bus
//! (`hdv`, `vpci`), the object manager (`sections`) and guest physical memory (`guest_memory`).
//!
//! The guest finds the device the way a guest driver would: the channel's offer, then PCI
//! enumeration and the vendor capability that names the channel. It writes a distinct pattern
//! into every page through the BAR and the host reads it from the driver's own section objects,
//! and the other way round; then it turns decode off and on (the device host unmaps and maps
//! again) and checks again; finally everything is torn down in the documented order and every
//! model is asked what it still holds.
//!
//! What the run rests on but cannot verify is printed first, as assumptions
//! ([`assumptions`]).

mod assumptions;
pub(crate) mod build;
mod consumers;
mod conversation;
mod exchange;
pub mod guest_program;
pub(crate) mod guest_side;
pub mod host_app;
mod pattern;
pub(crate) mod protocol;
mod teardown;
pub(crate) mod transport;
pub(crate) mod world;

use std::fmt;
use std::io::Write;

pub use guest_program::GuestProgram;
pub use pattern::{PATTERN_LEN, Writer, page_pattern};
pub use protocol::SimPackets;
pub use teardown::LeakReport;
pub use transport::{InProcessTransport, TransportCounts, WaitSlot};
pub use world::DemoWorld;

use vmbmmio_core::sections::SectionQuotas;

use crate::hdv::PlatformQuirks;
use crate::memory::SectionMemory;
use crate::vm::{GpaRange, GuestKind};

/// What to run.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Region sizes in bytes, in order.
    pub region_sizes: Vec<u64>,
    /// The regions' names in the device host's configuration, in order, each `NAME` or
    /// `NAME:ACCESS` (`rw`, `guest-ro`, `host-ro`, docs/devhost.md); regions without one are
    /// `region<i>`, rw. Host consumers attach by these names.
    pub region_names: Vec<String>,
    /// The guest operating system the VM runs (its VMBus and vPCI behaviour).
    pub guest: GuestKind,
    /// Observed platform behaviour to reproduce (all off: the documented semantics).
    pub quirks: PlatformQuirks,
    /// A Linux guest places the BAR inside a range its channel driver claimed for the channel,
    /// instead of where its vPCI bus driver put it (the guest opts in; the host accepts and
    /// checks the placement it reports).
    pub bar_in_channel_range: bool,
    /// The driver's section quotas (the default per-session quota is 256 MiB).
    pub quotas: SectionQuotas,
    /// Check every `page_stride`-th page (1: every page), plus the first and last page of every
    /// region; for layouts too large to walk page by page in a test.
    pub page_stride: u64,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            region_sizes: vec![64 << 10, 1 << 20, 12 << 10],
            region_names: vec!["frames".into(), "bulk".into(), "log:host-ro".into()],
            guest: GuestKind::Linux,
            quirks: PlatformQuirks::default(),
            bar_in_channel_range: false,
            quotas: SectionQuotas::default(),
            page_stride: 1,
        }
    }
}

/// What the demo saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DemoReport {
    /// Pages checked in both directions (the remap check's pages counted again).
    pub pages_verified: u64,
    /// Pages whose bytes differed on the other side.
    pub mismatches: u64,
    /// Objects any model still holds after teardown.
    pub leaked_objects: u64,
    /// Guest BAR accesses that reached the emulator instead of a section mapping.
    pub intercepted_accesses: u64,
    /// Guest BAR bytes that reached a section directly.
    pub section_bytes: u64,
    /// What the run rests on without proof, in the words the demo printed.
    pub assumptions: Vec<String>,
    /// Where the guest placed the BAR.
    pub bar: GpaRange,
    /// The channel's MMIO range in the guest, if the guest has one (Windows: its VMBus
    /// driver's reservation; Linux: only a range its channel driver claimed).
    pub channel_range: Option<GpaRange>,
    /// IOCTLs the device host sent, and how many went through `precheck` before `dispatch`.
    pub ioctls: u64,
    /// See [`Self::ioctls`].
    pub ioctls_prechecked: u64,
    /// Why the VM worker crashed, if it did.
    pub vm_crash: Option<String>,
    /// What the host application exchanged with the guest's program through the named region
    /// `frames` (`None`: it did not run, the VM crashed or has no region of that name).
    pub exchange: Option<host_app::Exchange>,
}

impl DemoReport {
    /// Whether the run proved what it should: no mismatch (pages, and the host application's
    /// exchange if it ran), nothing leaked, no crash.
    pub fn passed(&self) -> bool {
        self.mismatches == 0
            && self.exchange.as_ref().is_none_or(|exchange| {
                exchange.mismatches == 0
                    && exchange.doorbells_to_guest > 0
                    && exchange.doorbells_from_guest > 0
            })
            && self.leaked_objects == 0
            && self.pages_verified > 0
            && self.vm_crash.is_none()
    }
}

impl fmt::Display for DemoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "demo: verified {} pages, {} mismatches, {} leaked objects",
            self.pages_verified, self.mismatches, self.leaked_objects
        )
    }
}

/// Why the demo could not run to the end (a step failed; what it had built was dropped, and
/// leaks were not counted).
#[derive(Debug)]
pub struct DemoError(pub String);

impl fmt::Display for DemoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "demo failed: {}", self.0)
    }
}

impl std::error::Error for DemoError {}

/// Runs the demo, narrating each step to `out`.
pub fn run(options: &DemoOptions, out: &mut dyn Write) -> Result<DemoReport, DemoError> {
    let mut world = DemoWorld::new(options, out)?;
    let mut report = DemoReport {
        assumptions: world.assumptions().to_vec(),
        bar: world.bar().range(),
        channel_range: world.channel_range(),
        ..DemoReport::default()
    };

    let pages = world.pages(options.page_stride);
    let count = pages.len() as u64;
    let which = if options.page_stride > 1 {
        format!(
            "{count} sampled pages (every {}th, and each region's first and last)",
            options.page_stride
        )
    } else {
        format!("each of the {count} pages")
    };
    let (wrong_in, wrong_out) = world.check_both_ways(&pages)?;
    world.say(&format!(
        "guest wrote a distinct pattern into {which} through the BAR; the host read them from \
         the driver's section objects: {wrong_in} differed"
    ));
    world.say(&format!(
        "host wrote a new pattern into each page of the driver's sections; the guest read them \
         through the BAR: {wrong_out} differed"
    ));
    report.mismatches += wrong_in + wrong_out;
    report.pages_verified += count;

    // Decode off and on again: the device host unmaps and maps again (the guest reports both).
    if world.vm_crash().is_none() {
        world.toggle_decode()?;
        let firsts = world.first_pages();
        let (wrong_in, wrong_out) = world.check_both_ways(&firsts)?;
        world.say(&format!(
            "after the remap: the first page of each region checked both ways: {} differed",
            wrong_in + wrong_out
        ));
        report.mismatches += wrong_in + wrong_out;
        report.pages_verified += firsts.len() as u64;
    }

    let access = world.guest_access_totals();
    report.intercepted_accesses = access.intercepted_calls;
    report.section_bytes = access.section_bytes;
    world.say(&format!(
        "fast-path health: {} bytes reached the sections directly, {} accesses were intercepted \
         by the device host (served from the same section bytes)",
        access.section_bytes, access.intercepted_calls
    ));
    if world.vm_crash().is_none() {
        let states = world.check_fast_path()?;
        world.say(&format!(
            "device host: fast-path check done; regions are now {states} (reported to the driver)"
        ));
    }

    // The host application attaches to `frames` by name and exchanges a frame and doorbells
    // with the guest's program, both ways.
    let frames_fits = world
        .region_index("frames")
        .and_then(|index| world.region_in_bar(index))
        .is_some_and(|(_, size)| {
            (host_app::MIN_REGION..=crate::memory::MAX_CONTIGUOUS).contains(&size)
        });
    let world = if world.vm_crash().is_none() && frames_fits {
        let (mut world, exchange) = exchange::run(world);
        let exchange = exchange?;
        world.say(&format!(
            "host application and guest program: {} bytes went through `frames` and came back \
             transformed, {} differed; doorbells: {} to the guest, {} from the guest",
            exchange.bytes_verified,
            exchange.mismatches,
            exchange.doorbells_to_guest,
            exchange.doorbells_from_guest
        ));
        report.exchange = Some(exchange);
        world
    } else {
        world.say(&format!(
            "host application: skipped (it needs a running VM and a region `frames` of {} KiB \
             to {} MiB: the simulator maps consumer views of at most that much)",
            host_app::MIN_REGION >> 10,
            crate::memory::MAX_CONTIGUOUS >> 20
        ));
        world
    };

    report.vm_crash = world.vm_crash();
    let counts = world.transport_counts();
    report.ioctls = counts.ioctls.get();
    report.ioctls_prechecked = counts.prechecked.get();
    let leaks = world.teardown()?;
    report.leaked_objects = leaks.total();
    Ok(report)
}

/// Copies `PATTERN_LEN` bytes at `offset` of `memory`.
fn read_pattern(memory: &SectionMemory, offset: u64) -> Result<[u8; PATTERN_LEN], DemoError> {
    let mut bytes = [0u8; PATTERN_LEN];
    memory
        .read(offset, &mut bytes)
        .map_err(|error| DemoError(format!("host read failed: {error:?}")))?;
    Ok(bytes)
}
