//! The device host's configuration: command line plus an optional TOML file, validated into a
//! [`DeviceHostConfig`].
//!
//! Rules (docs/devhost.md repeats them for operators):
//! - Command-line values override the file; booleans can be switched on by a flag or set
//!   either way in the file.
//! - Every problem is reported, not just the first: each error names the setting (file key and
//!   command-line flag), where the value came from and the offending text.
//! - Regions: 1 to 16, each with a name (unique, the driver's name rules), a non-zero size and
//!   an access mode (`--region NAME:SIZE[:ACCESS]`, `[[region]]` tables), or the shorthand of
//!   sizes alone (`--region-size`, `region_sizes`: named `region0`, `region1`, ..., `rw`); not
//!   both forms (module `regions`). A size that is not a multiple of 4 KiB is rounded up to
//!   whole pages (the driver rounds the same way, and HDV maps whole pages only, hdv.md §3.3),
//!   and the rounded size is what the device host asks the driver for. The packed layout must
//!   fit the driver's 32 GiB BAR limit.
//! - The 64-bit BAR takes two BAR slots, so its index is 0, 2 or 4 (hdv.md §3.7).
//! - Vendor and device IDs have no default: the project has no PCI vendor ID of its own and a
//!   default would silently claim someone else's.
//! - The driver session's target is either a VMBus handle (`--vmbus-handle`) or the driver's
//!   loopback offer (`--offer-loopback`), never both, and neither goes with `--loopback` (which
//!   runs without the driver). Validation accepts a configuration without a target, so a
//!   library user or a test can build one; running against the driver requires one
//!   ([`DeviceHostConfig::driver_session`]), and the binary checks that on every OS.

mod cli;
mod file;
mod regions;
mod values;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

pub use cli::{CliArgs, Command, ProbeArgs};
pub use regions::RegionConfig;

use crate::callbacks::PciPnpId;
use crate::clock::RetryPolicy;
use crate::driver::{RegionIdentity, SessionRequest};
pub use crate::driver_ioctl::{DEFAULT_INTERFACE_INSTANCE, DEFAULT_INTERFACE_TYPE};
use crate::driver_ioctl::{DriverSessionSettings, DriverTarget};
use crate::guid::Guid;

/// Default emulator class GUID: the `EmulatorId` identifying vmbmmio's emulator.
pub const DEFAULT_EMULATOR_CLASS_ID: Guid = Guid::from_u128(0x9bdff1a3_9ee9_41b5_96ee_5187a86b81fe);
/// Default device instance GUID: the `FlexibleIov` key when the operator names none.
pub const DEFAULT_INSTANCE_ID: Guid = Guid::from_u128(0xa298f338_8137_4c56_953b_aa2aa5e4f4ee);
/// Default BAR index (the low half; the high half is the next index).
pub const DEFAULT_BAR_INDEX: u8 = 2;
/// Default revision ID.
pub const DEFAULT_REVISION_ID: u8 = 1;
/// Default class code: base class 0x05 (memory controller), sub-class 0x00 (RAM), prog-if 0.
pub const DEFAULT_CLASS_CODE: u32 = 0x05_00_00;
/// Default attempts while HDV refuses the mapping with ERROR_INVALID_STATE: with the default
/// 1 ms interval about 20 s, the bound of the one public test (hdv.md §6.4 step 7).
pub const DEFAULT_MAP_RETRY_ATTEMPTS: u32 = 20_000;
/// Default wait between mapping attempts (hdv.md §6.4 step 7 retried every 1 ms).
pub const DEFAULT_MAP_RETRY_INTERVAL_MS: u32 = 1;

