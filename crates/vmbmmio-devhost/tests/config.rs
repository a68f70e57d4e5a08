//! Configuration: command line, config file, precedence, and one clear error per bad input.

use std::time::Duration;

use clap::Parser;
use vmbmmio_devhost::config::{
    CliArgs, ConfigError, DEFAULT_EMULATOR_CLASS_ID, DEFAULT_INSTANCE_ID, Field, Problem,
    RawSettings, Source, load,
};
use vmbmmio_devhost::guid::Guid;

const VM: &str = "62cdfa57-7648-44f3-b164-98e2da991ec5";

fn cli(args: &[&str]) -> CliArgs {
    CliArgs::try_parse_from(std::iter::once("vmbmmio-devhost").chain(args.iter().copied()))
        .expect("clap accepts the arguments")
}

fn minimal() -> Vec<&'static str> {
    vec![
        "--vm-id",
        VM,
        "--region-size",
        "64KiB",
        "--vendor-id",
        "0x1af4",
        "--device-id",
        "0x1110",
    ]
}

fn errors(args: &[&str]) -> Vec<ConfigError> {
    load(&cli(args)).unwrap_err().0
}

/// The minimal arguments plus `extra`; a single-valued flag in `extra` replaces the minimal
/// one (clap refuses a repeated single-valued flag), `--region-size` adds regions.
fn with(extra: &[&'static str]) -> Vec<&'static str> {
    let mut args: Vec<&'static str> = Vec::new();
    for pair in minimal().chunks(2) {
        if pair[0] == "--region-size" || !extra.contains(&pair[0]) {
            args.extend_from_slice(pair);
        }
    }
    args.extend_from_slice(extra);
    args
}

#[test]
fn minimal_command_line_gets_the_documented_defaults() {
    let config = load(&cli(&minimal())).unwrap();
    assert_eq!(config.vm_id, VM.parse::<Guid>().unwrap());
    assert_eq!(config.region_sizes(), [64 << 10]);
    assert_eq!(config.pnp_id.vendor_id, 0x1af4);
    assert_eq!(config.pnp_id.subsystem_vendor_id, 0x1af4);
    assert_eq!(config.pnp_id.subsystem_id, 0x1110);
    assert_eq!(config.pnp_id.revision_id, 1);
    assert_eq!(
        (
            config.pnp_id.base_class,
            config.pnp_id.sub_class,
            config.pnp_id.prog_if
        ),
        (5, 0, 0)
    );
    assert_eq!(config.emulator_class_id, DEFAULT_EMULATOR_CLASS_ID);
    assert_eq!(config.instance_id, DEFAULT_INSTANCE_ID);
    assert_eq!(config.bar_index, 2);
    assert_eq!(config.map_retry.max_attempts, 20_000);
    assert_eq!(config.map_retry.interval, Duration::from_millis(1));
    assert_eq!(config.start_timeout, None);
    assert!(config.intercept_fallback);
    assert!(!config.loopback);
}

#[test]
fn every_setting_can_be_given_on_the_command_line() {
    let config = load(&cli(&with(&[
        "--region-size",
        "5000,1M",
        "--subsystem-vendor-id",
        "0x1234",
        "--subsystem-id",
        "7",
        "--revision-id",
        "0x10",
        "--class-code",
        "0x0B4001",
        "--emulator-class-id",
        "{01234567-89AB-CDEF-0123-456789ABCDEF}",
        "--instance-id",
        "fedcba98-7654-3210-fedc-ba9876543210",
        "--bar-index",
        "4",
        "--map-retry-attempts",
        "3",
        "--map-retry-interval-ms",
        "25",
        "--start-timeout-secs",
        "90",
        "--no-intercept-fallback",
        "--loopback",
    ])))
    .unwrap();
    // Repeated and comma-separated sizes accumulate; 5000 is rounded up to two pages.
    assert_eq!(config.requested_region_sizes(), [64 << 10, 5000, 1 << 20]);
    assert_eq!(config.region_sizes(), [64 << 10, 8192, 1 << 20]);
    assert_eq!(
        (
            config.pnp_id.subsystem_vendor_id,
            config.pnp_id.subsystem_id
        ),
        (0x1234, 7)
    );
    assert_eq!(config.pnp_id.revision_id, 0x10);
    assert_eq!(
        (
            config.pnp_id.base_class,
            config.pnp_id.sub_class,
            config.pnp_id.prog_if
        ),
        (0x0B, 0x40, 0x01)
    );
    assert_eq!(
        config.emulator_class_id.to_string(),
        "01234567-89ab-cdef-0123-456789abcdef"
    );
    assert_eq!(
        config.instance_id.to_string(),
        "fedcba98-7654-3210-fedc-ba9876543210"
    );
    assert_eq!(config.bar_index, 4);
    assert_eq!(config.map_retry.max_attempts, 3);
    assert_eq!(config.map_retry.interval, Duration::from_millis(25));
    assert_eq!(config.start_timeout, Some(Duration::from_secs(90)));
    assert!(!config.intercept_fallback);
    assert!(config.loopback);
}

#[test]
fn missing_required_settings_are_all_reported() {
    let found = errors(&[]);
    let fields: Vec<Field> = found.iter().map(|error| error.field).collect();
    assert_eq!(
        fields,
        [
            Field::VmId,
            Field::Regions,
            Field::VendorId,
            Field::DeviceId
        ]
    );
    assert!(found.iter().all(|error| error.problem == Problem::Missing));
    assert_eq!(
        found[0].to_string(),
        "vm_id: required (pass --vm-id or set vm_id in the config file)"
    );
}

#[test]
fn each_bad_value_names_its_field_flag_and_text() {
    let cases: &[(&[&str], Field, &str)] = &[
        (
            &["--vm-id", "not-a-guid"],
            Field::VmId,
            "vm_id (from --vm-id): \"not-a-guid\" is not a GUID",
        ),
        (
            &["--emulator-class-id", "1234"],
            Field::EmulatorClassId,
            "--emulator-class-id",
        ),
        (
            &["--instance-id", "{62cdfa57-7648-44f3-b164-98e2da991ec5"],
            Field::InstanceId,
            "not a GUID",
        ),
        (
            &["--vendor-id", "0xFFFF"],
            Field::VendorId,
            "\"0xFFFF\" is out of range (0x1 to 0xfffe)",
        ),
        (&["--vendor-id", "0"], Field::VendorId, "out of range"),
        (&["--device-id", "0x10000"], Field::DeviceId, "out of range"),
        (
            &["--subsystem-id", "abc"],
            Field::SubsystemId,
            "\"abc\" is not a number",
        ),
        (&["--revision-id", "256"], Field::RevisionId, "out of range"),
        (
            &["--class-code", "0x1000000"],
            Field::ClassCode,
            "out of range",
        ),
        (&["--bar-index", "1"], Field::BarIndex, "use 0, 2 or 4"),
        (&["--bar-index", "6"], Field::BarIndex, "use 0, 2 or 4"),
        (
            &["--map-retry-attempts", "0"],
            Field::MapRetryAttempts,
            "out of range",
        ),
        (
            &["--map-retry-interval-ms", "60001"],
            Field::MapRetryIntervalMs,
            "out of range",
        ),
        (
            &["--start-timeout-secs=-1"],
            Field::StartTimeoutSecs,
            "not a number",
        ),
        (
            &["--region-size", "0"],
            Field::RegionSizes,
            "region 1: size \"0\" is zero",
        ),
        (
            &["--region-size", "12 parsecs"],
            Field::RegionSizes,
            "region 1: \"12 parsecs\" is not a size",
        ),
        (
            &["--region-size", "32G"],
            Field::RegionSizes,
            "do not fit one BAR",
        ),
    ];
    for (extra, field, text) in cases {
        let found = errors(&with(extra));
        assert_eq!(found.len(), 1, "{extra:?}: {found:?}");
        assert_eq!(found[0].field, *field, "{extra:?}");
        assert_eq!(found[0].source, Source::CommandLine, "{extra:?}");
        let message = found[0].to_string();
        assert!(message.contains(text), "{extra:?}: {message}");
        assert!(message.starts_with(field.key()), "{message}");
    }
}

#[test]
fn too_many_regions_are_refused() {
    let sizes = vec!["4K"; 17].join(",");
    let mut args = minimal();
    args.truncate(2);
    args.extend_from_slice(&["--vendor-id", "1", "--device-id", "1", "--region-size"]);
    args.push(&sizes);
    let found = errors(&args);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].field, Field::RegionSizes);
    assert!(
        found[0].to_string().contains("17 regions; at most 16"),
        "{}",
        found[0]
    );
}

