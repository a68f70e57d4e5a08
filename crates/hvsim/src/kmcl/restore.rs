//! What the KMCL model does when a guest's VMBus comes back from a save.
//!
//! The sources say little (kmcl.md §7 "What the flags mean": `FORCE_NEW_CHANNEL` re-offers a
//! new channel after a VM save/restore and abandons the old one; §2.4 and §3: a server restores
//! a channel's state with `VmbChannelRestoreFromBuffer` and its RestorePacket callback). Both
//! paths here are the **model's reading**, named in `docs/simulator.md`:
//!
//! - **A restored compute system** (`HdvSim::restore_compute_system`) gets a new VMBus (a new
//!   KMCL VM, a new user handle in its new worker). The restored guest's VMBus driver still
//!   knows the channels it had at the save (they live in guest memory, [`GuestVm::save`]);
//!   none of them is bound to the new VMBus, so when the restored guest first runs it is told
//!   each is gone ([`GuestEvent::RestoredChannelGone`]) and receives only the offers of
//!   channels Enabled on its new VMBus, with new guest-side ids. A channel it knew that is
//!   still Enabled without `FORCE_NEW_CHANNEL` (and without save/restore callbacks, which the
//!   model does not implement) is a [`Rule::RestoredChannelNotSaved`] violation.
//! - **A VMBus restored in place** ([`super::Sim::restore_vmbus_in_place`]: the same VM and
//!   handle): each Enabled channel the guest knew loses its current connection (Suspend,
//!   Closed); with `FORCE_NEW_CHANNEL` the guest's offer is rescinded and the channel offered
//!   again as a new one (new relid); without it the guest keeps an offer whose state nobody
//!   saved, and the model records [`Rule::RestoredChannelNotSaved`].
//!
//! [`GuestVm::save`]: crate::vm::GuestVm::save

use kmcl::raw::VMBUS_SERVER_CHANNEL_INIT_FLAG_FORCE_NEW_CHANNEL;

use super::flows::close_if_open;
use super::guest::GuestEvent;
use super::host::{HostState, Lifecycle, with_host};
use super::rules::Rule;
use super::vm_link::deliver_if_running;
use super::{ChannelId, VmId};

fn forces_new(h: &HostState, channel: ChannelId) -> bool {
    h.channel(channel).init.server_flags & VMBUS_SERVER_CHANNEL_INIT_FLAG_FORCE_NEW_CHANNEL != 0
}

fn still_enabled(h: &HostState, channel: ChannelId) -> bool {
    h.channels
        .get(channel.0 as usize)
        .is_some_and(|c| c.lifecycle == Lifecycle::Enabled)
}

/// The guest of `vm` runs; if it is a restored guest running for the first time, its VMBus
/// driver learns that every channel it had before the save is gone.
pub(crate) fn restored_guest_runs(vm: VmId) {
    let saved = with_host(|h| {
        h.guests
            .get(&vm)
            .and_then(|guest| guest.vm.take_restored_vmbus())
    });
    let Some(saved) = saved else {
        return;
    };
    with_host(|h| {
        if let Some(guest) = h.guests.get_mut(&vm) {
            guest.sync_vm();
        }
        for raw in saved {
            let channel = ChannelId(raw);
            if let Some(guest) = h.guests.get_mut(&vm) {
                guest.events.push(GuestEvent::RestoredChannelGone(channel));
            }
            if still_enabled(h, channel) && !forces_new(h, channel) {
                h.violate(
                    Rule::RestoredChannelNotSaved,
                    Some(channel),
                    format!(
                        "a restored guest knew channel {} from before the save; the channel is \
                         still Enabled without FORCE_NEW_CHANNEL or save/restore callbacks",
                        channel.0
                    ),
                );
            }
        }
    });
}

