//! The uio node `uio_hv_generic` gives a bound channel, and its memory maps.
//!
//! The uio core registers the node as a child of the VMBus device, so it appears as
//! `/sys/bus/vmbus/devices/<device>/uio/uioN` (also reachable as `/sys/class/uio/uioN`) with the
//! character device `/dev/uioN`; DPDK's VMBus bus driver finds it the same way
//! (DPDK `drivers/bus/vmbus/linux/vmbus_uio.c`, `vmbus_get_uio_dev`). Each memory map is a
//! directory `maps/mapM` whose `name` is printed with `%s`, `size` with `%pa` (`0x` and 16 hex
//! digits on 64-bit) and `offset` with `0x%llx` (Linux `drivers/uio/uio.c`, `map_name_show`,
//! `map_size_show`, `map_offset_show`). A process maps map `M` by calling `mmap` on `/dev/uioN`
//! at offset `M * page size` (`Documentation/driver-api/uio-howto.rst`, "mmap() device memory").
//!
//! `uio_hv_generic` exposes at most five maps (`MAX_UIO_MAPS`): 0 `txrx_rings` (the channel's
//! outbound then inbound ring buffer), 1 `int_page`, 2 `monitor_page`, 3 and 4 the receive and
//! send buffers (Linux `drivers/uio/uio_hv_generic.c`, `hv_uio_probe`; the same list in
//! `uio-howto.rst`, "Things to know about uio_hv_generic").

use std::path::{Path, PathBuf};

use super::error::DiscoverError;
use super::fsread::{join, list_dir, read_parsed, read_text};
use super::text::{parse_decimal_u32, parse_hex_u64, quote};

/// Most maps a uio device has (`MAX_UIO_MAPS` in `include/linux/uio_driver.h`).
pub const MAX_UIO_MAPS: u8 = 5;
/// The name `uio_hv_generic` gives map 0, the channel's ring buffers.
pub const RING_MAP_NAME: &str = "txrx_rings";
/// Longest map name accepted (the kernel's are a dozen characters).
const MAX_MAP_NAME: usize = 64;

/// A uio node of a channel bound to `uio_hv_generic`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UioDevice {
    /// The node's name, `uioN`.
    pub name: String,
    /// `N`.
    pub number: u32,
    /// Its sysfs directory, `<vmbus device>/uio/uioN`.
    pub sysfs_dir: PathBuf,
    /// Its memory maps in index order (the `mapM` directories that exist, `M` < 5).
    pub maps: Vec<UioMap>,
}

/// One memory map of a uio node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UioMap {
    /// `M` in `maps/mapM`.
    pub index: u8,
    /// The map's `name`.
    pub name: String,
    /// The map's `size` in bytes.
    pub size: u64,
    /// The map's `offset`: where the memory starts within the first mapped page.
    pub offset: u64,
}

impl UioDevice {
    /// The character device: `dev_root` (`/dev` on Linux) joined with [`Self::name`].
    pub fn dev_node(&self, dev_root: &Path) -> PathBuf {
        dev_root.join(&self.name)
    }

    /// The map named `name`, if the node has one.
    pub fn map_named(&self, name: &str) -> Option<&UioMap> {
        self.maps.iter().find(|map| map.name == name)
    }

    /// Map 0, checked to be the ring buffers: named [`RING_MAP_NAME`], non-zero size, offset 0.
    pub fn ring_map(&self) -> Result<&UioMap, DiscoverError> {
        self.maps
            .first()
            .filter(|map| {
                map.index == 0 && map.name == RING_MAP_NAME && map.size != 0 && map.offset == 0
            })
            .ok_or_else(|| DiscoverError::NoRingMap {
                path: join(&self.sysfs_dir, &["maps", "map0"]),
            })
    }
}

impl UioMap {
    /// The `mmap` offset that selects this map on `/dev/uioN`: `index * page_size`
    /// (`None` on overflow).
    pub fn mmap_offset(&self, page_size: u64) -> Option<u64> {
        u64::from(self.index).checked_mul(page_size)
    }
}

/// Reads the uio node under the VMBus device directory `device_dir`: exactly one `uio/uioN`.
pub fn read_uio(device_dir: &Path) -> Result<UioDevice, DiscoverError> {
    let uio_dir = device_dir.join("uio");
    if !uio_dir.is_dir() {
        return Err(DiscoverError::NoUioNode { path: uio_dir });
    }
    let mut found: Option<(String, u32)> = None;
    for name in list_dir(&uio_dir)? {
        let Some(number) = name.strip_prefix("uio").and_then(parse_decimal_u32) else {
            continue;
        };
        if found.is_some() {
            return Err(DiscoverError::MultipleUioNodes { path: uio_dir });
        }
        found = Some((name, number));
    }
    let Some((name, number)) = found else {
        return Err(DiscoverError::NoUioNode { path: uio_dir });
    };
    let sysfs_dir = uio_dir.join(&name);
    let maps = read_maps(&sysfs_dir)?;
    Ok(UioDevice {
        name,
        number,
        sysfs_dir,
        maps,
    })
}

fn read_maps(uio_dir: &Path) -> Result<Vec<UioMap>, DiscoverError> {
    let maps_dir = uio_dir.join("maps");
    let mut maps = Vec::new();
    for index in 0..MAX_UIO_MAPS {
        let dir = maps_dir.join(format!("map{index}"));
        if !dir.is_dir() {
            continue;
        }
        let name_path = dir.join("name");
        let name = read_text(&name_path)?;
        if name.len() > MAX_MAP_NAME || name.chars().any(char::is_control) {
            return Err(DiscoverError::Parse {
                path: name_path,
                expected: "a short map name",
                found: quote(&name),
            });
        }
        let size = read_parsed(
            &dir.join("size"),
            "a hex size like 0x0000000000400000",
            parse_hex_u64,
        )?;
        let offset = read_parsed(&dir.join("offset"), "a hex offset like 0x0", parse_hex_u64)?;
        maps.push(UioMap {
            index,
            name,
            size,
            offset,
        });
    }
    Ok(maps)
}
