//! The demo's running host and guest: what was built, and what the demo does with it.

use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use vmbmmio_core::control::{ControlDevice, FileKey, Rundown};
use vmbmmio_core::mmio_plan::{MmioPlan, PAGE_SIZE};
use vmbmmio_devhost::ProtoDriverClient;
use vmbmmio_devhost::clock::Clock;
use vmbmmio_devhost::guid::Guid;
use vmbmmio_devhost::sequence::DeviceHost;

use super::guest_side::PairedFunction;
use super::pattern::{PATTERN_LEN, Writer, page_pattern};
use super::protocol::{GuestProtocol, HostWaiter};
use super::transport::{InProcessTransport, TransportCounts};
use super::{DemoError, read_pattern};
use crate::guest_memory::{AccessReport, GuestPhysicalMemory};
use crate::hdv::{HdvSim, SimSectionMapper, ViewCounters};
use crate::kmcl::{ChannelId, Sim, SimVm};
use crate::memory::{ProcessId, SectionMemory};
use crate::platform::SimPlatform;
use crate::sections::SimKernel;
use crate::vm::{GpaRange, GuestVm};
use crate::vpci::{GuestBar, GuestPci};
use vmbmmio_proto::guest::Layout;

/// The VM's compute-system id.
pub(crate) const VM_ID: Guid = Guid::from_u128(0x6d1e_0b6e_5a8f_4c2d_9e3b_7a41_0c5d_2e01);
/// The emulated device's class (`EmulatorId`) and instance (`FlexibleIov` key).
pub(crate) const EMULATOR_CLASS: Guid = Guid::from_u128(0x9bdf_f1a3_9ee9_41b5_96ee_5187_a86b_81fe);
pub(crate) const DEVICE_INSTANCE: Guid = Guid::from_u128(0xa298_f338_8137_4c56_953b_aa2a_a5e4_f4ee);
/// The VMBus interface the channel is offered with.
pub(crate) const INTERFACE_TYPE: Guid = Guid::from_u128(0x3c1d_77a0_52e4_4b8e_9d21_6f0a_b5c3_0001);
pub(crate) const INTERFACE_INSTANCE: Guid =
    Guid::from_u128(0x3c1d_77a0_52e4_4b8e_9d21_6f0a_b5c3_1001);
/// The control-device file handle the device host opened.
pub(super) const FILE: FileKey = FileKey(0x5eed);
/// The BAR the device uses (its low half; the high half is the next index).
pub(crate) const BAR_INDEX: u8 = 2;

pub(crate) type Host =
    DeviceHost<HdvSim, HdvSim, ProtoDriverClient<InProcessTransport>, SimSectionMapper>;

/// A clock that never waits: sleeping only advances virtual time.
#[derive(Default)]
pub(crate) struct VirtualClock(RefCell<Duration>);

impl Clock for VirtualClock {
    fn now(&self) -> Duration {
        *self.0.borrow()
    }

    fn sleep(&self, duration: Duration) {
        *self.0.borrow_mut() += duration;
    }
}

pub(super) fn step<T, E: std::fmt::Debug>(
    what: &str,
    result: Result<T, E>,
) -> Result<T, DemoError> {
    result.map_err(|error| DemoError(format!("{what}: {error:?}")))
}

/// Narration output plus the device host's buffered events.
pub(super) struct Narrator<'a> {
    pub(super) out: &'a mut dyn Write,
    pub(super) events: Rc<RefCell<Vec<String>>>,
}

impl Narrator<'_> {
    pub(super) fn say(&mut self, line: &str) {
        let _ = writeln!(self.out, "  {line}");
    }

    pub(super) fn flush_events(&mut self) {
        for event in self.events.borrow_mut().drain(..) {
            let _ = writeln!(self.out, "    device host event: {event}");
        }
    }
}

