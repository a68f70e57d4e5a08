//! The demo's simulated host and guest, built step by step, and their teardown.

use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use vmbmmio_core::control::{Caller, ControlDevice, FileKey, OfferSettings};
use vmbmmio_core::mmio_plan::{MmioPlan, PAGE_SIZE};
use vmbmmio_devhost::clock::Clock;
use vmbmmio_devhost::config::{CliArgs, DeviceHostConfig};
use vmbmmio_devhost::guid::Guid;
use vmbmmio_devhost::placement::BarPlacement;
use vmbmmio_devhost::sequence::{Backends, DeviceHost, Event, Progress};
use vmbmmio_devhost::{DriverSessionSettings, DriverTarget, ProtoDriverClient};

use super::pattern::PATTERN_LEN;
use super::transport::InProcessTransport;
use super::{DemoError, DemoOptions, read_pattern};
use crate::guest_memory::{AccessReport, BarAssignment, GuestPhysicalMemory};
use crate::hdv::{
    FlexibleIovDevice, HdvSim, HostingModel, PlatformQuirks, SimSectionMapper, ViewCounters,
    VmConfig,
};
use crate::kmcl::{GuestConfig, Sim, SimVm};
use crate::memory::{ProcessId, SectionMemory};
use crate::platform::SimPlatform;
use crate::sections::SimKernel;

/// The VM's compute-system id.
const VM_ID: Guid = Guid::from_u128(0x6d1e_0b6e_5a8f_4c2d_9e3b_7a41_0c5d_2e01);
/// The emulated device's class (`EmulatorId`) and instance (`FlexibleIov` key).
const EMULATOR_CLASS: Guid = Guid::from_u128(0x9bdf_f1a3_9ee9_41b5_96ee_5187_a86b_81fe);
const DEVICE_INSTANCE: Guid = Guid::from_u128(0xa298_f338_8137_4c56_953b_aa2a_a5e4_f4ee);
/// The VMBus interface the channel is offered with.
const INTERFACE_TYPE: Guid = Guid::from_u128(0x3c1d_77a0_52e4_4b8e_9d21_6f0a_b5c3_0001);
const INTERFACE_INSTANCE: Guid = Guid::from_u128(0x3c1d_77a0_52e4_4b8e_9d21_6f0a_b5c3_1001);
/// The control-device file handle the device host opened.
const FILE: FileKey = FileKey(0x5eed);
/// The BAR the device uses (its low half; the high half is the next index).
const BAR_INDEX: u8 = 2;

type Host = DeviceHost<HdvSim, HdvSim, ProtoDriverClient<InProcessTransport>, SimSectionMapper>;

/// A clock that never waits: sleeping only advances virtual time.
struct VirtualClock(RefCell<Duration>);

impl Clock for VirtualClock {
    fn now(&self) -> Duration {
        *self.0.borrow()
    }

    fn sleep(&self, duration: Duration) {
        *self.0.borrow_mut() += duration;
    }
}

/// What each model still holds after teardown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeakReport {
    /// KMCL channels, contexts, kernel VMBus handles and packets not released.
    pub kmcl: u64,
    /// Section objects, handles, references and views not released.
    pub sections: u64,
    /// Sessions, sections and handle records still in the driver's ledger.
    pub ledger: u64,
    /// HCS/HDV objects and section-backed ranges not released.
    pub hdv: u64,
    /// Device-host views of sections not unmapped.
    pub views: u64,
    /// Guest VMBus offers (and their MMIO reservations) not rescinded.
    pub guest_offers: u64,
}

impl LeakReport {
    /// Every leaked object, all models together.
    pub fn total(&self) -> u64 {
        self.kmcl + self.sections + self.ledger + self.hdv + self.views + self.guest_offers
    }
}

/// The simulated host and guest with the driver and the device host running in them.
pub struct DemoWorld<'a> {
    out: &'a mut dyn Write,
    events: Rc<RefCell<Vec<String>>>,
    sim: Rc<Sim>,
    kernel: SimKernel,
    control: Rc<RefCell<ControlDevice<SimPlatform>>>,
    hdv: HdvSim,
    device_host: ProcessId,
    vm: SimVm,
    host: Option<Host>,
    guest: GuestPhysicalMemory,
    bar: BarAssignment,
    plan: MmioPlan,
    views: Arc<ViewCounters>,
}

fn step<T, E: std::fmt::Debug>(what: &str, result: Result<T, E>) -> Result<T, DemoError> {
    result.map_err(|error| DemoError(format!("{what}: {error:?}")))
}

