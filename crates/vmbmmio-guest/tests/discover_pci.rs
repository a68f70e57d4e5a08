//! Finding the paired PCI function, its BAR and turning decode on, against fake sysfs trees.

#[path = "support/fake_sysfs.rs"]
mod fake_sysfs;

use std::path::Path;

use fake_sysfs::{
    BAR_FLAGS_64_PREFETCH, ConfigSpace, EACCES, EBUSY, FakeKernel, FakeSysfs, PciFunction, guid,
};
use vmbmmio_guest::discover::{
    BarProblem, DecodeState, DiscoverError, IoOp, PairedFunction, enable_decode,
    enable_decode_with, find_paired_function,
};
use vmbmmio_proto::ioctl::WireGuid;
use vmbmmio_proto::pci_cap::PairingError;

const TYPE: u128 = 0x8a0c_2e7b_5f61_4c1d_9d0a_6b3e_2f10_c0de;
const INSTANCE: u128 = 0x1234_5678_9abc_4def_8123_4567_89ab_cdef;
const OTHER_INSTANCE: u128 = 0x0fed_cba9_8765_4321_8fed_cba9_8765_4321;
const BDF: &str = "7870:00:00.0";
const BASE: u64 = 0xf_8000_0000;
const SIZE: u64 = 0x1000_0000;

/// A guest with an unrelated function, another vmbmmio function, and ours.
fn guest() -> FakeSysfs {
    let sysfs = FakeSysfs::with_buses();
    sysfs.pci_function(&PciFunction::other("0000:00:08.0"));
    sysfs.pci_function(&PciFunction::vmbmmio(
        "1234:00:00.0",
        TYPE,
        OTHER_INSTANCE,
        0xe_0000_0000,
        SIZE,
    ));
    sysfs.pci_function(&PciFunction::vmbmmio(BDF, TYPE, INSTANCE, BASE, SIZE));
    sysfs
}

fn find(sysfs: &FakeSysfs) -> Result<PairedFunction, DiscoverError> {
    find_paired_function(sysfs.root(), WireGuid::from_u128(INSTANCE), 2)
}

#[test]
fn finds_the_function_its_ids_and_its_bar() {
    let sysfs = guest();
    let function = find(&sysfs).expect("found");
    assert_eq!(function.bdf.to_string(), BDF);
    assert_eq!(
        function.sysfs_dir,
        sysfs.path(&format!("bus/pci/devices/{BDF}"))
    );
    assert_eq!((function.vendor_id, function.device_id), (0x1414, 0xb0b0));
    assert_eq!(function.pairing.offset, 0x40);
    assert_eq!(
        function.pairing.pairing.interface_type,
        WireGuid::from_u128(TYPE)
    );
    assert_eq!(function.bar_index, 2);
    assert_eq!((function.bar.start, function.bar.size), (BASE, SIZE));
    assert_eq!(function.bar.flags, BAR_FLAGS_64_PREFETCH);
    assert!(!function.enabled);
    let file = function.bar_file();
    assert!(file.write_combined);
    assert_eq!(file.path, function.sysfs_dir.join("resource2_wc"));
}

#[test]
fn without_the_wc_file_the_bar_maps_through_resource_n() {
    let sysfs = FakeSysfs::with_buses();
    let mut function = PciFunction::vmbmmio(BDF, TYPE, INSTANCE, BASE, SIZE);
    function.write_combined = false;
    sysfs.pci_function(&function);
    let file = find(&sysfs).expect("found").bar_file();
    assert!(!file.write_combined);
    assert_eq!(
        file.path,
        sysfs.path(&format!("bus/pci/devices/{BDF}/resource2"))
    );
}

#[test]
fn the_pairing_is_found_behind_other_capabilities_in_extended_space() {
    let sysfs = FakeSysfs::with_buses();
    let mut function = PciFunction::vmbmmio(BDF, TYPE, INSTANCE, BASE, SIZE);
    function.config = ConfigSpace::new(0x1414, 0xb0b0)
        .extended()
        .pm_cap_at(0x40, 0x50)
        .other_vendor_cap_at(0x50, 0x80)
        .pairing_at(0x80, 0, TYPE, INSTANCE);
    sysfs.pci_function(&function);
    assert_eq!(find(&sysfs).expect("found").pairing.offset, 0x80);
}

