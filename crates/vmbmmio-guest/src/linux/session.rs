//! [`Session`]: vmbmmio's shared memory for a program in a Linux guest, in-process.
//!
//! [`Session::open`] does what the agent's commands do: discovery ([`crate::discover::Located`]),
//! decode on, the rings of `/dev/uioN` mapped, the guest protocol started
//! ([`crate::session::ProtocolSession`]: negotiation, reports, `READY`) and the BAR mapped. Then
//! the program asks [`Session::may_use`] (or waits with [`Session::wait_backed`]), takes a
//! region by name or id with [`Session::region`] and follows the host with
//! [`Session::next_changes`].
//!
//! ```no_run
//! use std::time::Duration;
//! use vmbmmio_guest::session::Change;
//! use vmbmmio_guest::{Options, Session};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let mut session = Session::open(&Options::default())?;
//!     session.wait_backed(Duration::from_secs(5))?;
//!     {
//!         let frames = session.region("frames")?;
//!         frames.write_u32(0, 0x1234_5678)?;
//!         let mut header = [0u8; 16];
//!         frames.read(0, &mut header)?;
//!         println!("generation {}: {header:02x?}", frames.generation());
//!     }
//!     while !session.closed() {
//!         for change in session.next_changes(Duration::from_millis(250))? {
//!             if let Change::LayoutChanged { generation } = change {
//!                 println!("layout {generation}: take the views again");
//!             }
//!         }
//!         session.check_bar()?;
//!     }
//!     Ok(())
//! }
//! ```
//!
//! # Why a region is a volatile view, not a `&[u8]`
//! The host (and other guest processes) change the bytes while the program looks at them, so a
//! Rust reference to them would promise something false (undefined behaviour). A
//! [`RegionView`] offers bounds-checked volatile copies and 1/2/4/8-byte accesses, and the raw
//! pointer for programs that build their own volatile or atomic structures.
//!
//! # Generations
//! A view carries the layout generation it was taken under. It borrows the session, so the
//! session cannot follow the host while a view lives: take views again after each
//! [`Session::next_changes`]; a changed generation means the layout changed.
//!
//! # Doorbells (protocol 1.1)
//! [`Session::ring`] tells the host's consumers of a region "look" (the data goes through the
//! memory: write it first); [`Session::wait_doorbell`] waits for a host consumer's doorbell.
//! Doorbells are interrupts, not a queue: rings the guest has not heard yet coalesce (the
//! host keeps one per region, with the latest value; so does the session while the program
//! is not asking). A doorbell changes neither the layout nor the backing. The doorbells and
//! the other changes a call did not return are kept for the next: [`Session::next_changes`]
//! returns doorbells as [`Change::Doorbell`], [`Session::wait_doorbell`] leaves the other
//! changes for [`Session::next_changes`]. A host that speaks only protocol 1.0 has no
//! doorbells: both fail with the error kind `doorbells_unsupported`.
//!
//! ```no_run
//! # use std::time::Duration;
//! # use vmbmmio_guest::{Options, Session};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut session = Session::open(&Options::default())?;
//! session.wait_backed(Duration::from_secs(5))?;
//! session.region("frames")?.write_u64(0, 42)?;
//! session.ring("frames", 1)?;
//! if let Some(doorbell) = session.wait_doorbell(Duration::from_secs(1))? {
//!     println!("{} rang with {}", doorbell.name, doorbell.value);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Ending
//! [`Session::release`] (or dropping the session) says `RELEASING` and reports decode off
//! before the BAR is unmapped; closing the uio file then closes the channel.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vmbmmio_proto::guest::{ClientState, Layout, Region};
use vmbmmio_proto::ioctl::WireGuid;

use super::{AgentError, BarMapping, MmapRing, RegionWindow, UioDoorbell};
use crate::channel::PacketChannel;
use crate::discover::{DiscoverError, Located, PairedFunction, Target, enable_decode};
use crate::ring::RingPair;
use crate::ring_channel::{ChannelCounters, RingChannel};
use crate::session::{Change, DeviceFacts, ProtocolSession, SessionError};

/// The interface type of vmbmmio's channel offer when none is configured: the device host's
/// default (`docs/devhost.md`, "Configuration"), 9d0ee607-90ef-4c63-8f88-a81dcbc7ca83.
pub const DEFAULT_INTERFACE_TYPE: WireGuid =
    WireGuid::from_u128(0x9d0e_e607_90ef_4c63_8f88_a81d_cbc7_ca83);

