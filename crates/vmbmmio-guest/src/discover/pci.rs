//! Finding the PCI function paired with the channel, locating its BAR and turning decode on.
//!
//! Every PCI function is a directory `/sys/bus/pci/devices/<domain:bus:dev.fn>` holding
//! `vendor` and `device` (`0x%04x\n`), `config` (the binary configuration space), `resource`
//! (see [`super::resource`]), `resourceN` and, for prefetchable BARs only, `resourceN_wc`
//! (mmap-able files for BAR N, the second one write-combined), and `enable`
//! (`Documentation/PCI/sysfs-pci.rst`; `Documentation/ABI/testing/sysfs-bus-pci`).
//!
//! The pairing is found the way the hvsim demo's guest finds it (`crates/hvsim/src/demo/guest_side.rs`):
//! [`vmbmmio_proto::pci_cap::find_pairing`] walks each function's capability list and the
//! function whose capability names the channel's instance is the one. `config` is read whole,
//! at most 4096 bytes; a reader without `CAP_SYS_ADMIN` gets only the 64-byte header
//! (Linux `drivers/pci/pci-sysfs.c`, `pci_read_config`), which is reported as such rather than
//! walked. A function whose capability list is broken does not stop the search (Linux tolerates
//! such lists too); it is reported only if no function pairs with the instance, since the wanted
//! capability may be the one behind the break.
//!
//! Writing `1` to `enable` calls `pci_enable_device`, which turns on memory decode for the
//! function's memory BARs; it needs `CAP_SYS_ADMIN` (`EPERM` otherwise) and is refused with
//! `EBUSY` while a driver is bound; `enable` reads back the enable count (Linux
//! `drivers/pci/pci-sysfs.c`, `enable_store`, `enable_show`). Each write takes one more
//! reference, so [`enable_decode`] writes only when the count is 0.

use std::fmt;
use std::path::{Path, PathBuf};

use vmbmmio_proto::ioctl::WireGuid;
use vmbmmio_proto::pci_cap::{
    FoundPairing, PCI_CONFIG_SPACE_SIZE, PCI_STD_HEADER_SIZE, find_pairing,
};

use super::bind::{StdSysfsWrite, SysfsWrite};
use super::error::{DiscoverError, IoOp};
use super::fsread::{join, link_name, list_dir, read_bounded, read_parsed, read_text, vanished};
use super::resource::{BarResource, parse_bar};
use super::text::{parse_decimal_u32, parse_hex_u16};

/// Most bytes of `config` read: PCI Express extended configuration space.
pub const MAX_CONFIG: usize = 4096;

/// A PCI function's address, `domain:bus:device.function`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    /// PCI domain (segment); Hyper-V's virtual PCI bus derives it from the vPCI instance.
    pub domain: u32,
    /// Bus number.
    pub bus: u8,
    /// Device number, 0 to 31.
    pub device: u8,
    /// Function number, 0 to 7.
    pub function: u8,
}

impl Bdf {
    /// Parses a sysfs PCI device name (`%04x:%02x:%02x.%d`; a domain may have up to 8 digits).
    pub fn parse(name: &str) -> Option<Self> {
        let (domain, rest) = name.split_once(':')?;
        let (bus, rest) = rest.split_once(':')?;
        let (device, function) = rest.split_once('.')?;
        let hex = |text: &str, min: usize, max: usize| {
            (text.len() >= min && text.len() <= max && text.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| u32::from_str_radix(text, 16).ok())
                .flatten()
        };
        let domain = hex(domain, 4, 8)?;
        let bus = u8::try_from(hex(bus, 2, 2)?).ok()?;
        let device = u8::try_from(hex(device, 2, 2)?).ok().filter(|d| *d < 32)?;
        let function = (function.len() == 1)
            .then(|| function.parse::<u8>().ok())
            .flatten()
            .filter(|f| *f < 8)?;
        Some(Self {
            domain,
            bus,
            device,
            function,
        })
    }
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

/// The PCI function paired with the channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairedFunction {
    /// Its address.
    pub bdf: Bdf,
    /// `<root>/bus/pci/devices/<bdf>`.
    pub sysfs_dir: PathBuf,
    /// `vendor`.
    pub vendor_id: u16,
    /// `device`.
    pub device_id: u16,
    /// The pairing capability and where it sits.
    pub pairing: FoundPairing,
    /// The BAR index asked for.
    pub bar_index: u8,
    /// That BAR, checked.
    pub bar: BarResource,
    /// Whether `enable` read non-zero (decode on) when the function was found.
    pub enabled: bool,
}

