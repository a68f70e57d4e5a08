//! C types of the KMCL header, as a server driver sees them.
//!
//! Every item cites the section of `shared/reference/kmcl.md` it comes from. Names keep the C
//! spelling so a reviewer can hold them against the header line by line.
//!
//! ABI notes (kmcl.md §7 "Rust ABI notes", §2.0):
//! - all callbacks and functions are `extern "system"`; the `FASTCALL` ones only differ on 32-bit
//!   x86, which this project does not target (x64 and ARM64 have one convention);
//! - `BOOLEAN` is `u8`, handles are pointer-sized, structs are naturally aligned;
//! - GUIDs are passed **by value** where the prototype says so (§2.1,
//!   `VmbServerChannelInitSetTargetInterfaceId`).
#![allow(non_camel_case_types, non_snake_case, clippy::upper_case_acronyms)]

use core::ffi::c_void;

/// `NTSTATUS`: negative values are errors (`NT_SUCCESS(s)` is `s >= 0`).
pub type NTSTATUS = i32;
/// `BOOLEAN`: one byte, 0 or 1.
pub type BOOLEAN = u8;
/// `TRUE` as a [`BOOLEAN`].
pub const TRUE: BOOLEAN = 1;
/// `FALSE` as a [`BOOLEAN`].
pub const FALSE: BOOLEAN = 0;
/// `HANDLE`: an opaque pointer-sized kernel or user handle.
pub type HANDLE = *mut c_void;

/// Opaque `DEVICE_OBJECT`; only ever handled by pointer.
#[repr(C)]
pub struct DEVICE_OBJECT {
    _opaque: [u8; 0],
}
/// `PDEVICE_OBJECT`.
pub type PDEVICE_OBJECT = *mut DEVICE_OBJECT;

/// Opaque `MDL`; only ever handled by pointer.
#[repr(C)]
pub struct MDL {
    _opaque: [u8; 0],
}
/// `PMDL`.
pub type PMDL = *mut MDL;

/// `GUID`, 16 bytes, as laid out by the Windows headers.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GUID {
    /// First 32 bits, little-endian in memory.
    pub Data1: u32,
    /// Next 16 bits.
    pub Data2: u16,
    /// Next 16 bits.
    pub Data3: u16,
    /// Last 8 bytes, in order.
    pub Data4: [u8; 8],
}

impl GUID {
    /// Builds a GUID from its canonical `u128` spelling, `0xXXXXXXXX_XXXX_XXXX_XXXX_XXXXXXXXXXXX`.
    pub const fn from_u128(value: u128) -> Self {
        let b = value.to_be_bytes();
        Self {
            Data1: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            Data2: u16::from_be_bytes([b[4], b[5]]),
            Data3: u16::from_be_bytes([b[6], b[7]]),
            Data4: [b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]],
        }
    }

    /// The canonical `u128` spelling of this GUID (inverse of [`GUID::from_u128`]).
    pub const fn to_u128(self) -> u128 {
        let d1 = self.Data1.to_be_bytes();
        let d2 = self.Data2.to_be_bytes();
        let d3 = self.Data3.to_be_bytes();
        let d4 = self.Data4;
        u128::from_be_bytes([
            d1[0], d1[1], d1[2], d1[3], d2[0], d2[1], d3[0], d3[1], d4[0], d4[1], d4[2], d4[3],
            d4[4], d4[5], d4[6], d4[7],
        ])
    }
}

/// `UNICODE_STRING` (wdm.h): lengths in bytes, buffer not necessarily NUL-terminated.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UNICODE_STRING {
    /// Length of the string in bytes, without any terminator.
    pub Length: u16,
    /// Size of `Buffer` in bytes.
    pub MaximumLength: u16,
    /// UTF-16 code units.
    pub Buffer: *mut u16,
}
/// `PCUNICODE_STRING`.
pub type PCUNICODE_STRING = *const UNICODE_STRING;

/// Marker behind [`VMBCHANNEL`] (`DECLARE_HANDLE(VMBCHANNEL)`, kmcl.md §7).
#[repr(C)]
pub struct VMBCHANNEL__ {
    _opaque: [u8; 0],
}
/// Marker behind [`VMBPACKET`].
#[repr(C)]
pub struct VMBPACKET__ {
    _opaque: [u8; 0],
}
/// Marker behind [`VMBPACKETCOMPLETION`].
#[repr(C)]
pub struct VMBPACKETCOMPLETION__ {
    _opaque: [u8; 0],
}

