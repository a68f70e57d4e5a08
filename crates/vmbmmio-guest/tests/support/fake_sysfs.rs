//! A builder of fake sysfs trees in a temporary directory, and a fake kernel that reacts to the
//! attribute writes discovery makes. Shared by the discovery tests and the agent's end-to-end
//! tests; include it with
//!
//! ```ignore
//! #[path = "support/fake_sysfs.rs"]
//! mod fake_sysfs;
//! ```
//!
//! # The tree
//! [`FakeSysfs::new`] makes an empty root (removed on drop). Builders add what a Linux guest's
//! `/sys` would hold, with the contents the kernel prints:
//! - VMBus devices, with [`FakeSysfs::vmbus_device`]: `bus/vmbus/devices/<name>/{class_id,
//!   device_id}` (`{guid}\n`);
//! - drivers, with [`FakeSysfs::vmbus_driver`]: `bus/vmbus/drivers/<driver>/{new_id,bind,unbind}`
//!   (load `uio_hv_generic` by adding the driver named [`UIO_HV_GENERIC`]);
//! - bindings, with [`FakeSysfs::bind_vmbus`]: the device's `driver` link; for `uio_hv_generic`
//!   add the node with [`FakeSysfs::uio_node`] (`uio/uioN/maps/mapM/{name,addr,size,offset}`),
//!   or all of it at once with [`FakeSysfs::bound_channel`];
//! - PCI functions, with [`FakeSysfs::pci_function`]: `bus/pci/devices/<bdf>/{vendor,device,
//!   config,resource,resourceN,resourceN_wc,enable}` from a [`PciFunction`], whose config space
//!   a [`ConfigSpace`] builds (with or without the pairing capability, other vendors'
//!   capabilities, loops, corrupted bytes);
//! - hostile contents, with the raw [`FakeSysfs::write`], [`FakeSysfs::mkdir`] and
//!   [`FakeSysfs::remove`].
//!
//! Paths given to the raw helpers are relative to the root.
//!
//! # Permission denied
//! Tests may run as root, where `chmod 0` denies nothing. Refusals are therefore injected at the
//! one place discovery writes: [`FakeKernel`], a `SysfsWrite` that answers `EACCES` (or any errno)
//! for chosen attributes, and otherwise plays the kernel's part (binding on `new_id`/`bind`,
//! unbinding, counting `enable`) so a bind can be tested end to end. Unprivileged `config` reads
//! (64 bytes) are simulated by a short `config` ([`PciFunction::config_len`]).

#![allow(dead_code)]

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use vmbmmio_guest::discover::{GuidText, SysfsWrite, UIO_HV_GENERIC};
use vmbmmio_proto::ioctl::WireGuid;
use vmbmmio_proto::pci_cap::{CHANNEL_PROTOCOL_VERSION, Pairing, PairingCapability};

/// `IORESOURCE_MEM | IORESOURCE_PREFETCH | IORESOURCE_MEM_64 | IORESOURCE_SIZEALIGN` plus the
/// BAR's low flag bits, as Linux prints them for a 64-bit prefetchable memory BAR.
pub const BAR_FLAGS_64_PREFETCH: u64 = 0x0014_220c;

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A fake sysfs root in a fresh temporary directory, removed on drop.
pub struct FakeSysfs {
    root: PathBuf,
}

impl Drop for FakeSysfs {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

impl FakeSysfs {
    /// An empty tree (not even `bus/`).
    pub fn new() -> Self {
        let unique = NEXT.fetch_add(1, Ordering::Relaxed);
        let root = std::env::temp_dir().join(format!(
            "vmbmmio-fake-sysfs-{}-{unique}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).expect("create the fake sysfs root");
        Self { root }
    }

    /// A tree with empty `bus/vmbus/{devices,drivers}` and `bus/pci/devices`.
    pub fn with_buses() -> Self {
        let sysfs = Self::new();
        sysfs.mkdir("bus/vmbus/devices");
        sysfs.mkdir("bus/vmbus/drivers");
        sysfs.mkdir("bus/pci/devices");
        sysfs
    }

    /// The root to give discovery (what `/sys` is on Linux).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `root/rel`.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Writes `contents` to `root/rel`, creating parent directories.
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create parent directories");
        }
        fs::write(&path, contents).expect("write a fake sysfs file");
    }

