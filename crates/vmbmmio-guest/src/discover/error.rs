//! Everything discovery can fail with, each error naming the file involved and saying what to do.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use vmbmmio_proto::ioctl::WireGuid;
use vmbmmio_proto::pci_cap::PairingError;

use super::text::GuidText;

/// What was being done to a file when the system refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoOp {
    /// Reading a file.
    Read,
    /// Writing an attribute.
    Write,
    /// Listing a directory.
    List,
    /// Reading a symbolic link.
    ReadLink,
}

impl fmt::Display for IoOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Read => "reading",
            Self::Write => "writing",
            Self::List => "listing",
            Self::ReadLink => "reading the link",
        })
    }
}

/// Why the BAR that `resource` describes cannot be the shared-memory BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarProblem {
    /// `resource` has no line for this BAR.
    Missing,
    /// The line's fields are not three `0x`-prefixed hex numbers.
    Malformed,
    /// Start, end and flags are all zero: the BAR is not implemented or not assigned.
    Unassigned,
    /// The kernel flags the resource unset or disabled (`IORESOURCE_UNSET`/`IORESOURCE_DISABLED`).
    NotPlaced,
    /// The end is below the start, or the size overflows.
    EndBeforeStart,
    /// The size is not a power of two.
    SizeNotPowerOfTwo,
    /// The size is below one 4 KiB page.
    TooSmall,
    /// The start is not aligned to the size (a PCI BAR is naturally aligned).
    Misaligned,
    /// Not a memory BAR (`IORESOURCE_MEM` clear).
    NotMemory,
    /// Not prefetchable (`IORESOURCE_PREFETCH` clear): vmbmmio's BAR is prefetchable memory.
    NotPrefetchable,
    /// Not a 64-bit BAR (`IORESOURCE_MEM_64` clear).
    Not64Bit,
}

impl fmt::Display for BarProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Missing => "the file has no line for it",
            Self::Malformed => "its line is not `0x<start> 0x<end> 0x<flags>`",
            Self::Unassigned => "it is not implemented or not assigned (all zero)",
            Self::NotPlaced => "the kernel marks it unset or disabled (no address assigned)",
            Self::EndBeforeStart => "its end is below its start",
            Self::SizeNotPowerOfTwo => "its size is not a power of two",
            Self::TooSmall => "its size is below 4 KiB",
            Self::Misaligned => "its start is not aligned to its size",
            Self::NotMemory => "it is not a memory BAR",
            Self::NotPrefetchable => "it is not prefetchable",
            Self::Not64Bit => "it is not a 64-bit BAR",
        })
    }
}

