//! Building the demo's world, in the order a real host and guest go through it:
//! 1. the driver loads; the VM is created (not started) with its FlexibleIov device declared;
//! 2. the device host starts: it opens the VM, creates its PCI device (with the pairing
//!    capability), opens a driver session (the driver plans, creates the sections and offers the
//!    channel) and maps its views of the sections;
//! 3. the VM starts: the guest receives the offer, its vPCI bus driver places the BAR;
//! 4. the guest pairs the PCI function with the channel, opens the channel, turns memory decode
//!    on and reports where the BAR is; only then does the device host map the sections.

use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;
use std::sync::Arc;

use vmbmmio_core::control::{ControlDevice, OfferSettings, Rundown};
use vmbmmio_core::mmio_plan::MmioPlan;
use vmbmmio_devhost::config::{CliArgs, DeviceHostConfig};
use vmbmmio_devhost::sequence::guest_wait::GuestEventFollower;
use vmbmmio_devhost::sequence::{Backends, DeviceHost, Event};
use vmbmmio_devhost::{DriverSessionSettings, DriverTarget, ProtoDriverClient};
use vmbmmio_proto::guest::EventKind;

use super::assumptions::{
    BAR_OUTSIDE_WINDOW, CONSUMER_VIEW_COHERENT, CONSUMER_WAIT, HOST_VIEW, MAPPING_TAKES_EFFECT,
};
use super::guest_side::{enable_and_locate, find_paired_function};
use super::protocol::HostWaiter;
use super::transport::{InProcessTransport, Removal, TransportCounts, WaitSlot};
use super::world::{
    BAR_INDEX, DEVICE_INSTANCE, DemoWorld, EMULATOR_CLASS, FILE, GuestSide, Host, HostSide,
    INTERFACE_INSTANCE, INTERFACE_TYPE, Narrator, VM_ID, step,
};
use super::{DemoError, DemoOptions};
use crate::glue::SimGlue;
use crate::guest_memory::GuestPhysicalMemory;
use crate::hdv::{FlexibleIovDevice, HdvSim, HostingModel, SimSectionMapper, VmConfig};
use crate::kmcl::{ChannelId, Sim};
use crate::sections::SimKernel;
use crate::vm::{ClaimRequest, GpaRange, GuestKind, GuestVm};
use crate::vpci::GuestPci;

impl<'a> DemoWorld<'a> {
    /// Builds everything up to a guest whose BAR the device host has mapped.
    pub fn new(options: &DemoOptions, out: &'a mut dyn Write) -> Result<Self, DemoError> {
        if options.bar_in_channel_range && options.guest != GuestKind::Linux {
            return Err(DemoError(
                "only a Linux guest can place the BAR inside its channel's range (its kernel \
                 driver writes the BAR itself); a Windows guest's BARs come from PnP"
                    .into(),
            ));
        }
        let events: Rc<RefCell<Vec<String>>> = Rc::default();
        let mut narrator = Narrator {
            out,
            events: events.clone(),
        };
        let (host, assumption) = build_host(options, &events)?;
        let mut assumptions = vec![
            assumption,
            HOST_VIEW.to_string(),
            CONSUMER_VIEW_COHERENT.to_string(),
            CONSUMER_WAIT.to_string(),
        ];
        if !options.quirks.mapping_has_no_effect && !options.quirks.bar_accesses_not_forwarded {
            assumptions.push(MAPPING_TAKES_EFFECT.to_string());
        }
        if options.bar_in_channel_range {
            assumptions.push(BAR_OUTSIDE_WINDOW.to_string());
        }
        narrator.say("assumptions this run rests on (not verified on a real host):");
        for assumption in &assumptions {
            narrator.say(&format!("  - {assumption}"));
        }
        narrator.say(
            "host: vmbmmio driver loaded; control device \\\\.\\vmbmmio open to SYSTEM and \
             Administrators only",
        );
        narrator.say(&format!(
            "host: VM {VM_ID} created (not started), {:?} guest, with a FlexibleIov device \
             {DEVICE_INSTANCE} hosted externally",
            options.guest
        ));
        narrator.flush_events();
        narrator.say(&format!(
            "driver: planned a {} KiB BAR for {} regions, created {} sections, offered the VMBus \
             channel asking for MmioMegabytes {} / optional {} (the reservation is not where \
             the memory lives: the BAR is)",
            host.plan.bar_size() >> 10,
            host.plan.regions().len(),
            host.plan.regions().len(),
            host.plan.mmio_megabytes(),
            host.plan.mmio_megabytes_optional(),
        ));
        let offers_before_start = host.sim.guest(host.vm.id).offers().len();
        narrator.say(&format!(
            "guest: the VM is not running, so it sees {offers_before_start} VMBus offers"
        ));

        let mut world = Self {
            guest: bring_up_guest(options, &host, &mut narrator)?,
            narrator,
            host,
            assumptions,
            region_names: region_names(options),
        };
        world.map_after_report()?;
        Ok(world)
    }