/// The host side: the driver, its platform models and the device host.
pub(super) struct HostSide {
    pub(super) sim: Rc<Sim>,
    pub(super) kernel: SimKernel,
    pub(super) control: Rc<RefCell<ControlDevice<SimPlatform>>>,
    pub(super) hdv: HdvSim,
    pub(super) device_host: ProcessId,
    pub(super) vm: SimVm,
    pub(super) guest_vm: GuestVm,
    pub(super) host: Option<Host>,
    pub(super) plan: MmioPlan,
    pub(super) views: Arc<ViewCounters>,
    pub(super) counts: Rc<TransportCounts>,
    /// The device host's waiting loop on a second handle to its file (`protocol`).
    pub(super) waiter: Option<HostWaiter>,
    /// The control state's run-down protection (a `static` in the glue), shared by every
    /// transport, the host consumers' ones too (`crate::host_sim`).
    pub(super) rundown: Rc<Rundown>,
}

/// The guest side: its view of the channel, its PCI bus and its physical memory.
pub(super) struct GuestSide {
    pub(super) channel: ChannelId,
    pub(super) pci: GuestPci,
    pub(super) paired: PairedFunction,
    pub(super) memory: GuestPhysicalMemory,
    pub(super) bar: GuestBar,
    pub(super) channel_range: Option<GpaRange>,
    /// The guest control protocol's client on the channel.
    pub(super) protocol: GuestProtocol,
    /// The layout the driver gave the guest (GET_LAYOUT), before the guest touches the memory.
    pub(super) layout: Option<Layout>,
}

/// The simulated host and guest with the driver and the device host running in them.
pub struct DemoWorld<'a> {
    pub(super) narrator: Narrator<'a>,
    pub(super) host: HostSide,
    pub(super) guest: GuestSide,
    pub(super) assumptions: Vec<String>,
    /// The regions' names in the device host's configuration, in order (`consumers`).
    pub(super) region_names: Vec<String>,
}

