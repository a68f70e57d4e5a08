//! The KMCL table filled from the host library `vmbkmclr.sys` (Windows only).
//!
//! kmcl.md §1a: host-side server code (`vmswitch.sys`) imports KMCL directly from
//! `vmbkmclr.sys` through its import table; no `vmbkmclr.lib` import library is known to ship,
//! and the interface query (§1b) cannot be used because its GUIDs and version numbers are NOT
//! FOUND (§9 item 2). `raw-dylib` lets rustc write the import entries itself, without an import
//! library; `+verbatim` keeps the `.sys` file name exactly as written.
//!
//! Only the entry points with evidence of host-side use (or without which no server channel can
//! work) are imported; each declaration names its evidence. A missing import stops the driver
//! from loading, so every other table entry is `None` here (`KmclApi`'s optional fields).
//!
//! Whether `vmbkmclr.sys` really exports each name is provable only on a Hyper-V host (the
//! driver loads, or fails with STATUS_DRIVER_ENTRYPOINT_NOT_FOUND); this module is only
//! type-checked on Linux.

use core::ffi::c_void;

use crate::provider::KmclProvider;
use crate::raw::{
    BOOLEAN, GUID, HANDLE, NTSTATUS, PCUNICODE_STRING, PDEVICE_OBJECT,
    PFN_VMB_CHANNEL_PROCESS_PACKET, PFN_VMB_CHANNEL_PROCESSING_COMPLETE,
    PVMB_CHANNEL_STATE_CHANGE_CALLBACKS, VMBCHANNEL, VMBPACKETCOMPLETION,
};
use crate::table::KmclApi;

// FASTCALL (VmbChannelSetPointer/GetPointer, kmcl.md §2.0) differs from "system" only on 32-bit
// x86, where raw-dylib would also need decorated names. The project targets x64 and ARM64.
#[cfg(target_arch = "x86")]
compile_error!("kmcl's vmbkmclr.sys imports support 64-bit Windows only (FASTCALL entry points)");