/// The protocol session over a uio device's rings.
pub type RingProtocol = ProtocolSession<RingChannel<Arc<MmapRing>, UioDoorbell>>;

/// Where to look and what for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The sysfs root (`/sys`).
    pub sysfs: PathBuf,
    /// Where the `uioN` character devices are (`/dev`).
    pub dev: PathBuf,
    /// The channel and BAR.
    pub target: Target,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            sysfs: PathBuf::from("/sys"),
            dev: PathBuf::from("/dev"),
            target: Target {
                interface_type: DEFAULT_INTERFACE_TYPE,
                instance: None,
                bar_index: 2,
            },
        }
    }
}

/// What [`Session::check_bar`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarCheck {
    /// The BAR is where it was, decode on.
    Unchanged,
    /// The BAR moved, or decode was turned off and is on again: released, remapped and
    /// reported again.
    Moved {
        /// The new guest-physical base.
        base: u64,
        /// The size.
        size: u64,
    },
    /// The paired function is gone (removed, or being rescanned): released and unmapped;
    /// later checks look for it again.
    Gone,
}

/// What went through the session (for `status`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// The channel's packet and signal counts.
    pub channel: ChannelCounters,
    /// The uio interrupt count the kernel last reported.
    pub interrupts: u32,
    /// Changes the host announced.
    pub changes: u64,
    /// Times the BAR was found moved and reported again.
    pub bar_moves: u64,
    /// Doorbells this session rang that the host acknowledged.
    pub doorbells_rung: u64,
    /// Doorbells the host refused for now (`RATE_LIMITED`).
    pub doorbells_refused: u64,
    /// Doorbells the host's consumers rang that this session heard (after coalescing).
    pub doorbells_heard: u64,
}

/// The most changes a session keeps for the program while it asks for something else; the
/// oldest change that is not a doorbell goes first (doorbells are kept one per region).
const HELD_CHANGES: usize = 64;

/// A host consumer's doorbell, as [`Session::wait_doorbell`] returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Doorbell {
    /// The region's id.
    pub region: u32,
    /// The region's name in the latest layout (empty when the host named none, or before the
    /// first layout).
    pub name: String,
    /// The latest value rung (rings the guest had not heard yet coalesced into this one).
    pub value: u64,
}

/// One region of the current layout, through the mapped BAR.
#[derive(Debug)]
pub struct RegionView<'a> {
    window: RegionWindow<'a>,
    region: Region,
    generation: u64,
}

impl<'a> RegionView<'a> {
    /// The region as the layout states it (id, name, access, state, offset, length).
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// The region's name.
    pub fn name(&self) -> &str {
        self.region.name.as_str()
    }

    /// The layout generation the view was taken under.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The bounds-checked accesses.
    pub fn window(&self) -> &RegionWindow<'a> {
        &self.window
    }
}

impl<'a> core::ops::Deref for RegionView<'a> {
    type Target = RegionWindow<'a>;

    fn deref(&self) -> &Self::Target {
        &self.window
    }
}

/// The device facts the session reports for `located`.
pub fn facts(located: &Located) -> DeviceFacts {
    let function = &located.function;
    let bdf = function.bdf;
    DeviceFacts {
        instance: located.channel.interface_instance,
        // A Linux PCI domain above 0xffff cannot be a segment the host knows; it is
        // informational only, so it is reported as 0 rather than refused.
        segment: u16::try_from(bdf.domain).unwrap_or(0),
        bus: bdf.bus,
        devfn: (bdf.device << 3) | (bdf.function & 7),
        bar_index: function.bar_index,
        bar_base: function.bar.start,
        bar_size: function.bar.size,
        reservation: None,
    }
}

/// The region of `layout` named `which`, or whose id `which` is in decimal. An unnamed region
/// (a session without names) is found by its id only.
pub fn find_region(layout: &Layout, which: &str) -> Result<Region, AgentError> {
    layout
        .regions()
        .iter()
        .find(|region| !region.name.is_empty() && region.name.as_str() == which)
        .or_else(|| which.parse::<u32>().ok().and_then(|id| layout.region(id)))
        .copied()
        .ok_or_else(|| AgentError::NoSuchRegion {
            which: which.to_owned(),
            have: layout
                .regions()
                .iter()
                .map(|region| format!("{} ({})", region.name.as_str(), region.id))
                .collect(),
        })
}

fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

fn map_bar(function: &PairedFunction) -> Result<BarMapping, AgentError> {
    Ok(BarMapping::open(&function.bar_file(), function.bar.size)?)
}

/// vmbmmio's shared memory, open in this process.
pub struct Session {
    protocol: RingProtocol,
    bar: Option<BarMapping>,
    located: Located,
    options: Options,
    released: bool,
    counters: Counters,
    /// Changes heard but not yet returned (doorbells coalesced per region).
    held: VecDeque<Change>,
}

/// Keeps `change` in `held`: a doorbell for a region already held updates its value (the
/// latest wins); past [`HELD_CHANGES`] the oldest change that is not a doorbell is dropped.
fn hold(held: &mut VecDeque<Change>, change: Change) {
    if let Change::Doorbell { region, value } = change {
        for kept in held.iter_mut() {
            if let Change::Doorbell {
                region: kept_region,
                value: kept_value,
            } = kept
                && *kept_region == region
            {
                *kept_value = value;
                return;
            }
        }
    }
    held.push_back(change);
    while held.len() > HELD_CHANGES {
        let Some(oldest) = held
            .iter()
            .position(|kept| !matches!(kept, Change::Doorbell { .. }))
        else {
            break;
        };
        let _ = held.remove(oldest);
    }
}

impl Session {
    /// Finds the channel and the paired function as `options` say and starts the session.
    pub fn open(options: &Options) -> Result<Self, AgentError> {
        let located = Located::find(&options.sysfs, &options.target)?;
        Self::start(options, located)
    }

    /// Starts the session on what discovery found: decode on, the BAR and the rings mapped,
    /// the protocol started (ending with `READY` and a held `WAIT_EVENT`).
    pub fn start(options: &Options, located: Located) -> Result<Self, AgentError> {
        enable_decode(&located.function)?;
        let node = located.uio.dev_node(&options.dev);
        let map = located.uio.ring_map()?;
        let rings = Arc::new(MmapRing::open(&node, map)?);
        let doorbell = UioDoorbell::open(&node)?;
        let rings = RingPair::guest(rings).map_err(|error| AgentError::BadRingMap {
            node: node.clone(),
            why: format!("{error:?}"),
        })?;
        // Mapped before anything is reported: a BAR that cannot be mapped is never announced.
        let bar = map_bar(&located.function)?;
        let protocol = ProtocolSession::start(RingChannel::new(rings, doorbell), facts(&located))?;
        Ok(Self {
            protocol,
            bar: Some(bar),
            located,
            options: options.clone(),
            released: false,
            counters: Counters::default(),
            held: VecDeque::new(),
        })
    }

    /// What discovery found (the function as last checked).
    pub fn located(&self) -> &Located {
        &self.located
    }

    /// The protocol session (its client's state, versions and layout).
    pub fn protocol(&mut self) -> &mut RingProtocol {
        &mut self.protocol
    }

    /// Takes what the host said meanwhile, without waiting (with what earlier calls heard and
    /// did not return, first). Host consumers' doorbells come as [`Change::Doorbell`].
    pub fn follow(&mut self) -> Result<Vec<Change>, AgentError> {
        self.hear()?;
        Ok(self.held.drain(..).collect())
    }

    /// Takes what the host said into the held changes.
    fn hear(&mut self) -> Result<(), AgentError> {
        let changes = self.protocol.follow()?;
        for change in changes {
            if matches!(change, Change::Doorbell { .. }) {
                self.counters.doorbells_heard = self.counters.doorbells_heard.saturating_add(1);
            } else {
                self.counters.changes = self.counters.changes.saturating_add(1);
            }
            hold(&mut self.held, change);
        }
        Ok(())
    }

