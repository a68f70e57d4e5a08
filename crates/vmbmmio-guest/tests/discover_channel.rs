//! Finding the VMBus channel and binding it to `uio_hv_generic`, against fake sysfs trees.

#[path = "support/fake_sysfs.rs"]
mod fake_sysfs;

use std::path::Path;

use fake_sysfs::{EACCES, EBUSY, EEXIST, ENODEV, EPERM, FakeKernel, FakeSysfs, guid};
use vmbmmio_guest::discover::{
    BindOptions, DiscoverError, IoOp, StdSysfsWrite, SysfsWrite, UIO_HV_GENERIC, bind_uio,
    bind_uio_with, find_channel,
};
use vmbmmio_proto::ioctl::WireGuid;

const TYPE: u128 = 0x8a0c_2e7b_5f61_4c1d_9d0a_6b3e_2f10_c0de;
const INSTANCE: u128 = 0x1234_5678_9abc_4def_8123_4567_89ab_cdef;
const OTHER_INSTANCE: u128 = 0x0fed_cba9_8765_4321_8fed_cba9_8765_4321;
const NETVSC_TYPE: u128 = 0xf861_5163_df3e_46c5_913f_f2d2_f965_ed0e;

fn name(instance: u128) -> String {
    guid(instance).to_string()
}

/// A guest with a network adapter (bound to hv_netvsc), another vmbmmio channel, and ours.
fn guest() -> FakeSysfs {
    let sysfs = FakeSysfs::with_buses();
    sysfs.vmbus_driver("hv_netvsc");
    sysfs.vmbus_device(&name(0xaaaa), NETVSC_TYPE, 0xaaaa);
    sysfs.bind_vmbus(&name(0xaaaa), "hv_netvsc");
    sysfs.vmbus_device(&name(OTHER_INSTANCE), TYPE, OTHER_INSTANCE);
    sysfs.vmbus_device(&name(INSTANCE), TYPE, INSTANCE);
    sysfs
}

fn find(sysfs: &FakeSysfs) -> Result<vmbmmio_guest::discover::VmbusChannel, DiscoverError> {
    find_channel(
        sysfs.root(),
        WireGuid::from_u128(TYPE),
        WireGuid::from_u128(INSTANCE),
    )
}

fn with_uio_driver(sysfs: FakeSysfs) -> FakeSysfs {
    sysfs.vmbus_driver(UIO_HV_GENERIC);
    sysfs
}

#[test]
fn finds_an_unbound_channel_by_type_and_instance() {
    let sysfs = guest();
    let channel = find(&sysfs).expect("found");
    assert_eq!(channel.device_name, name(INSTANCE));
    assert_eq!(channel.interface_type, WireGuid::from_u128(TYPE));
    assert_eq!(channel.interface_instance, WireGuid::from_u128(INSTANCE));
    assert_eq!(channel.driver, None);
    assert_eq!(channel.uio, None);
    assert!(!channel.bound_to_uio());
}

#[test]
fn matches_contents_not_directory_names() {
    let sysfs = FakeSysfs::with_buses();
    sysfs.vmbus_device("vmbus_7", TYPE, INSTANCE);
    assert_eq!(find(&sysfs).expect("found").device_name, "vmbus_7");
}

#[test]
fn finds_a_bound_channel_with_its_uio_node_and_maps() {
    let sysfs = guest();
    sysfs.vmbus_driver(UIO_HV_GENERIC);
    sysfs.bind_vmbus(&name(INSTANCE), UIO_HV_GENERIC);
    sysfs.uio_node(&name(INSTANCE), 3, &fake_sysfs::uio_hv_generic_maps());
    let channel = find(&sysfs).expect("found");
    assert!(channel.bound_to_uio());
    let uio = channel.uio.expect("uio node");
    assert_eq!(uio.name, "uio3");
    assert_eq!(uio.number, 3);
    assert_eq!(uio.dev_node(Path::new("/dev")), Path::new("/dev/uio3"));
    assert_eq!(uio.maps.len(), 5);
    let ring = uio.ring_map().expect("ring map");
    assert_eq!((ring.index, ring.size, ring.offset), (0, 0x40_0000, 0));
    assert_eq!(uio.map_named("int_page").map(|m| m.index), Some(1));
    assert_eq!(
        uio.maps.get(4).and_then(|m| m.mmap_offset(4096)),
        Some(4 * 4096)
    );
}