    /// Reads `root/rel` as text.
    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.path(rel)).expect("read a fake sysfs file")
    }

    /// Creates the directory `root/rel` and its parents.
    pub fn mkdir(&self, rel: &str) {
        fs::create_dir_all(self.path(rel)).expect("create a fake sysfs directory");
    }

    /// Removes `root/rel` (file, link or directory tree), if present.
    pub fn remove(&self, rel: &str) {
        let path = self.path(rel);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => fs::remove_dir_all(&path).expect("remove a directory"),
            Ok(_) => fs::remove_file(&path).expect("remove a file"),
            Err(_) => {}
        }
    }

    /// Adds VMBus device `name` with `class_id` `{interface_type}` and `device_id`
    /// `{interface_instance}`; returns its relative directory.
    pub fn vmbus_device(
        &self,
        name: &str,
        interface_type: u128,
        interface_instance: u128,
    ) -> String {
        let dir = format!("bus/vmbus/devices/{name}");
        self.write(
            &format!("{dir}/class_id"),
            format!("{:?}\n", guid(interface_type)),
        );
        self.write(
            &format!("{dir}/device_id"),
            format!("{:?}\n", guid(interface_instance)),
        );
        dir
    }

    /// Adds a VMBus driver directory with its `new_id`, `bind` and `unbind` attributes (empty
    /// files: what was written can be read back).
    pub fn vmbus_driver(&self, driver: &str) -> String {
        let dir = format!("bus/vmbus/drivers/{driver}");
        for attr in ["new_id", "remove_id", "bind", "unbind"] {
            self.write(&format!("{dir}/{attr}"), "");
        }
        dir
    }

    /// Binds VMBus device `device` to `driver`: the device's `driver` link (to
    /// `../../drivers/<driver>`, as sysfs's relative links do) and the driver's link back.
    pub fn bind_vmbus(&self, device: &str, driver: &str) {
        let link = self.path(&format!("bus/vmbus/devices/{device}/driver"));
        let _ = fs::remove_file(&link);
        symlink(format!("../../drivers/{driver}"), &link).expect("link the driver");
        let back = self.path(&format!("bus/vmbus/drivers/{driver}/{device}"));
        if let Some(parent) = back.parent() {
            fs::create_dir_all(parent).expect("driver directory");
        }
        let _ = fs::remove_file(&back);
        symlink(format!("../../devices/{device}"), &back).expect("link the device");
    }

    /// Removes VMBus device `device`'s `driver` link.
    pub fn unbind_vmbus(&self, device: &str) {
        let link = self.path(&format!("bus/vmbus/devices/{device}/driver"));
        if let Ok(target) = fs::read_link(link)
            && let Some(driver) = target.file_name().and_then(|n| n.to_str())
        {
            self.remove(&format!("bus/vmbus/drivers/{driver}/{device}"));
        }
        self.remove(&format!("bus/vmbus/devices/{device}/driver"));
    }

    /// Adds the uio node `uio<number>` under VMBus device `device` with `maps`; returns its
    /// relative directory.
    pub fn uio_node(&self, device: &str, number: u32, maps: &[UioMapSpec]) -> String {
        let dir = format!("bus/vmbus/devices/{device}/uio/uio{number}");
        self.write(&format!("{dir}/name"), "uio_hv_generic\n");
        self.write(&format!("{dir}/dev"), format!("243:{number}\n"));
        for (index, map) in maps.iter().enumerate() {
            let map_dir = format!("{dir}/maps/map{index}");
            self.write(&format!("{map_dir}/name"), format!("{}\n", map.name));
            self.write(&format!("{map_dir}/addr"), format!("0x{:016x}\n", map.addr));
            self.write(&format!("{map_dir}/size"), format!("0x{:016x}\n", map.size));
            self.write(
                &format!("{map_dir}/offset"),
                format!("0x{:x}\n", map.offset),
            );
        }
        dir
    }

    /// A channel bound to `uio_hv_generic` as `uio<number>` with the standard maps: device, driver,
    /// link and node in one call.
    pub fn bound_channel(&self, device: &str, interface_type: u128, instance: u128, number: u32) {
        self.vmbus_device(device, interface_type, instance);
        self.vmbus_driver(UIO_HV_GENERIC);
        self.bind_vmbus(device, UIO_HV_GENERIC);
        self.uio_node(device, number, &uio_hv_generic_maps());
    }

    /// Adds the PCI function `function`; returns its relative directory.
    pub fn pci_function(&self, function: &PciFunction) -> String {
        let dir = format!("bus/pci/devices/{}", function.bdf);
        self.write(
            &format!("{dir}/vendor"),
            format!("0x{:04x}\n", function.vendor),
        );
        self.write(
            &format!("{dir}/device"),
            format!("0x{:04x}\n", function.device),
        );
        let config = function.config.bytes();
        let len = function
            .config_len
            .unwrap_or(config.len())
            .min(config.len());
        self.write(
            &format!("{dir}/config"),
            config.get(..len).unwrap_or(&config),
        );
        self.write(&format!("{dir}/resource"), resource_text(&function.bars));
        for (index, bar) in function.bars.iter().enumerate() {
            if bar.2 == 0 {
                continue;
            }
            self.write(&format!("{dir}/resource{index}"), "");
            if function.write_combined && bar.2 & 0x2000 != 0 {
                self.write(&format!("{dir}/resource{index}_wc"), "");
            }
        }
        self.write(&format!("{dir}/enable"), format!("{}\n", function.enable));
        dir
    }
}