// SAFETY: each declaration below matches the header prototype in kmcl.md §2 (parameter order
// and types, GUIDs by value §2.1, BOOLEAN = u8 §7, FASTCALL = "system" on x64/ARM64 §2.0). The
// compiler cannot check this; a wrong declaration is an ABI bug, so every one cites its source.
#[link(name = "vmbkmclr.sys", kind = "raw-dylib", modifiers = "+verbatim")]
unsafe extern "system" {
    /// Evidence: kmcl.md §4 init step 1 (host dxgkrnl `CreateServerVmBusChannel`).
    fn VmbChannelAllocate(
        ParentDeviceObject: PDEVICE_OBJECT,
        IsServer: BOOLEAN,
        Channel: *mut VMBCHANNEL,
    ) -> NTSTATUS;
    /// Evidence: kmcl.md §4 (dxgkrnl's failure path; "Teardown").
    fn VmbChannelCleanup(Channel: VMBCHANNEL);
    /// Evidence: kmcl.md §1a (`vmswitch.sys` imports `vmbkmclr!VmbChannelEnable`), §4 step 11.
    fn VmbChannelEnable(Channel: VMBCHANNEL) -> NTSTATUS;
    /// Evidence: kmcl.md §4 "Teardown" (not separately tagged \[B\]; required for any teardown).
    fn VmbChannelDisable(Channel: VMBCHANNEL);
    /// Evidence: kmcl.md §4 step 12 (host dxgkrnl).
    fn VmbChannelStart(Channel: VMBCHANNEL);
    /// Evidence: kmcl.md §4 step 3 (host dxgkrnl).
    fn VmbChannelInitSetMaximumPacketSize(Channel: VMBCHANNEL, PacketSize: u32) -> NTSTATUS;
    /// Evidence: kmcl.md §4 step 6 (host dxgkrnl).
    fn VmbChannelInitSetStateChangeCallbacks(
        Channel: VMBCHANNEL,
        StateChangeCallbacks: PVMB_CHANNEL_STATE_CHANGE_CALLBACKS,
    ) -> NTSTATUS;
    /// Evidence: kmcl.md §4 step 7 (host dxgkrnl).
    fn VmbChannelInitSetProcessPacketCallbacks(
        Channel: VMBCHANNEL,
        ProcessPacketCallback: PFN_VMB_CHANNEL_PROCESS_PACKET,
        ProcessingCompleteCallback: PFN_VMB_CHANNEL_PROCESSING_COMPLETE,
    ) -> NTSTATUS;
    /// Evidence: kmcl.md §4 step 9 (host dxgkrnl).
    fn VmbChannelInitSetFriendlyName(Channel: VMBCHANNEL, Name: PCUNICODE_STRING) -> NTSTATUS;
    /// Evidence: kmcl.md §4 step 8 (host dxgkrnl).
    fn VmbServerChannelInitSetFlags(Channel: VMBCHANNEL, Flags: u32) -> NTSTATUS;
    /// Evidence: kmcl.md §4 step 10 and §5 (host dxgkrnl).
    fn VmbServerChannelInitSetMmioMegabytes(
        Channel: VMBCHANNEL,
        MmioMegabytes: u16,
        MmioMegabytesOptional: u16,
    ) -> NTSTATUS;
    /// Evidence: kmcl.md §4 step 5 (host dxgkrnl). GUIDs by value (§2.1).
    fn VmbServerChannelInitSetTargetInterfaceId(
        Channel: VMBCHANNEL,
        InterfaceType: GUID,
        InterfaceInstance: GUID,
    ) -> NTSTATUS;
    /// Evidence: kmcl.md §4 step 2 (host dxgkrnl).
    fn VmbServerChannelInitSetVmbusHandle(Channel: VMBCHANNEL, VmbusHandle: HANDLE) -> NTSTATUS;
    /// Evidence: kmcl.md §1a (`vmswitch.sys` imports `vmbkmclr!VmbConvertVmbusHandleToKernelHandle`).
    fn VmbConvertVmbusHandleToKernelHandle(
        VmbusHandle: HANDLE,
        KernelHandle: *mut HANDLE,
    ) -> NTSTATUS;
    /// Evidence: kmcl.md §1a (`vmswitch.sys` imports `vmbkmclr!VmbChannelSetPointer`), §4 step 4.
    fn VmbChannelSetPointer(Channel: VMBCHANNEL, Pointer: *mut c_void);
    /// Evidence: none direct; the counterpart of the imported SetPointer and the only way back
    /// from a callback's channel to the driver's context (kmcl.md §2.1).
    fn VmbChannelGetPointer(Channel: VMBCHANNEL) -> *mut c_void;
    /// Evidence: kmcl.md §4 "Optional extras" (host dxgkrnl's VAIL path).
    fn VmbChannelSetIncomingProcessingAtPassive(Channel: VMBCHANNEL, RequirePassive: BOOLEAN);
    /// Evidence: none direct; every delivered packet must be completed (kmcl.md §2.2).
    fn VmbChannelPacketComplete(
        PacketCompletionContext: VMBPACKETCOMPLETION,
        PacketCompletionBuffer: *mut c_void,
        BufSize: u32,
    );
}

/// The table of `vmbkmclr.sys` imports. Optional entries are `None`.
pub static VMBKMCLR_API: KmclApi = KmclApi {
    VmbChannelAllocate,
    VmbChannelCleanup,
    VmbChannelEnable,
    VmbChannelDisable,
    VmbChannelStart,
    VmbChannelPause: None,
    VmbChannelInitSetMaximumPacketSize,
    VmbChannelInitSetStateChangeCallbacks,
    VmbChannelInitSetProcessPacketCallbacks,
    VmbChannelInitSetFriendlyName,
    VmbChannelInitSetFlags: None,
    VmbServerChannelInitSetFlags,
    VmbServerChannelInitSetMmioMegabytes,
    VmbServerChannelInitSetTargetInterfaceId,
    VmbServerChannelInitSetVmbusHandle,
    VmbConvertVmbusHandleToKernelHandle,
    VmbChannelSetPointer,
    VmbChannelGetPointer,
    VmbChannelSetIncomingProcessingAtPassive,
    VmbChannelPacketComplete,
    VmbChannelPacketDeferToPassive: None,
    VmbChannelPacketFail: None,
    VmbPacketAllocate: None,
    VmbPacketFree: None,
    VmbPacketSetCompletionRoutine: None,
    VmbPacketSend: None,
    VmbChannelGetMmioSpace: None,
};

/// The `vmbkmclr.sys` import table. IRQL: any.
pub fn vmbkmclr_api() -> &'static KmclApi {
    &VMBKMCLR_API
}

/// The provider the Windows driver uses: KMCL straight from `vmbkmclr.sys`.
pub struct Vmbkmclr;

impl KmclProvider for Vmbkmclr {
    fn api() -> &'static KmclApi {
        &VMBKMCLR_API
    }
}
