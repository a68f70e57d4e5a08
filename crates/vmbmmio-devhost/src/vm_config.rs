//! The piece of VM configuration the device host needs: its `FlexibleIov` entry.
//!
//! hdv.md §5: the VM's HCS document (`VirtualMachine.Devices.FlexibleIov`) must declare the
//! device, keyed by the instance GUID, with the emulator's class GUID as `EmulatorId` and
//! `"HostingModel": "External"`; the HCS offers the guest only devices declared there
//! (observed), and the start fails if the announced device host is missing.

use crate::guid::Guid;

/// The `"FlexibleIov": {...}` member for the device, ready to paste into the VM's
/// `Devices` object.
pub fn flexible_iov_snippet(instance_id: Guid, emulator_class_id: Guid) -> String {
    format!(
        "\"FlexibleIov\": {{\"{instance_id}\": {{\"EmulatorId\": \"{emulator_class_id}\", \
         \"HostingModel\": \"External\"}}}}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippet_has_the_documented_shape() {
        let instance = Guid::from_u128(0x01234567_89ab_cdef_0123_456789abcdef);
        let class = Guid::from_u128(0x62cdfa57_7648_44f3_b164_98e2da991ec5);
        assert_eq!(
            flexible_iov_snippet(instance, class),
            "\"FlexibleIov\": {\"01234567-89ab-cdef-0123-456789abcdef\": {\"EmulatorId\": \
             \"62cdfa57-7648-44f3-b164-98e2da991ec5\", \"HostingModel\": \"External\"}}"
        );
    }
}
