//! Compile-time layout checks of every C struct and pointer-sized type the wrapper hands to KMCL.
//!
//! Values from kmcl.md §3 ("x64 layout: offsets 0, 4, 8, 16, 24, 32, 40; total 48 bytes") and
//! §7 ("Rust ABI notes"), plus the wdm.h layouts of `GUID` and `UNICODE_STRING`. The 64-bit
//! block is evaluated by every 64-bit build, including the Windows-target type-check
//! (`scripts/check-windows-target.sh`, `x86_64-pc-windows-msvc`), so a layout mistake fails the
//! build on Linux and on Windows alike.

use core::mem::{align_of, offset_of, size_of};

use crate::raw::{
    BOOLEAN, GUID, PFN_VMB_CHANNEL_OPENED, PFN_VMB_CHANNEL_PROCESS_PACKET, UNICODE_STRING,
    VMB_CHANNEL_STATE_CHANGE_CALLBACKS, VMBCHANNEL, VMBPACKETCOMPLETION,
};

// Independent of pointer width.
const _: () = assert!(size_of::<GUID>() == 16);
const _: () = assert!(align_of::<GUID>() == 4);
const _: () = assert!(offset_of!(GUID, Data1) == 0);
const _: () = assert!(offset_of!(GUID, Data2) == 4);
const _: () = assert!(offset_of!(GUID, Data3) == 6);
const _: () = assert!(offset_of!(GUID, Data4) == 8);
const _: () = assert!(size_of::<BOOLEAN>() == 1);
// `Option<extern fn>` is a nullable function pointer: the same size as the C PFN.
const _: () = assert!(size_of::<PFN_VMB_CHANNEL_OPENED>() == size_of::<usize>());
const _: () = assert!(size_of::<PFN_VMB_CHANNEL_PROCESS_PACKET>() == size_of::<usize>());
const _: () = assert!(size_of::<VMBCHANNEL>() == size_of::<usize>());
const _: () = assert!(size_of::<VMBPACKETCOMPLETION>() == size_of::<usize>());

// 64-bit targets (x64 and ARM64 Windows, and the Linux test host).
#[cfg(target_pointer_width = "64")]
const _: () = {
    type Callbacks = VMB_CHANNEL_STATE_CHANGE_CALLBACKS;
    assert!(size_of::<Callbacks>() == 48);
    assert!(align_of::<Callbacks>() == 8);
    assert!(offset_of!(Callbacks, Version) == 0);
    assert!(offset_of!(Callbacks, Size) == 4);
    assert!(offset_of!(Callbacks, EvtChannelOpened) == 8);
    assert!(offset_of!(Callbacks, EvtChannelClosed) == 16);
    assert!(offset_of!(Callbacks, EvtChannelSuspend) == 24);
    assert!(offset_of!(Callbacks, EvtChannelStarted) == 32);
    assert!(offset_of!(Callbacks, EvtChannelPostStarted) == 40);

    assert!(size_of::<UNICODE_STRING>() == 16);
    assert!(offset_of!(UNICODE_STRING, Length) == 0);
    assert!(offset_of!(UNICODE_STRING, MaximumLength) == 2);
    assert!(offset_of!(UNICODE_STRING, Buffer) == 8);
};

#[cfg(test)]
mod tests {
    use crate::raw::{
        VMB_CHANNEL_STATE_CHANGE_CALLBACKS_INIT, VMB_CHANNEL_STATE_CHANGE_CALLBACKS_VERSION,
    };

    #[test]
    fn callbacks_init_sets_version_and_size_and_nulls() {
        let callbacks = VMB_CHANNEL_STATE_CHANGE_CALLBACKS_INIT();
        assert_eq!(
            callbacks.Version,
            VMB_CHANNEL_STATE_CHANGE_CALLBACKS_VERSION
        );
        assert_eq!(callbacks.Version, 1);
        #[cfg(target_pointer_width = "64")]
        assert_eq!(callbacks.Size, 48);
        assert!(callbacks.EvtChannelOpened.is_none());
        assert!(callbacks.EvtChannelClosed.is_none());
        assert!(callbacks.EvtChannelSuspend.is_none());
        assert!(callbacks.EvtChannelStarted.is_none());
        assert!(callbacks.EvtChannelPostStarted.is_none());
    }

    #[test]
    fn guid_round_trips_its_canonical_spelling() {
        let value = 0x6ba7b810_9dad_11d1_80b4_00c04fd430c8_u128;
        let guid = crate::raw::GUID::from_u128(value);
        assert_eq!(guid.Data1, 0x6ba7b810);
        assert_eq!(guid.Data2, 0x9dad);
        assert_eq!(guid.Data3, 0x11d1);
        assert_eq!(guid.Data4, [0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8]);
        assert_eq!(guid.to_u128(), value);
    }
}
