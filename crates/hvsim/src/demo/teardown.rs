//! Tearing the demo down in the documented order, then asking every model what it still holds.
//!
//! Order (Microsoft's HDV reference, device attachment; hcs-rs: the device host is torn down
//! after the compute system terminated): the VM stops (its guest closes the channel, the
//! emulator gets Stop and Teardown), then the device host destroys its ranges, releases its
//! views, handles and session and tears its HDV host down, then its process exits, its
//! control-device handle closes and the driver unloads.

use std::sync::atomic::Ordering;

use vmbmmio_core::control::ControlDevice;

use super::DemoError;
use super::world::{DemoWorld, FILE, VM_ID, step};
use crate::hdv::HdvSim;
use crate::kmcl::Sim;
use crate::platform::SimPlatform;
use crate::sections::SimKernel;

/// What each model still holds after teardown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeakReport {
    /// KMCL channels, contexts, kernel VMBus handles and packets not released.
    pub kmcl: u64,
    /// Section objects, handles (the VM worker's duplicates included), references and views
    /// not released.
    pub sections: u64,
    /// Sessions, sections and handle records still in the driver's ledger.
    pub ledger: u64,
    /// HCS/HDV objects, section-backed ranges never destroyed, and worker duplicates not
    /// closed.
    pub hdv: u64,
    /// Device-host views of sections not unmapped.
    pub views: u64,
    /// Guest VMBus offers not gone, and claims left in the guest's MMIO pool.
    pub guest: u64,
    /// Host consumers' attachments not released, the driver's references to their doorbell
    /// events not released, and event objects not destroyed (their section handles and views
    /// are in [`Self::sections`]).
    pub consumers: u64,
}

impl LeakReport {
    /// What the KMCL, object-manager, ledger and HDV models still hold (the device host's
    /// view counters and the guest's leftovers are the caller's: [`Self::views`],
    /// [`Self::guest`]).
    pub(crate) fn measure(
        sim: &Sim,
        kernel: &SimKernel,
        control: &ControlDevice<SimPlatform>,
        hdv: &HdvSim,
    ) -> Self {
        let kmcl = sim.counters();
        let objects = kernel.counters();
        let ledger = control.section_counters();
        let hdv = hdv.counters();
        Self {
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
                + (hdv.device_hosts_initialized
                    - hdv.device_hosts_torn_down
                    - hdv.device_hosts_released_by_exit)
                + (hdv.devices_created - hdv.devices_released)
                + (hdv.ranges_created - hdv.ranges_destroyed - hdv.ranges_released_by_exit)
                + (hdv.worker_duplicates - hdv.worker_duplicates_closed),
            views: 0,
            guest: 0,
            consumers: control.attachment_counters().live()
                + (objects.event_references_taken - objects.event_references_released)
                + (objects.events_created - objects.events_destroyed),
        }
    }

    /// Every leaked object, all models together.
    pub fn total(&self) -> u64 {
        self.kmcl
            + self.sections
            + self.ledger
            + self.hdv
            + self.views
            + self.guest
            + self.consumers
    }
}

impl DemoWorld<'_> {
    /// Orderly teardown, then what every model still holds.
    pub fn teardown(mut self) -> Result<LeakReport, DemoError> {
        let vm_gone = !self.host.guest_vm.power().guest_exists();
        if !vm_gone {
            step(
                "stopping the VM",
                self.host.hdv.terminate_compute_system(VM_ID),
            )?;
        }
        let channel_gone = self
            .host
            .sim
            .guest(self.host.vm.id)
            .offer(self.guest.channel)
            .is_none();
        self.narrator.say(&format!(
            "host: VM {}; the guest's channel closed with it ({}) and its MMIO claims went \
             with its memory map",
            if vm_gone { "already gone" } else { "stopped" },
            if channel_gone {
                "offer gone from the guest"
            } else {
                "offer still visible"
            }
        ));
        if let Some(host) = self.host.host.take() {
            let report = host.shutdown();
            self.narrator.flush_events();
            self.narrator.say(&format!(
                "device host: ranges destroyed, views and handles released, driver session \
                 closed, HDV device host torn down after the VM: {report}"
            ));
        }
        self.host.kernel.exit_process(self.host.device_host);
        self.host.control.borrow_mut().file_cleanup(FILE);
        self.host.control.borrow_mut().shutdown();
        self.narrator
            .say("host: device host exited, its control-device handle closed, driver unloaded");

        let violations = self.host.sim.violations();
        if !violations.is_empty() {
            return Err(DemoError(format!("KMCL rules broken: {violations:?}")));
        }
        let views = self.host.views.mapped.load(Ordering::SeqCst)
            - self.host.views.unmapped.load(Ordering::SeqCst);
        let guest = self.host.sim.guest(self.host.vm.id).offers().len() as u64
            + self.host.guest_vm.claims().len() as u64;
        let mut report = LeakReport::measure(
            &self.host.sim,
            &self.host.kernel,
            &self.host.control.borrow(),
            &self.host.hdv,
        );
        report.views = views;
        report.guest = guest;
        Ok(report)
    }
}