/// A discovery failure. `Display` gives the whole message a user needs, with what to do.
#[derive(Debug)]
pub enum DiscoverError {
    /// The system refused an operation on a file for a reason not covered below.
    Io {
        /// What was being done.
        op: IoOp,
        /// The file.
        path: PathBuf,
        /// The system's answer.
        source: io::Error,
    },
    /// The system said `EACCES` or `EPERM`.
    NotPermitted {
        /// What was being done.
        op: IoOp,
        /// The file.
        path: PathBuf,
        /// The system's answer.
        source: io::Error,
    },
    /// A file is longer than any value the kernel prints there.
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The most bytes accepted.
        limit: usize,
    },
    /// A directory has more entries than discovery walks.
    TooManyEntries {
        /// The directory.
        path: PathBuf,
        /// The most entries walked.
        limit: usize,
    },
    /// A file does not hold the kind of value the kernel prints there.
    Parse {
        /// The file.
        path: PathBuf,
        /// What it should hold.
        expected: &'static str,
        /// What it holds (escaped, at most 64 characters).
        found: String,
    },
    /// The sysfs tree has no VMBus devices directory.
    NoVmbus {
        /// The directory looked for.
        path: PathBuf,
    },
    /// No VMBus device has the interface type and instance.
    NoSuchChannel {
        /// The interface type looked for.
        interface_type: WireGuid,
        /// The instance looked for.
        interface_instance: WireGuid,
        /// Instances of other devices of the same interface type.
        other_instances: Vec<WireGuid>,
    },
    /// No VMBus device has vmbmmio's interface type at all (no instance was given).
    NoChannelOfType {
        /// The interface type looked for.
        interface_type: WireGuid,
    },
    /// Several VMBus devices have the interface type and no instance was given to choose one.
    SeveralChannels {
        /// The interface type looked for.
        interface_type: WireGuid,
        /// Their instances.
        instances: Vec<WireGuid>,
    },
    /// Two VMBus devices carry the same interface type and instance.
    DuplicateChannel {
        /// The instance.
        interface_instance: WireGuid,
        /// The first device's name.
        first: String,
        /// The second device's name.
        second: String,
    },
    /// `uio_hv_generic` is not loaded (its driver directory is missing).
    ModuleMissing {
        /// The driver directory looked for.
        path: PathBuf,
    },
    /// The channel is bound to another driver, which discovery does not take it from.
    BoundElsewhere {
        /// The VMBus device name.
        device: String,
        /// The driver it is bound to.
        driver: String,
        /// That driver's `unbind` attribute.
        unbind: PathBuf,
    },
    /// The kernel refused to bind the channel to `uio_hv_generic`.
    BindRefused {
        /// The `bind` attribute written.
        path: PathBuf,
        /// The VMBus device name.
        device: String,
        /// The system's answer.
        source: io::Error,
    },
    /// The writes succeeded but the channel is not bound to `uio_hv_generic` afterwards.
    BindDidNotTake {
        /// The VMBus device name.
        device: String,
        /// The driver it is bound to now, if any.
        driver: Option<String>,
    },
    /// The channel is bound to `uio_hv_generic` but has no `uio/uioN` node.
    NoUioNode {
        /// The directory looked in.
        path: PathBuf,
    },
    /// The channel has more than one `uio/uioN` node.
    MultipleUioNodes {
        /// The directory looked in.
        path: PathBuf,
    },
    /// The uio node's map 0 is not the ring buffers (`txrx_rings`, non-zero size).
    NoRingMap {
        /// The map directory.
        path: PathBuf,
    },
    /// The sysfs tree has no PCI devices directory.
    NoPci {
        /// The directory looked for.
        path: PathBuf,
    },
    /// `config` returned only the standard header: the caller may not read the capabilities.
    ConfigRestricted {
        /// The `config` file.
        path: PathBuf,
        /// The bytes it returned.
        len: usize,
    },
    /// A function's configuration space carries a vmbmmio capability that does not parse, or a
    /// broken capability list.
    MalformedPairing {
        /// The `config` file.
        path: PathBuf,
        /// What is wrong.
        error: PairingError,
    },
    /// No PCI function carries a pairing capability for the instance.
    NoPairedFunction {
        /// The instance looked for.
        interface_instance: WireGuid,
        /// Functions that carry a pairing capability for another instance (name, instance).
        other_pairings: Vec<(String, WireGuid)>,
    },
    /// Two PCI functions carry a pairing capability for the same instance.
    DuplicatePairing {
        /// The instance.
        interface_instance: WireGuid,
        /// The first function.
        first: String,
        /// The second function.
        second: String,
    },
    /// The paired function's BAR is not one vmbmmio can use.
    BadBar {
        /// The `resource` file.
        path: PathBuf,
        /// The BAR index.
        bar: u8,
        /// What is wrong.
        problem: BarProblem,
    },
    /// The kernel refused `enable` because a driver owns the function (`EBUSY`).
    DecodeRefused {
        /// The `enable` attribute.
        path: PathBuf,
        /// The driver bound to the function, if the link says.
        driver: Option<String>,
    },
    /// `enable` still reads 0 after writing 1.
    DecodeDidNotTake {
        /// The `enable` attribute.
        path: PathBuf,
    },
}

impl DiscoverError {
    /// The error for `source` from `op` on `path`: [`Self::NotPermitted`] for `EACCES`/`EPERM`,
    /// [`Self::Io`] otherwise.
    pub fn io(op: IoOp, path: &Path, source: io::Error) -> Self {
        let path = path.to_path_buf();
        if source.kind() == io::ErrorKind::PermissionDenied {
            Self::NotPermitted { op, path, source }
        } else {
            Self::Io { op, path, source }
        }
    }
}