/// One uio map as `uio_node` writes it.
#[derive(Clone, Debug)]
pub struct UioMapSpec {
    /// `name`.
    pub name: String,
    /// `addr`.
    pub addr: u64,
    /// `size`.
    pub size: u64,
    /// `offset`.
    pub offset: u64,
}

/// The five maps `uio_hv_generic` gives a channel: rings (2 × 2 MiB), interrupt page, monitor
/// page, receive and send buffers (`drivers/uio/uio_hv_generic.c`).
pub fn uio_hv_generic_maps() -> Vec<UioMapSpec> {
    let map = |name: &str, size: u64| UioMapSpec {
        name: name.to_owned(),
        addr: 0x1_0000_0000,
        size,
        offset: 0,
    };
    vec![
        map("txrx_rings", 0x40_0000),
        map("int_page", 0x1000),
        map("monitor_page", 0x1000),
        map("recv:0xe1e10", 0xf0_0000),
        map("send:0xe1e11", 0xf0_0000),
    ]
}

/// A fake PCI function.
#[derive(Clone, Debug)]
pub struct PciFunction {
    /// Directory name, `dddd:bb:dd.f`.
    pub bdf: String,
    /// `vendor`.
    pub vendor: u16,
    /// `device`.
    pub device: u16,
    /// Configuration space.
    pub config: ConfigSpace,
    /// Bytes of `config` kept (`Some(64)` is what an unprivileged reader sees).
    pub config_len: Option<usize>,
    /// `resource` lines (start, end, flags), BAR 0 first; seven lines are written, zeros after.
    pub bars: Vec<(u64, u64, u64)>,
    /// Whether prefetchable BARs get a `resourceN_wc` file.
    pub write_combined: bool,
    /// `enable`'s count.
    pub enable: u32,
}

impl PciFunction {
    /// A vmbmmio function at `bdf` pairing with `instance` (type `interface_type`), with a 64-bit
    /// prefetchable BAR 2 of `size` bytes at `base`, write-combined file present, decode off.
    pub fn vmbmmio(bdf: &str, interface_type: u128, instance: u128, base: u64, size: u64) -> Self {
        Self {
            bdf: bdf.to_owned(),
            vendor: 0x1414,
            device: 0xb0b0,
            config: ConfigSpace::new(0x1414, 0xb0b0).pairing_at(0x40, 0, interface_type, instance),
            config_len: None,
            bars: vec![
                (0, 0, 0),
                (0, 0, 0),
                (base, base + size - 1, BAR_FLAGS_64_PREFETCH),
            ],
            write_combined: true,
            enable: 0,
        }
    }

