//! Discovery against hostile sysfs contents: huge files, garbage values, wrong file types,
//! enormous directories, and random bytes everywhere. Nothing may panic; every refusal names
//! the file.

#[path = "support/fake_sysfs.rs"]
mod fake_sysfs;

use fake_sysfs::{FakeSysfs, PciFunction, guid};
use proptest::prelude::*;
use vmbmmio_guest::discover::{
    BarProblem, DiscoverError, IoOp, UIO_HV_GENERIC, find_channel, find_paired_function,
};
use vmbmmio_proto::ioctl::WireGuid;

const TYPE: u128 = 0x8a0c_2e7b_5f61_4c1d_9d0a_6b3e_2f10_c0de;
const INSTANCE: u128 = 0x1234_5678_9abc_4def_8123_4567_89ab_cdef;
const BDF: &str = "7870:00:00.0";
const BASE: u64 = 0xf_8000_0000;
const SIZE: u64 = 0x1000_0000;

fn device() -> String {
    guid(INSTANCE).to_string()
}

fn channel_guest() -> FakeSysfs {
    let sysfs = FakeSysfs::with_buses();
    sysfs.vmbus_device(&device(), TYPE, INSTANCE);
    sysfs
}

fn pci_guest() -> FakeSysfs {
    let sysfs = FakeSysfs::with_buses();
    sysfs.pci_function(&PciFunction::vmbmmio(BDF, TYPE, INSTANCE, BASE, SIZE));
    sysfs
}

fn find_chan(sysfs: &FakeSysfs) -> Result<vmbmmio_guest::discover::VmbusChannel, DiscoverError> {
    find_channel(
        sysfs.root(),
        WireGuid::from_u128(TYPE),
        WireGuid::from_u128(INSTANCE),
    )
}

fn find_fn(sysfs: &FakeSysfs) -> Result<vmbmmio_guest::discover::PairedFunction, DiscoverError> {
    find_paired_function(sysfs.root(), WireGuid::from_u128(INSTANCE), 2)
}

fn assert_names(error: &DiscoverError, file: &str) {
    assert!(error.to_string().contains(file), "{file} not in: {error}");
}

#[test]
fn a_huge_class_id_is_refused_without_reading_it_all() {
    let sysfs = channel_guest();
    sysfs.write("bus/vmbus/devices/other/class_id", vec![b'{'; 1 << 20]);
    let error = find_chan(&sysfs).expect_err("huge");
    assert!(
        matches!(error, DiscoverError::TooLarge { limit: 4096, .. }),
        "{error:?}"
    );
    assert_names(&error, "other/class_id");
}