#[test]
fn no_pci_directory() {
    let sysfs = FakeSysfs::new();
    let error = find(&sysfs).expect_err("no pci");
    assert!(matches!(error, DiscoverError::NoPci { .. }), "{error:?}");
    assert!(error.to_string().contains("CONFIG_PCI_HYPERV"), "{error}");
}

#[test]
fn no_paired_function_names_the_other_pairings() {
    let sysfs = guest();
    sysfs.remove(&format!("bus/pci/devices/{BDF}"));
    let error = find(&sysfs).expect_err("absent");
    match &error {
        DiscoverError::NoPairedFunction { other_pairings, .. } => assert_eq!(
            other_pairings,
            &[(
                "1234:00:00.0".to_owned(),
                WireGuid::from_u128(OTHER_INSTANCE)
            )]
        ),
        other => panic!("{other:?}"),
    }
    let text = error.to_string();
    assert!(text.contains("is the device host running"), "{text}");
    assert!(text.contains(&guid(OTHER_INSTANCE).to_string()), "{text}");
}

#[test]
fn two_functions_pairing_with_the_instance_are_refused() {
    let sysfs = guest();
    sysfs.pci_function(&PciFunction::vmbmmio(
        "7871:00:00.0",
        TYPE,
        INSTANCE,
        BASE,
        SIZE,
    ));
    let error = find(&sysfs).expect_err("duplicate");
    assert!(
        matches!(error, DiscoverError::DuplicatePairing { .. }),
        "{error:?}"
    );
}