#[test]
fn no_vmbus_directory() {
    let sysfs = FakeSysfs::new();
    let error = find(&sysfs).expect_err("no vmbus");
    assert!(matches!(error, DiscoverError::NoVmbus { .. }), "{error:?}");
    assert!(error.to_string().contains("CONFIG_HYPERV_VMBUS"), "{error}");
}

#[test]
fn no_such_channel_names_the_other_instances_and_the_host_session() {
    let sysfs = guest();
    sysfs.remove(&format!("bus/vmbus/devices/{}", name(INSTANCE)));
    let error = find(&sysfs).expect_err("absent");
    match &error {
        DiscoverError::NoSuchChannel {
            other_instances, ..
        } => assert_eq!(other_instances, &[WireGuid::from_u128(OTHER_INSTANCE)]),
        other => panic!("{other:?}"),
    }
    let text = error.to_string();
    assert!(
        text.contains("is the host's driver session open?"),
        "{text}"
    );
    assert!(text.contains(&name(OTHER_INSTANCE)), "{text}");
}

#[test]
fn two_devices_with_the_same_instance_are_refused() {
    let sysfs = guest();
    sysfs.vmbus_device("vmbus_99", TYPE, INSTANCE);
    let error = find(&sysfs).expect_err("duplicate");
    assert!(
        matches!(error, DiscoverError::DuplicateChannel { .. }),
        "{error:?}"
    );
}

#[test]
fn a_device_that_vanished_is_skipped() {
    let sysfs = guest();
    sysfs.mkdir("bus/vmbus/devices/half-gone");
    assert!(find(&sysfs).is_ok());
}

#[test]
fn bound_to_uio_without_a_node_or_with_two() {
    let sysfs = guest();
    sysfs.vmbus_driver(UIO_HV_GENERIC);
    sysfs.bind_vmbus(&name(INSTANCE), UIO_HV_GENERIC);
    let error = find(&sysfs).expect_err("no node");
    assert!(
        matches!(error, DiscoverError::NoUioNode { .. }),
        "{error:?}"
    );
    sysfs.uio_node(&name(INSTANCE), 0, &fake_sysfs::uio_hv_generic_maps());
    sysfs.uio_node(&name(INSTANCE), 1, &fake_sysfs::uio_hv_generic_maps());
    let error = find(&sysfs).expect_err("two nodes");
    assert!(
        matches!(error, DiscoverError::MultipleUioNodes { .. }),
        "{error:?}"
    );
}

#[test]
fn ring_map_must_be_txrx_rings() {
    let sysfs = guest();
    sysfs.vmbus_driver(UIO_HV_GENERIC);
    sysfs.bind_vmbus(&name(INSTANCE), UIO_HV_GENERIC);
    let mut maps = fake_sysfs::uio_hv_generic_maps();
    if let Some(first) = maps.first_mut() {
        first.name = "int_page".to_owned();
    }
    sysfs.uio_node(&name(INSTANCE), 0, &maps);
    let uio = find(&sysfs).expect("found").uio.expect("node");
    let error = uio.ring_map().expect_err("not the rings");
    assert!(
        matches!(error, DiscoverError::NoRingMap { .. }),
        "{error:?}"
    );
}

#[test]
fn module_missing_says_modprobe_and_writes_nothing() {
    let sysfs = guest();
    let channel = find(&sysfs).expect("found");
    let mut kernel = FakeKernel::new(&sysfs);
    let error = bind_uio_with(sysfs.root(), &channel, BindOptions::default(), &mut kernel)
        .expect_err("no module");
    assert!(
        matches!(error, DiscoverError::ModuleMissing { .. }),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains("load it: modprobe uio_hv_generic (CONFIG_UIO_HV_GENERIC)"),
        "{text}"
    );
    assert!(kernel.writes.is_empty());
}

#[test]
fn binds_through_new_id_alone_when_the_kernel_attaches() {
    let sysfs = with_uio_driver(guest());
    let channel = find(&sysfs).expect("found");
    let mut kernel = FakeKernel::new(&sysfs);
    let uio =
        bind_uio_with(sysfs.root(), &channel, BindOptions::default(), &mut kernel).expect("bound");
    // The other vmbmmio channel sorts first and got uio0.
    assert_eq!(uio.name, "uio1");
    assert_eq!(
        kernel.writes,
        vec![(
            "bus/vmbus/drivers/uio_hv_generic/new_id".to_owned(),
            format!("{}\n", name(TYPE)).into_bytes()
        )]
    );
    let again = find(&sysfs).expect("found again");
    assert!(again.bound_to_uio());
    // The kernel attached every unbound device of the type, the other vmbmmio channel too.
    let other = find_channel(
        sysfs.root(),
        WireGuid::from_u128(TYPE),
        WireGuid::from_u128(OTHER_INSTANCE),
    )
    .expect("other");
    assert!(other.bound_to_uio());
}

