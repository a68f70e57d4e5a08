//! The section-backed mapping check (`--mapping`), portable over the platform traits.
//!
//! Why here and generic: the check is the device host's own sequence (`sequence::DeviceHost`)
//! run until the first region is mapped (after the guest placed the BAR and turned memory
//! decode on, with the VM paused around the call), then a watch: the probe writes a pattern
//! through the device host's view of the section and records, until a guest access is seen or
//! the bound passes, the emulator's intercept counters and the section's first bytes. Written
//! over `HcsApi`/`HdvApi`/`DriverClient`/`SectionMapper`, it runs unchanged against the test
//! fakes here and against the Windows backends on a host; the verdict is
//! `classify::section_backed_mapping`'s.
//!
//! The two observable signs of a guest access (hdv.md §3.3 for the semantics): an access that
//! reaches the emulator (`Read/WriteInterceptedMemory`) bumps its intercept counter, so the
//! range is not in effect; a guest write that changes the section's bytes without any
//! intercept went through the section-backed range, so it is in effect. A guest read through an
//! effective range leaves no trace on the host, so the guest's side (what it read) is the
//! user's to report.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, StopSignal};
use crate::config::DeviceHostConfig;
use crate::driver::{DriverClient, MappingState};
use crate::emulator::Emulator;
use crate::guid::Guid;
use crate::platform::{HcsApi, HdvApi};
use crate::sequence::{Backends, DeviceHost, Event, Progress};
use crate::views::{SectionMapper, SectionView};

/// The region the check maps and watches.
pub const PROBED_REGION: u32 = 0;
/// How often the watch looks at the counters and the section.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(100);
/// The default bound on the watch (`--guest-wait-secs`).
pub const DEFAULT_GUEST_WAIT: Duration = Duration::from_secs(120);
/// At most this many device-host events are kept in the report.
pub const MAX_EVENTS: usize = 200;
/// The pattern's length.
pub const PATTERN_LEN: usize = 64;

/// The pattern written at the region's start: an ASCII tag a human recognises in a hex dump,
/// then bytes that differ from their neighbours.
pub fn probe_pattern() -> [u8; PATTERN_LEN] {
    let mut pattern = [0u8; PATTERN_LEN];
    let tag = b"VMBMMIO-PROBE-01";
    for (index, byte) in pattern.iter_mut().enumerate() {
        *byte = match tag.get(index) {
            Some(&tagged) => tagged,
            None => (index as u8).wrapping_mul(0x3D).wrapping_add(0x5A),
        };
    }
    pattern
}

/// Accesses that reached the emulator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AccessCounts {
    /// Reads and writes that touched the probed region.
    pub region: u64,
    /// Reads of the BAR.
    pub bar_reads: u64,
    /// Writes of the BAR.
    pub bar_writes: u64,
}

impl AccessCounts {
    /// The emulator's counters now.
    pub fn of(emulator: &Emulator, bar: u8, region: u32) -> Self {
        let counts = emulator.intercepts();
        let bar = usize::from(bar);
        Self {
            region: counts.per_region.get(region as usize).copied().unwrap_or(0),
            bar_reads: counts.reads.get(bar).copied().unwrap_or(0),
            bar_writes: counts.writes.get(bar).copied().unwrap_or(0),
        }
    }
}

/// Why the watch ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitEnd {
    /// A guest access was seen (an intercept, or a change of the section's bytes).
    GuestAccess,
    /// The bound passed with nothing seen.
    TimedOut,
    /// A stop was requested (Ctrl-C).
    Stopped,
    /// The VM was cleaned up.
    VmTornDown,
}

impl WaitEnd {
    /// The report's spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::GuestAccess => "guest_access",
            Self::TimedOut => "timed_out",
            Self::Stopped => "stopped",
            Self::VmTornDown => "vm_torn_down",
        }
    }
}

/// What the watch over a mapped region saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappedFacts {
    /// The region watched.
    pub region: u32,
    /// Its BAR.
    pub bar: u8,
    /// The BAR's guest physical base the ranges were created for.
    pub bar_base: Option<u64>,
    /// The region's offset in the BAR.
    pub region_offset: Option<u64>,
    /// The mapping state the device host decided.
    pub state: MappingState,
    /// The pattern written.
    pub pattern: Vec<u8>,
    /// Whether writing it through the view worked.
    pub pattern_write: Result<(), String>,
    /// Counters right after the pattern was written.
    pub before: AccessCounts,
    /// Counters when the watch ended.
    pub after: AccessCounts,
    /// The section's first [`PATTERN_LEN`] bytes when the watch ended.
    pub head_after: Result<Vec<u8>, String>,
    /// How long the watch lasted.
    pub waited_ms: u64,
    /// The bound.
    pub bound_ms: u64,
    /// Why it ended.
    pub wait_end: WaitEnd,
}

/// How the run went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MappingRun {
    /// The device host could not start (the config, the VM, HDV or the driver refused).
    StartFailed(String),
    /// Waiting for the VM or the guest's placement, or the mapping itself, failed.
    MapFailed(String),
    /// The run ended before anything was mapped (`Stopped`, `VmTornDown`, `GuestStopped`).
    NotMapped(String),
    /// A region was mapped and watched.
    Mapped(MappedFacts),
}

/// Everything the mapping check collected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappingFacts {
    /// `--mapping`'s path, as given.
    pub config_path: String,
    /// The config's VM.
    pub vm_id: Guid,
    /// How it went.
    pub run: MappingRun,
    /// The device host's events (at most [`MAX_EVENTS`]).
    pub events: Vec<String>,
    /// The device host's teardown, as it reported it (`None` if nothing was started).
    pub teardown: Option<String>,
}