const EBUSY: i32 = 16;
const ENODEV: i32 = 19;

impl DiscoverError {
    /// A stable snake_case name of the error, for scripts (the agent's `--json` `error.kind`,
    /// `docs/guest-agent.md`, "Errors").
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::NotPermitted { .. } => "not_permitted",
            Self::TooLarge { .. } => "too_large",
            Self::TooManyEntries { .. } => "too_many_entries",
            Self::Parse { .. } => "parse",
            Self::NoVmbus { .. } => "no_vmbus",
            Self::NoSuchChannel { .. } | Self::NoChannelOfType { .. } => "no_such_channel",
            Self::SeveralChannels { .. } => "several_channels",
            Self::DuplicateChannel { .. } => "duplicate_channel",
            Self::ModuleMissing { .. } => "module_missing",
            Self::BoundElsewhere { .. } => "bound_elsewhere",
            Self::BindRefused { .. } => "bind_refused",
            Self::BindDidNotTake { .. } => "bind_did_not_take",
            Self::NoUioNode { .. } => "no_uio_node",
            Self::MultipleUioNodes { .. } => "multiple_uio_nodes",
            Self::NoRingMap { .. } => "no_ring_map",
            Self::NoPci { .. } => "no_pci",
            Self::ConfigRestricted { .. } => "config_restricted",
            Self::MalformedPairing { .. } => "malformed_pairing",
            Self::NoPairedFunction { .. } => "no_paired_function",
            Self::DuplicatePairing { .. } => "duplicate_pairing",
            Self::BadBar { .. } => "bad_bar",
            Self::DecodeRefused { .. } => "decode_refused",
            Self::DecodeDidNotTake { .. } => "decode_did_not_take",
        }
    }
}