#[test]
fn several_problems_are_reported_together() {
    let found = errors(&[
        "--vm-id",
        "x",
        "--region-size",
        "0",
        "--vendor-id",
        "1",
        "--device-id",
        "1",
        "--bar-index",
        "3",
    ]);
    let fields: Vec<Field> = found.iter().map(|error| error.field).collect();
    assert_eq!(fields, [Field::VmId, Field::RegionSizes, Field::BarIndex]);
}

const FILE: &str = r#"
vm_id = "62cdfa57-7648-44f3-b164-98e2da991ec5"
region_sizes = ["32MiB", 4096]
vendor_id = 0x1af4
device_id = "0x1110"
bar_index = 0
intercept_fallback = false
"#;

#[test]
fn the_config_file_works_and_the_command_line_overrides_it() {
    let file = RawSettings::from_file_text(FILE).unwrap();
    let config = file.clone().validate().unwrap();
    assert_eq!(config.region_sizes(), [32 << 20, 4096]);
    assert_eq!(config.bar_index, 0);
    assert!(!config.intercept_fallback);

    let overrides = RawSettings::from_cli(&cli(&["--bar-index", "4", "--region-size", "8K"]));
    let config = file.overridden_by(overrides).validate().unwrap();
    assert_eq!(config.bar_index, 4);
    assert_eq!(config.region_sizes(), [8192]);
    assert_eq!(config.pnp_id.vendor_id, 0x1af4);
}