/// `VMBCHANNEL`: a channel handle (kmcl.md §7 "Handle types").
pub type VMBCHANNEL = *mut VMBCHANNEL__;
/// `VMBPACKET`: an outgoing packet object.
pub type VMBPACKET = *mut VMBPACKET__;
/// `VMBPACKETCOMPLETION`: identifies one incoming packet until `VmbChannelPacketComplete`.
pub type VMBPACKETCOMPLETION = *mut VMBPACKETCOMPLETION__;

// ---------------------------------------------------------------------------------------------
// Callback typedefs (kmcl.md §3 table). IRQL as documented there.

/// `PFN_VMB_CHANNEL_OPENED`, PASSIVE_LEVEL. A failure status rolls the open back.
pub type PFN_VMB_CHANNEL_OPENED =
    Option<unsafe extern "system" fn(Channel: VMBCHANNEL) -> NTSTATUS>;
/// `PFN_VMB_CHANNEL_CLOSED`, PASSIVE_LEVEL.
pub type PFN_VMB_CHANNEL_CLOSED = Option<unsafe extern "system" fn(Channel: VMBCHANNEL)>;
/// `PFN_VMB_CHANNEL_SUSPEND`, PASSIVE_LEVEL.
pub type PFN_VMB_CHANNEL_SUSPEND = Option<unsafe extern "system" fn(Channel: VMBCHANNEL)>;
/// `PFN_VMB_CHANNEL_STARTED`, PASSIVE_LEVEL.
pub type PFN_VMB_CHANNEL_STARTED = Option<unsafe extern "system" fn(Channel: VMBCHANNEL)>;
/// `PFN_VMB_CHANNEL_POST_STARTED`, PASSIVE_LEVEL.
pub type PFN_VMB_CHANNEL_POST_STARTED = Option<unsafe extern "system" fn(Channel: VMBCHANNEL)>;
/// `PFN_VMB_CHANNEL_PROCESS_PACKET`, IRQL <= DISPATCH_LEVEL (PASSIVE_LEVEL when incoming
/// processing at passive is set).
pub type PFN_VMB_CHANNEL_PROCESS_PACKET = Option<
    unsafe extern "system" fn(
        Channel: VMBCHANNEL,
        Packet: VMBPACKETCOMPLETION,
        Buffer: *mut c_void,
        BufferLength: u32,
        Flags: u32,
    ),
>;
/// `PFN_VMB_CHANNEL_PROCESSING_COMPLETE`, same IRQL rule as ProcessPacket.
pub type PFN_VMB_CHANNEL_PROCESSING_COMPLETE =
    Option<unsafe extern "system" fn(Channel: VMBCHANNEL, PacketsProcessed: u32)>;
/// `PFN_VMB_PACKET_COMPLETION_ROUTINE`, IRQL <= DISPATCH_LEVEL. No `Channel` parameter (kmcl.md
/// §9 item 9: the header's comment lists one, the prototype does not).
pub type PFN_VMB_PACKET_COMPLETION_ROUTINE = Option<
    unsafe extern "system" fn(
        Packet: VMBPACKET,
        Status: NTSTATUS,
        Buffer: *mut c_void,
        BufferLength: u32,
    ),
>;

/// `VMB_CHANNEL_STATE_CHANGE_CALLBACKS` (kmcl.md §3): 48 bytes on x64, offsets 0, 4, 8, 16, 24,
/// 32, 40. NULL entries are accepted (dxgkrnl's VAIL path leaves two NULL).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct VMB_CHANNEL_STATE_CHANGE_CALLBACKS {
    /// Must be [`VMB_CHANNEL_STATE_CHANGE_CALLBACKS_VERSION`].
    pub Version: u32,
    /// `sizeof(VMB_CHANNEL_STATE_CHANGE_CALLBACKS)`.
    pub Size: u32,
    /// The guest opened the channel.
    pub EvtChannelOpened: PFN_VMB_CHANNEL_OPENED,
    /// The channel was closed, rescinded or disabled.
    pub EvtChannelClosed: PFN_VMB_CHANNEL_CLOSED,
    /// The channel is being paused, disabled or closed while running.
    pub EvtChannelSuspend: PFN_VMB_CHANNEL_SUSPEND,
    /// The channel is open and started; no packets delivered yet.
    pub EvtChannelStarted: PFN_VMB_CHANNEL_STARTED,
    /// Incoming packets are flowing.
    pub EvtChannelPostStarted: PFN_VMB_CHANNEL_POST_STARTED,
}
/// `PVMB_CHANNEL_STATE_CHANGE_CALLBACKS`.
pub type PVMB_CHANNEL_STATE_CHANGE_CALLBACKS = *mut VMB_CHANNEL_STATE_CHANGE_CALLBACKS;

