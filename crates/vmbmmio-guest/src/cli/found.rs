//! Discovery for the commands: the [`Options`] the command line gives, the library's steps
//! ([`vmbmmio_guest::discover::Target`]) and their JSON for `status`.

use std::path::Path;

use serde_json::{Value, json};
use vmbmmio_guest::Options;
use vmbmmio_guest::discover::{GuidText, PairedFunction, Target, VmbusChannel, parse_guid};
use vmbmmio_proto::ioctl::WireGuid;

use super::args::Cli;
use super::failure::Failure;

/// A GUID from the command line.
fn guid_arg(text: &str, option: &str) -> Result<WireGuid, Failure> {
    parse_guid(text.trim_matches(['{', '}'])).ok_or_else(|| {
        Failure::setup(
            "usage",
            format!("{option} `{text}` is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"),
        )
    })
}

/// The library's options from the command line.
pub fn options(cli: &Cli) -> Result<Options, Failure> {
    let instance = cli
        .instance
        .as_deref()
        .map(|text| guid_arg(text, "--instance"))
        .transpose()?;
    Ok(Options {
        sysfs: cli.sysfs.clone(),
        dev: cli.dev.clone(),
        target: Target {
            interface_type: guid_arg(&cli.interface_type, "--interface-type")?,
            instance,
            bar_index: cli.bar,
        },
    })
}

/// The `channel` object of `status --json`.
pub fn channel_json(channel: &VmbusChannel, dev: &Path) -> Value {
    let uio = channel.uio.as_ref().map(|uio| {
        json!({
            "name": uio.name,
            "number": uio.number,
            "dev_node": uio.dev_node(dev).display().to_string(),
            "ring_map_size": uio.ring_map().ok().map(|map| map.size),
        })
    });
    json!({
        "device": channel.device_name,
        "interface_type": GuidText(channel.interface_type).to_string(),
        "instance": GuidText(channel.interface_instance).to_string(),
        "driver": channel.driver,
        "bound": channel.bound_to_uio(),
        "uio": uio,
    })
}

/// The `function` object of `status --json`.
pub fn function_json(function: &PairedFunction) -> Value {
    let file = function.bar_file();
    json!({
        "bdf": function.bdf.to_string(),
        "vendor_id": format!("{:#06x}", function.vendor_id),
        "device_id": format!("{:#06x}", function.device_id),
        "pairing_protocol_version": function.pairing.pairing.protocol_version,
        "bar_index": function.bar_index,
        "bar_base": function.bar.start,
        "bar_size": function.bar.size,
        "bar_file": file.path.display().to_string(),
        "write_combined": file.write_combined,
        "decode": function.enabled,
    })
}
