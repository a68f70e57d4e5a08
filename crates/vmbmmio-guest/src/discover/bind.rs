//! Binding the channel to `uio_hv_generic`, the way `Documentation/driver-api/uio-howto.rst`
//! ("Generic Hyper-V UIO driver", "Making the driver recognize the device") does it by hand:
//!
//! 1. `uio_hv_generic` declares no device GUIDs, so it is given the interface type:
//!    `echo <type guid> > /sys/bus/vmbus/drivers/uio_hv_generic/new_id`. The kernel parses it with
//!    `guid_parse`, answers `EEXIST` if the GUID is already there, and otherwise attaches the
//!    driver to every unbound device of that type at once (Linux `drivers/hv/vmbus_drv.c`,
//!    `new_id_store`, `vmbus_add_dynid` → `driver_attach`).
//! 2. A device another driver holds is unbound from it (`echo -n <device> > .../<driver>/unbind`)
//!    — only when the caller asks ([`BindOptions::take_over`]); by default that is an error that
//!    names the driver, since no in-box driver claims vmbmmio's interface type and one that does
//!    was put there on purpose.
//! 3. If step 1 did not already attach it, `echo -n <device> > .../uio_hv_generic/bind`.
//!
//! Every step reads the `driver` link first and writes nothing that is already done, so a second
//! run, or a run after an administrator bound the device by hand, makes no writes at all.
//! Writes go through [`SysfsWrite`] so tests can play the kernel's part (and its refusals: a test
//! running as root cannot make a file deny it with `chmod`).

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::error::{DiscoverError, IoOp};
use super::fsread::{join, link_name};
use super::text::GuidText;
use super::uio::{UioDevice, read_uio};
use super::vmbus::{UIO_HV_GENERIC, VmbusChannel};

/// Writes one value to a sysfs attribute.
pub trait SysfsWrite {
    /// Writes `value` to the attribute at `path` in one `write`, without creating it.
    fn write_attr(&mut self, path: &Path, value: &[u8]) -> io::Result<()>;
}

/// The real writer: opens the attribute write-only (never creating it) and writes the value.
#[derive(Clone, Copy, Debug, Default)]
pub struct StdSysfsWrite;

impl SysfsWrite for StdSysfsWrite {
    fn write_attr(&mut self, path: &Path, value: &[u8]) -> io::Result<()> {
        let mut file = OpenOptions::new().write(true).truncate(true).open(path)?;
        file.write_all(value)
    }
}

impl<F: FnMut(&Path, &[u8]) -> io::Result<()>> SysfsWrite for F {
    fn write_attr(&mut self, path: &Path, value: &[u8]) -> io::Result<()> {
        self(path, value)
    }
}

/// How far [`bind_uio_with`] may go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BindOptions {
    /// Unbind the channel from another driver that holds it (otherwise
    /// [`DiscoverError::BoundElsewhere`]).
    pub take_over: bool,
}

/// `<root>/bus/vmbus/drivers/<driver>`.
pub fn vmbus_driver_dir(root: &Path, driver: &str) -> PathBuf {
    join(root, &["bus", "vmbus", "drivers", driver])
}

/// Binds `channel` to `uio_hv_generic` with the real writer, refusing to take it from another
/// driver, and returns its uio node. Makes no write when it is already bound.
pub fn bind_uio(root: &Path, channel: &VmbusChannel) -> Result<UioDevice, DiscoverError> {
    bind_uio_with(root, channel, BindOptions::default(), &mut StdSysfsWrite)
}

/// [`bind_uio`] with options and a writer of the caller's choice.
///
/// The binding state is re-read from sysfs (the `channel` value may be stale). Errors:
/// [`DiscoverError::ModuleMissing`], [`DiscoverError::BoundElsewhere`],
/// [`DiscoverError::NotPermitted`] (not root), [`DiscoverError::BindRefused`],
/// [`DiscoverError::BindDidNotTake`], and the uio node's errors.
pub fn bind_uio_with(
    root: &Path,
    channel: &VmbusChannel,
    options: BindOptions,
    writer: &mut dyn SysfsWrite,
) -> Result<UioDevice, DiscoverError> {
    let driver_link = channel.sysfs_dir.join("driver");
    let current = link_name(&driver_link)?;
    if current.as_deref() == Some(UIO_HV_GENERIC) {
        return read_uio(&channel.sysfs_dir);
    }
    let uio_driver = vmbus_driver_dir(root, UIO_HV_GENERIC);
    if !uio_driver.is_dir() {
        return Err(DiscoverError::ModuleMissing { path: uio_driver });
    }
    let device = channel.device_name.as_str();
    if let Some(other) = current {
        let unbind = vmbus_driver_dir(root, &other).join("unbind");
        if !options.take_over {
            return Err(DiscoverError::BoundElsewhere {
                device: device.to_owned(),
                driver: other,
                unbind,
            });
        }
        writer
            .write_attr(&unbind, device.as_bytes())
            .map_err(|source| DiscoverError::io(IoOp::Write, &unbind, source))?;
    }

    let new_id = uio_driver.join("new_id");
    let id = format!("{}\n", GuidText(channel.interface_type));
    match writer.write_attr(&new_id, id.as_bytes()) {
        Ok(()) => {}
        // The type is already among the driver's dynamic ids (an earlier run or the admin).
        Err(error) if error.raw_os_error() == Some(EEXIST) => {}
        Err(source) => return Err(DiscoverError::io(IoOp::Write, &new_id, source)),
    }

    match link_name(&driver_link)? {
        Some(driver) if driver == UIO_HV_GENERIC => {}
        Some(driver) => {
            return Err(DiscoverError::BindDidNotTake {
                device: device.to_owned(),
                driver: Some(driver),
            });
        }
        None => {
            let bind = uio_driver.join("bind");
            writer
                .write_attr(&bind, device.as_bytes())
                .map_err(|source| {
                    if source.kind() == io::ErrorKind::PermissionDenied {
                        DiscoverError::io(IoOp::Write, &bind, source)
                    } else {
                        DiscoverError::BindRefused {
                            path: bind.clone(),
                            device: device.to_owned(),
                            source,
                        }
                    }
                })?;
            let now = link_name(&driver_link)?;
            if now.as_deref() != Some(UIO_HV_GENERIC) {
                return Err(DiscoverError::BindDidNotTake {
                    device: device.to_owned(),
                    driver: now,
                });
            }
        }
    }
    read_uio(&channel.sysfs_dir)
}

const EEXIST: i32 = 17;
