//! Discovery for the commands: the channel (chosen by interface type, and by instance when
//! several exist), its `uio_hv_generic` binding, the paired function; and their JSON.

use std::path::Path;

use serde_json::{Value, json};
use vmbmmio_guest::discover::{
    DiscoverError, GuidText, PairedFunction, UioDevice, VmbusChannel, bind_uio, find_channel,
    find_paired_function, parse_guid,
};
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

/// The channel: the one with `--instance`, or the only one of the interface type.
pub fn channel(cli: &Cli) -> Result<VmbusChannel, Failure> {
    let interface_type = guid_arg(&cli.interface_type, "--interface-type")?;
    if let Some(instance) = &cli.instance {
        let instance = guid_arg(instance, "--instance")?;
        return Ok(find_channel(&cli.sysfs, interface_type, instance)?);
    }
    // No instance given: look for the nil instance, which no offer has, to learn them all.
    match find_channel(&cli.sysfs, interface_type, WireGuid::from_u128(0)) {
        Ok(channel) => Ok(channel),
        Err(DiscoverError::NoSuchChannel {
            other_instances, ..
        }) => match other_instances.as_slice() {
            [] => Err(Failure::setup(
                "no_such_channel",
                format!(
                    "no VMBus device offers vmbmmio's interface type {}: is the host driver's \
                     channel offered to this VM (and --interface-type the host's)?",
                    GuidText(interface_type)
                ),
            )),
            [only] => Ok(find_channel(&cli.sysfs, interface_type, *only)?),
            several => Err(Failure::setup(
                "several_channels",
                format!(
                    "{} vmbmmio channels are offered ({}): choose one with --instance",
                    several.len(),
                    several
                        .iter()
                        .map(|guid| GuidText(*guid).to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        },
        Err(error) => Err(error.into()),
    }
}

/// The channel's uio node, binding the channel to `uio_hv_generic` first if needed.
pub fn uio(root: &Path, channel: &mut VmbusChannel) -> Result<UioDevice, Failure> {
    if let Some(uio) = channel.uio.clone().filter(|_| channel.bound_to_uio()) {
        return Ok(uio);
    }
    let uio = bind_uio(root, channel)?;
    channel.driver = Some(vmbmmio_guest::discover::UIO_HV_GENERIC.to_string());
    channel.uio = Some(uio.clone());
    Ok(uio)
}

/// The paired function of the channel.
pub fn function(cli: &Cli, channel: &VmbusChannel) -> Result<PairedFunction, Failure> {
    Ok(find_paired_function(
        &cli.sysfs,
        channel.interface_instance,
        cli.bar,
    )?)
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