impl<'a> DemoWorld<'a> {
    /// Builds everything up to a guest that has placed the BAR in its VMBus MMIO reservation.
    pub fn new(options: &DemoOptions, out: &'a mut dyn Write) -> Result<Self, DemoError> {
        let plan = step("planning the regions", MmioPlan::new(&options.region_sizes))?;
        let sim = Rc::new(Sim::new());
        let kernel = SimKernel::new();
        let control = Rc::new(RefCell::new(ControlDevice::new(
            sim.parent_device(),
            kernel.clone(),
            options.quotas,
            OfferSettings::default(),
        )));
        let device_host = kernel.spawn_process();
        let vm = sim.add_vm_for_process(GuestConfig::default(), device_host);
        let hdv = HdvSim::new(Arc::new(kernel.clone()), device_host);
        hdv.set_quirks(PlatformQuirks {
            mapping_has_no_effect: options.mapping_has_no_effect,
            bar_accesses_not_forwarded: options.bar_accesses_not_forwarded,
        });
        step(
            "creating the VM",
            hdv.create_compute_system(
                VM_ID,
                VmConfig {
                    flexible_iov: vec![FlexibleIovDevice {
                        instance_id: DEVICE_INSTANCE,
                        emulator_id: EMULATOR_CLASS,
                        hosting_model: HostingModel::External,
                        configuration: Vec::new(),
                    }],
                },
            ),
        )?;
        let caller = Caller {
            file: FILE,
            process: device_host.into(),
        };
        step(
            "opening the control device",
            control.borrow_mut().file_create(caller),
        )?;

        let events: Rc<RefCell<Vec<String>>> = Rc::default();
        let mut world_out = WorldOut {
            out,
            events: events.clone(),
        };
        world_out.say(
            "host: vmbmmio driver loaded; control device \\\\.\\vmbmmio open to SYSTEM and \
             Administrators only",
        );
        world_out.say(&format!(
            "host: VM {VM_ID} created (not started) with a FlexibleIov device {DEVICE_INSTANCE}, \
             hosted externally"
        ));

        let config = device_host_config(&options.region_sizes)?;
        let transport = InProcessTransport {
            control: control.clone(),
            sim: sim.clone(),
            kernel: kernel.clone(),
            caller,
        };
        let settings = DriverSessionSettings {
            target: DriverTarget::VmbusHandle(vm.user_handle),
            interface_type: INTERFACE_TYPE,
            interface_instance: INTERFACE_INSTANCE,
            guest_writable: true,
        };
        let closer = kernel.clone();
        let mapper = SimSectionMapper::new(Arc::new(kernel.clone()), device_host)
            .with_handle_closer(move |process, handle| {
                // The device host closes the handles it was given (docs/sections.md).
                let _ = closer.close_handle(process, handle);
            });
        let views = mapper.counters();
        let backends = Backends {
            hcs: hdv.clone(),
            hdv: hdv.clone(),
            driver: ProtoDriverClient::new(transport, settings),
            mapper,
        };
        let log = events.clone();
        let host = step(
            "starting the device host",
            DeviceHost::start(
                &config,
                backends,
                Box::new(move |event: &Event| log.borrow_mut().push(format!("{event:?}"))),
            ),
        )?;
        world_out.flush_events("device host");
        world_out.say(&format!(
            "driver: planned a {} KiB BAR for {} regions, asked the guest to reserve {} MiB of \
             MMIO (+{} MiB alignment slack), created {} sections and offered the VMBus channel",
            plan.bar_size() >> 10,
            plan.regions().len(),
            plan.mmio_megabytes(),
            plan.mmio_megabytes_optional(),
            plan.regions().len()
        ));

        let guest_vmbus = sim.guest(vm.id);
        let offer = guest_vmbus
            .only_offer()
            .ok_or_else(|| DemoError("the guest saw no offer".into()))?;
        let reservation = guest_vmbus
            .reservation(offer.channel)
            .ok_or_else(|| DemoError("the guest reserved no MMIO".into()))?;
        world_out.say(&format!(
            "guest: VMBus offer received (MmioMegabytes {}, optional {}); reserved guest MMIO \
             [{:#x}, {:#x})",
            offer.mmio_megabytes,
            offer.mmio_megabytes_optional,
            reservation.base,
            reservation.base + reservation.size
        ));
        step("starting the VM", hdv.start_compute_system(VM_ID))?;
        step("opening the channel", guest_vmbus.open(offer.channel))?;
        let mut host = host;
        let status = step("querying the driver", host.driver_status())?;
        world_out.say(&format!(
            "guest: VM started; VMBus channel opened (the driver reports the session {:?})",
            status.state
        ));

        let guest = GuestPhysicalMemory::new(&hdv, VM_ID);
        let base = reservation.base.div_ceil(plan.bar_size()) * plan.bar_size();
        if base + plan.bar_size() > reservation.base + reservation.size {
            return Err(DemoError(
                "the BAR does not fit the guest's reservation".into(),
            ));
        }
        let bar = step(
            "placing the BAR",
            guest.assign_bar(DEVICE_INSTANCE, BAR_INDEX, base),
        )?;
        world_out.say(&format!(
            "guest: PCI device found; BAR{BAR_INDEX} sized {} KiB and placed at {:#x}, inside \
             the VMBus MMIO reservation",
            bar.size >> 10,
            bar.base
        ));
        // Stand-in for the guest's report over the channel (issue 9): the device host maps
        // only after the guest placed the BAR with memory decode on.
        step(
            "reporting the BAR placement",
            host.placement_reported(BarPlacement {
                base: bar.base,
                size: bar.size,
                memory_decode: true,
            }),
        )?;

        let clock = VirtualClock(RefCell::default());
        let progress = step(
            "mapping the sections into the BAR",
            host.map_regions(&clock, &AtomicBool::new(false)),
        )?;
        if progress != Progress::Mapped {
            return Err(DemoError(format!("mapping stopped early: {progress:?}")));
        }
        world_out.flush_events("device host");
        world_out.say(&format!(
            "device host: regions mapped into BAR{BAR_INDEX} with \
             HdvCreateSectionBackedMmioRange (VM paused around each change): {:?}",
            host.mapping_states()
        ));

        Ok(Self {
            out: world_out.out,
            events,
            sim,
            kernel,
            control,
            hdv,
            device_host,
            vm,
            host: Some(host),
            guest,
            bar,
            plan,
            views,
        })
    }