/// The file that maps the BAR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BarFile {
    /// `resourceN_wc` when it exists, else `resourceN`.
    pub path: PathBuf,
    /// Whether it is the write-combined file.
    pub write_combined: bool,
}

impl PairedFunction {
    /// The file to `mmap` for the BAR: the write-combined `resourceN_wc` if the kernel offers it
    /// (it does for prefetchable BARs on architectures that support write-combining), otherwise
    /// `resourceN` (uncached).
    pub fn bar_file(&self) -> BarFile {
        let wc = self
            .sysfs_dir
            .join(format!("resource{}_wc", self.bar_index));
        if wc.is_file() {
            BarFile {
                path: wc,
                write_combined: true,
            }
        } else {
            BarFile {
                path: self.sysfs_dir.join(format!("resource{}", self.bar_index)),
                write_combined: false,
            }
        }
    }
}

/// `<root>/bus/pci/devices`.
pub fn pci_devices_dir(root: &Path) -> PathBuf {
    join(root, &["bus", "pci", "devices"])
}

/// Finds the PCI function whose pairing capability names `interface_instance` under the sysfs
/// tree at `root`, and reads its IDs, BAR `bar` (checked: 64-bit prefetchable memory, a naturally
/// aligned power of two of at least 4 KiB) and whether decode is on.
///
/// Entries whose names are not PCI addresses, and functions that vanish while read, are
/// skipped. Errors: [`DiscoverError::NoPci`], [`DiscoverError::ConfigRestricted`] (not root),
/// [`DiscoverError::NoPairedFunction`] (or the first [`DiscoverError::MalformedPairing`] seen, if
/// any), [`DiscoverError::DuplicatePairing`], [`DiscoverError::BadBar`], and file errors.
pub fn find_paired_function(
    root: &Path,
    interface_instance: WireGuid,
    bar: u8,
) -> Result<PairedFunction, DiscoverError> {
    let devices = pci_devices_dir(root);
    if !devices.is_dir() {
        return Err(DiscoverError::NoPci { path: devices });
    }
    let mut found: Option<(Bdf, PathBuf, FoundPairing)> = None;
    let mut other_pairings = Vec::new();
    let mut first_malformed: Option<DiscoverError> = None;
    for name in list_dir(&devices)? {
        let Some(bdf) = Bdf::parse(&name) else {
            continue;
        };
        let dir = devices.join(&name);
        let config_path = dir.join("config");
        let config = match read_bounded(&config_path, MAX_CONFIG) {
            Ok(config) => config,
            Err(DiscoverError::Io { source, .. }) if vanished(&source) => continue,
            Err(error) => return Err(error),
        };
        check_config_length(&config_path, config.len())?;
        let pairing = match find_pairing(|offset| config_dword(&config, offset)) {
            Ok(Some(pairing)) => pairing,
            Ok(None) => continue,
            Err(error) => {
                first_malformed.get_or_insert(DiscoverError::MalformedPairing {
                    path: config_path,
                    error,
                });
                continue;
            }
        };
        if pairing.pairing.interface_instance != interface_instance {
            other_pairings.push((bdf.to_string(), pairing.pairing.interface_instance));
            continue;
        }
        if let Some((first, _, _)) = found {
            return Err(DiscoverError::DuplicatePairing {
                interface_instance,
                first: first.to_string(),
                second: bdf.to_string(),
            });
        }
        found = Some((bdf, dir, pairing));
    }
    let Some((bdf, sysfs_dir, pairing)) = found else {
        return Err(first_malformed.unwrap_or(DiscoverError::NoPairedFunction {
            interface_instance,
            other_pairings,
        }));
    };
    read_function(bdf, sysfs_dir, pairing, bar)
}

fn read_function(
    bdf: Bdf,
    sysfs_dir: PathBuf,
    pairing: FoundPairing,
    bar_index: u8,
) -> Result<PairedFunction, DiscoverError> {
    let vendor_id = read_parsed(
        &sysfs_dir.join("vendor"),
        "a PCI ID like 0x1414",
        parse_hex_u16,
    )?;
    let device_id = read_parsed(
        &sysfs_dir.join("device"),
        "a PCI ID like 0x1414",
        parse_hex_u16,
    )?;
    let resource_path = sysfs_dir.join("resource");
    let resource = read_text(&resource_path)?;
    let bar = parse_bar(&resource, bar_index).map_err(|problem| DiscoverError::BadBar {
        path: resource_path,
        bar: bar_index,
        problem,
    })?;
    let enabled = read_enable_count(&sysfs_dir.join("enable"))? != 0;
    Ok(PairedFunction {
        bdf,
        sysfs_dir,
        vendor_id,
        device_id,
        pairing,
        bar_index,
        bar,
        enabled,
    })
}