/// A validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceHostConfig {
    /// Compute-system id of the VM.
    pub vm_id: Guid,
    /// The regions, in BAR order (1..=16; names unique).
    pub regions: Vec<RegionConfig>,
    /// The PCI identity.
    pub pnp_id: PciPnpId,
    /// Emulator class GUID (`EmulatorId`).
    pub emulator_class_id: Guid,
    /// Device instance GUID (the `FlexibleIov` key).
    pub instance_id: Guid,
    /// Index of the BAR's low half (0, 2 or 4).
    pub bar_index: u8,
    /// Retry policy while HDV answers ERROR_INVALID_STATE.
    pub map_retry: RetryPolicy,
    /// How long to wait for the VM to start; `None` waits until stopped.
    pub start_timeout: Option<Duration>,
    /// Serve a region through intercepted MMIO when its mapping is refused.
    pub intercept_fallback: bool,
    /// Run without the driver, with sections this process creates.
    pub loopback: bool,
    /// Where the driver offers the channel (`--vmbus-handle` / `--offer-loopback`); `None`
    /// when neither was given.
    pub driver_target: Option<DriverTarget>,
    /// Interface type GUID of the driver's channel offer.
    pub interface_type: Guid,
    /// Interface instance GUID of the driver's channel offer.
    pub interface_instance: Guid,
}

impl DeviceHostConfig {
    /// Region sizes in bytes, rounded up to whole pages, in order.
    pub fn region_sizes(&self) -> Vec<u64> {
        self.regions.iter().map(|region| region.size).collect()
    }

    /// Region sizes as given, in order.
    pub fn requested_region_sizes(&self) -> Vec<u64> {
        self.regions
            .iter()
            .map(|region| region.requested_size)
            .collect()
    }

    /// The regions' names and access modes, in order.
    pub fn region_identities(&self) -> Vec<RegionIdentity> {
        self.regions.iter().map(RegionConfig::identity).collect()
    }

    /// What the device host asks the driver for: this VM, these regions (rounded sizes).
    pub fn session_request(&self) -> SessionRequest {
        SessionRequest {
            target: self.vm_id,
            region_sizes: self.region_sizes(),
            regions: self.region_identities(),
        }
    }

    /// The driver session settings, or an error naming the missing target. `guest_writable`
    /// is `true`: each region's own access mode decides (module `regions`); `false` is a test
    /// knob that takes guest write access from every region.
    pub fn driver_session(&self) -> Result<DriverSessionSettings, ConfigErrors> {
        let Some(target) = self.driver_target else {
            return Err(ConfigErrors(vec![ConfigError {
                field: Field::VmbusHandle,
                source: Source::Missing,
                problem: Problem::Invalid(
                    "the driver session needs a target: --vmbus-handle <value> (a VMBus handle \
                     valid in this process) or --offer-loopback (the driver's loopback offer); \
                     or run without the driver with --loopback"
                        .to_string(),
                ),
            }]));
        };
        Ok(DriverSessionSettings {
            target,
            interface_type: self.interface_type,
            interface_instance: self.interface_instance,
            guest_writable: true,
        })
    }
}

/// A configuration setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    /// `--config`.
    ConfigFile,
    /// `vm_id`.
    VmId,
    /// `region` (`[[region]]` tables; `--region`).
    Regions,
    /// `region_sizes`.
    RegionSizes,
    /// `vendor_id`.
    VendorId,
    /// `device_id`.
    DeviceId,
    /// `subsystem_vendor_id`.
    SubsystemVendorId,
    /// `subsystem_id`.
    SubsystemId,
    /// `revision_id`.
    RevisionId,
    /// `class_code`.
    ClassCode,
    /// `emulator_class_id`.
    EmulatorClassId,
    /// `instance_id`.
    InstanceId,
    /// `bar_index`.
    BarIndex,
    /// `map_retry_attempts`.
    MapRetryAttempts,
    /// `map_retry_interval_ms`.
    MapRetryIntervalMs,
    /// `start_timeout_secs`.
    StartTimeoutSecs,
    /// `intercept_fallback`.
    InterceptFallback,
    /// `loopback`.
    Loopback,
    /// `vmbus_handle`.
    VmbusHandle,
    /// `offer_loopback`.
    OfferLoopback,
    /// `interface_type`.
    InterfaceType,
    /// `interface_instance`.
    InterfaceInstance,
}