#[test]
fn garbage_guids_are_parse_errors_that_quote_a_bounded_prefix() {
    for garbage in [
        "not a guid\n",
        "{1234}\n",
        "{12345678-9abc-4def-8123-456789abcdef\n",
        "12345678-9abc-4def-8123-456789abcdef}\n",
        "{12345678-9abc-4def-8123-456789abcdeg}\n",
        "{12345678-9abc-4def-8123-456789abcdef}\n\n",
        " {12345678-9abc-4def-8123-456789abcdef}\n",
    ] {
        let sysfs = channel_guest();
        sysfs.write("bus/vmbus/devices/other/class_id", garbage);
        let error = find_chan(&sysfs).expect_err(garbage);
        assert!(
            matches!(error, DiscoverError::Parse { .. }),
            "{garbage:?}: {error:?}"
        );
        assert_names(&error, "other/class_id");
    }
    let sysfs = channel_guest();
    sysfs.write(
        &format!("bus/vmbus/devices/{}/device_id", device()),
        "x".repeat(4000),
    );
    let error = find_chan(&sysfs).expect_err("long garbage");
    match &error {
        DiscoverError::Parse { found, .. } => assert!(found.chars().count() <= 65, "{found}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn non_utf8_contents_are_parse_errors() {
    let sysfs = channel_guest();
    sysfs.write(
        &format!("bus/vmbus/devices/{}/device_id", device()),
        [0xff, 0xfe, b'\n'],
    );
    let error = find_chan(&sysfs).expect_err("binary");
    assert!(matches!(error, DiscoverError::Parse { .. }), "{error:?}");
    assert_names(&error, "device_id");
}

#[test]
fn a_directory_where_a_file_is_expected() {
    let sysfs = FakeSysfs::with_buses();
    sysfs.mkdir(&format!("bus/vmbus/devices/{}/class_id", device()));
    let error = find_chan(&sysfs).expect_err("directory");
    assert!(
        matches!(error, DiscoverError::Io { op: IoOp::Read, .. }),
        "{error:?}"
    );
    assert_names(&error, "class_id");
}

#[test]
fn a_driver_that_is_not_a_link() {
    let sysfs = channel_guest();
    sysfs.write(
        &format!("bus/vmbus/devices/{}/driver", device()),
        UIO_HV_GENERIC,
    );
    let error = find_chan(&sysfs).expect_err("not a link");
    assert!(
        matches!(
            error,
            DiscoverError::Io {
                op: IoOp::ReadLink,
                ..
            }
        ),
        "{error:?}"
    );
    assert_names(&error, "driver");
}

#[test]
fn garbage_uio_maps() {
    for (file, contents) in [
        ("size", "4096\n"),
        ("size", "0x\n"),
        ("offset", "-1\n"),
        ("name", "txrx\u{7}rings\n"),
    ] {
        let sysfs = FakeSysfs::with_buses();
        sysfs.bound_channel(&device(), TYPE, INSTANCE, 0);
        sysfs.write(
            &format!("bus/vmbus/devices/{}/uio/uio0/maps/map1/{file}", device()),
            contents,
        );
        let error = find_chan(&sysfs).expect_err(contents);
        assert!(
            matches!(error, DiscoverError::Parse { .. }),
            "{contents:?}: {error:?}"
        );
        assert_names(&error, &format!("map1/{file}"));
    }
    // Entries under uio/ that are not uioN are ignored; uioN with a garbage N too.
    let sysfs = FakeSysfs::with_buses();
    sysfs.bound_channel(&device(), TYPE, INSTANCE, 4);
    sysfs.mkdir(&format!("bus/vmbus/devices/{}/uio/uiox", device()));
    sysfs.mkdir(&format!("bus/vmbus/devices/{}/uio/other", device()));
    let uio = find_chan(&sysfs).expect("found").uio.expect("node");
    assert_eq!(uio.name, "uio4");
}

#[test]
fn an_enormous_devices_directory_is_refused() {
    let sysfs = FakeSysfs::with_buses();
    for index in 0..=4096 {
        sysfs.mkdir(&format!("bus/vmbus/devices/d{index}"));
    }
    let error = find_chan(&sysfs).expect_err("too many");
    assert!(
        matches!(error, DiscoverError::TooManyEntries { limit: 4096, .. }),
        "{error:?}"
    );
}

#[test]
fn a_huge_config_is_refused() {
    let sysfs = pci_guest();
    sysfs.write(&format!("bus/pci/devices/{BDF}/config"), vec![0u8; 1 << 20]);
    let error = find_fn(&sysfs).expect_err("huge");
    assert!(
        matches!(error, DiscoverError::TooLarge { limit: 4096, .. }),
        "{error:?}"
    );
    assert_names(&error, "config");
}

#[test]
fn malformed_resource_lines() {
    for resource in [
        "",
        "garbage\n",
        "0x0 0x0 0x0\n0x0 0x0 0x0\n0xf80000000 0xf8fffffff\n",
        "0x0 0x0 0x0\n0x0 0x0 0x0\n0xf80000000 0xf8fffffff 0x14220c extra\n",
        "0x0 0x0 0x0\n0x0 0x0 0x0\nf80000000 f8fffffff 14220c\n",
        "0x0 0x0 0x0\n0x0 0x0 0x0\n0x0000000f80000000000 0xf8fffffff 0x14220c\n",
        "0x0 0x0 0x0\n0x0 0x0 0x0\n0xf80000000 0xf8fffffff 0x14220c\u{0}\n",
    ] {
        let sysfs = pci_guest();
        sysfs.write(&format!("bus/pci/devices/{BDF}/resource"), resource);
        let error = find_fn(&sysfs).expect_err(resource);
        match &error {
            DiscoverError::BadBar { problem, .. } => assert!(
                matches!(problem, BarProblem::Missing | BarProblem::Malformed),
                "{resource:?}: {problem:?}"
            ),
            other => panic!("{resource:?}: {other:?}"),
        }
        assert_names(&error, "resource");
    }
}

#[test]
fn garbage_ids_and_enable() {
    for (file, contents) in [
        ("vendor", "0x14141\n"),
        ("vendor", "1414\n"),
        ("device", "\n"),
        ("enable", "yes\n"),
        ("enable", "-1\n"),
    ] {
        let sysfs = pci_guest();
        sysfs.write(&format!("bus/pci/devices/{BDF}/{file}"), contents);
        let error = find_fn(&sysfs).expect_err(contents);
        assert!(
            matches!(error, DiscoverError::Parse { .. }),
            "{file} {contents:?}: {error:?}"
        );
        assert_names(&error, file);
    }
}

#[test]
fn entries_that_are_not_pci_addresses_are_skipped() {
    let sysfs = pci_guest();
    sysfs.write("bus/pci/devices/not-a-bdf/config", "whatever");
    sysfs.mkdir("bus/pci/devices/0000:00:01.0");
    assert_eq!(find_fn(&sysfs).expect("found").bdf.to_string(), BDF);
}

#[test]
fn capability_pointers_into_the_header_or_past_the_end() {
    use fake_sysfs::ConfigSpace;
    // A list head inside the standard header.
    let sysfs = FakeSysfs::with_buses();
    let mut function = PciFunction::other("0000:00:09.0");
    function.config = ConfigSpace::new(0x8086, 0x1234).cap_list(0x20);
    sysfs.pci_function(&function);
    assert!(matches!(
        find_fn(&sysfs),
        Err(DiscoverError::MalformedPairing { .. })
    ));
    // A vmbmmio capability that runs past 0x100.
    let sysfs = FakeSysfs::with_buses();
    let mut function = PciFunction::vmbmmio(BDF, TYPE, INSTANCE, BASE, SIZE);
    function.config =
        ConfigSpace::new(0x1414, 0xb0b0).raw_cap(0xf0, &[0x09, 0, 48, 1, b'V', b'M', b'B', b'P']);
    sysfs.pci_function(&function);
    assert!(matches!(
        find_fn(&sysfs),
        Err(DiscoverError::MalformedPairing { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Random bytes in every VMBus attribute discovery reads: an error or a channel, never a
    /// panic.
    #[test]
    fn random_vmbus_attributes_never_panic(
        class_id in proptest::collection::vec(any::<u8>(), 0..80),
        device_id in proptest::collection::vec(any::<u8>(), 0..80),
        size in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let sysfs = FakeSysfs::with_buses();
        sysfs.bound_channel(&device(), TYPE, INSTANCE, 0);
        sysfs.write("bus/vmbus/devices/x/class_id", &class_id);
        sysfs.write("bus/vmbus/devices/x/device_id", &device_id);
        sysfs.write(&format!("bus/vmbus/devices/{}/uio/uio0/maps/map0/size", device()), &size);
        let _ = find_chan(&sysfs).map_err(|error| error.to_string());
    }

    /// Random configuration spaces and resource files: an error or a function, never a panic.
    #[test]
    fn random_pci_files_never_panic(
        config in proptest::collection::vec(any::<u8>(), 0..600),
        resource in "[0-9a-fx \n]{0,300}",
        head in 0x40u8..=0xff,
    ) {
        let sysfs = pci_guest();
        let mut config = config;
        config.resize(256, 0xff);
        if let Some(status) = config.get_mut(6) { *status |= 0x10; }
        if let Some(pointer) = config.get_mut(0x34) { *pointer = head; }
        sysfs.write("bus/pci/devices/0000:00:09.0/config", &config);
        sysfs.write(&format!("bus/pci/devices/{BDF}/resource"), &resource);
        let _ = find_fn(&sysfs).map_err(|error| error.to_string());
    }
}