    /// The guest reports over the channel; the driver tells the device host, which maps every
    /// region; the guest hears that the regions are backed and reads the layout.
    fn map_after_report(&mut self) -> Result<(), DemoError> {
        self.guest_reports()?;
        self.device_host_follows()?;
        self.device_host_maps()?;
        let states = self
            .host
            .host
            .as_ref()
            .map(|host| host.mapping_states())
            .unwrap_or_default();
        self.narrator.flush_events();
        self.narrator.say(&format!(
            "device host: regions mapped into BAR{BAR_INDEX} with \
             HdvCreateSectionBackedMmioRange, relative to the BAR, VM paused around each, and \
             reported to the driver: {states:?}"
        ));
        if let Some(reason) = self.host.guest_vm.crash_reason() {
            self.narrator.say(&format!("VM worker crashed: {reason}"));
            return Ok(());
        }
        self.guest_hears(EventKind::RegionsMapped)?;
        self.guest.layout = Some(self.guest_reads_layout()?);
        Ok(())
    }
}

/// The driver, the models, the VM (created, not started) and the device host (started).
/// Returns the VMBus-handle assumption in the words the model recorded it.
fn build_host(
    options: &DemoOptions,
    events: &Rc<RefCell<Vec<String>>>,
) -> Result<(HostSide, String), DemoError> {
    let plan = step("planning the regions", MmioPlan::new(&options.region_sizes))?;
    let sim = Rc::new(Sim::new());
    let kernel = SimKernel::new();
    let control = Rc::new(RefCell::new(ControlDevice::new(
        sim.parent_device(),
        kernel.clone(),
        kernel.clone(),
        kernel.clock(),
        options.quotas,
        OfferSettings::default(),
    )));
    let device_host = kernel.spawn_process();
    let guest_vm = GuestVm::with_default_pool(options.guest);
    let (vm, assumption) = sim.add_vm_assuming_vmbus_handle_in(guest_vm.clone(), device_host);
    let hdv = HdvSim::new(Arc::new(kernel.clone()), device_host);
    hdv.set_quirks(options.quirks);
    step(
        "creating the VM",
        hdv.create_compute_system(VM_ID, vm_config(), guest_vm.clone()),
    )?;
    // The device host opens the control device: a user-mode create in its own context; the
    // driver references its process object (src/glue/control.rs).
    let rundown: Rc<Rundown> = Rc::default();
    let glue = SimGlue {
        control: control.clone(),
        sim: sim.clone(),
        kernel: kernel.clone(),
        rundown: rundown.clone(),
    };
    let caller = step(
        "opening the control device",
        glue.open_file(device_host, FILE),
    )?;

    let counts = Rc::new(TransportCounts::default());
    let transport = InProcessTransport {
        control: control.clone(),
        sim: sim.clone(),
        kernel: kernel.clone(),
        caller,
        process: device_host,
        counts: counts.clone(),
        pending_wait: WaitSlot::default(),
        owns_file: true,
        removal: Removal::default(),
        rundown: rundown.clone(),
    };
    // The device host's waiting loop uses a second handle to the same file (docs/devhost.md).
    let waiter_transport = transport.share();
    let settings = DriverSessionSettings {
        target: DriverTarget::VmbusHandle(vm.user_handle),
        interface_type: INTERFACE_TYPE,
        interface_instance: INTERFACE_INSTANCE,
        guest_writable: true,
    };
    let closer = kernel.clone();
    let mapper = SimSectionMapper::new(Arc::new(kernel.clone()), device_host).with_handle_closer(
        move |process, handle| {
            // The device host closes the handles it was given (docs/sections.md).
            let _ = closer.close_handle(process, handle);
        },
    );
    let views = mapper.counters();
    let backends = Backends {
        hcs: hdv.clone(),
        hdv: hdv.clone(),
        driver: ProtoDriverClient::new(transport, settings),
        mapper,
    };
    let log = events.clone();
    let config = device_host_config_named(&options.region_sizes, &options.region_names)?;
    let host: Host = step(
        "starting the device host",
        DeviceHost::start(
            &config,
            backends,
            Box::new(move |event: &Event| log.borrow_mut().push(format!("{event:?}"))),
        ),
    )?;
    let follower =
        GuestEventFollower::new(host.placement_signal(), plan.bar_size(), config.bar_index);
    let waiter = HostWaiter::new(waiter_transport, follower);
    Ok((
        HostSide {
            sim,
            kernel,
            control,
            hdv,
            device_host,
            vm,
            guest_vm,
            host: Some(host),
            plan,
            views,
            counts,
            waiter: Some(waiter),
            rundown,
        },
        assumption.to_string(),
    ))
}