impl Field {
    const SETTINGS: [Self; 21] = [
        Self::VmId,
        Self::Regions,
        Self::RegionSizes,
        Self::VendorId,
        Self::DeviceId,
        Self::SubsystemVendorId,
        Self::SubsystemId,
        Self::RevisionId,
        Self::ClassCode,
        Self::EmulatorClassId,
        Self::InstanceId,
        Self::BarIndex,
        Self::MapRetryAttempts,
        Self::MapRetryIntervalMs,
        Self::StartTimeoutSecs,
        Self::InterceptFallback,
        Self::Loopback,
        Self::VmbusHandle,
        Self::OfferLoopback,
        Self::InterfaceType,
        Self::InterfaceInstance,
    ];

    /// The config-file key.
    pub const fn key(self) -> &'static str {
        match self {
            Self::ConfigFile => "config",
            Self::VmId => "vm_id",
            Self::Regions => "region",
            Self::RegionSizes => "region_sizes",
            Self::VendorId => "vendor_id",
            Self::DeviceId => "device_id",
            Self::SubsystemVendorId => "subsystem_vendor_id",
            Self::SubsystemId => "subsystem_id",
            Self::RevisionId => "revision_id",
            Self::ClassCode => "class_code",
            Self::EmulatorClassId => "emulator_class_id",
            Self::InstanceId => "instance_id",
            Self::BarIndex => "bar_index",
            Self::MapRetryAttempts => "map_retry_attempts",
            Self::MapRetryIntervalMs => "map_retry_interval_ms",
            Self::StartTimeoutSecs => "start_timeout_secs",
            Self::InterceptFallback => "intercept_fallback",
            Self::Loopback => "loopback",
            Self::VmbusHandle => "vmbus_handle",
            Self::OfferLoopback => "offer_loopback",
            Self::InterfaceType => "interface_type",
            Self::InterfaceInstance => "interface_instance",
        }
    }

    /// The command-line flag.
    pub const fn flag(self) -> &'static str {
        match self {
            Self::ConfigFile => "--config",
            Self::VmId => "--vm-id",
            Self::Regions => "--region",
            Self::RegionSizes => "--region-size",
            Self::VendorId => "--vendor-id",
            Self::DeviceId => "--device-id",
            Self::SubsystemVendorId => "--subsystem-vendor-id",
            Self::SubsystemId => "--subsystem-id",
            Self::RevisionId => "--revision-id",
            Self::ClassCode => "--class-code",
            Self::EmulatorClassId => "--emulator-class-id",
            Self::InstanceId => "--instance-id",
            Self::BarIndex => "--bar-index",
            Self::MapRetryAttempts => "--map-retry-attempts",
            Self::MapRetryIntervalMs => "--map-retry-interval-ms",
            Self::StartTimeoutSecs => "--start-timeout-secs",
            Self::InterceptFallback => "--no-intercept-fallback",
            Self::Loopback => "--loopback",
            Self::VmbusHandle => "--vmbus-handle",
            Self::OfferLoopback => "--offer-loopback",
            Self::InterfaceType => "--interface-type",
            Self::InterfaceInstance => "--interface-instance",
        }
    }

    fn from_key(key: &str) -> Option<Self> {
        Self::SETTINGS.into_iter().find(|field| field.key() == key)
    }

    fn expected_type(self) -> &'static str {
        match self {
            Self::InterceptFallback | Self::Loopback | Self::OfferLoopback => "a boolean",
            Self::RegionSizes => "an array of sizes (strings or integers)",
            Self::Regions => "an array of tables ([[region]] with name, size, access)",
            Self::VmId
            | Self::EmulatorClassId
            | Self::InstanceId
            | Self::InterfaceType
            | Self::InterfaceInstance => "a GUID string",
            _ => "an integer or a string",
        }
    }
}

