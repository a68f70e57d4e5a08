//! The session over the real uio device: the rings mapped from `/dev/uioN`, the uio file as
//! doorbell, the device facts from discovery; and the layout's regions, for the commands.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vmbmmio_guest::discover::{PairedFunction, UioDevice, VmbusChannel, enable_decode};
use vmbmmio_guest::linux::{MmapRing, UioDoorbell};
use vmbmmio_guest::ring::RingPair;
use vmbmmio_guest::ring_channel::RingChannel;
use vmbmmio_guest::session::{Change, DeviceFacts, ProtocolSession};
use vmbmmio_proto::guest::{Layout, Region, RegionAccess, RegionState};

use super::args::Cli;
use super::failure::Failure;

/// The agent's session type on Linux.
pub type AgentSession = ProtocolSession<RingChannel<Arc<MmapRing>, UioDoorbell>>;

/// The facts the session reports for `function`.
pub fn facts(channel: &VmbusChannel, function: &PairedFunction) -> DeviceFacts {
    let bdf = function.bdf;
    DeviceFacts {
        instance: channel.interface_instance,
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

/// Turns decode on, maps the rings and opens the session (negotiation, reports, `READY`).
pub fn open(
    cli: &Cli,
    channel: &VmbusChannel,
    uio: &UioDevice,
    function: &PairedFunction,
) -> Result<AgentSession, Failure> {
    enable_decode(function)?;
    let node = uio.dev_node(&cli.dev);
    let map = uio.ring_map()?;
    let rings = MmapRing::open(&node, map)?;
    let doorbell = UioDoorbell::open(&node)?;
    let rings = RingPair::guest(Arc::new(rings)).map_err(|error| {
        Failure::check(
            "session",
            format!(
                "the ring map of {} is not two VMBus rings: {error:?}",
                node.display()
            ),
        )
    })?;
    Ok(ProtocolSession::start(
        RingChannel::new(rings, doorbell),
        facts(channel, function),
    )?)
}

/// Follows the host until the regions may be used or `timeout_ms` passed.
pub fn wait_backed(session: &mut AgentSession, timeout_ms: u32) -> Result<Vec<Change>, Failure> {
    let deadline = Instant::now() + Duration::from_millis(u64::from(timeout_ms));
    let mut changes = Vec::new();
    loop {
        changes.extend(session.follow()?);
        if session.may_use() {
            return Ok(changes);
        }
        if session.closed() {
            return Err(Failure::check(
                "closed",
                "the host closed the conversation: reopen the channel (run again)",
            ));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::check(
                "not_backed",
                format!(
                    "the host did not back the regions within {timeout_ms} ms (session state {:?})",
                    session.state()
                ),
            ));
        }
        let wait = u32::try_from(left.as_millis().min(250)).unwrap_or(250);
        use vmbmmio_guest::channel::PacketChannel;
        session
            .conversation()
            .channel()
            .wait(wait)
            .map_err(|error| Failure::check("session", error.to_string()))?;
    }
}

/// The region named `which` (its name, or its id in decimal).
pub fn region(layout: &Layout, which: &str) -> Result<Region, Failure> {
    layout
        .regions()
        .iter()
        .find(|region| region.name.as_str() == which)
        .or_else(|| which.parse::<u32>().ok().and_then(|id| layout.region(id)))
        .copied()
        .ok_or_else(|| {
            let names: Vec<String> = layout
                .regions()
                .iter()
                .map(|region| format!("{} ({})", region.name.as_str(), region.id))
                .collect();
            Failure::setup(
                "no_such_region",
                format!(
                    "the layout has no region `{which}`; it has: {}",
                    names.join(", ")
                ),
            )
        })
}

fn access_name(access: RegionAccess) -> &'static str {
    match access {
        RegionAccess::ReadOnly => "read_only",
        RegionAccess::ReadWrite => "read_write",
    }
}

fn state_name(state: RegionState) -> &'static str {
    match state {
        RegionState::Unmapped => "unmapped",
        RegionState::Mapped => "mapped",
        RegionState::Intercepted => "intercepted",
    }
}

/// A region as JSON.
pub fn region_json(region: &Region) -> Value {
    json!({
        "id": region.id,
        "name": region.name.as_str(),
        "access": access_name(region.access),
        "state": state_name(region.state),
        "offset": region.offset_bytes(),
        "size": region.length_bytes(),
    })
}

/// The `session` object of `status --json`.
pub fn session_json(session: &mut AgentSession) -> Value {
    let layout = session.layout().map(|layout| {
        json!({
            "generation": layout.generation(),
            "bar_size": layout.bar_size(),
            "current": session.may_use(),
            "regions": layout.regions().iter().map(region_json).collect::<Vec<_>>(),
        })
    });
    let client = &session.conversation().client;
    let host = client
        .host()
        .map(|host| json!({ "min_version": host.min_version, "max_version": host.max_version }));
    let version = client.version();
    let generation = client.generation();
    let state = format!("{:?}", session.state());
    let interrupts = session.conversation().channel().doorbell().events();
    json!({
        "protocol_version": version,
        "host_versions": host,
        "state": state,
        "generation": generation,
        "may_use": session.may_use(),
        "layout": layout,
        "counters": { "interrupts": interrupts },
    })
}

/// A change as JSON (for `serve --json`).
pub fn change_json(change: &Change) -> Value {
    match change {
        Change::Backed {
            generation,
            intercepted,
        } => json!({ "change": "backed", "generation": generation, "intercepted": intercepted }),
        Change::Unbacked { generation } => {
            json!({ "change": "unbacked", "generation": generation })
        }
        Change::LayoutChanged { generation } => {
            json!({ "change": "layout_changed", "generation": generation })
        }
        Change::Closed => json!({ "change": "closed" }),
    }
}
