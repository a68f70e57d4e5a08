//! Calls KMCL forbids inside callbacks are caught by the model.
//!
//! The `kmcl` wrapper makes these calls impossible in safe code (callbacks get only a
//! `ChannelRef`; the owner is `!Send + !Sync`). These deliberately bad handlers bypass it with
//! `unsafe` calls into the raw table, to prove the model would catch a driver that did this.

use hvsim::kmcl::{HVSIM_API, HvsimKmcl, Rule, Sim};
use kmcl::ErrorStatus;
use kmcl::raw::{GUID, VMBUS_SERVER_CHANNEL_INIT_FLAG_LOOPBACK_OFFER};
use kmcl::server::{
    ChannelHandler, ChannelRef, IncomingPacket, ServerChannel, ServerChannelParams,
};

/// Which forbidden call the bad handler makes, and where.
#[derive(Clone, Copy, Debug)]
enum Misdeed {
    DisableInOpened,
    StartInStarted,
    PauseInPostStarted,
    PauseInProcessPacket,
    DisableInProcessPacket,
}

struct BadHandler(Misdeed);

impl BadHandler {
    fn disable(channel: &ChannelRef<'_>) {
        // SAFETY: deliberately wrong use of a valid channel handle; the model refuses the call
        // (it would deadlock on a real host) and records the violation.
        unsafe { (HVSIM_API.VmbChannelDisable)(channel.raw()) };
    }
    fn pause(channel: &ChannelRef<'_>) {
        let pause = HVSIM_API.VmbChannelPause.unwrap();
        // SAFETY: as above.
        unsafe { pause(channel.raw()) };
    }
    fn start(channel: &ChannelRef<'_>) {
        // SAFETY: as above.
        unsafe { (HVSIM_API.VmbChannelStart)(channel.raw()) };
    }
}

impl ChannelHandler for BadHandler {
    fn opened(&self, channel: &ChannelRef<'_>) -> Result<(), ErrorStatus> {
        if let Misdeed::DisableInOpened = self.0 {
            Self::disable(channel);
        }
        Ok(())
    }
    fn started(&self, channel: &ChannelRef<'_>) {
        if let Misdeed::StartInStarted = self.0 {
            Self::start(channel);
        }
    }
    fn post_started(&self, channel: &ChannelRef<'_>) {
        if let Misdeed::PauseInPostStarted = self.0 {
            Self::pause(channel);
        }
    }
    fn process_packet(&self, channel: &ChannelRef<'_>, packet: IncomingPacket<'_>) {
        match self.0 {
            Misdeed::PauseInProcessPacket => Self::pause(channel),
            Misdeed::DisableInProcessPacket => Self::disable(channel),
            _ => {}
        }
        packet.complete_empty();
    }
}

fn params(sim: &Sim) -> ServerChannelParams<'static> {
    ServerChannelParams {
        parent: sim.parent_device(),
        vmbus_handle: None,
        incoming_at_passive: false,
        maximum_packet_size: 256,
        interface_type: GUID::from_u128(0xBAD),
        interface_instance: GUID::from_u128(0xBAD1),
        server_flags: VMBUS_SERVER_CHANNEL_INIT_FLAG_LOOPBACK_OFFER,
        friendly_name: "bad",
        mmio_megabytes: 1,
        mmio_megabytes_optional: 0,
    }
}

#[test]
fn forbidden_calls_from_callbacks_are_caught() {
    let cases = [
        (Misdeed::DisableInOpened, Rule::BlockingCallInCallback),
        (Misdeed::StartInStarted, Rule::StartOrPauseInStateCallback),
        (
            Misdeed::PauseInPostStarted,
            Rule::StartOrPauseInStateCallback,
        ),
        (Misdeed::PauseInProcessPacket, Rule::BlockingCallInCallback),
        (
            Misdeed::DisableInProcessPacket,
            Rule::BlockingCallInCallback,
        ),
    ];
    for (misdeed, rule) in cases {
        let sim = Sim::new();
        let channel =
            ServerChannel::<HvsimKmcl, BadHandler>::create(params(&sim), BadHandler(misdeed))
                .unwrap();
        let guest = sim.loopback_guest();
        let id = guest.only_offer().unwrap().channel;
        guest.open(id).unwrap();
        guest.send(id, b"packet").unwrap();
        let violations = sim.take_violations();
        assert_eq!(violations.len(), 1, "{misdeed:?}: {violations:#?}");
        assert_eq!(violations[0].rule, rule, "{misdeed:?}");
        assert!(violations[0].citation.contains("kmcl.md §4"));
        // The refused call changed nothing: the channel still tears down cleanly.
        drop(channel);
        sim.assert_clean();
    }
}