/// The VM starts; the guest receives the offer, brings its vPCI bus up, pairs the PCI function
/// with the channel, opens the channel and turns memory decode on.
fn bring_up_guest(
    options: &DemoOptions,
    host: &HostSide,
    narrator: &mut Narrator<'_>,
) -> Result<GuestSide, DemoError> {
    step("starting the VM", host.hdv.start_compute_system(VM_ID))?;
    narrator.flush_events();
    let vmbus = host.sim.guest(host.vm.id);
    let offer = vmbus
        .only_offer()
        .ok_or_else(|| DemoError("the running guest saw no offer".into()))?;
    let reservation = vmbus.reservation(offer.channel);
    narrator.say(&format!(
        "guest: VM started; VMBus offer received (MmioMegabytes {}, optional {}); {}",
        offer.mmio_megabytes,
        offer.mmio_megabytes_optional,
        match reservation {
            Some(range) => format!("its VMBus driver reserved {range} for the channel"),
            None => "its VMBus driver reserved nothing (Linux leaves that to the channel's \
                     driver)"
                .to_string(),
        }
    ));

    let pci = step(
        "opening the guest's PCI view",
        GuestPci::new(&host.hdv, VM_ID),
    )?;
    let buses = step("bringing up the guest's vPCI bus", pci.probe())?;
    for bus in &buses {
        narrator.say(&format!(
            "guest: vPCI bus driver brought up device {} (config window {}, BAR windows {}), \
             memory decode {}",
            bus.instance,
            bus.config_window
                .map_or_else(|| "none".to_string(), |range| range.to_string()),
            bus.windows
                .iter()
                .map(GpaRange::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            if bus.memory_decode { "on" } else { "off" }
        ));
    }
    let paired = find_paired_function(&pci, &offer)?;
    narrator.say(&format!(
        "guest: PCI function {:04x}:{:04x} (device {}) carries the pairing capability at {:#x} \
         naming channel instance {}: paired",
        paired.ids.0, paired.ids.1, paired.instance, paired.found.offset, INTERFACE_INSTANCE
    ));
    step("opening the channel", vmbus.open(offer.channel))?;
    narrator.say("guest: VMBus channel opened");

    let channel_range = if options.bar_in_channel_range {
        Some(claim_channel_range(host, &pci, offer.channel, narrator)?)
    } else {
        reservation
    };
    let bar = enable_and_locate(&pci, paired.instance, BAR_INDEX)?;
    narrator.say(&format!(
        "guest: memory decode on; BAR{BAR_INDEX} is {} ({} KiB){}",
        bar.range(),
        bar.size >> 10,
        if bar.inside_own_window {
            ", inside its vPCI window"
        } else {
            ", outside its vPCI window"
        }
    ));
    if let Some(range) = channel_range {
        let relation = if range.contains(&bar.range()) {
            "inside"
        } else if range.overlaps(&bar.range()) {
            "overlapping"
        } else {
            "disjoint from"
        };
        narrator.say(&format!(
            "guest: the BAR is {relation} the channel's range {range}"
        ));
    }
    Ok(GuestSide {
        channel: offer.channel,
        memory: GuestPhysicalMemory::new(&host.hdv, VM_ID),
        pci,
        paired,
        bar,
        channel_range,
        protocol: super::protocol::conversation(vmbus, offer.channel),
        layout: None,
    })
}

/// A Linux guest that opts in: its channel driver claims a BAR-sized, BAR-aligned range for
/// the channel (`vmbus_allocate_mmio`) and moves the BAR there (decode off, write, decode on).
fn claim_channel_range(
    host: &HostSide,
    pci: &GuestPci,
    channel: ChannelId,
    narrator: &mut Narrator<'_>,
) -> Result<GpaRange, DemoError> {
    let size = host.plan.bar_size();
    let range = step(
        "claiming the channel's range",
        host.sim
            .guest(host.vm.id)
            .claim_mmio(channel, ClaimRequest::high(size, size)),
    )?;
    let moved = step(
        "moving the BAR into the channel's range",
        pci.move_bar(DEVICE_INSTANCE, BAR_INDEX, range.base),
    )?;
    narrator.say(&format!(
        "guest (opted in): its channel driver claimed {range} and moved BAR{BAR_INDEX} to {}",
        moved.range()
    ));
    Ok(range)
}

/// The VM's configuration: the paired device declared as one FlexibleIov device hosted
/// externally (by the device host).
pub(crate) fn vm_config() -> VmConfig {
    VmConfig {
        flexible_iov: vec![FlexibleIovDevice {
            instance_id: DEVICE_INSTANCE,
            emulator_id: EMULATOR_CLASS,
            hosting_model: HostingModel::External,
            configuration: Vec::new(),
        }],
    }
}

/// The regions' names as the device host's configuration gives them (access modes dropped).
fn region_names(options: &DemoOptions) -> Vec<String> {
    (0..options.region_sizes.len())
        .map(|index| match options.region_names.get(index) {
            Some(spec) => spec
                .split_once(':')
                .map_or(spec.as_str(), |(name, _)| name)
                .into(),
            None => format!("region{index}"),
        })
        .collect()
}

/// The device host's configuration, as its command line would give it, with unnamed regions
/// (`--region-size`: named region0, region1, ..., rw).
pub(crate) fn device_host_config(region_sizes: &[u64]) -> Result<DeviceHostConfig, DemoError> {
    device_host_config_named(region_sizes, &[])
}

/// The device host's configuration with named regions: `--region NAME:SIZE[:ACCESS]` for each
/// size, the name (and access mode) from `names` (`NAME` or `NAME:ACCESS`; missing ones are
/// `region<i>`, rw). No names at all: the `--region-size` shorthand.
pub(crate) fn device_host_config_named(
    region_sizes: &[u64],
    names: &[String],
) -> Result<DeviceHostConfig, DemoError> {
    let (regions, region_sizes) = if names.is_empty() {
        (
            Vec::new(),
            region_sizes.iter().map(u64::to_string).collect(),
        )
    } else {
        let regions = region_sizes
            .iter()
            .enumerate()
            .map(|(index, size)| match names.get(index) {
                Some(spec) => match spec.split_once(':') {
                    Some((name, access)) => format!("{name}:{size}:{access}"),
                    None => format!("{spec}:{size}"),
                },
                None => format!("region{index}:{size}"),
            })
            .collect();
        (regions, Vec::new())
    };
    let cli = CliArgs {
        vm_id: Some(VM_ID.to_string()),
        regions,
        region_sizes,
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