    /// The BAR pages to check: every `stride`-th page of the regions (1: all of them), plus the
    /// first and last page of every region, in order.
    pub fn pages(&self, stride: u64) -> Vec<u64> {
        let stride = stride.max(1);
        let mut pages = Vec::new();
        for region in self.plan.regions() {
            let first = region.offset / PAGE_SIZE;
            let last = first + region.pages() - 1;
            pages.extend((first..=last).filter(|page| (page - first).is_multiple_of(stride)));
            if pages.last() != Some(&last) {
                pages.push(last);
            }
        }
        pages
    }

    /// Prints one narration line.
    pub fn say(&mut self, line: &str) {
        let _ = writeln!(self.out, "  {line}");
    }

    /// The guest writes `bytes` at the start of BAR page `page`.
    pub fn guest_write(&self, page: u64, bytes: &[u8; PATTERN_LEN]) {
        self.guest.write(self.bar.base + page * PAGE_SIZE, bytes);
    }

    /// The guest reads the start of BAR page `page`.
    pub fn guest_read(&self, page: u64) -> [u8; PATTERN_LEN] {
        let mut bytes = [0u8; PATTERN_LEN];
        self.guest
            .read(self.bar.base + page * PAGE_SIZE, &mut bytes);
        bytes
    }

    /// The driver's section of the region holding BAR page `page`, and the page's offset in it.
    fn host_section(&self, page: u64) -> Result<(Arc<SectionMemory>, u64), DemoError> {
        let offset = page * PAGE_SIZE;
        let (index, region) = self
            .plan
            .regions()
            .iter()
            .enumerate()
            .find(|(_, r)| r.offset <= offset && offset < r.offset + r.size)
            .ok_or_else(|| DemoError(format!("page {page} is in no region")))?;
        let control = self.control.borrow();
        let section = control
            .region_section(FILE, index as u32)
            .ok_or_else(|| DemoError(format!("region {index} has no section")))?;
        let memory = self
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
        self.guest.totals()
    }

    /// Lets the device host look at its fast-path health once (one pass of its serve loop):
    /// a region whose guest accesses reached the emulator is re-reported as served by the
    /// intercept fallback. Returns the mapping states it then holds.
    pub fn check_fast_path(&mut self) -> Result<String, DemoError> {
        let Some(host) = self.host.as_mut() else {
            return Ok(String::new());
        };
        let clock = VirtualClock(RefCell::default());
        step(
            "checking the fast path",
            host.serve(&clock, &AtomicBool::new(true), Duration::from_millis(1)),
        )?;
        let states = format!("{:?}", host.mapping_states());
        let mut out = WorldOut {
            out: &mut *self.out,
            events: self.events.clone(),
        };
        out.flush_events("device host");
        Ok(states)
    }

