//! Ties each simulated guest VMBus driver to its shared [`GuestVm`]'s power state.
//!
//! - An Enabled channel's offer reaches the guest only while the VM is `Running`: Enable
//!   delivers it at once if the VM runs, else it stays pending and is delivered when the VM
//!   starts running (again, after a pause or a restart). A guest whose virtual processors do not
//!   run has no VMBus driver to receive an offer or open a channel (the HCS lifecycle; kmcl.md
//!   §4 step 2 "the offer is visible to the guest").
//! - When the VM stops or crashes, every open channel goes through the documented close path
//!   (kmcl.md §4 steps 6–7: Suspend if running, then Closed; packets still outstanding at
//!   Suspend are a violation, as for any Suspend), the guest forgets its offers, and its MMIO
//!   claims go with the pool (`GuestVm` empties it). The host channel stays Enabled until the
//!   driver disables it (kmcl.md §4: only `VmbChannelDisable` leaves Enabled).
//!
//! Observers run on the thread that changed the power state (`crate::vm` module docs); the
//! KMCL model is thread-local, so each observer carries the generation of the host it was
//! registered with and does nothing for a later `Sim` of the same thread; a change made on
//! another thread panics with a clear message rather than being silently lost.

use super::flows::close_if_open;
use super::guest::Offer;
use super::host::{HostState, Lifecycle, with_host};
use super::{ChannelId, VmId};
use crate::vm::{GuestVm, Power, PowerChange};

/// The offer `channel` makes, from its Init values.
fn offer_of(h: &HostState, channel: ChannelId) -> Offer {
    let init = &h.channel(channel).init;
    let (interface_type, interface_instance) = init.interface.unwrap_or_default();
    let (mmio_megabytes, mmio_megabytes_optional) = init.mmio.unwrap_or((0, 0));
    Offer {
        channel,
        relid: 0,
        interface_type,
        interface_instance,
        server_flags: init.server_flags,
        mmio_megabytes,
        mmio_megabytes_optional,
        max_packet_size: init.max_packet_size,
        friendly_name: init.friendly_name.clone(),
    }
}

/// Delivers `channel`'s offer to `vm`'s guest if the VM runs and the guest lacks it.
pub(crate) fn deliver_if_running(h: &mut HostState, channel: ChannelId, vm: VmId) {
    let mut offer = offer_of(h, channel);
    let Some(guest) = h.guests.get(&vm) else {
        return;
    };
    if guest.vm.power() != Power::Running || guest.offers.contains_key(&channel) {
        return;
    }
    h.next_relid += 1;
    offer.relid = h.next_relid;
    if let Some(guest) = h.guests.get_mut(&vm) {
        guest.receive_offer(offer);
    }
}

/// Delivers every pending offer of `vm` (the VM started running).
fn deliver_pending(vm: VmId) {
    with_host(|h| {
        let pending: Vec<ChannelId> = (0..h.channels.len())
            .map(|i| ChannelId(i as u32))
            .filter(|id| {
                let c = h.channel(*id);
                c.lifecycle == Lifecycle::Enabled && c.target == Some(vm)
            })
            .collect();
        for id in pending {
            deliver_if_running(h, id, vm);
        }
    });
}

/// The guest of `vm` stopped existing (`power`): close its open channels, forget its offers.
fn guest_gone(vm: VmId, power: Power) {
    let open: Vec<ChannelId> = with_host(|h| {
        (0..h.channels.len())
            .map(|i| ChannelId(i as u32))
            .filter(|id| {
                let c = h.channel(*id);
                c.target == Some(vm) && c.open
            })
            .collect()
    });
    for id in open {
        close_if_open(id);
    }
    with_host(|h| {
        if let Some(guest) = h.guests.get_mut(&vm) {
            guest.forget_all(power);
        }
    });
}

/// Registers the observer that links `guest` to the model's `vm` on this thread's host.
pub(crate) fn link(guest: &GuestVm, vm: VmId) {
    let generation = with_host(|h| h.generation);
    let thread = std::thread::current().id();
    guest.on_power_change(move |_, change| {
        // A change made on another thread cannot reach this thread's host; ignoring it would
        // leave the guest's channels open after its VM stopped (looser than the platform).
        assert_eq!(
            std::thread::current().id(),
            thread,
            "the KMCL model is thread-local: change a linked VM's power on the thread of its Sim"
        );
        power_changed(generation, vm, change);
    });
    // A restored guest linked after it started running learns now what it lost.
    if guest.power() == Power::Running {
        super::restore::restored_guest_runs(vm);
    }
}

fn power_changed(generation: u64, vm: VmId, change: PowerChange) {
    // A VM linked to an earlier `Sim` of this thread: that host is gone.
    if !with_host(|h| h.generation == generation) {
        return;
    }
    if change.to == Power::Running {
        super::restore::restored_guest_runs(vm);
        deliver_pending(vm);
    } else if change.from.guest_exists() && !change.to.guest_exists() {
        guest_gone(vm, change.to);
    }
}