/// Where a value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The command line.
    CommandLine,
    /// The config file.
    ConfigFile,
    /// Nowhere: a required setting is missing.
    Missing,
}

/// What is wrong with a setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// A required setting is missing.
    Missing,
    /// The value does not parse or is out of range (the text says why, quoting the value).
    Invalid(String),
    /// The config file has a key the device host does not know.
    UnknownKey(String),
    /// A config-file value has the wrong TOML type.
    WrongType {
        /// What the key needs.
        expected: &'static str,
        /// The TOML type found.
        found: &'static str,
    },
    /// The config file cannot be read or parsed.
    Syntax(String),
}

/// One problem with one setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The setting.
    pub field: Field,
    /// Where its value came from.
    pub source: Source,
    /// What is wrong.
    pub problem: Problem,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (key, flag) = (self.field.key(), self.field.flag());
        let origin = match self.source {
            Source::CommandLine => format!("from {flag}"),
            Source::ConfigFile => "from the config file".to_string(),
            Source::Missing if self.field == Field::Regions => "pass --region \
                 NAME:SIZE[:ACCESS] or set [[region]] tables in the config file (or the sizes \
                 shorthand --region-size / region_sizes)"
                .to_string(),
            Source::Missing => format!("pass {flag} or set {key} in the config file"),
        };
        match &self.problem {
            Problem::Missing => write!(f, "{key}: required ({origin})"),
            Problem::Invalid(why) => write!(f, "{key} ({origin}): {why}"),
            Problem::UnknownKey(unknown) => write!(
                f,
                "config file: unknown key {unknown:?}; known keys: {}",
                Field::SETTINGS.map(Field::key).join(", ")
            ),
            Problem::WrongType { expected, found } => {
                write!(f, "{key} ({origin}): expected {expected}, found {found}")
            }
            Problem::Syntax(why) => write!(f, "config file: {why}"),
        }
    }
}