/// The only defined `Version` of [`VMB_CHANNEL_STATE_CHANGE_CALLBACKS`] (a literal in the
/// header, kmcl.md §7 "Other values").
pub const VMB_CHANNEL_STATE_CHANGE_CALLBACKS_VERSION: u32 = 1;

/// `sizeof(VMB_CHANNEL_STATE_CHANGE_CALLBACKS)` as the `ULONG` the struct carries (48 on x64).
const VMB_CHANNEL_STATE_CHANGE_CALLBACKS_SIZE: u32 = {
    let size = core::mem::size_of::<VMB_CHANNEL_STATE_CHANGE_CALLBACKS>();
    assert!(size <= u32::MAX as usize);
    #[allow(clippy::cast_possible_truncation)] // checked just above, at compile time
    let size = size as u32;
    size
};

/// `VMB_CHANNEL_STATE_CHANGE_CALLBACKS_INIT`: the header's FORCEINLINE helper, reimplemented
/// (kmcl.md §3): everything zero (all callbacks NULL), `Version = 1`, `Size = sizeof`.
pub const fn VMB_CHANNEL_STATE_CHANGE_CALLBACKS_INIT() -> VMB_CHANNEL_STATE_CHANGE_CALLBACKS {
    VMB_CHANNEL_STATE_CHANGE_CALLBACKS {
        Version: VMB_CHANNEL_STATE_CHANGE_CALLBACKS_VERSION,
        Size: VMB_CHANNEL_STATE_CHANGE_CALLBACKS_SIZE,
        EvtChannelOpened: None,
        EvtChannelClosed: None,
        EvtChannelSuspend: None,
        EvtChannelStarted: None,
        EvtChannelPostStarted: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Constants (kmcl.md §7 "#defines ([H])"). KMCL API bits, not the VMBus wire `chn_flags`.

/// Packet completes only when the peer sends a completion.
pub const VMBUS_CHANNEL_FORMAT_FLAG_WAIT_FOR_COMPLETION: u32 = 0x1;
/// MdlLength overrides the MDL byte count.
pub const VMBUS_CHANNEL_FORMAT_FLAG_FORCE_MDL_LENGTH: u32 = 0x2;
/// The inline buffer is pageable; KMCL copies it first.
pub const VMBUS_CHANNEL_FORMAT_FLAG_PAGED_BUFFER: u32 = 0x4;
/// OR of the format flags.
pub const VMBUS_CHANNEL_FORMAT_FLAGS: u32 = 0x7;
/// Read-only GPADL mapping.
pub const VMBUS_CHANNEL_GPADL_FLAG_READ_ONLY: u32 = 0x1;
/// OR of the GPADL flags.
pub const VMBUS_CHANNEL_GPADL_FLAGS: u32 = 0x1;
/// Channel is a pipe.
pub const VMBUS_CHANNEL_INIT_FLAG_IS_PIPE: u32 = 0x1;
/// OR of the channel init flags.
pub const VMBUS_CHANNEL_INIT_FLAGS: u32 = 0x1;
/// Offer the channel back to the host itself (no doc text in the header; kmcl.md §6 infers it
/// from dxgkrnl's no-handle path). UNCERTAIN.
pub const VMBUS_SERVER_CHANNEL_INIT_FLAG_LOOPBACK_OFFER: u32 = 0x1;
/// The guest exposes a device interface named by the channel type.
pub const VMBUS_SERVER_CHANNEL_INIT_FLAG_ENUMERATE_DEVICE_INTERFACE: u32 = 0x2;
/// Pipe mode offer.
pub const VMBUS_SERVER_CHANNEL_INIT_FLAG_OFFER_AS_PIPE: u32 = 0x4;
/// Re-offer a new channel after save/restore.
pub const VMBUS_SERVER_CHANNEL_INIT_FLAG_FORCE_NEW_CHANNEL: u32 = 0x8;
/// Socket interface provider offer.
pub const VMBUS_SERVER_CHANNEL_INIT_FLAG_TLNPI_PROVIDER_OFFER: u32 = 0x10;
/// OR of the server init flags; other bits are rejected with `STATUS_INVALID_PARAMETER_2`.
pub const VMBUS_SERVER_CHANNEL_INIT_FLAGS: u32 = 0x1F;
/// The incoming packet carries external data (use `VmbChannelPacketGetExternalData`).
pub const VMBUS_CHANNEL_PROCESS_PACKET_FLAG_EXTERNAL_DATA: u32 = 0x1;
/// OR of the process-packet flags.
pub const VMBUS_CHANNEL_PROCESS_PACKET_FLAGS: u32 = 0x1;
/// Most "extra data" bytes an offer can carry.
pub const VMBUS_SERVER_CHANNEL_INIT_MAXIMUM_OFFER_DATA: u32 = 120;

// ---------------------------------------------------------------------------------------------
// NTSTATUS values used by KMCL and by the driver (ntstatus.h values).

/// Success.
pub const STATUS_SUCCESS: NTSTATUS = 0;
/// The operation is pending.
pub const STATUS_PENDING: NTSTATUS = 0x0000_0103;
/// Partial data; more remains.
pub const STATUS_BUFFER_OVERFLOW: NTSTATUS = 0x8000_0005_u32 as i32;
/// Generic failure.
pub const STATUS_UNSUCCESSFUL: NTSTATUS = 0xC000_0001_u32 as i32;
/// Not implemented.
pub const STATUS_NOT_IMPLEMENTED: NTSTATUS = 0xC000_0002_u32 as i32;
/// Invalid handle.
pub const STATUS_INVALID_HANDLE: NTSTATUS = 0xC000_0008_u32 as i32;
/// An invalid parameter.
pub const STATUS_INVALID_PARAMETER: NTSTATUS = 0xC000_000D_u32 as i32;
/// The request is not valid for this device.
pub const STATUS_INVALID_DEVICE_REQUEST: NTSTATUS = 0xC000_0010_u32 as i32;
/// Access denied.
pub const STATUS_ACCESS_DENIED: NTSTATUS = 0xC000_0022_u32 as i32;
/// The buffer is too small.
pub const STATUS_BUFFER_TOO_SMALL: NTSTATUS = 0xC000_0023_u32 as i32;
/// Quota exceeded.
pub const STATUS_QUOTA_EXCEEDED: NTSTATUS = 0xC000_0044_u32 as i32;
/// Not enough resources.
pub const STATUS_INSUFFICIENT_RESOURCES: NTSTATUS = 0xC000_009A_u32 as i32;
/// The device is not ready.
pub const STATUS_DEVICE_NOT_READY: NTSTATUS = 0xC000_00A3_u32 as i32;
/// Not supported.
pub const STATUS_NOT_SUPPORTED: NTSTATUS = 0xC000_00BB_u32 as i32;
/// Parameter 1 invalid (KMCL: bad channel or wrong state).
pub const STATUS_INVALID_PARAMETER_1: NTSTATUS = 0xC000_00EF_u32 as i32;
/// Parameter 2 invalid.
pub const STATUS_INVALID_PARAMETER_2: NTSTATUS = 0xC000_00F0_u32 as i32;
/// Parameter 3 invalid.
pub const STATUS_INVALID_PARAMETER_3: NTSTATUS = 0xC000_00F1_u32 as i32;
/// Parameter 4 invalid.
pub const STATUS_INVALID_PARAMETER_4: NTSTATUS = 0xC000_00F2_u32 as i32;
/// Parameter 5 invalid.
pub const STATUS_INVALID_PARAMETER_5: NTSTATUS = 0xC000_00F3_u32 as i32;
/// The operation was cancelled.
pub const STATUS_CANCELLED: NTSTATUS = 0xC000_0120_u32 as i32;
/// The object is in a state that does not allow the request.
pub const STATUS_INVALID_DEVICE_STATE: NTSTATUS = 0xC000_0184_u32 as i32;
/// The device was removed (KMCL: the channel is shutting down).
pub const STATUS_DEVICE_REMOVED: NTSTATUS = 0xC000_02B6_u32 as i32;
/// The buffer size is not valid for the operation.
pub const STATUS_INVALID_BUFFER_SIZE: NTSTATUS = 0xC000_0206_u32 as i32;
/// The procedure could not be found (a KMCL entry the host library does not export).
pub const STATUS_PROCEDURE_NOT_FOUND: NTSTATUS = 0xC000_007A_u32 as i32;
/// The image is not a valid image (the host library's headers or export table were refused).
pub const STATUS_INVALID_IMAGE_FORMAT: NTSTATUS = 0xC000_007B_u32 as i32;
/// The dependent module could not be found (the host library is not loaded).
pub const STATUS_DLL_NOT_FOUND: NTSTATUS = 0xC000_0135_u32 as i32;
/// A revision number did not match.
pub const STATUS_REVISION_MISMATCH: NTSTATUS = 0xC000_0059_u32 as i32;

/// `NT_SUCCESS`.
pub const fn NT_SUCCESS(status: NTSTATUS) -> bool {
    status >= 0
}
