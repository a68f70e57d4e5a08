//! The driver session's settings: target (VMBus handle or loopback offer), offer GUIDs, and
//! their conflicts with each other and with `--loopback`.

use clap::Parser;
use vmbmmio_devhost::config::{
    CliArgs, ConfigError, DEFAULT_INTERFACE_INSTANCE, DEFAULT_INTERFACE_TYPE, DeviceHostConfig,
    Field, RawSettings, Source, load,
};
use vmbmmio_devhost::driver_ioctl::{DriverSessionSettings, DriverTarget};
use vmbmmio_devhost::guid::Guid;

const BASE: [&str; 8] = [
    "--vm-id",
    "62cdfa57-7648-44f3-b164-98e2da991ec5",
    "--region-size",
    "64KiB",
    "--vendor-id",
    "0x1af4",
    "--device-id",
    "0x1110",
];

fn load_with(extra: &[&str]) -> Result<DeviceHostConfig, Vec<ConfigError>> {
    let args = std::iter::once("vmbmmio-devhost")
        .chain(BASE)
        .chain(extra.iter().copied());
    load(&CliArgs::try_parse_from(args).unwrap()).map_err(|errors| errors.0)
}

#[test]
fn defaults_have_no_target_and_the_default_guids() {
    let config = load_with(&[]).unwrap();
    assert_eq!(config.driver_target, None);
    assert_eq!(config.interface_type, DEFAULT_INTERFACE_TYPE);
    assert_eq!(config.interface_instance, DEFAULT_INTERFACE_INSTANCE);
    assert_eq!(
        DEFAULT_INTERFACE_TYPE.to_string(),
        "9d0ee607-90ef-4c63-8f88-a81dcbc7ca83"
    );
    assert_eq!(
        DEFAULT_INTERFACE_INSTANCE.to_string(),
        "db36f587-469a-4cf2-b817-03b5aedbde58"
    );
    // Running against the driver needs a target; the error says how to give one.
    let errors = config.driver_session().unwrap_err().0;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].field, Field::VmbusHandle);
    assert_eq!(errors[0].source, Source::Missing);
    let message = errors[0].to_string();
    for part in ["--vmbus-handle", "--offer-loopback", "--loopback"] {
        assert!(message.contains(part), "{message}");
    }
}

#[test]
fn a_vmbus_handle_or_a_loopback_offer_becomes_the_session_settings() {
    let config = load_with(&[
        "--vmbus-handle",
        "0x1a4",
        "--interface-type",
        "{01234567-89AB-CDEF-0123-456789ABCDEF}",
        "--interface-instance",
        "fedcba98-7654-3210-fedc-ba9876543210",
    ])
    .unwrap();
    assert_eq!(config.driver_target, Some(DriverTarget::VmbusHandle(0x1a4)));
    assert_eq!(
        config.driver_session().unwrap(),
        DriverSessionSettings {
            target: DriverTarget::VmbusHandle(0x1a4),
            interface_type: Guid::from_u128(0x01234567_89ab_cdef_0123_456789abcdef),
            interface_instance: Guid::from_u128(0xfedcba98_7654_3210_fedc_ba9876543210),
            guest_writable: true,
        }
    );

    let config = load_with(&["--offer-loopback"]).unwrap();
    assert_eq!(
        config.driver_session().unwrap(),
        DriverSessionSettings::new(DriverTarget::LoopbackOffer)
    );
    assert_eq!(
        load_with(&["--vmbus-handle", "420"]).unwrap().driver_target,
        Some(DriverTarget::VmbusHandle(420))
    );
}

#[test]
fn bad_values_and_conflicts_name_their_setting() {
    let cases: &[(&[&str], Field, &str)] = &[
        (
            &["--vmbus-handle", "0"],
            Field::VmbusHandle,
            "is not a handle",
        ),
        (
            &["--vmbus-handle", "h"],
            Field::VmbusHandle,
            "is not a number",
        ),
        (
            &["--interface-type", "00000000-0000-0000-0000-000000000000"],
            Field::InterfaceType,
            "nil GUID",
        ),
        (
            &["--interface-instance", "nope"],
            Field::InterfaceInstance,
            "is not a GUID",
        ),
        (
            &["--vmbus-handle", "4", "--offer-loopback"],
            Field::OfferLoopback,
            "not both",
        ),
        (
            &["--loopback", "--offer-loopback"],
            Field::Loopback,
            "runs without the driver",
        ),
        (
            &["--loopback", "--vmbus-handle", "4"],
            Field::Loopback,
            "runs without the driver",
        ),
    ];
    for (extra, field, text) in cases {
        let found = load_with(extra).unwrap_err();
        assert_eq!(found.len(), 1, "{extra:?}: {found:?}");
        assert_eq!(found[0].field, *field, "{extra:?}");
        assert_eq!(found[0].source, Source::CommandLine, "{extra:?}");
        let message = found[0].to_string();
        assert!(message.contains(text), "{extra:?}: {message}");
        assert!(message.starts_with(field.key()), "{message}");
    }
}

#[test]
fn the_config_file_takes_the_same_settings() {
    let text = r#"
vm_id = "62cdfa57-7648-44f3-b164-98e2da991ec5"
region_sizes = [4096]
vendor_id = 1
device_id = 1
vmbus_handle = 0x88
interface_type = "01234567-89ab-cdef-0123-456789abcdef"
"#;
    let config = RawSettings::from_file_text(text)
        .unwrap()
        .validate()
        .unwrap();
    assert_eq!(config.driver_target, Some(DriverTarget::VmbusHandle(0x88)));
    assert_eq!(config.interface_instance, DEFAULT_INTERFACE_INSTANCE);

    let text = "offer_loopback = \"yes\"\n";
    let errors = RawSettings::from_file_text(text)
        .unwrap()
        .validate()
        .unwrap_err()
        .0;
    let message: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        message.contains(
            &"offer_loopback (from the config file): expected a boolean, found string".to_string()
        ),
        "{message:?}"
    );

    let text = "offer_loopback = true\n";
    let settings = RawSettings::from_file_text(text).unwrap();
    let overrides = RawSettings::from_cli(
        &CliArgs::try_parse_from(std::iter::once("vmbmmio-devhost").chain(BASE)).unwrap(),
    );
    let config = settings.overridden_by(overrides).validate().unwrap();
    assert_eq!(config.driver_target, Some(DriverTarget::LoopbackOffer));
}