    /// Any other function: no capabilities, one 32-bit BAR 0.
    pub fn other(bdf: &str) -> Self {
        Self {
            bdf: bdf.to_owned(),
            vendor: 0x8086,
            device: 0x1234,
            config: ConfigSpace::new(0x8086, 0x1234),
            config_len: None,
            bars: vec![(0xfe00_0000, 0xfe00_0fff, 0x0004_0200)],
            write_combined: false,
            enable: 1,
        }
    }
}

/// A conventional (256-byte) or extended (4096-byte) configuration space under construction.
#[derive(Clone, Debug)]
pub struct ConfigSpace {
    bytes: Vec<u8>,
}

impl ConfigSpace {
    /// A type-0 header with `vendor`/`device`, no capability list, 256 bytes.
    pub fn new(vendor: u16, device: u16) -> Self {
        let mut bytes = vec![0u8; 256];
        bytes[0..2].copy_from_slice(&vendor.to_le_bytes());
        bytes[2..4].copy_from_slice(&device.to_le_bytes());
        Self { bytes }
    }

    /// Grows it to 4096 bytes (PCI Express extended configuration space).
    pub fn extended(mut self) -> Self {
        self.bytes.resize(4096, 0);
        self
    }

    /// Sets the status register's capability-list bit and the capabilities pointer (0x34).
    pub fn cap_list(mut self, first: u8) -> Self {
        self.bytes[0x06] |= 0x10;
        self.bytes[0x34] = first;
        self
    }

    /// Writes vmbmmio's pairing capability (built by `vmbmmio_proto::pci_cap`) at `offset` with
    /// next pointer `next`, and makes it the list head if the list is empty.
    pub fn pairing_at(self, offset: u8, next: u8, interface_type: u128, instance: u128) -> Self {
        let pairing = Pairing {
            interface_instance: WireGuid::from_u128(instance),
            interface_type: WireGuid::from_u128(interface_type),
            protocol_version: CHANNEL_PROTOCOL_VERSION,
        };
        let mut bytes = Vec::new();
        for dword in PairingCapability::new(&pairing, next).to_dwords() {
            bytes.extend_from_slice(&dword.to_le_bytes());
        }
        self.raw_cap(offset, &bytes)
    }

    /// Writes another vendor's vendor-specific capability (ID 0x09, 8 bytes, signature `ACME`).
    pub fn other_vendor_cap_at(self, offset: u8, next: u8) -> Self {
        self.raw_cap(offset, &[0x09, next, 8, 1, b'A', b'C', b'M', b'E'])
    }

    /// Writes a power-management capability (ID 0x01) at `offset`.
    pub fn pm_cap_at(self, offset: u8, next: u8) -> Self {
        self.raw_cap(offset, &[0x01, next, 0x03, 0x00, 0, 0, 0, 0])
    }

    /// Writes `bytes` at `offset`, and makes `offset` the list head if the list is empty.
    pub fn raw_cap(mut self, offset: u8, bytes: &[u8]) -> Self {
        let at = usize::from(offset);
        self.bytes[at..at + bytes.len()].copy_from_slice(bytes);
        if self.bytes[0x34] == 0 {
            self = self.cap_list(offset);
        }
        self
    }

    /// Overwrites one byte (to corrupt a capability).
    pub fn poke(mut self, offset: usize, value: u8) -> Self {
        self.bytes[offset] = value;
        self
    }

    /// The bytes.
    pub fn bytes(&self) -> Vec<u8> {
        self.bytes.clone()
    }
}

/// A `resource` file: one `0x%016llx 0x%016llx 0x%016llx` line per entry, padded with zero lines
/// to seven (six BARs and the ROM).
pub fn resource_text(bars: &[(u64, u64, u64)]) -> String {
    let mut text = String::new();
    for index in 0..bars.len().max(7) {
        let (start, end, flags) = bars.get(index).copied().unwrap_or((0, 0, 0));
        text.push_str(&format!("0x{start:016x} 0x{end:016x} 0x{flags:016x}\n"));
    }
    text
}

/// `value` as a `WireGuid`'s canonical text.
pub fn guid(value: u128) -> GuidText {
    GuidText(WireGuid::from_u128(value))
}

