//! The demo's guest and device host talking through the driver (docs/protocol.md,
//! docs/ioctl.md WAIT_GUEST_EVENT): the guest negotiates, reports its reservation and its BAR,
//! says it is ready; the device host learns it from the driver's events and maps; the guest hears
//! that the regions are backed and asks for the layout before it touches the memory.

use std::sync::atomic::AtomicBool;

use vmbmmio_devhost::sequence::Progress;
use vmbmmio_devhost::sequence::guest_wait::Applied;
use vmbmmio_proto::guest::{
    BarPlacement, BarState, ClientEvent, DeviceReport, Event, EventKind, GuestRange, Layout,
    ReservationRelation,
};

use super::DemoError;
use super::world::{BAR_INDEX, DemoWorld, VirtualClock, step};

impl DemoWorld<'_> {
    /// What the guest reports about its device: the pairing capability's instance GUID and
    /// where its BAR is.
    fn device_report(&self, memory_decode: bool) -> DeviceReport {
        DeviceReport {
            instance: self.guest.paired.found.pairing.interface_instance,
            segment: 0,
            bus: 0,
            devfn: 0,
            bar_index: BAR_INDEX,
            bar: BarPlacement {
                base: self.guest.bar.base,
                size: self.guest.bar.size,
                memory_decode,
            },
        }
    }

    /// HELLO, SELECT_VERSION, REPORT_RESERVATION, REPORT_DEVICE (decode on), READY, then a
    /// WAIT_EVENT the driver holds.
    pub(super) fn guest_reports(&mut self) -> Result<(), DemoError> {
        let protocol = &mut self.guest.protocol;
        let hello = protocol.request("HELLO", |c, b| c.hello(b))?;
        let ClientEvent::HelloReply { host, chosen } = hello else {
            return Err(DemoError(format!("guest: HELLO answered with {hello:?}")));
        };
        protocol.request("SELECT_VERSION", |c, b| c.select_version(b))?;
        let reservation = self.guest.channel_range.map(|range| GuestRange {
            base: range.base,
            size: range.size,
        });
        let report = self.device_report(true);
        let protocol = &mut self.guest.protocol;
        protocol.request("REPORT_RESERVATION", |c, b| {
            c.report_reservation(b, reservation)
        })?;
        protocol.request("REPORT_DEVICE", |c, b| c.report_device(b, &report))?;
        protocol.request("READY", |c, b| c.ready(b))?;
        let early = protocol.wait_event()?;
        self.narrator.say(&format!(
            "guest -> driver over the channel (guest protocol, host speaks {:#x}..={:#x}, chose \
             {}): REPORT_RESERVATION ({}), REPORT_DEVICE (BAR{BAR_INDEX} at {} decode on, \
             paired by instance GUID), READY: each acknowledged; WAIT_EVENT {}",
            host.min_version,
            host.max_version,
            chosen.map_or_else(|| "none".into(), |v| format!("{v:#x}")),
            reservation.map_or_else(|| "none".into(), |r| r.to_string()),
            self.guest.bar.range(),
            if early.is_none() {
                "held by the driver"
            } else {
                "answered at once"
            }
        ));
        Ok(())
    }

    /// The device host takes every event the driver has for it and applies each to its
    /// placement signal.
    pub(super) fn device_host_follows(&mut self) -> Result<(), DemoError> {
        let waiter = self
            .host
            .waiter
            .as_mut()
            .ok_or_else(|| DemoError("the device host has no waiting loop".into()))?;
        for (event, applied) in waiter.drain()? {
            let what = match applied {
                Applied::Placed(accepted) => match accepted.state {
                    BarState::Decoding { base } => format!(
                        "BAR at {base:#x} decoding; the device host checked it: {}",
                        match accepted.relation {
                            ReservationRelation::NoReservation => "the guest has no channel range",
                            ReservationRelation::Disjoint => "disjoint from the channel's range",
                            ReservationRelation::Inside => {
                                "inside the channel's range, as the guest chose"
                            }
                        }
                    ),
                    BarState::DecodeOff => "not ready or decode off: nothing to map".into(),
                },
                Applied::Refused(error) => format!("placement refused: {error}"),
                Applied::WrongBar { reported, expected } => {
                    format!("refused: BAR{reported} is not the device's BAR{expected}")
                }
                Applied::Nothing => "nothing to follow".into(),
            };
            self.narrator.say(&format!(
                "driver -> device host (WAIT_GUEST_EVENT): event {} {:?}: {what}",
                event.sequence(),
                event.kind()
            ));
        }
        Ok(())
    }

    /// The guest's held WAIT_EVENT, completed by the driver: the event, after which the guest
    /// waits again.
    pub(super) fn guest_hears(&mut self, expected: EventKind) -> Result<Event, DemoError> {
        let heard = self.guest.protocol.poll_event()?;
        let Some(ClientEvent::Event(event)) = heard else {
            return Err(DemoError(format!(
                "guest: expected {expected:?}, heard {heard:?}"
            )));
        };
        if event.kind != expected {
            return Err(DemoError(format!(
                "guest: expected {expected:?}, heard {:?}",
                event.kind
            )));
        }
        self.guest.protocol.wait_event()?;
        self.narrator.say(&format!(
            "driver -> guest: EVENT {} {:?} (layout generation {}); the guest waits again",
            event.sequence, event.kind, event.generation
        ));
        Ok(event)
    }

    /// GET_LAYOUT: the regions the guest may touch, from the driver.
    pub(super) fn guest_reads_layout(&mut self) -> Result<Layout, DemoError> {
        self.guest
            .protocol
            .request("GET_LAYOUT", |c, b| c.get_layout(b))?;
        let layout = *self
            .guest
            .protocol
            .client
            .layout()
            .ok_or_else(|| DemoError("guest: no layout after GET_LAYOUT".into()))?;
        let regions: Vec<String> = layout
            .regions()
            .iter()
            .map(|r| {
                format!(
                    "#{} pages {}..{} {:?} {:?}",
                    r.id,
                    r.offset_pages,
                    r.offset_pages + r.length_pages,
                    r.access,
                    r.state
                )
            })
            .collect();
        self.narrator.say(&format!(
            "guest: GET_LAYOUT (generation {}, BAR {} KiB): {}",
            layout.generation(),
            layout.bar_size() >> 10,
            regions.join(", ")
        ));
        Ok(layout)
    }

    /// The device host maps every region at the placement it accepted.
    pub(super) fn device_host_maps(&mut self) -> Result<(), DemoError> {
        let Some(host) = self.host.host.as_mut() else {
            return Err(DemoError("the device host is gone".into()));
        };
        let progress = step(
            "mapping the sections into the BAR",
            host.map_regions(&VirtualClock::default(), &AtomicBool::new(false)),
        )?;
        if progress != Progress::Mapped {
            return Err(DemoError(format!("mapping stopped early: {progress:?}")));
        }
        Ok(())
    }

    /// The guest releases the BAR and turns decode off (the device host unmaps), then turns it
    /// on and reports again (the device host maps again); the guest hears both.
    pub fn toggle_decode(&mut self) -> Result<(), DemoError> {
        // Off: RELEASING first, then decode off, then the report that says so.
        self.guest
            .protocol
            .request("RELEASING", |c, b| c.releasing(b))?;
        step(
            "toggling memory decode",
            self.guest
                .pci
                .set_memory_decode(self.guest.paired.instance, false),
        )?;
        let off = self.device_report(false);
        self.guest
            .protocol
            .request("REPORT_DEVICE", |c, b| c.report_device(b, &off))?;
        self.device_host_follows()?;
        self.follow_placement()?;
        self.narrator.flush_events();
        self.guest_hears(EventKind::RegionsUnmapped)?;
        self.narrator.say(
            "guest: memory decode off after RELEASING: the device host destroyed its ranges \
             under a pause",
        );
        // On: decode on, report, READY.
        step(
            "toggling memory decode",
            self.guest
                .pci
                .set_memory_decode(self.guest.paired.instance, true),
        )?;
        let on = self.device_report(true);
        self.guest
            .protocol
            .request("REPORT_DEVICE", |c, b| c.report_device(b, &on))?;
        self.guest.protocol.request("READY", |c, b| c.ready(b))?;
        self.device_host_follows()?;
        self.follow_placement()?;
        self.narrator.flush_events();
        self.guest_hears(EventKind::RegionsMapped)?;
        self.narrator.say(
            "guest: memory decode on, reported, READY: the device host mapped the regions again \
             under a pause",
        );
        Ok(())
    }

    fn follow_placement(&mut self) -> Result<(), DemoError> {
        let Some(host) = self.host.host.as_mut() else {
            return Err(DemoError("the device host is gone".into()));
        };
        step(
            "following the placement",
            host.follow_placement(&VirtualClock::default(), &AtomicBool::new(false)),
        )?;
        Ok(())
    }
}