    /// Waits for the host's signal, at most `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Result<(), AgentError> {
        Ok(self
            .protocol
            .conversation()
            .channel()
            .wait(millis(timeout))?)
    }

    /// What the host said, waiting up to `timeout` when it had said nothing yet.
    pub fn next_changes(&mut self, timeout: Duration) -> Result<Vec<Change>, AgentError> {
        let changes = self.follow()?;
        if !changes.is_empty() || self.closed() {
            return Ok(changes);
        }
        self.wait(timeout)?;
        self.follow()
    }

    /// Whether the conversation has doorbells (the host speaks protocol 1.1).
    pub fn doorbells(&self) -> bool {
        self.protocol.doorbells()
    }

    /// Rings the doorbell of the region named `which` (or whose id it is) with `value`: the
    /// host signals every host consumer attached to it. Write the data first; the doorbell
    /// only says "look". Fails with `doorbells_unsupported` when the host speaks only protocol
    /// 1.0, `rate_limited` when the host refuses it for now (ring again after
    /// [`crate::session::RETRY_AFTER`]; the session goes on), `no_such_region` when the
    /// layout has no such region (before the first layout, only an id can be rung).
    pub fn ring(&mut self, which: &str, value: u64) -> Result<u32, AgentError> {
        if !self.protocol.doorbells() {
            return Err(SessionError::DoorbellsUnsupported {
                version: self.protocol.conversation().client.version(),
            }
            .into());
        }
        let region = match self.layout() {
            Some(layout) => find_region(layout, which)?.id,
            None => which.parse::<u32>().map_err(|_| AgentError::NoSuchRegion {
                which: which.to_owned(),
                have: Vec::new(),
            })?,
        };
        match self.protocol.ring(region, value) {
            Ok(()) => {
                self.counters.doorbells_rung = self.counters.doorbells_rung.saturating_add(1);
                Ok(region)
            }
            Err(error) => {
                if matches!(error, SessionError::RateLimited { .. }) {
                    self.counters.doorbells_refused =
                        self.counters.doorbells_refused.saturating_add(1);
                }
                Err(error.into())
            }
        }
    }

    /// Waits up to `timeout` for a host consumer's doorbell on any region; `None` when none
    /// came. The other changes heard meanwhile are kept for [`Self::next_changes`].
    pub fn wait_doorbell(&mut self, timeout: Duration) -> Result<Option<Doorbell>, AgentError> {
        self.wait_doorbell_on(None, timeout)
    }

    /// As [`Self::wait_doorbell`], for the region named `which` (or whose id it is) only when
    /// given; doorbells of other regions are kept too.
    pub fn wait_doorbell_on(
        &mut self,
        which: Option<&str>,
        timeout: Duration,
    ) -> Result<Option<Doorbell>, AgentError> {
        if !self.protocol.doorbells() {
            return Err(SessionError::DoorbellsUnsupported {
                version: self.protocol.conversation().client.version(),
            }
            .into());
        }
        let deadline = Instant::now().checked_add(timeout);
        loop {
            self.hear()?;
            let wanted = match (which, self.layout()) {
                (None, _) => None,
                (Some(which), Some(layout)) => Some(find_region(layout, which)?.id),
                (Some(which), None) => which.parse::<u32>().ok(),
            };
            let found = self
                .held
                .iter()
                .position(|change| match (change, which, wanted) {
                    (Change::Doorbell { .. }, None, _) => true,
                    (Change::Doorbell { region, .. }, Some(_), Some(wanted)) => *region == wanted,
                    _ => false,
                });
            if let Some(Change::Doorbell { region, value }) =
                found.and_then(|index| self.held.remove(index))
            {
                let name = self
                    .layout()
                    .and_then(|layout| layout.region(region))
                    .map(|found| found.name.as_str().to_owned())
                    .unwrap_or_default();
                return Ok(Some(Doorbell {
                    region,
                    name,
                    value,
                }));
            }
            if self.closed() {
                return Err(AgentError::Closed);
            }
            let left = deadline.map_or(Duration::from_millis(250), |deadline| {
                deadline.saturating_duration_since(Instant::now())
            });
            if left.is_zero() {
                return Ok(None);
            }
            self.wait(left.min(Duration::from_millis(250)))?;
        }
    }

    /// Follows the host until the regions may be used, at most `timeout`. Fails with
    /// [`AgentError::Closed`] when the host closes the conversation and
    /// [`AgentError::NotBacked`] when the time is up.
    pub fn wait_backed(&mut self, timeout: Duration) -> Result<Vec<Change>, AgentError> {
        let deadline = Instant::now().checked_add(timeout);
        let mut changes = Vec::new();
        loop {
            // Doorbells heard meanwhile stay for the program (`next_changes`, `wait_doorbell`).
            self.hear()?;
            let (doorbells, others): (VecDeque<Change>, VecDeque<Change>) = self
                .held
                .drain(..)
                .partition(|change| matches!(change, Change::Doorbell { .. }));
            self.held = doorbells;
            changes.extend(others);
            if self.may_use() {
                return Ok(changes);
            }
            if self.closed() {
                return Err(AgentError::Closed);
            }
            let left = deadline.map_or(Duration::from_millis(250), |deadline| {
                deadline.saturating_duration_since(Instant::now())
            });
            if left.is_zero() {
                return Err(AgentError::NotBacked {
                    timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                    state: self.state(),
                });
            }
            self.wait(left.min(Duration::from_millis(250)))?;
        }
    }

    /// Whether the program may touch the regions now: backed for the current layout, the BAR
    /// mapped, the session not released.
    pub fn may_use(&self) -> bool {
        !self.released && self.bar.is_some() && self.protocol.may_use()
    }

    /// Whether the host closed the conversation (open a new session to start over).
    pub fn closed(&self) -> bool {
        self.protocol.closed()
    }

    /// Where the conversation is.
    pub fn state(&self) -> ClientState {
        self.protocol.state()
    }

    /// The latest layout (current or not: see [`Self::may_use`]).
    pub fn layout(&self) -> Option<&Layout> {
        self.protocol.layout()
    }

    /// The latest layout's generation (0 before any).
    pub fn generation(&self) -> u64 {
        self.layout().map_or(0, Layout::generation)
    }

    /// The region named `which` (or whose id it is), while [`Self::may_use`] says so.
    pub fn region(&self, which: &str) -> Result<RegionView<'_>, AgentError> {
        if !self.may_use() {
            return Err(AgentError::NotUsable);
        }
        let (Some(layout), Some(bar)) = (self.layout(), self.bar.as_ref()) else {
            return Err(AgentError::NotUsable);
        };
        let region = find_region(layout, which)?;
        Ok(RegionView {
            window: bar.region(&region)?,
            region,
            generation: layout.generation(),
        })
    }

    /// Looks at the paired function again: when its BAR moved (or decode went off), releases,
    /// maps the BAR where it is now and reports it; when the function is gone, releases and
    /// unmaps. For a long-running program to call now and then (`serve` does every second).
    pub fn check_bar(&mut self) -> Result<BarCheck, AgentError> {
        let found = self
            .options
            .target
            .function(&self.options.sysfs, &self.located.channel);
        let function = match found {
            Ok(function) => function,
            Err(DiscoverError::NoPairedFunction { .. } | DiscoverError::NoPci { .. }) => {
                if self.bar.is_some() {
                    self.release()?;
                    self.bar = None;
                }
                return Ok(BarCheck::Gone);
            }
            Err(error) => return Err(error.into()),
        };
        let old = &self.located.function;
        if self.bar.is_some()
            && function.enabled
            && function.bar == old.bar
            && function.bdf == old.bdf
        {
            return Ok(BarCheck::Unchanged);
        }
        // RELEASING before the old mapping goes.
        self.release()?;
        self.bar = None;
        enable_decode(&function)?;
        let bar = map_bar(&function)?;
        let moved = BarCheck::Moved {
            base: function.bar.start,
            size: function.bar.size,
        };
        self.located.function = function;
        self.bar = Some(bar);
        self.protocol.report(facts(&self.located))?;
        self.released = false;
        self.counters.bar_moves = self.counters.bar_moves.saturating_add(1);
        Ok(moved)
    }

    /// Says `RELEASING` and reports decode off: the regions must not be touched afterwards.
    /// Nothing to do when already released or the host closed the conversation.
    pub fn release(&mut self) -> Result<(), AgentError> {
        if self.released || self.closed() {
            self.released = true;
            return Ok(());
        }
        self.protocol.release()?;
        self.released = true;
        Ok(())
    }

    /// What went through the session so far.
    pub fn counters(&mut self) -> Counters {
        let channel = self.protocol.conversation().channel();
        Counters {
            channel: channel.counters(),
            interrupts: channel.doorbell().events(),
            ..self.counters
        }
    }
}

impl Drop for Session {
    /// Releases (best effort) before the BAR and the rings are unmapped.
    fn drop(&mut self) {
        let _ = self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::GuidText;

    #[test]
    fn the_default_interface_type_is_the_device_hosts() {
        assert_eq!(
            GuidText(DEFAULT_INTERFACE_TYPE).to_string(),
            "9d0ee607-90ef-4c63-8f88-a81dcbc7ca83"
        );
    }
}
