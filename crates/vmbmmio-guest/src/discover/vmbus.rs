//! Finding vmbmmio's VMBus channel among the guest's VMBus devices.
//!
//! Each VMBus device is a directory under `/sys/bus/vmbus/devices/`, named after its instance
//! GUID on kernels since 4.9 (`Documentation/driver-api/uio-howto.rst` binds
//! `ed963694-e847-4b2a-85af-bc9cfc11d6f3` by that name). Its `class_id` is the offer's interface
//! type and its `device_id` the offer's interface instance, both printed `{%pUl}\n`: the GUID in
//! braces, lower case (`Documentation/ABI/stable/sysfs-bus-vmbus`; Linux `drivers/hv/vmbus_drv.c`,
//! `class_id_show`, `device_id_show`). The `driver` link names the bound driver.
//!
//! Discovery matches on the file contents, not the directory name, and reads every device's
//! `class_id`: a value that does not parse is an error, since it could be vmbmmio's. A device
//! that vanishes while it is read (a rescinded offer) is skipped.

use std::path::{Path, PathBuf};

use vmbmmio_proto::ioctl::WireGuid;

use super::error::DiscoverError;
use super::fsread::{join, link_name, list_dir, read_parsed, vanished};
use super::text::parse_guid;
use super::uio::{UioDevice, read_uio};

/// The driver that gives user space a VMBus channel.
pub const UIO_HV_GENERIC: &str = "uio_hv_generic";

/// A VMBus channel as sysfs shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmbusChannel {
    /// The device's directory name under `bus/vmbus/devices` (what `bind`/`unbind` take).
    pub device_name: String,
    /// `<root>/bus/vmbus/devices/<device_name>`.
    pub sysfs_dir: PathBuf,
    /// `class_id`: the offer's interface type.
    pub interface_type: WireGuid,
    /// `device_id`: the offer's interface instance.
    pub interface_instance: WireGuid,
    /// The bound driver's name, from the `driver` link.
    pub driver: Option<String>,
    /// The uio node, when the driver is `uio_hv_generic`.
    pub uio: Option<UioDevice>,
}

impl VmbusChannel {
    /// Whether `uio_hv_generic` is the bound driver.
    pub fn bound_to_uio(&self) -> bool {
        self.driver.as_deref() == Some(UIO_HV_GENERIC)
    }
}

/// `<root>/bus/vmbus/devices`.
pub fn vmbus_devices_dir(root: &Path) -> PathBuf {
    join(root, &["bus", "vmbus", "devices"])
}

/// A VMBus device of vmbmmio's interface type, before its binding is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelEntry {
    /// The device's directory name under `bus/vmbus/devices`.
    pub device_name: String,
    /// `<root>/bus/vmbus/devices/<device_name>`.
    pub sysfs_dir: PathBuf,
    /// `device_id`: the offer's interface instance.
    pub interface_instance: WireGuid,
}

/// Every VMBus device whose `class_id` is `interface_type`, in directory order.
///
/// Errors: [`DiscoverError::NoVmbus`] without a VMBus devices directory, and the file errors of
/// any device read on the way (a garbage `class_id` anywhere is an error: it could be ours).
pub fn list_channels(
    root: &Path,
    interface_type: WireGuid,
) -> Result<Vec<ChannelEntry>, DiscoverError> {
    let devices = vmbus_devices_dir(root);
    if !devices.is_dir() {
        return Err(DiscoverError::NoVmbus { path: devices });
    }
    let mut found = Vec::new();
    for name in list_dir(&devices)? {
        let dir = devices.join(&name);
        let Some(class) = read_guid_unless_vanished(&dir.join("class_id"))? else {
            continue;
        };
        if class != interface_type {
            continue;
        }
        let Some(instance) = read_guid_unless_vanished(&dir.join("device_id"))? else {
            continue;
        };
        found.push(ChannelEntry {
            device_name: name,
            sysfs_dir: dir,
            interface_instance: instance,
        });
    }
    Ok(found)
}

/// Finds the VMBus device whose `class_id` is `interface_type` and whose `device_id` is
/// `interface_instance` under the sysfs tree at `root` (`/sys` on Linux), with its driver and,
/// when it is bound to `uio_hv_generic`, its uio node.
///
/// Errors: those of [`list_channels`], [`DiscoverError::NoSuchChannel`] (naming other instances
/// of the type) when nothing matches, [`DiscoverError::DuplicateChannel`] when two devices match.
pub fn find_channel(
    root: &Path,
    interface_type: WireGuid,
    interface_instance: WireGuid,
) -> Result<VmbusChannel, DiscoverError> {
    let (matching, others): (Vec<ChannelEntry>, Vec<ChannelEntry>) =
        list_channels(root, interface_type)?
            .into_iter()
            .partition(|entry| entry.interface_instance == interface_instance);
    let mut matching = matching.into_iter();
    let Some(entry) = matching.next() else {
        return Err(DiscoverError::NoSuchChannel {
            interface_type,
            interface_instance,
            other_instances: others
                .iter()
                .map(|entry| entry.interface_instance)
                .collect(),
        });
    };
    if let Some(second) = matching.next() {
        return Err(DiscoverError::DuplicateChannel {
            interface_instance,
            first: entry.device_name,
            second: second.device_name,
        });
    }
    read_channel(
        entry.device_name,
        entry.sysfs_dir,
        interface_type,
        interface_instance,
    )
}

/// Finds the one VMBus device of `interface_type`, whatever its instance: what a guest with one
/// vmbmmio channel wants without knowing the instance GUID.
///
/// Errors: those of [`list_channels`], [`DiscoverError::NoChannelOfType`] when there is none,
/// [`DiscoverError::SeveralChannels`] (naming their instances) when there are several.
pub fn find_only_channel(
    root: &Path,
    interface_type: WireGuid,
) -> Result<VmbusChannel, DiscoverError> {
    let mut entries = list_channels(root, interface_type)?;
    if entries.len() > 1 {
        return Err(DiscoverError::SeveralChannels {
            interface_type,
            instances: entries
                .iter()
                .map(|entry| entry.interface_instance)
                .collect(),
        });
    }
    let Some(entry) = entries.pop() else {
        return Err(DiscoverError::NoChannelOfType { interface_type });
    };
    read_channel(
        entry.device_name,
        entry.sysfs_dir,
        interface_type,
        entry.interface_instance,
    )
}

/// Reads the binding state of a channel already identified.
pub(super) fn read_channel(
    device_name: String,
    sysfs_dir: PathBuf,
    interface_type: WireGuid,
    interface_instance: WireGuid,
) -> Result<VmbusChannel, DiscoverError> {
    let driver = link_name(&sysfs_dir.join("driver"))?;
    let uio = if driver.as_deref() == Some(UIO_HV_GENERIC) {
        Some(read_uio(&sysfs_dir)?)
    } else {
        None
    };
    Ok(VmbusChannel {
        device_name,
        sysfs_dir,
        interface_type,
        interface_instance,
        driver,
        uio,
    })
}

fn read_guid_unless_vanished(path: &Path) -> Result<Option<WireGuid>, DiscoverError> {
    match read_parsed(
        path,
        "a GUID like {01234567-89ab-cdef-0123-456789abcdef}",
        parse_guid,
    ) {
        Ok(guid) => Ok(Some(guid)),
        Err(DiscoverError::Io { source, .. }) if vanished(&source) => Ok(None),
        Err(error) => Err(error),
    }
}
