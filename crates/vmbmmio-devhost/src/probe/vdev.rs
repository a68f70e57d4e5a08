//! The VMBus vdev path of a VM and the two IOCTLs the `--experimental` check sends.
//!
//! Public sources: the path form `\\.\VMBus\vdev\{VmGuid}` and the two control codes are those
//! of `SB-GC-Labs/hAFL1` `Harness/StructsInitiator/StructsInitiator/main.c` (`AssembleVMBusGuid`,
//! `InitializeVMBus`); their names are from the `_VMBUS_CHANNEL_IOCTL_TYPE` enum of Microsoft's
//! public `vmbuspipe.pdb` (build 14347, stored in `ProjectMile/Mile.HyperV`
//! `References/Symbols/14347`). Nothing documents either; the probe records what they return.

use std::time::Duration;

use crate::guid::Guid;

/// `IOCTL_VMBUS_VDEV_SETUP`.
pub const IOCTL_VDEV_SETUP: u32 = 0x003E_C04C;
/// `IOCTL_VMBUS_VDEV_WAIT_FOR_CONNECT`.
pub const IOCTL_VDEV_WAIT_FOR_CONNECT: u32 = 0x003E_C074;
/// The first field of VDEV_SETUP's input as hAFL1 sends it (looks like a version).
pub const VDEV_SETUP_FIRST_FIELD: u64 = 0x5_0000;
/// The output buffer hAFL1 gives WAIT_FOR_CONNECT.
pub const WAIT_FOR_CONNECT_OUTPUT_LEN: u32 = 12;
/// How long each IOCTL may take before it is cancelled.
pub const IOCTL_TIMEOUT: Duration = Duration::from_secs(5);
/// `GENERIC_ALL`, the access hAFL1 opens the path with.
pub const VDEV_DESIRED_ACCESS: u32 = 0x1000_0000;
/// No sharing, as hAFL1.
pub const VDEV_SHARE_MODE: u32 = 0;

/// `\\.\VMBus\vdev\{vm-id}` (lower-case GUID in braces).
pub fn vdev_path(vm_id: Guid) -> String {
    format!("\\\\.\\VMBus\\vdev\\{{{vm_id}}}")
}

/// VDEV_SETUP's input: the little-endian u64 [`VDEV_SETUP_FIRST_FIELD`], then the VM's name in
/// UTF-16LE with a terminating NUL.
pub fn vdev_setup_input(vm_name: &str) -> Vec<u8> {
    let mut input = VDEV_SETUP_FIRST_FIELD.to_le_bytes().to_vec();
    for unit in vm_name.encode_utf16().chain(std::iter::once(0)) {
        input.extend_from_slice(&unit.to_le_bytes());
    }
    input
}

/// The IOCTLs the experimental check sends, in order: code, name, input, output size.
pub fn experimental_ioctls(vm_name: &str) -> Vec<(u32, &'static str, Vec<u8>, u32)> {
    vec![
        (IOCTL_VDEV_SETUP, "VDEV_SETUP", vdev_setup_input(vm_name), 0),
        (
            IOCTL_VDEV_WAIT_FOR_CONNECT,
            "VDEV_WAIT_FOR_CONNECT",
            Vec::new(),
            WAIT_FOR_CONNECT_OUTPUT_LEN,
        ),
    ]
}

/// Bytes as lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