#[test]
fn an_unprivileged_config_read_says_run_as_root() {
    let sysfs = FakeSysfs::with_buses();
    let mut function = PciFunction::vmbmmio(BDF, TYPE, INSTANCE, BASE, SIZE);
    function.config_len = Some(64);
    sysfs.pci_function(&function);
    let error = find(&sysfs).expect_err("restricted");
    assert!(
        matches!(error, DiscoverError::ConfigRestricted { len: 64, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("run as root"), "{error}");
}

#[test]
fn a_config_shorter_than_the_header_is_not_a_config_space() {
    let sysfs = FakeSysfs::with_buses();
    let mut function = PciFunction::vmbmmio(BDF, TYPE, INSTANCE, BASE, SIZE);
    function.config_len = Some(10);
    sysfs.pci_function(&function);
    let error = find(&sysfs).expect_err("short");
    assert!(matches!(error, DiscoverError::Parse { .. }), "{error:?}");
}

#[test]
fn a_capability_loop_elsewhere_does_not_hide_the_function() {
    let sysfs = guest();
    let mut looping = PciFunction::other("0000:00:09.0");
    looping.config = ConfigSpace::new(0x8086, 0x1234)
        .pm_cap_at(0x40, 0x50)
        .pm_cap_at(0x50, 0x40);
    sysfs.pci_function(&looping);
    assert_eq!(find(&sysfs).expect("found").bdf.to_string(), BDF);
}

#[test]
fn a_capability_loop_is_reported_when_nothing_pairs() {
    let sysfs = FakeSysfs::with_buses();
    let mut looping = PciFunction::other("0000:00:09.0");
    looping.config = ConfigSpace::new(0x8086, 0x1234).pm_cap_at(0x40, 0x40);
    sysfs.pci_function(&looping);
    let error = find(&sysfs).expect_err("loop");
    assert!(
        matches!(
            error,
            DiscoverError::MalformedPairing {
                error: PairingError::ListTooLong,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("0000:00:09.0/config"), "{error}");
}

#[test]
fn a_malformed_vmbmmio_capability_is_reported() {
    let sysfs = FakeSysfs::with_buses();
    let mut function = PciFunction::vmbmmio(BDF, TYPE, INSTANCE, BASE, SIZE);
    // Byte 3 is the layout version.
    function.config = function.config.clone().poke(0x43, 9);
    sysfs.pci_function(&function);
    let error = find(&sysfs).expect_err("malformed");
    assert!(
        matches!(
            error,
            DiscoverError::MalformedPairing {
                error: PairingError::UnsupportedLayoutVersion { got: 9, .. },
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn bars_vmbmmio_cannot_use() {
    let cases = [
        ((0, 0, 0), BarProblem::Unassigned),
        (
            (BASE, BASE + SIZE - 1, 0x0004_0200),
            BarProblem::NotPrefetchable,
        ),
        ((BASE, BASE + SIZE - 1, 0x0004_2208), BarProblem::Not64Bit),
        (
            (BASE, BASE + SIZE - 2, BAR_FLAGS_64_PREFETCH),
            BarProblem::SizeNotPowerOfTwo,
        ),
        (
            (BASE + 0x1000, BASE + SIZE + 0xfff, BAR_FLAGS_64_PREFETCH),
            BarProblem::Misaligned,
        ),
        (
            (BASE, BASE - 1, BAR_FLAGS_64_PREFETCH),
            BarProblem::EndBeforeStart,
        ),
    ];
    for (bar, want) in cases {
        let sysfs = FakeSysfs::with_buses();
        let mut function = PciFunction::vmbmmio(BDF, TYPE, INSTANCE, BASE, SIZE);
        function.bars = vec![(0, 0, 0), (0, 0, 0), bar];
        sysfs.pci_function(&function);
        match find(&sysfs) {
            Err(DiscoverError::BadBar {
                bar: 2, problem, ..
            }) => assert_eq!(problem, want),
            other => panic!("{bar:x?}: {other:?}"),
        }
    }
    let sysfs = guest();
    let error =
        find_paired_function(sysfs.root(), WireGuid::from_u128(INSTANCE), 6).expect_err("no BAR 6");
    assert!(
        matches!(
            error,
            DiscoverError::BadBar {
                problem: BarProblem::Missing,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn enable_writes_once_and_is_idempotent() {
    let sysfs = guest();
    let function = find(&sysfs).expect("found");
    let mut kernel = FakeKernel::new(&sysfs);
    assert_eq!(
        enable_decode_with(&function, &mut kernel).expect("enabled"),
        DecodeState::Enabled
    );
    assert_eq!(
        kernel.writes,
        vec![(format!("bus/pci/devices/{BDF}/enable"), b"1".to_vec())]
    );
    assert_eq!(
        enable_decode_with(&function, &mut kernel).expect("enabled"),
        DecodeState::AlreadyEnabled
    );
    assert_eq!(kernel.writes.len(), 1);
    assert!(find(&sysfs).expect("found").enabled);
}

#[test]
fn enable_with_the_real_writer() {
    let sysfs = guest();
    let function = find(&sysfs).expect("found");
    assert_eq!(
        enable_decode(&function).expect("enabled"),
        DecodeState::Enabled
    );
    assert_eq!(sysfs.read(&format!("bus/pci/devices/{BDF}/enable")), "1");
    assert_eq!(
        enable_decode(&function).expect("enabled"),
        DecodeState::AlreadyEnabled
    );
}

#[test]
fn enable_refusals() {
    let sysfs = guest();
    let function = find(&sysfs).expect("found");
    let enable = format!("bus/pci/devices/{BDF}/enable");

    let mut kernel = FakeKernel::new(&sysfs).fail(&enable, EACCES);
    let error = enable_decode_with(&function, &mut kernel).expect_err("denied");
    assert!(
        matches!(
            error,
            DiscoverError::NotPermitted {
                op: IoOp::Write,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("run as root"), "{error}");

    std::os::unix::fs::symlink(
        "../../../bus/pci/drivers/some_driver",
        sysfs.path(&format!("bus/pci/devices/{BDF}/driver")),
    )
    .expect("driver link");
    let mut kernel = FakeKernel::new(&sysfs).fail(&enable, EBUSY);
    let error = enable_decode_with(&function, &mut kernel).expect_err("busy");
    match &error {
        DiscoverError::DecodeRefused { driver, .. } => {
            assert_eq!(driver.as_deref(), Some("some_driver"))
        }
        other => panic!("{other:?}"),
    }
    assert!(error.to_string().contains("some_driver"), "{error}");

    let mut ignoring = |_: &Path, _: &[u8]| Ok(());
    let error = enable_decode_with(&function, &mut ignoring).expect_err("did not take");
    assert!(
        matches!(error, DiscoverError::DecodeDidNotTake { .. }),
        "{error:?}"
    );
}