/// Every problem found, in a stable order (settings order, then file problems).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration ({} problem(s)):", self.0.len())?;
        for error in &self.0 {
            writeln!(f, "  - {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A setting's value before validation.
#[derive(Clone, Debug, PartialEq, Eq)]
enum RawValue {
    Text(String),
    Flag(bool),
    List(Vec<String>),
    Regions(Vec<regions::RawRegion>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Raw {
    source: Source,
    value: RawValue,
}

/// Settings before validation, keyed by field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawSettings {
    values: BTreeMap<Field, Raw>,
    /// Problems found while reading the config file, reported by `validate`.
    file_errors: Vec<ConfigError>,
}

impl RawSettings {
    fn set(&mut self, field: Field, raw: Raw) {
        self.values.insert(field, raw);
    }

    /// The settings given on the command line.
    pub fn from_cli(cli: &CliArgs) -> Self {
        let mut settings = Self::default();
        let texts = [
            (Field::VmId, &cli.vm_id),
            (Field::VendorId, &cli.vendor_id),
            (Field::DeviceId, &cli.device_id),
            (Field::SubsystemVendorId, &cli.subsystem_vendor_id),
            (Field::SubsystemId, &cli.subsystem_id),
            (Field::RevisionId, &cli.revision_id),
            (Field::ClassCode, &cli.class_code),
            (Field::EmulatorClassId, &cli.emulator_class_id),
            (Field::InstanceId, &cli.instance_id),
            (Field::BarIndex, &cli.bar_index),
            (Field::MapRetryAttempts, &cli.map_retry_attempts),
            (Field::MapRetryIntervalMs, &cli.map_retry_interval_ms),
            (Field::StartTimeoutSecs, &cli.start_timeout_secs),
            (Field::VmbusHandle, &cli.vmbus_handle),
            (Field::InterfaceType, &cli.interface_type),
            (Field::InterfaceInstance, &cli.interface_instance),
        ];
        for (field, text) in texts {
            if let Some(text) = text {
                let value = RawValue::Text(text.clone());
                settings.set(
                    field,
                    Raw {
                        source: Source::CommandLine,
                        value,
                    },
                );
            }
        }
        if !cli.regions.is_empty() {
            let value = RawValue::Regions(
                cli.regions
                    .iter()
                    .map(|spec| regions::from_cli(spec))
                    .collect(),
            );
            settings.set(
                Field::Regions,
                Raw {
                    source: Source::CommandLine,
                    value,
                },
            );
        }
        if !cli.region_sizes.is_empty() {
            let value = RawValue::List(cli.region_sizes.clone());
            settings.set(
                Field::RegionSizes,
                Raw {
                    source: Source::CommandLine,
                    value,
                },
            );
        }
        if cli.no_intercept_fallback {
            let value = RawValue::Flag(false);
            settings.set(
                Field::InterceptFallback,
                Raw {
                    source: Source::CommandLine,
                    value,
                },
            );
        }
        let switches = [
            (Field::Loopback, cli.loopback),
            (Field::OfferLoopback, cli.offer_loopback),
        ];
        for (field, on) in switches {
            if on {
                settings.set(
                    field,
                    Raw {
                        source: Source::CommandLine,
                        value: RawValue::Flag(true),
                    },
                );
            }
        }
        settings
    }

    /// Parses config-file text.
    pub fn from_file_text(text: &str) -> Result<Self, ConfigErrors> {
        file::parse(text).map_err(ConfigErrors)
    }

    /// `self` with every setting of `overrides` replacing its own.
    pub fn overridden_by(mut self, overrides: Self) -> Self {
        self.values.extend(overrides.values);
        self
    }

    /// Validates the settings into a configuration, or reports every problem.
    pub fn validate(&self) -> Result<DeviceHostConfig, ConfigErrors> {
        let mut v = Validator {
            settings: self,
            errors: self.file_errors.clone(),
        };
        let vm_id = v.required(Field::VmId, values::parse_guid);
        let regions = v.regions();
        let vendor_id = v.required(Field::VendorId, |t| id16(t, 0x0001, 0xFFFE));
        let device_id = v.required(Field::DeviceId, |t| id16(t, 0, 0xFFFF));
        let subsystem_vendor_id = v.optional(Field::SubsystemVendorId, |t| id16(t, 0, 0xFFFF));
        let subsystem_id = v.optional(Field::SubsystemId, |t| id16(t, 0, 0xFFFF));
        let revision_id = v.optional(Field::RevisionId, |t| {
            values::parse_bounded(t, 0, 0xFF).map(|value| value as u8)
        });
        let class_code = v.optional(Field::ClassCode, |t| {
            values::parse_bounded(t, 0, 0xFF_FFFF).map(|value| value as u32)
        });
        let emulator_class_id = v.optional(Field::EmulatorClassId, values::parse_guid);
        let instance_id = v.optional(Field::InstanceId, values::parse_guid);
        let bar_index = v.optional(Field::BarIndex, parse_bar_index);
        let attempts = v.optional(Field::MapRetryAttempts, |t| {
            values::parse_bounded(t, 1, u64::from(u32::MAX)).map(|value| value as u32)
        });
        let interval_ms = v.optional(Field::MapRetryIntervalMs, |t| {
            values::parse_bounded(t, 0, 60_000).map(|value| value as u32)
        });
        let start_timeout = v.optional(Field::StartTimeoutSecs, |t| {
            values::parse_bounded(t, 0, u64::from(u32::MAX))
        });
        let intercept_fallback = v.flag(Field::InterceptFallback, true);
        let loopback = v.flag(Field::Loopback, false);
        let vmbus_handle = v.optional(Field::VmbusHandle, parse_vmbus_handle);
        let offer_loopback = v.flag(Field::OfferLoopback, false);
        let interface_type = v.optional(Field::InterfaceType, parse_interface_guid);
        let interface_instance = v.optional(Field::InterfaceInstance, parse_interface_guid);
        let driver_target = v.driver_target(vmbus_handle, offer_loopback, loopback);

        let (
            Some(vm_id),
            Some(regions),
            Some(vendor_id),
            Some(device_id),
            Ok(subsystem_vendor_id),
            Ok(subsystem_id),
            Ok(revision_id),
            Ok(class_code),
            Ok(emulator_class_id),
            Ok(instance_id),
            Ok(bar_index),
            Ok(attempts),
            Ok(interval_ms),
            Ok(start_timeout),
            Ok(interface_type),
            Ok(interface_instance),
            Ok(driver_target),
            true,
        ) = (
            vm_id,
            regions,
            vendor_id,
            device_id,
            subsystem_vendor_id,
            subsystem_id,
            revision_id,
            class_code,
            emulator_class_id,
            instance_id,
            bar_index,
            attempts,
            interval_ms,
            start_timeout,
            interface_type,
            interface_instance,
            driver_target,
            v.errors.is_empty(),
        )
        else {
            return Err(ConfigErrors(v.errors));
        };
        let class_code = class_code.unwrap_or(DEFAULT_CLASS_CODE);
        let [prog_if, sub_class, base_class, _] = class_code.to_le_bytes();
        Ok(DeviceHostConfig {
            vm_id,
            regions,
            pnp_id: PciPnpId {
                vendor_id,
                device_id,
                revision_id: revision_id.unwrap_or(DEFAULT_REVISION_ID),
                prog_if,
                sub_class,
                base_class,
                subsystem_vendor_id: subsystem_vendor_id.unwrap_or(vendor_id),
                subsystem_id: subsystem_id.unwrap_or(device_id),
            },
            emulator_class_id: emulator_class_id.unwrap_or(DEFAULT_EMULATOR_CLASS_ID),
            instance_id: instance_id.unwrap_or(DEFAULT_INSTANCE_ID),
            bar_index: bar_index.unwrap_or(DEFAULT_BAR_INDEX),
            map_retry: RetryPolicy {
                max_attempts: attempts.unwrap_or(DEFAULT_MAP_RETRY_ATTEMPTS),
                interval: Duration::from_millis(u64::from(
                    interval_ms.unwrap_or(DEFAULT_MAP_RETRY_INTERVAL_MS),
                )),
            },
            start_timeout: start_timeout
                .filter(|&secs| secs != 0)
                .map(Duration::from_secs),
            intercept_fallback,
            loopback,
            driver_target,
            interface_type: interface_type.unwrap_or(DEFAULT_INTERFACE_TYPE),
            interface_instance: interface_instance.unwrap_or(DEFAULT_INTERFACE_INSTANCE),
        })
    }
}

fn id16(text: &str, min: u64, max: u64) -> Result<u16, String> {
    values::parse_bounded(text, min, max).map(|value| value as u16)
}

fn parse_bar_index(text: &str) -> Result<u8, String> {
    match values::parse_integer(text)? {
        index @ (0 | 2 | 4) => Ok(index as u8),
        _ => Err(format!(
            "{text:?} is not a valid index for a 64-bit BAR: use 0, 2 or 4 (it also takes the \
             next slot, and there are 6)"
        )),
    }
}

fn parse_vmbus_handle(text: &str) -> Result<u64, String> {
    match values::parse_integer(text)? {
        0 => Err(format!(
            "{text:?} is not a handle: a VMBus handle value is non-zero"
        )),
        value => Ok(value),
    }
}

fn parse_interface_guid(text: &str) -> Result<Guid, String> {
    let guid = values::parse_guid(text)?;
    if guid.to_u128() == 0 {
        return Err(format!(
            "{text:?} is the nil GUID, which the driver refuses for a channel offer"
        ));
    }
    Ok(guid)
}

struct Validator<'a> {
    settings: &'a RawSettings,
    errors: Vec<ConfigError>,
}

impl Validator<'_> {
    fn error(&mut self, field: Field, source: Source, problem: Problem) {
        self.errors.push(ConfigError {
            field,
            source,
            problem,
        });
    }

    fn source(&self, field: Field) -> Source {
        self.settings
            .values
            .get(&field)
            .map_or(Source::Missing, |raw| raw.source)
    }

    /// The driver's target from `vmbus_handle` and `offer_loopback`, checked against each
    /// other and against `loopback`. `Err(())` when a problem was reported.
    fn driver_target(
        &mut self,
        vmbus_handle: Result<Option<u64>, ()>,
        offer_loopback: bool,
        loopback: bool,
    ) -> Result<Option<DriverTarget>, ()> {
        let handle = vmbus_handle?;
        if loopback && (handle.is_some() || offer_loopback) {
            let why = "--loopback runs without the driver, so it cannot be combined with the \
                       driver session's target (vmbus_handle / offer_loopback)";
            let source = self.source(Field::Loopback);
            self.error(Field::Loopback, source, Problem::Invalid(why.to_string()));
            return Err(());
        }
        match (handle, offer_loopback) {
            (Some(_), true) => {
                let why = "the channel is offered either to the VM of vmbus_handle or back to \
                           the host (offer_loopback), not both";
                let source = self.source(Field::OfferLoopback);
                self.error(
                    Field::OfferLoopback,
                    source,
                    Problem::Invalid(why.to_string()),
                );
                Err(())
            }
            (Some(handle), false) => Ok(Some(DriverTarget::VmbusHandle(handle))),
            (None, true) => Ok(Some(DriverTarget::LoopbackOffer)),
            (None, false) => Ok(None),
        }
    }

    /// Reports a missing required setting, unless the config file had it with a bad type.
    fn missing(&mut self, field: Field) {
        if !self.errors.iter().any(|error| error.field == field) {
            self.error(field, Source::Missing, Problem::Missing);
        }
    }

    fn text(&mut self, field: Field) -> Option<(String, Source)> {
        let raw = self.settings.values.get(&field)?;
        match &raw.value {
            RawValue::Text(text) => Some((text.clone(), raw.source)),
            _ => {
                let problem = Problem::Invalid("expected a single value".to_string());
                self.error(field, raw.source, problem);
                None
            }
        }
    }

    /// `Ok(None)` when unset, `Err(())` when invalid (already reported).
    fn optional<T>(
        &mut self,
        field: Field,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ()> {
        let present = self.settings.values.contains_key(&field);
        match self.text(field) {
            None if present => Err(()),
            None => Ok(None),
            Some((text, source)) => match parse(&text) {
                Ok(value) => Ok(Some(value)),
                Err(why) => {
                    self.error(field, source, Problem::Invalid(why));
                    Err(())
                }
            },
        }
    }

    fn required<T>(
        &mut self,
        field: Field,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match self.optional(field, parse) {
            Ok(Some(value)) => Some(value),
            Ok(None) => {
                self.missing(field);
                None
            }
            Err(()) => None,
        }
    }

    fn flag(&mut self, field: Field, default: bool) -> bool {
        match self.settings.values.get(&field) {
            None => default,
            Some(Raw {
                value: RawValue::Flag(flag),
                ..
            }) => *flag,
            Some(raw) => {
                let source = raw.source;
                self.error(
                    field,
                    source,
                    Problem::Invalid("expected true or false".to_string()),
                );
                default
            }
        }
    }
}

/// Reads the configuration: the command line, over the config file it names (if any).
pub fn load(cli: &CliArgs) -> Result<DeviceHostConfig, ConfigErrors> {
    let file = match &cli.config {
        Some(path) => read_file(path)?,
        None => RawSettings::default(),
    };
    file.overridden_by(RawSettings::from_cli(cli)).validate()
}

fn read_file(path: &Path) -> Result<RawSettings, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        ConfigErrors(vec![ConfigError {
            field: Field::ConfigFile,
            source: Source::CommandLine,
            problem: Problem::Invalid(format!("cannot read {}: {error}", path.display())),
        }])
    })?;
    RawSettings::from_file_text(&text)
}