/// What the check tells the user while it runs.
pub type Say = Rc<RefCell<dyn FnMut(&str)>>;

/// Runs the device host's sequence with `config` until region [`PROBED_REGION`] is mapped,
/// then writes [`probe_pattern`] through its view and watches for a guest access for at most
/// `bound`; then shuts the device host down as `vmbmmio-devhost` does.
pub fn run_mapping_probe<H: HcsApi, D: HdvApi, C: DriverClient, M: SectionMapper>(
    config_path: &str,
    config: &DeviceHostConfig,
    backends: Backends<H, D, C, M>,
    clock: &dyn Clock,
    stop: &dyn StopSignal,
    bound: Duration,
    say: Say,
) -> MappingFacts {
    let events: Rc<RefCell<Vec<String>>> = Rc::new(RefCell::new(Vec::new()));
    let log = {
        let events = events.clone();
        let say = say.clone();
        Box::new(move |event: &Event| {
            let line = event.to_string();
            (say.borrow_mut())(&format!("device host: {line}"));
            let mut events = events.borrow_mut();
            if events.len() < MAX_EVENTS {
                events.push(line);
            }
        })
    };
    let mut facts = MappingFacts {
        config_path: config_path.to_string(),
        vm_id: config.vm_id,
        run: MappingRun::NotMapped(String::new()),
        events: Vec::new(),
        teardown: None,
    };
    let mut host = match DeviceHost::start(config, backends, log) {
        Ok(host) => host,
        Err(error) => {
            facts.run = MappingRun::StartFailed(error.to_string());
            facts.events = events.borrow().clone();
            return facts;
        }
    };
    (say.borrow_mut())(
        "mapping check: the device host is ready; start the VM if it is not running, and let \
         the guest place the BAR and turn memory decode on",
    );
    facts.run = match host.map_regions(clock, stop) {
        Err(error) => MappingRun::MapFailed(error.to_string()),
        Ok(Progress::Mapped) => MappingRun::Mapped(watch(&host, clock, stop, bound, &say)),
        Ok(other) => MappingRun::NotMapped(format!("{other:?}")),
    };
    facts.teardown = Some(host.shutdown_waiting(clock).to_string());
    facts.events = events.borrow().clone();
    facts
}

/// Writes the pattern and watches region [`PROBED_REGION`].
fn watch<H: HcsApi, D: HdvApi, C: DriverClient, M: SectionMapper>(
    host: &DeviceHost<H, D, C, M>,
    clock: &dyn Clock,
    stop: &dyn StopSignal,
    bound: Duration,
    say: &Say,
) -> MappedFacts {
    let region = PROBED_REGION;
    let index = region as usize;
    let emulator = host.emulator();
    let bar = emulator.config_space().bar_index();
    let pattern = probe_pattern();
    let state = host
        .mapping_states()
        .get(index)
        .copied()
        .unwrap_or(MappingState::Unmapped);
    let region_offset = host
        .layout()
        .and_then(|layout| layout.regions().get(index).map(|info| info.offset));
    // The emulator holds the device host's view of the section (it serves intercepts from
    // it); borrow it by taking it out and putting it straight back.
    let view: Option<Arc<dyn SectionView>> = emulator.detach_view(index).inspect(|view| {
        emulator.attach_view(index, view.clone());
    });
    let pattern_write = match &view {
        Some(view) => view.write(0, &pattern).map_err(|error| error.to_string()),
        None => Err("the region has no view".to_string()),
    };
    let before = AccessCounts::of(emulator, bar, region);
    (say.borrow_mut())(&format!(
        "mapping check: wrote {} bytes starting with \"VMBMMIO-PROBE-01\" at the start of \
         region {region} (BAR{bar} offset {:#x}); in the guest, read them through the BAR and \
         then write to them (vmbmmio-guest verify <region>); watching for at most {} s \
         (Ctrl-C ends the watch)",
        pattern.len(),
        region_offset.unwrap_or(0),
        bound.as_secs()
    ));
    let read_head = |view: &Option<Arc<dyn SectionView>>| -> Result<Vec<u8>, String> {
        let view = view.as_ref().ok_or("the region has no view")?;
        let mut head = vec![0u8; PATTERN_LEN];
        view.read(0, &mut head).map_err(|error| error.to_string())?;
        Ok(head)
    };
    let started = clock.now();
    let wait_end = loop {
        let now = AccessCounts::of(emulator, bar, region);
        let changed = read_head(&view).is_ok_and(|head| head != pattern);
        if now.region > before.region || changed {
            break WaitEnd::GuestAccess;
        }
        if stop.stop_requested() {
            break WaitEnd::Stopped;
        }
        if emulator.torn_down() {
            break WaitEnd::VmTornDown;
        }
        if clock.now().saturating_sub(started) >= bound {
            break WaitEnd::TimedOut;
        }
        clock.sleep(WATCH_INTERVAL);
    };
    let waited = clock.now().saturating_sub(started);
    MappedFacts {
        region,
        bar,
        bar_base: host.mapped_for(),
        region_offset,
        state,
        pattern: pattern.to_vec(),
        pattern_write,
        before,
        after: AccessCounts::of(emulator, bar, region),
        head_after: read_head(&view),
        waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
        bound_ms: u64::try_from(bound.as_millis()).unwrap_or(u64::MAX),
        wait_end,
    }
}