/// `vm`'s VMBus is restored in place (same VM, same handle; model's reading).
pub(crate) fn restore_in_place(vm: VmId) {
    let met: Vec<ChannelId> = with_host(|h| {
        let Some(guest) = h.guests.get(&vm) else {
            return Vec::new();
        };
        guest
            .offers
            .keys()
            .copied()
            .filter(|&id| still_enabled(h, id) && h.channel(id).target == Some(vm))
            .collect()
    });
    for id in met {
        // The guest's current connection is replaced by the restored one.
        close_if_open(id);
        with_host(|h| {
            if forces_new(h, id) {
                if let Some(guest) = h.guests.get_mut(&vm) {
                    guest.rescind(id);
                }
                deliver_if_running(h, id, vm);
            } else {
                h.violate(
                    Rule::RestoredChannelNotSaved,
                    Some(id),
                    "VMBus restored in place over a channel without FORCE_NEW_CHANNEL or \
                     save/restore callbacks: its guest-side state was never saved",
                );
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use kmcl::raw::{
        GUID, VMBUS_SERVER_CHANNEL_INIT_FLAG_FORCE_NEW_CHANNEL,
        VMBUS_SERVER_CHANNEL_INIT_FLAG_LOOPBACK_OFFER,
    };
    use kmcl::server::{
        ChannelHandler, ChannelRef, IncomingPacket, ServerChannel, ServerChannelParams,
    };

    use crate::kmcl::{CallbackKind, HvsimKmcl, Rule, Sim, VmId};

    struct Plain;

    impl ChannelHandler for Plain {
        fn process_packet(&self, _: &ChannelRef<'_>, _: IncomingPacket<'_>) {}
    }

    fn params(sim: &Sim, force_new: bool) -> ServerChannelParams<'static> {
        let force = if force_new {
            VMBUS_SERVER_CHANNEL_INIT_FLAG_FORCE_NEW_CHANNEL
        } else {
            0
        };
        ServerChannelParams {
            parent: sim.parent_device(),
            vmbus_handle: None,
            incoming_at_passive: false,
            maximum_packet_size: 128,
            interface_type: GUID::from_u128(7),
            interface_instance: GUID::from_u128(8),
            server_flags: VMBUS_SERVER_CHANNEL_INIT_FLAG_LOOPBACK_OFFER | force,
            friendly_name: "model",
            mmio_megabytes: 2,
            mmio_megabytes_optional: 0,
        }
    }

    #[test]
    fn an_in_place_restore_offers_a_force_new_channel_again_as_a_new_one() {
        let sim = Sim::new();
        let channel = ServerChannel::<HvsimKmcl, Plain>::create(params(&sim, true), Plain).unwrap();
        let guest = sim.loopback_guest();
        let before = guest.only_offer().unwrap();
        guest.open(before.channel).unwrap();
        sim.clear_log();
        sim.restore_vmbus_in_place(VmId::LOOPBACK);
        assert_eq!(
            sim.callbacks(),
            [CallbackKind::Suspend, CallbackKind::Closed],
            "the guest's old connection is gone"
        );
        let after = guest.only_offer().unwrap();
        assert_eq!(after.channel, before.channel);
        assert_ne!(after.relid, before.relid, "offered as a new channel");
        assert!(sim.violations().is_empty());
        drop(channel);
        sim.assert_clean();
    }

    #[test]
    fn an_in_place_restore_over_a_channel_without_force_new_is_a_violation() {
        let sim = Sim::new();
        let channel =
            ServerChannel::<HvsimKmcl, Plain>::create(params(&sim, false), Plain).unwrap();
        let guest = sim.loopback_guest();
        let before = guest.only_offer().unwrap();
        sim.restore_vmbus_in_place(VmId::LOOPBACK);
        let rules: Vec<Rule> = sim.take_violations().iter().map(|v| v.rule).collect();
        assert_eq!(rules, [Rule::RestoredChannelNotSaved]);
        assert_eq!(
            guest.only_offer().map(|o| o.relid),
            Some(before.relid),
            "the guest keeps the stale offer"
        );
        drop(channel);
        sim.assert_clean();
    }
}