#[test]
fn binds_explicitly_when_new_id_did_not_attach() {
    let sysfs = with_uio_driver(guest());
    let channel = find(&sysfs).expect("found");
    let mut kernel = FakeKernel::new(&sysfs);
    kernel.attach_on_new_id = false;
    let uio =
        bind_uio_with(sysfs.root(), &channel, BindOptions::default(), &mut kernel).expect("bound");
    assert_eq!(uio.name, "uio0");
    assert_eq!(
        kernel.written_paths(),
        [
            "bus/vmbus/drivers/uio_hv_generic/new_id",
            "bus/vmbus/drivers/uio_hv_generic/bind"
        ]
    );
    assert_eq!(
        kernel.writes.get(1).map(|w| w.1.clone()),
        Some(name(INSTANCE).into_bytes())
    );
}

#[test]
fn new_id_already_present_is_not_an_error() {
    let sysfs = with_uio_driver(guest());
    let channel = find(&sysfs).expect("found");
    let mut kernel =
        FakeKernel::new(&sysfs).fail("bus/vmbus/drivers/uio_hv_generic/new_id", EEXIST);
    let uio =
        bind_uio_with(sysfs.root(), &channel, BindOptions::default(), &mut kernel).expect("bound");
    assert_eq!(uio.name, "uio0");
    assert_eq!(kernel.written_paths().len(), 2);
}

#[test]
fn already_bound_makes_no_write() {
    let sysfs = guest();
    sysfs.bound_channel(&name(INSTANCE), TYPE, INSTANCE, 5);
    let channel = find(&sysfs).expect("found");
    let mut kernel = FakeKernel::new(&sysfs);
    let uio =
        bind_uio_with(sysfs.root(), &channel, BindOptions::default(), &mut kernel).expect("bound");
    assert_eq!(uio.name, "uio5");
    assert!(kernel.writes.is_empty());
    // The real writer too: nothing is written to the attributes.
    let uio = bind_uio(sysfs.root(), &channel).expect("bound");
    assert_eq!(uio.name, "uio5");
    assert_eq!(sysfs.read("bus/vmbus/drivers/uio_hv_generic/new_id"), "");
    assert_eq!(sysfs.read("bus/vmbus/drivers/uio_hv_generic/bind"), "");
}

#[test]
fn a_stale_channel_value_is_rechecked() {
    let sysfs = with_uio_driver(guest());
    let stale = find(&sysfs).expect("found");
    sysfs.bind_vmbus(&name(INSTANCE), UIO_HV_GENERIC);
    sysfs.uio_node(&name(INSTANCE), 2, &fake_sysfs::uio_hv_generic_maps());
    let mut kernel = FakeKernel::new(&sysfs);
    let uio =
        bind_uio_with(sysfs.root(), &stale, BindOptions::default(), &mut kernel).expect("bound");
    assert_eq!(uio.name, "uio2");
    assert!(kernel.writes.is_empty());
}