#[test]
fn every_unknown_key_and_wrong_type_in_the_file_is_reported() {
    let text = format!("{FILE}\nvendor = 1\nbar_idx = 2\nloopback = \"yes\"\ndevice_id = 1.5\n")
        .replace("device_id = \"0x1110\"\n", "");
    let found = RawSettings::from_file_text(&text)
        .unwrap()
        .validate()
        .unwrap_err()
        .0;
    let messages: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert_eq!(found.len(), 4, "{messages:#?}");
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("config file: unknown key \"vendor\""))
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("config file: unknown key \"bar_idx\""))
    );
    assert!(messages.contains(
        &"loopback (from the config file): expected a boolean, found string".to_string()
    ));
    assert!(
        messages.contains(
            &"device_id (from the config file): expected an integer or a string, found float"
                .to_string()
        )
    );
    // A wrong-typed required key is not also reported as missing.
    assert!(
        !found
            .iter()
            .any(|e| e.field == Field::DeviceId && e.problem == Problem::Missing)
    );
}

#[test]
fn a_file_syntax_error_gives_its_position() {
    let found = RawSettings::from_file_text("vm_id = \n").unwrap_err().0;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].field, Field::ConfigFile);
    assert!(found[0].to_string().contains("line 1"), "{}", found[0]);
}

#[test]
fn a_missing_config_file_is_an_error_naming_it() {
    let found = errors(&["--config", "/nonexistent/devhost.toml"]);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].field, Field::ConfigFile);
    assert!(found[0].to_string().contains("/nonexistent/devhost.toml"));
}

#[test]
fn a_config_file_on_disk_is_read() {
    let path =
        std::env::temp_dir().join(format!("vmbmmio-devhost-test-{}.toml", std::process::id()));
    std::fs::write(&path, FILE).unwrap();
    let config = load(&cli(&["--config", path.to_str().unwrap(), "--loopback"]));
    std::fs::remove_file(&path).unwrap();
    let config = config.unwrap();
    assert!(config.loopback);
    assert_eq!(config.region_sizes().len(), 2);
}

#[test]
fn clap_itself_rejects_unknown_flags() {
    assert!(CliArgs::try_parse_from(["vmbmmio-devhost", "--vm", VM]).is_err());
}
