//! The end-to-end demo: the real driver code and the real device-host logic against the
//! simulated host and guest.
//!
//! Everything the driver and the device host do runs unchanged: the driver's `ControlDevice`
//! (MMIO plan, sections, KMCL channel through the `extern "system"` table) receives the device
//! host's IOCTL bytes; the device host's HCS/HDV/driver sequence maps the sections into its BAR.
//! Only the platform is simulated: KMCL and the guest's VMBus driver (`kmcl`), the object
//! manager (`sections`), HDV/HCS (`hdv`) and the guest's physical address space
//! (`guest_memory`). The guest then writes a distinct pattern into every page through the BAR
//! and the host reads it from the driver's own section objects, and the other way round.
//! Finally everything is torn down and every model is asked what is left.

mod pattern;
mod transport;
mod world;

use std::fmt;
use std::io::Write;

pub use pattern::{PATTERN_LEN, Writer, page_pattern};
pub use world::{DemoWorld, LeakReport};

use vmbmmio_core::sections::SectionQuotas;

use crate::memory::SectionMemory;

/// What to run.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Region sizes in bytes, in order.
    pub region_sizes: Vec<u64>,
    /// Simulate the platform behaviour observed on one nested Windows build, where a
    /// section-backed range has no effect and every access is intercepted (hdv.md §3.3).
    pub mapping_has_no_effect: bool,
    /// Also simulate that BAR accesses never reach the device host's intercept callbacks (the
    /// same build, hdv.md §3.3). With both switches on, neither path works, and the demo shows
    /// it: every page mismatches.
    pub bar_accesses_not_forwarded: bool,
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
            mapping_has_no_effect: false,
            bar_accesses_not_forwarded: false,
            quotas: SectionQuotas::default(),
            page_stride: 1,
        }
    }
}

/// What the demo saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DemoReport {
    /// Pages checked in both directions.
    pub pages_verified: u64,
    /// Pages whose bytes differed on the other side.
    pub mismatches: u64,
    /// Objects any model still holds after teardown.
    pub leaked_objects: u64,
    /// Guest BAR accesses that reached the emulator instead of a section mapping.
    pub intercepted_accesses: u64,
    /// Guest BAR bytes that reached a section directly.
    pub section_bytes: u64,
}

impl DemoReport {
    /// Whether the run proved what it should: no mismatch, nothing leaked.
    pub fn passed(&self) -> bool {
        self.mismatches == 0 && self.leaked_objects == 0 && self.pages_verified > 0
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
    let mut report = DemoReport::default();

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
    // Guest -> host.
    let mut wrong = 0;
    for &page in &pages {
        let pattern = page_pattern(page, Writer::Guest);
        world.guest_write(page, &pattern);
        if world.host_read(page)? != pattern {
            wrong += 1;
        }
    }
    world.say(&format!(
        "guest wrote a distinct pattern into {which} through the BAR; the host read them from \
         the driver's own section objects: {wrong} differed"
    ));
    report.mismatches += wrong;
    // Host -> guest.
    let mut wrong = 0;
    for &page in &pages {
        let pattern = page_pattern(page, Writer::Host);
        world.host_write(page, &pattern)?;
        if world.guest_read(page) != pattern {
            wrong += 1;
        }
    }
    world.say(&format!(
        "host wrote a new pattern into each page of the driver's sections; the guest read them \
         through the BAR: {wrong} differed"
    ));
    report.mismatches += wrong;
    report.pages_verified = count;
    let access = world.guest_access_totals();
    report.intercepted_accesses = access.intercepted_calls;
    report.section_bytes = access.section_bytes;
    world.say(&format!(
        "fast-path health: {} bytes reached the sections directly, {} accesses were intercepted \
         by the device host (served from the same section bytes)",
        access.section_bytes, access.intercepted_calls
    ));

    let states = world.check_fast_path()?;
    world.say(&format!(
        "device host: fast-path check done; regions are now {states} (reported to the driver)"
    ));

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