    /// Orderly teardown, then what every model still holds.
    pub fn teardown(mut self) -> Result<LeakReport, DemoError> {
        // hdv.md §5 step 6: the VM stops before the device host destroys its ranges and is torn
        // down.
        step("stopping the VM", self.hdv.terminate_compute_system(VM_ID))?;
        if let Some(host) = self.host.take() {
            let report = host.shutdown();
            let mut out = WorldOut {
                out: &mut *self.out,
                events: self.events.clone(),
            };
            out.flush_events("device host");
            out.say(&format!(
                "device host: ranges destroyed, handles closed, driver session closed, device \
                 host torn down ({report})"
            ));
        }
        let rescinded = self.sim.guest(self.vm.id).offers().is_empty();
        self.say(&format!(
            "guest: VMBus channel rescinded by the driver ({}); MMIO reservation released",
            if rescinded {
                "offer gone"
            } else {
                "offer still present"
            }
        ));
        self.kernel.exit_process(self.device_host);
        self.control.borrow_mut().file_cleanup(FILE);
        self.control.borrow_mut().shutdown();
        self.say("host: VM stopped, device host exited, driver unloaded");

        let kmcl = self.sim.counters();
        let violations = self.sim.violations();
        if !violations.is_empty() {
            return Err(DemoError(format!("KMCL rules broken: {violations:?}")));
        }
        let objects = self.kernel.counters();
        let ledger = self.control.borrow().section_counters();
        let hdv = self.hdv.counters();
        let views =
            self.views.mapped.load(Ordering::SeqCst) - self.views.unmapped.load(Ordering::SeqCst);
        Ok(LeakReport {
            kmcl: (kmcl.channels_allocated - kmcl.channels_cleaned_up)
                + (kmcl.contexts_allocated - kmcl.contexts_freed)
                + (kmcl.kernel_handles_converted - kmcl.kernel_handles_closed)
                + (kmcl.packets_delivered - kmcl.packets_completed - kmcl.packets_failed)
                + (kmcl.outgoing_packets_allocated - kmcl.outgoing_packets_released),
            sections: (objects.sections_created - objects.sections_destroyed)
                + (objects.kernel_handles_opened - objects.kernel_handles_closed)
                + (objects.references_taken - objects.references_released)
                + (objects.user_handles_opened - objects.user_handles_closed)
                + (objects.views_mapped - objects.views_unmapped),
            ledger: ledger.live_sessions + ledger.live_sections + ledger.live_handle_records,
            hdv: (hdv.compute_systems_opened - hdv.compute_systems_closed)
                + (hdv.device_hosts_initialized - hdv.device_hosts_torn_down)
                + (hdv.devices_created - hdv.devices_released)
                + (hdv.ranges_created - hdv.ranges_destroyed - hdv.ranges_released_by_teardown),
            views,
            guest_offers: self.sim.guest(self.vm.id).offers().len() as u64,
        })
    }
}

/// Narration output plus the device host's buffered events.
struct WorldOut<'a> {
    out: &'a mut dyn Write,
    events: Rc<RefCell<Vec<String>>>,
}

impl WorldOut<'_> {
    fn say(&mut self, line: &str) {
        let _ = writeln!(self.out, "  {line}");
    }

    fn flush_events(&mut self, who: &str) {
        for event in self.events.borrow_mut().drain(..) {
            let _ = writeln!(self.out, "    {who} event: {event}");
        }
    }
}

/// The device host's configuration, as its command line would give it.
fn device_host_config(region_sizes: &[u64]) -> Result<DeviceHostConfig, DemoError> {
    let cli = CliArgs {
        vm_id: Some(VM_ID.to_string()),
        region_sizes: region_sizes.iter().map(u64::to_string).collect(),
        vendor_id: Some("0x1af4".into()),
        device_id: Some("0x1110".into()),
        emulator_class_id: Some(EMULATOR_CLASS.to_string()),
        instance_id: Some(DEVICE_INSTANCE.to_string()),
        bar_index: Some(BAR_INDEX.to_string()),
        interface_type: Some(INTERFACE_TYPE.to_string()),
        interface_instance: Some(INTERFACE_INSTANCE.to_string()),
        ..CliArgs::default()
    };
    vmbmmio_devhost::config::load(&cli).map_err(|errors| DemoError(format!("{errors}")))
}
