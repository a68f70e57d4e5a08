//! What host consumers (`crate::host_sim`) need of the demo's world: the driver's glue, the
//! regions by name and where they sit in the BAR, and the guest's side of named regions and
//! doorbells (protocol 1.1) through its real conversation on the channel and its BAR.

use vmbmmio_proto::guest::{ClientEvent, Event};

use super::DemoError;
use super::world::DemoWorld;
use crate::glue::SimGlue;
use crate::sections::SimKernel;

impl DemoWorld<'_> {
    /// The driver's glue for more file handles (host consumers) on the same control device.
    pub fn glue(&self) -> SimGlue {
        SimGlue {
            control: self.host.control.clone(),
            sim: self.host.sim.clone(),
            kernel: self.host.kernel.clone(),
            rundown: self.host.rundown.clone(),
        }
    }

    /// The object-manager model (counters, events, processes).
    pub fn kernel(&self) -> &SimKernel {
        &self.host.kernel
    }

    /// Attachments the driver made and released so far.
    pub fn attachment_counters(&self) -> vmbmmio_core::control::AttachmentCounters {
        self.host.control.borrow().attachment_counters()
    }

    /// The index of the region named `name` in the device host's configuration.
    pub fn region_index(&self, name: &str) -> Option<u32> {
        let index = self.region_names.iter().position(|n| n == name)?;
        u32::try_from(index).ok()
    }

    /// The regions' names, in order.
    pub fn region_names(&self) -> &[String] {
        &self.region_names
    }

    /// Where region `index` sits in the BAR: `(offset, size)` in bytes.
    pub fn region_in_bar(&self, index: u32) -> Option<(u64, u64)> {
        let region = self.host.plan.regions().get(usize::try_from(index).ok()?)?;
        Some((region.offset, region.size))
    }

    /// The guest physical address of `len` bytes at `offset` of region `index`.
    fn region_gpa(&self, index: u32, offset: u64, len: usize) -> Result<u64, DemoError> {
        let (start, size) = self
            .region_in_bar(index)
            .ok_or_else(|| DemoError(format!("no region {index}")))?;
        match offset.checked_add(len as u64) {
            Some(end) if end <= size => Ok(self.guest.bar.base + start + offset),
            _ => Err(DemoError(format!(
                "{len} bytes at {offset:#x} do not fit region {index} ({size} bytes)"
            ))),
        }
    }

    /// The guest writes `bytes` at `offset` of region `index`, through its BAR.
    pub fn guest_write_region(
        &self,
        index: u32,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), DemoError> {
        let gpa = self.region_gpa(index, offset, bytes.len())?;
        self.guest.memory.write(gpa, bytes);
        Ok(())
    }

    /// The guest reads `out.len()` bytes at `offset` of region `index`, through its BAR.
    pub fn guest_read_region(
        &self,
        index: u32,
        offset: u64,
        out: &mut [u8],
    ) -> Result<(), DemoError> {
        let gpa = self.region_gpa(index, offset, out.len())?;
        self.guest.memory.read(gpa, out);
        Ok(())
    }

    /// The guest's program rings region `region`'s doorbell with `value` (DOORBELL, protocol
    /// 1.1): the driver's answer (an ACK, or an ERROR such as RATE_LIMITED).
    pub fn guest_ring(&mut self, region: u32, value: u64) -> Result<ClientEvent, DemoError> {
        Ok(self
            .guest
            .protocol
            .request("DOORBELL", |c, b| c.doorbell(b, region, value))?)
    }

    /// The event the driver completed the guest's held WAIT_EVENT with, if it has (the guest
    /// then waits again); `None` while it is held.
    pub fn guest_next_event(&mut self) -> Result<Option<Event>, DemoError> {
        match self.guest.protocol.poll_event()? {
            None => Ok(None),
            Some(ClientEvent::Event(event)) => {
                self.guest.protocol.wait_event()?;
                Ok(Some(event))
            }
            Some(other) => Err(DemoError(format!(
                "guest: WAIT_EVENT answered with {other:?}"
            ))),
        }
    }

    /// Whether the device host still serves the VM (its session is open).
    pub fn device_host_running(&self) -> bool {
        self.host.host.is_some()
    }

    /// The VM stops and its device host shuts down, in the documented order (as at the start
    /// of [`DemoWorld::teardown`]): the device host releases its ranges, views and handles and
    /// closes its driver session, so consumers' attachments see the session closed.
    pub fn end_session(&mut self) -> Result<String, DemoError> {
        let host = self
            .host
            .host
            .take()
            .ok_or_else(|| DemoError("the device host already stopped".into()))?;
        if self.host.guest_vm.power().guest_exists() {
            super::world::step(
                "stopping the VM",
                self.host.hdv.terminate_compute_system(super::world::VM_ID),
            )?;
        }
        let report = host.shutdown();
        self.narrator.flush_events();
        Ok(format!("{report}"))
    }
}