impl fmt::Display for DiscoverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { op, path, source } => write!(f, "{op} {}: {source}", path.display()),
            Self::NotPermitted { op, path, source } => write!(
                f,
                "{op} {}: {source}: run as root (sysfs binding, `enable` and full `config` reads need CAP_SYS_ADMIN)",
                path.display()
            ),
            Self::TooLarge { path, limit } => write!(
                f,
                "{} is longer than {limit} bytes, more than the kernel ever prints there: is this a real sysfs?",
                path.display()
            ),
            Self::TooManyEntries { path, limit } => write!(
                f,
                "{} has more than {limit} entries; discovery stops there",
                path.display()
            ),
            Self::Parse {
                path,
                expected,
                found,
            } => write!(
                f,
                "{} holds \"{found}\", expected {expected}",
                path.display()
            ),
            Self::NoVmbus { path } => write!(
                f,
                "no VMBus in this system ({} is missing): the agent runs in a Hyper-V guest whose kernel has CONFIG_HYPERV_VMBUS",
                path.display()
            ),
            Self::NoSuchChannel {
                interface_type,
                interface_instance,
                other_instances,
            } => {
                write!(
                    f,
                    "no VMBus channel with interface type {:?} and instance {:?}: is the host's driver session open?",
                    GuidText(*interface_type),
                    GuidText(*interface_instance)
                )?;
                if !other_instances.is_empty() {
                    f.write_str(" (channels of this type here have instances")?;
                    for instance in other_instances {
                        write!(f, " {:?}", GuidText(*instance))?;
                    }
                    f.write_str(")")?;
                }
                Ok(())
            }
            Self::NoChannelOfType { interface_type } => write!(
                f,
                "no VMBus device offers vmbmmio's interface type {:?}: is the host driver's \
                 channel offered to this VM (and the interface type the host's)?",
                GuidText(*interface_type)
            ),
            Self::SeveralChannels {
                interface_type,
                instances,
            } => {
                write!(
                    f,
                    "{} VMBus channels of interface type {:?} are offered; choose one by its \
                     instance:",
                    instances.len(),
                    GuidText(*interface_type)
                )?;
                for instance in instances {
                    write!(f, " {:?}", GuidText(*instance))?;
                }
                Ok(())
            }
            Self::DuplicateChannel {
                interface_instance,
                first,
                second,
            } => write!(
                f,
                "VMBus devices {first} and {second} both carry instance {:?}; refusing to guess",
                GuidText(*interface_instance)
            ),
            Self::ModuleMissing { path } => write!(
                f,
                "uio_hv_generic is not loaded ({} is missing): load it: modprobe uio_hv_generic (CONFIG_UIO_HV_GENERIC)",
                path.display()
            ),
            Self::BoundElsewhere {
                device,
                driver,
                unbind,
            } => write!(
                f,
                "VMBus device {device} is bound to driver {driver}, not uio_hv_generic: unbind it first: echo -n {device} > {}",
                unbind.display()
            ),
            Self::BindRefused {
                path,
                device,
                source,
            } => {
                write!(
                    f,
                    "binding {device} to uio_hv_generic ({}): {source}",
                    path.display()
                )?;
                match source.raw_os_error() {
                    Some(EBUSY) => f.write_str(": another driver took the device meanwhile"),
                    Some(ENODEV) => f.write_str(
                        ": the kernel does not match the device to uio_hv_generic (new_id not accepted?) or the device is gone",
                    ),
                    _ => f.write_str(": the kernel log (dmesg) has uio_hv_generic's reason"),
                }
            }
            Self::BindDidNotTake { device, driver } => match driver {
                Some(driver) => write!(
                    f,
                    "VMBus device {device} is bound to {driver} after binding it to uio_hv_generic; see dmesg"
                ),
                None => write!(
                    f,
                    "VMBus device {device} is bound to no driver after binding it to uio_hv_generic; see dmesg"
                ),
            },
            Self::NoUioNode { path } => write!(
                f,
                "the channel is bound to uio_hv_generic but {} has no uioN node",
                path.display()
            ),
            Self::MultipleUioNodes { path } => write!(
                f,
                "{} has more than one uioN node; refusing to guess",
                path.display()
            ),
            Self::NoRingMap { path } => write!(
                f,
                "{} is not uio_hv_generic's ring-buffer map (name txrx_rings, non-zero size)",
                path.display()
            ),
            Self::NoPci { path } => write!(
                f,
                "no PCI bus in this system ({} is missing): the paired function arrives on Hyper-V's virtual PCI bus (CONFIG_PCI_HYPERV)",
                path.display()
            ),
            Self::ConfigRestricted { path, len } => write!(
                f,
                "{} returned only {len} bytes, the standard header an unprivileged reader gets: run as root to read the capabilities",
                path.display()
            ),
            Self::MalformedPairing { path, error } => write!(
                f,
                "{} carries a malformed vmbmmio pairing capability or capability list: {error:?}",
                path.display()
            ),
            Self::NoPairedFunction {
                interface_instance,
                other_pairings,
            } => {
                write!(
                    f,
                    "no PCI function carries a pairing capability for channel instance {:?}: is the device host running and its device added to the VM? (the guest needs CONFIG_PCI_HYPERV)",
                    GuidText(*interface_instance)
                )?;
                for (function, instance) in other_pairings {
                    write!(f, "; {function} pairs with {:?}", GuidText(*instance))?;
                }
                Ok(())
            }
            Self::DuplicatePairing {
                interface_instance,
                first,
                second,
            } => write!(
                f,
                "PCI functions {first} and {second} both pair with instance {:?}; refusing to guess",
                GuidText(*interface_instance)
            ),
            Self::BadBar { path, bar, problem } => write!(
                f,
                "BAR {bar} in {} cannot hold vmbmmio's shared memory: {problem}",
                path.display()
            ),
            Self::DecodeRefused { path, driver } => match driver {
                Some(driver) => write!(
                    f,
                    "{}: the kernel refuses (EBUSY) because driver {driver} owns the function; unbind it first",
                    path.display()
                ),
                None => write!(
                    f,
                    "{}: the kernel refuses (EBUSY) because a driver owns the function; unbind it first",
                    path.display()
                ),
            },
            Self::DecodeDidNotTake { path } => write!(
                f,
                "{} still reads 0 after writing 1; see dmesg",
                path.display()
            ),
        }
    }
}

impl std::error::Error for DiscoverError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. }
            | Self::NotPermitted { source, .. }
            | Self::BindRefused { source, .. } => Some(source),
            _ => None,
        }
    }
}