impl DemoWorld<'_> {
    /// Prints one narration line.
    pub fn say(&mut self, line: &str) {
        self.narrator.say(line);
    }

    /// What the run rests on without proof, as printed.
    pub fn assumptions(&self) -> &[String] {
        &self.assumptions
    }

    /// The BAR as the guest placed it.
    pub fn bar(&self) -> GuestBar {
        self.guest.bar
    }

    /// The channel's MMIO range in the guest, if it has one.
    pub fn channel_range(&self) -> Option<GpaRange> {
        self.guest.channel_range
    }

    /// What the in-process transport delivered.
    pub fn transport_counts(&self) -> Rc<TransportCounts> {
        self.host.counts.clone()
    }

    /// Why the VM worker crashed, if it did.
    pub fn vm_crash(&self) -> Option<String> {
        self.host.guest_vm.crash_reason()
    }

    /// The regions the guest learned from the driver (GET_LAYOUT): `(first page, pages)`.
    /// Empty until the guest read the layout: the guest touches nothing before.
    fn layout_regions(&self) -> Vec<(u64, u64)> {
        self.guest.layout.as_ref().map_or_else(Vec::new, |layout| {
            layout
                .regions()
                .iter()
                .map(|r| (r.offset_pages, r.length_pages))
                .collect()
        })
    }

    /// The BAR pages to check: every `stride`-th page of the regions the guest learned from the
    /// layout (1: all of them), plus the first and last page of every region, in order.
    pub fn pages(&self, stride: u64) -> Vec<u64> {
        let stride = stride.max(1);
        let mut pages = Vec::new();
        for (first, count) in self.layout_regions() {
            let last = first + count - 1;
            pages.extend((first..=last).filter(|page| (page - first).is_multiple_of(stride)));
            if pages.last() != Some(&last) {
                pages.push(last);
            }
        }
        pages
    }

    /// The first BAR page of every region (from the layout).
    pub fn first_pages(&self) -> Vec<u64> {
        self.layout_regions()
            .into_iter()
            .map(|(first, _)| first)
            .collect()
    }

    /// Guest writes then host reads each of `pages`, then host writes and guest reads; returns
    /// how many pages differed each way. Each write overwrites what the other side wrote
    /// before, so a dropped write shows as a mismatch.
    pub fn check_both_ways(&self, pages: &[u64]) -> Result<(u64, u64), DemoError> {
        let mut wrong_in = 0;
        for &page in pages {
            let pattern = page_pattern(page, Writer::Guest);
            self.guest_write(page, &pattern);
            if self.host_read(page)? != pattern {
                wrong_in += 1;
            }
        }
        let mut wrong_out = 0;
        for &page in pages {
            let pattern = page_pattern(page, Writer::Host);
            self.host_write(page, &pattern)?;
            if self.guest_read(page) != pattern {
                wrong_out += 1;
            }
        }
        Ok((wrong_in, wrong_out))
    }

    /// The guest writes `bytes` at the start of BAR page `page`.
    pub fn guest_write(&self, page: u64, bytes: &[u8; PATTERN_LEN]) {
        self.guest
            .memory
            .write(self.guest.bar.base + page * PAGE_SIZE, bytes);
    }

    /// The guest reads the start of BAR page `page`.
    pub fn guest_read(&self, page: u64) -> [u8; PATTERN_LEN] {
        let mut bytes = [0u8; PATTERN_LEN];
        self.guest
            .memory
            .read(self.guest.bar.base + page * PAGE_SIZE, &mut bytes);
        bytes
    }

    /// The driver's section of the region holding BAR page `page`, and the page's offset in it
    /// (the simulator-only view, see [`super::assumptions::HOST_VIEW`]).
    fn host_section(&self, page: u64) -> Result<(Arc<SectionMemory>, u64), DemoError> {
        let offset = page * PAGE_SIZE;
        let (index, region) = self
            .host
            .plan
            .regions()
            .iter()
            .enumerate()
            .find(|(_, r)| r.offset <= offset && offset < r.offset + r.size)
            .ok_or_else(|| DemoError(format!("page {page} is in no region")))?;
        let control = self.host.control.borrow();
        let index = u32::try_from(index).map_err(|_| DemoError("too many regions".into()))?;
        let section = control
            .region_section(FILE, index)
            .ok_or_else(|| DemoError(format!("region {index} has no section")))?;
        let memory = self
            .host
            .kernel
            .kernel_memory(section)
            .ok_or_else(|| DemoError(format!("region {index}'s section is gone")))?;
        Ok((memory, offset - region.offset))
    }

    /// The host reads the start of BAR page `page` from the driver's own section object.
    pub fn host_read(&self, page: u64) -> Result<[u8; PATTERN_LEN], DemoError> {
        let (memory, offset) = self.host_section(page)?;
        read_pattern(&memory, offset)
    }

    /// The host writes `bytes` at the start of BAR page `page` into the driver's section.
    pub fn host_write(&self, page: u64, bytes: &[u8; PATTERN_LEN]) -> Result<(), DemoError> {
        let (memory, offset) = self.host_section(page)?;
        memory
            .write(offset, bytes)
            .map_err(|error| DemoError(format!("host write failed: {error:?}")))
    }

    /// How the guest's BAR accesses were served so far.
    pub fn guest_access_totals(&self) -> AccessReport {
        self.guest.memory.totals()
    }

    /// Lets the device host look at its fast-path health once (one pass of its serve loop):
    /// a region whose guest accesses reached the emulator is re-reported as served by the
    /// intercept fallback. Returns the mapping states it then holds.
    pub fn check_fast_path(&mut self) -> Result<String, DemoError> {
        let Some(host) = self.host.host.as_mut() else {
            return Ok(String::new());
        };
        step(
            "checking the fast path",
            host.serve(
                &VirtualClock::default(),
                &AtomicBool::new(true),
                Duration::from_millis(1),
            ),
        )?;
        let states = format!("{:?}", host.mapping_states());
        self.narrator.flush_events();
        Ok(states)
    }
}