/// A fake kernel behind the attribute writes: records every write, answers the errors it was
/// told to, and otherwise does what Linux does for the attributes discovery writes.
pub struct FakeKernel<'a> {
    sysfs: &'a FakeSysfs,
    /// Every write, in order: (path relative to the root, value).
    pub writes: Vec<(String, Vec<u8>)>,
    next_uio: u32,
    failures: Vec<(String, i32)>,
    /// Whether a new `new_id` attaches `uio_hv_generic` to unbound devices of that type (Linux
    /// does; turn it off to exercise the explicit `bind`).
    pub attach_on_new_id: bool,
    /// Whether `bind` actually binds (off: the write succeeds but nothing changes).
    pub bind_takes: bool,
}

/// `EACCES`.
pub const EACCES: i32 = 13;
/// `EPERM`.
pub const EPERM: i32 = 1;
/// `EBUSY`.
pub const EBUSY: i32 = 16;
/// `EEXIST`.
pub const EEXIST: i32 = 17;
/// `ENODEV`.
pub const ENODEV: i32 = 19;

impl<'a> FakeKernel<'a> {
    /// A kernel that accepts everything.
    pub fn new(sysfs: &'a FakeSysfs) -> Self {
        Self {
            sysfs,
            writes: Vec::new(),
            next_uio: 0,
            failures: Vec::new(),
            attach_on_new_id: true,
            bind_takes: true,
        }
    }

    /// Writes to `rel` (relative to the root) fail with `errno` (`EACCES` for a non-root caller).
    pub fn fail(mut self, rel: &str, errno: i32) -> Self {
        self.failures.push((rel.to_owned(), errno));
        self
    }

    /// The paths written, relative to the root.
    pub fn written_paths(&self) -> Vec<String> {
        self.writes.iter().map(|(path, _)| path.clone()).collect()
    }

    fn relative(&self, path: &Path) -> String {
        path.strip_prefix(self.sysfs.root())
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }

    fn attach(&mut self, device: &str) {
        self.sysfs.bind_vmbus(device, UIO_HV_GENERIC);
        self.sysfs
            .uio_node(device, self.next_uio, &uio_hv_generic_maps());
        self.next_uio += 1;
    }
}

impl SysfsWrite for FakeKernel<'_> {
    fn write_attr(&mut self, path: &Path, value: &[u8]) -> io::Result<()> {
        let rel = self.relative(path);
        self.writes.push((rel.clone(), value.to_vec()));
        if let Some((_, errno)) = self.failures.iter().find(|(p, _)| *p == rel) {
            return Err(io::Error::from_raw_os_error(*errno));
        }
        if !path.is_file() {
            return Err(io::Error::from_raw_os_error(2));
        }
        let text = String::from_utf8_lossy(value).trim_end().to_owned();
        let uio_driver = format!("bus/vmbus/drivers/{UIO_HV_GENERIC}");
        if rel == format!("{uio_driver}/new_id") {
            fs::write(path, value)?;
            if self.attach_on_new_id {
                let devices = self.sysfs.path("bus/vmbus/devices");
                for entry in fs::read_dir(devices)?.flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let class =
                        fs::read_to_string(entry.path().join("class_id")).unwrap_or_default();
                    let unbound = fs::symlink_metadata(entry.path().join("driver")).is_err();
                    if unbound && class.trim() == format!("{{{text}}}") {
                        self.attach(&name);
                    }
                }
            }
        } else if rel == format!("{uio_driver}/bind") {
            fs::write(path, value)?;
            if self.bind_takes {
                self.attach(&text);
            }
        } else if rel.starts_with("bus/vmbus/drivers/") && rel.ends_with("/unbind") {
            fs::write(path, value)?;
            self.sysfs.unbind_vmbus(&text);
        } else if rel.starts_with("bus/pci/devices/") && rel.ends_with("/enable") {
            let count: u32 = fs::read_to_string(path)?.trim().parse().unwrap_or(0);
            if text == "1" {
                fs::write(path, format!("{}\n", count + 1))?;
            }
        } else {
            fs::write(path, value)?;
        }
        Ok(())
    }
}