#[test]
fn bound_elsewhere_is_refused_with_the_unbind_command() {
    let sysfs = with_uio_driver(guest());
    sysfs.vmbus_driver("hv_other");
    sysfs.bind_vmbus(&name(INSTANCE), "hv_other");
    let channel = find(&sysfs).expect("found");
    assert_eq!(channel.driver.as_deref(), Some("hv_other"));
    let mut kernel = FakeKernel::new(&sysfs);
    let error = bind_uio_with(sysfs.root(), &channel, BindOptions::default(), &mut kernel)
        .expect_err("elsewhere");
    match &error {
        DiscoverError::BoundElsewhere { driver, unbind, .. } => {
            assert_eq!(driver, "hv_other");
            assert_eq!(unbind, &sysfs.path("bus/vmbus/drivers/hv_other/unbind"));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        error
            .to_string()
            .contains(&format!("echo -n {}", name(INSTANCE)))
    );
    assert!(kernel.writes.is_empty());
}

#[test]
fn take_over_unbinds_then_binds() {
    let sysfs = with_uio_driver(guest());
    sysfs.vmbus_driver("hv_other");
    sysfs.bind_vmbus(&name(INSTANCE), "hv_other");
    let channel = find(&sysfs).expect("found");
    let mut kernel = FakeKernel::new(&sysfs);
    let uio = bind_uio_with(
        sysfs.root(),
        &channel,
        BindOptions { take_over: true },
        &mut kernel,
    )
    .expect("bound");
    assert_eq!(uio.name, "uio1");
    assert_eq!(
        kernel.written_paths().first().map(String::as_str),
        Some("bus/vmbus/drivers/hv_other/unbind")
    );
    assert!(find(&sysfs).expect("found").bound_to_uio());
}

#[test]
fn not_root_says_run_as_root() {
    for (attribute, errno) in [("new_id", EACCES), ("new_id", EPERM), ("bind", EACCES)] {
        let sysfs = with_uio_driver(guest());
        let channel = find(&sysfs).expect("found");
        let mut kernel = FakeKernel::new(&sysfs).fail(
            &format!("bus/vmbus/drivers/uio_hv_generic/{attribute}"),
            errno,
        );
        kernel.attach_on_new_id = false;
        let error = bind_uio_with(sysfs.root(), &channel, BindOptions::default(), &mut kernel)
            .expect_err("denied");
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
    }
}

#[test]
fn bind_refusals_say_why() {
    for (errno, hint) in [
        (EBUSY, "another driver"),
        (ENODEV, "does not match"),
        (22, "dmesg"),
    ] {
        let sysfs = with_uio_driver(guest());
        let channel = find(&sysfs).expect("found");
        let mut kernel =
            FakeKernel::new(&sysfs).fail("bus/vmbus/drivers/uio_hv_generic/bind", errno);
        kernel.attach_on_new_id = false;
        let error = bind_uio_with(sysfs.root(), &channel, BindOptions::default(), &mut kernel)
            .expect_err("refused");
        assert!(
            matches!(error, DiscoverError::BindRefused { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains(hint), "{error}");
    }
}

#[test]
fn a_bind_that_does_not_take_is_reported() {
    let sysfs = with_uio_driver(guest());
    let channel = find(&sysfs).expect("found");
    let mut kernel = FakeKernel::new(&sysfs);
    kernel.attach_on_new_id = false;
    kernel.bind_takes = false;
    let error = bind_uio_with(sysfs.root(), &channel, BindOptions::default(), &mut kernel)
        .expect_err("did not take");
    assert!(
        matches!(error, DiscoverError::BindDidNotTake { driver: None, .. }),
        "{error:?}"
    );
}

#[test]
fn the_real_writer_writes_the_values_and_creates_nothing() {
    let sysfs = with_uio_driver(guest());
    let channel = find(&sysfs).expect("found");
    // Nothing reacts to the writes in a fake tree, so the bind cannot take.
    let error = bind_uio(sysfs.root(), &channel).expect_err("no kernel");
    assert!(
        matches!(error, DiscoverError::BindDidNotTake { .. }),
        "{error:?}"
    );
    assert_eq!(
        sysfs.read("bus/vmbus/drivers/uio_hv_generic/new_id"),
        format!("{}\n", name(TYPE))
    );
    assert_eq!(
        sysfs.read("bus/vmbus/drivers/uio_hv_generic/bind"),
        name(INSTANCE)
    );

    let missing = sysfs.path("bus/vmbus/drivers/uio_hv_generic/nonexistent");
    let result = StdSysfsWrite.write_attr(&missing, b"1");
    assert_eq!(
        result.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::NotFound)
    );
    assert!(!missing.exists());
}

#[test]
fn a_closure_is_a_writer() {
    let sysfs = with_uio_driver(guest());
    let channel = find(&sysfs).expect("found");
    let mut seen = Vec::new();
    let mut writer = |path: &Path, value: &[u8]| {
        seen.push((path.to_path_buf(), value.to_vec()));
        Err(std::io::Error::from_raw_os_error(EACCES))
    };
    let error = bind_uio_with(sysfs.root(), &channel, BindOptions::default(), &mut writer)
        .expect_err("denied");
    assert!(
        matches!(error, DiscoverError::NotPermitted { .. }),
        "{error:?}"
    );
    assert_eq!(seen.len(), 1);
}
