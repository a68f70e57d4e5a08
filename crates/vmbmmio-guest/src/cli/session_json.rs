//! The session, its regions and the host's changes as the commands print them
//! (`docs/guest-agent.md`, "`status --json`").

use serde_json::{Value, json};
use vmbmmio_guest::Session;
use vmbmmio_guest::session::Change;
use vmbmmio_proto::guest::{Region, RegionAccess, RegionState};

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
pub fn session_json(session: &mut Session) -> Value {
    let may_use = session.may_use();
    let doorbells = session.doorbells();
    let layout = session.layout().map(|layout| {
        json!({
            "generation": layout.generation(),
            "bar_size": layout.bar_size(),
            "current": may_use,
            "regions": layout.regions().iter().map(region_json).collect::<Vec<_>>(),
        })
    });
    let state = format!("{:?}", session.state());
    let counters = session.counters();
    let client = &session.protocol().conversation().client;
    let host = client
        .host()
        .map(|host| json!({ "min_version": host.min_version, "max_version": host.max_version }));
    json!({
        "protocol_version": client.version(),
        "host_versions": host,
        "state": state,
        "generation": client.generation(),
        "may_use": may_use,
        "doorbells": doorbells,
        "layout": layout,
        "counters": {
            "packets_sent": counters.channel.packets_sent,
            "completions_received": counters.channel.completions_received,
            "host_signals": counters.channel.host_signals,
            "interrupts": counters.interrupts,
            "changes": counters.changes,
            "bar_moves": counters.bar_moves,
            "doorbells_rung": counters.doorbells_rung,
            "doorbells_refused": counters.doorbells_refused,
            "doorbells_heard": counters.doorbells_heard,
        },
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
        Change::Doorbell { region, value } => {
            json!({ "change": "doorbell", "region": region, "value": value })
        }
        Change::Closed => json!({ "change": "closed" }),
    }
}
