//! The command line (clap). Every value is taken as text and validated together with the
//! config file by `config::validate`, so that all problems are reported at once, each naming
//! its field.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Emulates the vmbmmio PCI device for one Hyper-V VM with HDV and maps the vmbmmio driver's
/// shared-memory sections into its BAR.
///
/// Run it elevated on the Hyper-V host, after the VM was created with the FlexibleIov entry it
/// prints and before the VM starts; stop it with Ctrl-C. Command-line values override the
/// config file. `vmbmmio-devhost probe` checks a host instead (docs/probe.md).
#[derive(Parser, Debug, Default, Clone, PartialEq, Eq)]
#[command(
    name = "vmbmmio-devhost",
    version,
    args_conflicts_with_subcommands = true
)]
pub struct CliArgs {
    /// A subcommand; without one the device host serves a VM.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// TOML config file with the same settings (keys: the long option names with '_').
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Compute-system id (GUID) of the VM to serve.
    #[arg(long, value_name = "GUID")]
    pub vm_id: Option<String>,
    /// A shared region: its name (1-32 bytes of UTF-8, no ':' or control characters, unique),
    /// its size (bytes, or with K/KiB, M/MiB, G/GiB; rounded up to whole 4 KiB pages) and who
    /// may write it: rw (the guest and host consumers; the default), guest-ro (the guest only
    /// reads, host consumers write) or host-ro (the guest writes, host consumers only read).
    /// Repeat for more regions, at most 16, in BAR order. Not with --region-size.
    #[arg(long = "region", value_name = "NAME:SIZE[:ACCESS]")]
    pub regions: Vec<String>,
    /// Shorthand for unnamed regions: their sizes alone (repeat or separate with commas, at
    /// most 16); they are named region0, region1, ... and are rw. Not with --region.
    #[arg(long = "region-size", value_name = "SIZE", value_delimiter = ',')]
    pub region_sizes: Vec<String>,
    /// PCI vendor ID of the emulated device (required; 0x0001..0xFFFE).
    #[arg(long, value_name = "ID")]
    pub vendor_id: Option<String>,
    /// PCI device ID of the emulated device (required).
    #[arg(long, value_name = "ID")]
    pub device_id: Option<String>,
    /// PCI subsystem vendor ID [default: the vendor ID].
    #[arg(long, value_name = "ID")]
    pub subsystem_vendor_id: Option<String>,
    /// PCI subsystem ID [default: the device ID].
    #[arg(long, value_name = "ID")]
    pub subsystem_id: Option<String>,
    /// PCI revision ID [default: 1].
    #[arg(long, value_name = "ID")]
    pub revision_id: Option<String>,
    /// 24-bit PCI class code: base class, sub-class, programming interface [default: 0x050000,
    /// memory controller / RAM].
    #[arg(long, value_name = "CODE")]
    pub class_code: Option<String>,
    /// Emulator class GUID: the `EmulatorId` of the VM's FlexibleIov entry [default: the
    /// vmbmmio emulator class].
    #[arg(long, value_name = "GUID")]
    pub emulator_class_id: Option<String>,
    /// Device instance GUID: the key of the VM's FlexibleIov entry [default: the vmbmmio
    /// default instance].
    #[arg(long, value_name = "GUID")]
    pub instance_id: Option<String>,
    /// Index of the 64-bit BAR's low half: 0, 2 or 4 [default: 2].
    #[arg(long, value_name = "INDEX")]
    pub bar_index: Option<String>,
    /// Attempts to map a region while HDV answers ERROR_INVALID_STATE [default: 20000].
    #[arg(long, value_name = "COUNT")]
    pub map_retry_attempts: Option<String>,
    /// Milliseconds between mapping attempts [default: 1].
    #[arg(long, value_name = "MS")]
    pub map_retry_interval_ms: Option<String>,
    /// Seconds to wait for the VM to start; 0 waits until Ctrl-C [default: 0].
    #[arg(long, value_name = "SECONDS")]
    pub start_timeout_secs: Option<String>,
    /// Treat a refused section-backed mapping as fatal instead of serving the region through
    /// intercepted MMIO.
    #[arg(long)]
    pub no_intercept_fallback: bool,
    /// Run without the vmbmmio driver: create the sections in this process (for testing HDV).
    /// Not to be confused with --offer-loopback.
    #[arg(long)]
    pub loopback: bool,
    /// Driver session target: a VMBus handle value (decimal or 0x hex), valid in this process,
    /// selecting the VM the driver offers the channel to. One of --vmbus-handle and
    /// --offer-loopback is required unless --loopback.
    #[arg(long, value_name = "VALUE")]
    pub vmbus_handle: Option<String>,
    /// Driver session target: ask the driver for a loopback offer (the channel is offered back
    /// to the host, for host-local testing) instead of a VM's VMBus handle.
    #[arg(long)]
    pub offer_loopback: bool,
    /// Interface type GUID of the driver's channel offer [default:
    /// 9d0ee607-90ef-4c63-8f88-a81dcbc7ca83].
    #[arg(long, value_name = "GUID")]
    pub interface_type: Option<String>,
    /// Interface instance GUID of the driver's channel offer [default:
    /// db36f587-469a-4cf2-b817-03b5aedbde58].
    #[arg(long, value_name = "GUID")]
    pub interface_instance: Option<String>,
}

/// The subcommands.
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Read-only field probes of this Hyper-V host (and a VM): one JSON report plus a summary.
    Probe(ProbeArgs),
}

/// `vmbmmio-devhost probe`: the field probes (docs/probe.md).
///
/// Without options only the host is read: Windows build, Hyper-V role, KMDF version, test
/// signing, Driver Verifier, and vmbkmclr.sys's exports against the KMCL entry points the
/// driver resolves. --vm adds the VM checks, --mapping the section-backed mapping check,
/// --experimental the vdev IOCTLs. Writes probe-report.json and probe-summary.txt.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
#[command(after_long_help = crate::probe::checks::long_help())]
pub struct ProbeArgs {
    /// Adds the VM checks for this VM (its name or its compute-system id): its state, its
    /// worker process's protection, a second open of its VMBus vdev path. Read-only.
    #[arg(long, value_name = "NAME-OR-GUID")]
    pub vm: Option<String>,
    /// Adds the section-backed mapping check with this device-host config (the VM must
    /// declare the paired device). CHANGES THE VM: attaches a device host to it and pauses and
    /// resumes it around the mapping, as vmbmmio-devhost does.
    #[arg(long, value_name = "CONFIG.toml")]
    pub mapping: Option<PathBuf>,
    /// With --vm: also sends VDEV_SETUP and VDEV_WAIT_FOR_CONNECT on the second vdev handle.
    /// THIS CAN DISTURB THE VM'S VMBUS: use a throw-away VM. Without it no IOCTL is sent.
    #[arg(long)]
    pub experimental: bool,
    /// Directory for probe-report.json and probe-summary.txt (created if missing)
    /// [default: the current directory].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Also print the report (JSON) on stdout; the summary then goes to stderr.
    #[arg(long)]
    pub json: bool,
    /// With --mapping: how long to watch for a guest access of the mapped region, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub guest_wait_secs: u64,
}