/// Whether [`enable_decode`] had to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeState {
    /// `enable` already read non-zero; nothing was written.
    AlreadyEnabled,
    /// `1` was written and `enable` now reads non-zero.
    Enabled,
}

/// Turns memory decode on for `function` by writing `1` to its `enable`, unless `enable` already
/// reads non-zero. Errors: [`DiscoverError::NotPermitted`] (not root),
/// [`DiscoverError::DecodeRefused`] (a driver owns the function), [`DiscoverError::DecodeDidNotTake`].
pub fn enable_decode(function: &PairedFunction) -> Result<DecodeState, DiscoverError> {
    enable_decode_with(function, &mut StdSysfsWrite)
}

/// [`enable_decode`] with a writer of the caller's choice.
pub fn enable_decode_with(
    function: &PairedFunction,
    writer: &mut dyn SysfsWrite,
) -> Result<DecodeState, DiscoverError> {
    let enable = function.sysfs_dir.join("enable");
    if read_enable_count(&enable)? != 0 {
        return Ok(DecodeState::AlreadyEnabled);
    }
    writer.write_attr(&enable, b"1").map_err(|source| {
        if source.raw_os_error() == Some(EBUSY) {
            DiscoverError::DecodeRefused {
                path: enable.clone(),
                driver: link_name(&function.sysfs_dir.join("driver")).ok().flatten(),
            }
        } else {
            DiscoverError::io(IoOp::Write, &enable, source)
        }
    })?;
    if read_enable_count(&enable)? == 0 {
        return Err(DiscoverError::DecodeDidNotTake { path: enable });
    }
    Ok(DecodeState::Enabled)
}

const EBUSY: i32 = 16;

fn read_enable_count(path: &Path) -> Result<u32, DiscoverError> {
    read_parsed(path, "a decimal enable count", parse_decimal_u32)
}

/// Rejects a `config` too short to hold the capability list: below the 64-byte header it is not
/// a configuration space; from 64 to 255 bytes it is what an unprivileged reader gets.
fn check_config_length(path: &Path, len: usize) -> Result<(), DiscoverError> {
    if len < usize::from(PCI_STD_HEADER_SIZE) {
        return Err(DiscoverError::Parse {
            path: path.to_path_buf(),
            expected: "a PCI configuration space of at least 256 bytes",
            found: format!("{len} bytes"),
        });
    }
    if len < usize::from(PCI_CONFIG_SPACE_SIZE) {
        return Err(DiscoverError::ConfigRestricted {
            path: path.to_path_buf(),
            len,
        });
    }
    Ok(())
}

/// The dword of `config` at `offset`, or all ones (what reading an absent location returns) past
/// its end.
fn config_dword(config: &[u8], offset: u16) -> u32 {
    let start = usize::from(offset);
    match start.checked_add(4).and_then(|end| config.get(start..end)) {
        Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]),
        _ => u32::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bdf_names() {
        let bdf = Bdf::parse("7870:00:00.0");
        assert_eq!(
            bdf,
            Some(Bdf {
                domain: 0x7870,
                bus: 0,
                device: 0,
                function: 0
            })
        );
        assert_eq!(bdf.map(|b| b.to_string()).as_deref(), Some("7870:00:00.0"));
        assert_eq!(
            Bdf::parse("10000:ff:1f.7")
                .map(|b| b.to_string())
                .as_deref(),
            Some("10000:ff:1f.7")
        );
        for bad in [
            "",
            "0000:00:00",
            "000:00:00.0",
            "0000:0:00.0",
            "0000:00:20.0",
            "0000:00:00.8",
            "0000:00:00.00",
            "zzzz:00:00.0",
            "0000:00:00.-",
        ] {
            assert_eq!(Bdf::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn dwords_past_the_end_are_all_ones() {
        let config = [1u8, 2, 3, 4, 5];
        assert_eq!(config_dword(&config, 0), 0x0403_0201);
        assert_eq!(config_dword(&config, 4), u32::MAX);
        assert_eq!(config_dword(&config, u16::MAX), u32::MAX);
    }
}
