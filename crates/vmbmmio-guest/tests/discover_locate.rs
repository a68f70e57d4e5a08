//! The discovery steps in order (`discover::locate`) and the channel lookups they rest on:
//! every channel of the interface type, the only one, and the channel + node + function at once.

#[path = "support/fake_sysfs.rs"]
mod fake_sysfs;

use fake_sysfs::{FakeSysfs, PciFunction, guid};
use vmbmmio_guest::discover::{DiscoverError, Located, Target, find_only_channel, list_channels};
use vmbmmio_proto::ioctl::WireGuid;

const TYPE: u128 = 0x8a0c_2e7b_5f61_4c1d_9d0a_6b3e_2f10_c0de;
const INSTANCE: u128 = 0x1234_5678_9abc_4def_8123_4567_89ab_cdef;
const OTHER_INSTANCE: u128 = 0x0fed_cba9_8765_4321_8fed_cba9_8765_4321;
const NETVSC_TYPE: u128 = 0xf861_5163_df3e_46c5_913f_f2d2_f965_ed0e;
const BDF: &str = "7870:00:00.0";
const BASE: u64 = 0xf_8000_0000;
const SIZE: u64 = 0x1000_0000;

fn name(instance: u128) -> String {
    guid(instance).to_string()
}

fn target(instance: Option<u128>) -> Target {
    Target {
        interface_type: WireGuid::from_u128(TYPE),
        instance: instance.map(WireGuid::from_u128),
        bar_index: 2,
    }
}

/// A guest with a network adapter and our channel, bound to uio_hv_generic, and its function.
fn guest() -> FakeSysfs {
    let sysfs = FakeSysfs::with_buses();
    sysfs.vmbus_device(&name(0xaaaa), NETVSC_TYPE, 0xaaaa);
    sysfs.bound_channel(&name(INSTANCE), TYPE, INSTANCE, 0);
    sysfs.pci_function(&PciFunction::other("0000:00:08.0"));
    sysfs.pci_function(&PciFunction::vmbmmio(BDF, TYPE, INSTANCE, BASE, SIZE));
    sysfs
}

#[test]
fn lists_every_channel_of_the_interface_type_and_nothing_else() {
    let sysfs = guest();
    sysfs.vmbus_device(&name(OTHER_INSTANCE), TYPE, OTHER_INSTANCE);
    let mut instances: Vec<WireGuid> = list_channels(sysfs.root(), WireGuid::from_u128(TYPE))
        .unwrap()
        .into_iter()
        .map(|entry| entry.interface_instance)
        .collect();
    instances.sort_by_key(|guid| guid.to_u128());
    let mut expected = vec![
        WireGuid::from_u128(INSTANCE),
        WireGuid::from_u128(OTHER_INSTANCE),
    ];
    expected.sort_by_key(|guid| guid.to_u128());
    assert_eq!(instances, expected);
    assert!(
        list_channels(sysfs.root(), WireGuid::from_u128(0x1))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn the_only_channel_is_found_without_its_instance() {
    let sysfs = guest();
    let channel = find_only_channel(sysfs.root(), WireGuid::from_u128(TYPE)).unwrap();
    assert_eq!(channel.interface_instance, WireGuid::from_u128(INSTANCE));
    assert!(channel.bound_to_uio());
}

#[test]
fn no_channel_of_the_type_and_several_are_told_apart() {
    let sysfs = FakeSysfs::with_buses();
    let none = find_only_channel(sysfs.root(), WireGuid::from_u128(TYPE)).unwrap_err();
    assert!(matches!(none, DiscoverError::NoChannelOfType { .. }));
    assert_eq!(none.kind(), "no_such_channel");
    assert!(none.to_string().contains("interface type"), "{none}");

    let sysfs = guest();
    sysfs.vmbus_device(&name(OTHER_INSTANCE), TYPE, OTHER_INSTANCE);
    let several = find_only_channel(sysfs.root(), WireGuid::from_u128(TYPE)).unwrap_err();
    assert_eq!(several.kind(), "several_channels");
    let message = several.to_string();
    assert!(message.contains(&name(INSTANCE)), "{message}");
    assert!(message.contains(&name(OTHER_INSTANCE)), "{message}");
    // With its instance, each is found.
    let located = Located::find(sysfs.root(), &target(Some(INSTANCE))).unwrap();
    assert_eq!(
        located.channel.interface_instance,
        WireGuid::from_u128(INSTANCE)
    );
}

#[test]
fn locates_the_channel_its_node_and_its_function_in_one_call() {
    let sysfs = guest();
    let located = Located::find(sysfs.root(), &target(None)).unwrap();
    assert_eq!(located.channel.device_name, name(INSTANCE));
    assert_eq!(located.uio.name, "uio0");
    assert_eq!(located.function.bdf.to_string(), BDF);
    assert_eq!(located.function.bar.start, BASE);
    assert_eq!(located.function.bar.size, SIZE);
}

#[test]
fn each_step_fails_with_its_own_error() {
    // No function paired with the channel.
    let sysfs = FakeSysfs::with_buses();
    sysfs.bound_channel(&name(INSTANCE), TYPE, INSTANCE, 0);
    let error = Located::find(sysfs.root(), &target(None)).unwrap_err();
    assert_eq!(error.kind(), "no_paired_function", "{error}");

    // A channel nobody bound, with uio_hv_generic not loaded.
    let sysfs = FakeSysfs::with_buses();
    sysfs.vmbus_device(&name(INSTANCE), TYPE, INSTANCE);
    let error = Located::find(sysfs.root(), &target(None)).unwrap_err();
    assert_eq!(error.kind(), "module_missing", "{error}");

    // No VMBus at all.
    let error = Located::find(FakeSysfs::new().root(), &target(None)).unwrap_err();
    assert_eq!(error.kind(), "no_vmbus", "{error}");
}
