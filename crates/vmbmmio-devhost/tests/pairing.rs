//! The pairing capability in the emulated configuration space, golden, read-only, and found by
//! the guest-side walk of `vmbmmio_proto::pci_cap`.

mod support;

use support::{Fake, config};
use vmbmmio_devhost::callbacks::{PciDeviceCallbacks, PciPnpId};
use vmbmmio_devhost::emulator::Emulator;
use vmbmmio_devhost::guid::Guid;
use vmbmmio_devhost::layout::BarLayout;
use vmbmmio_devhost::sequence::DeviceHost;
use vmbmmio_proto::ioctl::WireGuid;
use vmbmmio_proto::pci_cap::{CHANNEL_PROTOCOL_VERSION, FoundPairing, Pairing, find_pairing};

const INSTANCE: u128 = 0x3c1d77a0_52e4_4b8e_9d21_6f0ab5c31001;
const TYPE: u128 = 0x3c1d77a0_52e4_4b8e_9d21_6f0ab5c30001;

fn pairing() -> Pairing {
    Pairing {
        interface_instance: WireGuid::from_u128(INSTANCE),
        interface_type: WireGuid::from_u128(TYPE),
        protocol_version: CHANNEL_PROTOCOL_VERSION,
    }
}

fn emulator() -> Emulator {
    let emulator = Emulator::new(
        PciPnpId {
            vendor_id: 0x1af4,
            device_id: 0x1110,
            ..Default::default()
        },
        2,
    );
    emulator.set_layout(BarLayout::plan(&[8192, 4096]).unwrap());
    emulator
}

fn dwords(emulator: &Emulator, from: u32, to: u32) -> Vec<u32> {
    (from..to)
        .step_by(4)
        .map(|offset| emulator.read_config_space(offset).unwrap())
        .collect()
}

#[test]
fn without_a_pairing_there_is_no_capability_list() {
    let emulator = emulator();
    assert_eq!(emulator.read_config_space(0x04).unwrap(), 0);
    assert_eq!(emulator.read_config_space(0x34).unwrap(), 0);
    assert_eq!(
        find_pairing(|o| emulator.read_config_space(u32::from(o)).unwrap()),
        Ok(None)
    );
}

#[test]
fn config_space_golden_with_the_pairing_capability() {
    let emulator = emulator();
    emulator.set_pairing(&pairing());
    // Status "capabilities list" (bit 4 of the status word), command 0.
    assert_eq!(emulator.read_config_space(0x04).unwrap(), 0x0010_0000);
    // Capabilities pointer.
    assert_eq!(emulator.read_config_space(0x34).unwrap(), 0x40);
    // The capability at 0x40..0x70, dword by dword.
    assert_eq!(
        dwords(&emulator, 0x40, 0x70),
        [
            0x0130_0009, // ID 0x09, next 0, length 48, layout version 1
            0x5042_4D56, // "VMBP"
            0x3c1d_77a0, // instance, Windows GUID layout
            0x4b8e_52e4,
            0x0a6f_219d, // bytes 9d 21 6f 0a
            0x0110_c3b5,
            0x3c1d_77a0, // type
            0x4b8e_52e4,
            0x0a6f_219d,
            0x0100_c3b5,
            0x0001_0000, // protocol 1.0
            0,           // reserved
        ]
    );
    // Around it: the standard header's end and the space after the capability read 0.
    assert_eq!(emulator.read_config_space(0x3C).unwrap(), 0);
    assert_eq!(emulator.read_config_space(0x70).unwrap(), 0);
    assert_eq!(
        find_pairing(|o| emulator.read_config_space(u32::from(o)).unwrap()),
        Ok(Some(FoundPairing {
            offset: 0x40,
            pairing: pairing()
        }))
    );
}

#[test]
fn the_capability_is_read_only() {
    let emulator = emulator();
    emulator.set_pairing(&pairing());
    let before = dwords(&emulator, 0x00, 0x100);
    for offset in (0x40..0x70).step_by(4).chain([0x34]) {
        emulator.write_config_space(offset, 0xDEAD_BEEF).unwrap();
        emulator.write_config_space(offset, 0).unwrap();
    }
    // The status half of 0x04 ignores writes too (only command bits change).
    emulator.write_config_space(0x04, 0xFFFF_0000).unwrap();
    assert_eq!(dwords(&emulator, 0x00, 0x100), before);
}

#[test]
fn the_device_host_exposes_its_channel_before_the_vm_starts() {
    let fake = Fake::default();
    let config = config();
    let host = DeviceHost::start(&config, fake.backends(), Box::new(|_| {})).unwrap();
    // The VM is not started; the guest's first enumeration already finds the pairing.
    let emulator: std::sync::Arc<dyn PciDeviceCallbacks> = host.emulator().clone();
    let found = find_pairing(|o| emulator.read_config_space(u32::from(o)).unwrap())
        .unwrap()
        .unwrap();
    let guid = |wire: WireGuid| Guid::from_u128(wire.to_u128());
    assert_eq!(
        guid(found.pairing.interface_instance),
        config.interface_instance
    );
    assert_eq!(guid(found.pairing.interface_type), config.interface_type);
    assert_eq!(found.pairing.protocol_version, CHANNEL_PROTOCOL_VERSION);
    drop(emulator);
    assert!(host.shutdown().is_clean());
    fake.world().assert_nothing_left();
}
