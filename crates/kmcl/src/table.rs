//! The one table of KMCL entry points.
//!
//! Every KMCL call the driver makes goes through a [`KmclApi`]. Who fills it:
//! - **Windows driver**: the statically imported entry points of the host library
//!   `vmbkmclr.sys` (kmcl.md §1a: the only mechanism observed for host-side server code is a
//!   direct import from `vmbkmclr.sys`, as `vmswitch.sys` does). Entry points the reference does
//!   not show host code importing are optional entries (`Option`), left `None` by the import
//!   path; the driver copes without them.
//! - **Tests and the demo**: `hvsim` fills the table with its own `extern "system"` functions,
//!   so the driver's channel code runs unchanged against the KMCL model.
//!
//! Signatures are those of kmcl.md §2 (prototypes from the header [H]; `VmbChannelGetMmioSpace`
//! from the docs [D] only). Field names keep the C function names.
#![allow(non_snake_case)]

use core::ffi::c_void;

use crate::raw::{
    BOOLEAN, GUID, HANDLE, NTSTATUS, PCUNICODE_STRING, PDEVICE_OBJECT,
    PFN_VMB_CHANNEL_PROCESS_PACKET, PFN_VMB_CHANNEL_PROCESSING_COMPLETE,
    PFN_VMB_PACKET_COMPLETION_ROUTINE, PMDL, PVMB_CHANNEL_STATE_CHANGE_CALLBACKS, VMBCHANNEL,
    VMBPACKET, VMBPACKETCOMPLETION,
};

/// The KMCL entry points a server driver uses (kmcl.md §2.1–§2.3, §5).
///
/// Each field is an `unsafe extern "system"` function pointer with the prototype's exact
/// parameter order and types. The IRQL each one requires is stated in the reference (most are
/// PASSIVE_LEVEL; packet completion and sending are allowed up to DISPATCH_LEVEL).
#[derive(Clone, Copy)]
pub struct KmclApi {
    /// `VmbChannelAllocate(ParentDeviceObject, IsServer, *Channel)`, PASSIVE_LEVEL.
    pub VmbChannelAllocate: unsafe extern "system" fn(
        ParentDeviceObject: PDEVICE_OBJECT,
        IsServer: BOOLEAN,
        Channel: *mut VMBCHANNEL,
    ) -> NTSTATUS,
    /// `VmbChannelCleanup(Channel)`: frees a Disabled channel.
    pub VmbChannelCleanup: unsafe extern "system" fn(Channel: VMBCHANNEL),
    /// `VmbChannelEnable(Channel)`: makes the offer; does not wait for the guest.
    pub VmbChannelEnable: unsafe extern "system" fn(Channel: VMBCHANNEL) -> NTSTATUS,
    /// `VmbChannelDisable(Channel)`: rescinds the offer and blocks until teardown completes.
    pub VmbChannelDisable: unsafe extern "system" fn(Channel: VMBCHANNEL),
    /// `VmbChannelStart(Channel)`: leaves the paused state (host: call right after Enable).
    pub VmbChannelStart: unsafe extern "system" fn(Channel: VMBCHANNEL),
    /// `VmbChannelPause(Channel)`: blocks until paused.
    pub VmbChannelPause: unsafe extern "system" fn(Channel: VMBCHANNEL),
    /// `VmbChannelInitSetMaximumPacketSize(Channel, PacketSize)`.
    pub VmbChannelInitSetMaximumPacketSize:
        unsafe extern "system" fn(Channel: VMBCHANNEL, PacketSize: u32) -> NTSTATUS,
    /// `VmbChannelInitSetStateChangeCallbacks(Channel, StateChangeCallbacks)`.
    pub VmbChannelInitSetStateChangeCallbacks: unsafe extern "system" fn(
        Channel: VMBCHANNEL,
        StateChangeCallbacks: PVMB_CHANNEL_STATE_CHANGE_CALLBACKS,
    ) -> NTSTATUS,
    /// `VmbChannelInitSetProcessPacketCallbacks(Channel, ProcessPacket, ProcessingComplete)`.
    pub VmbChannelInitSetProcessPacketCallbacks: unsafe extern "system" fn(
        Channel: VMBCHANNEL,
        ProcessPacketCallback: PFN_VMB_CHANNEL_PROCESS_PACKET,
        ProcessingCompleteCallback: PFN_VMB_CHANNEL_PROCESSING_COMPLETE,
    ) -> NTSTATUS,
    /// `VmbChannelInitSetFriendlyName(Channel, Name)`.
    pub VmbChannelInitSetFriendlyName:
        unsafe extern "system" fn(Channel: VMBCHANNEL, Name: PCUNICODE_STRING) -> NTSTATUS,
    /// `VmbChannelInitSetFlags(Channel, Flags)` (`VMBUS_CHANNEL_INIT_FLAGS`).
    pub VmbChannelInitSetFlags:
        unsafe extern "system" fn(Channel: VMBCHANNEL, Flags: u32) -> NTSTATUS,
    /// `VmbServerChannelInitSetFlags(Channel, Flags)` (`VMBUS_SERVER_CHANNEL_INIT_FLAGS`).
    pub VmbServerChannelInitSetFlags:
        unsafe extern "system" fn(Channel: VMBCHANNEL, Flags: u32) -> NTSTATUS,
    /// `VmbServerChannelInitSetMmioMegabytes(Channel, MmioMegabytes, MmioMegabytesOptional)`.
    pub VmbServerChannelInitSetMmioMegabytes: unsafe extern "system" fn(
        Channel: VMBCHANNEL,
        MmioMegabytes: u16,
        MmioMegabytesOptional: u16,
    ) -> NTSTATUS,
    /// `VmbServerChannelInitSetTargetInterfaceId(Channel, InterfaceType, InterfaceInstance)`;
    /// both GUIDs **by value**.
    pub VmbServerChannelInitSetTargetInterfaceId: unsafe extern "system" fn(
        Channel: VMBCHANNEL,
        InterfaceType: GUID,
        InterfaceInstance: GUID,
    ) -> NTSTATUS,
    /// `VmbServerChannelInitSetVmbusHandle(Channel, VmbusHandle)` (kernel handle).
    pub VmbServerChannelInitSetVmbusHandle:
        unsafe extern "system" fn(Channel: VMBCHANNEL, VmbusHandle: HANDLE) -> NTSTATUS,
    /// `VmbConvertVmbusHandleToKernelHandle(VmbusHandle, *KernelHandle)`; must run in the
    /// process that owns the user-mode handle; the caller closes the kernel handle.
    pub VmbConvertVmbusHandleToKernelHandle:
        unsafe extern "system" fn(VmbusHandle: HANDLE, KernelHandle: *mut HANDLE) -> NTSTATUS,
    /// `VmbChannelSetPointer(Channel, Pointer)` (FASTCALL on x86 only).
    pub VmbChannelSetPointer: unsafe extern "system" fn(Channel: VMBCHANNEL, Pointer: *mut c_void),
    /// `VmbChannelGetPointer(Channel)` (FASTCALL on x86 only).
    pub VmbChannelGetPointer: unsafe extern "system" fn(Channel: VMBCHANNEL) -> *mut c_void,
    /// `VmbChannelSetIncomingProcessingAtPassive(Channel, RequirePassive)`.
    pub VmbChannelSetIncomingProcessingAtPassive:
        unsafe extern "system" fn(Channel: VMBCHANNEL, RequirePassive: BOOLEAN),
    /// `VmbChannelPacketComplete(Packet, Buffer, BufSize)`: exactly once per delivered packet.
    pub VmbChannelPacketComplete: unsafe extern "system" fn(
        PacketCompletionContext: VMBPACKETCOMPLETION,
        PacketCompletionBuffer: *mut c_void,
        BufSize: u32,
    ),
    /// `VmbChannelPacketDeferToPassive(Packet)`: only inline from ProcessPacket.
    pub VmbChannelPacketDeferToPassive:
        unsafe extern "system" fn(PacketCompletionContext: VMBPACKETCOMPLETION),
    /// `VmbChannelPacketFail(Packet)`: stops the incoming queue.
    pub VmbChannelPacketFail:
        unsafe extern "system" fn(PacketCompletionContext: VMBPACKETCOMPLETION),
    /// `VmbPacketAllocate(Channel)`: NULL on failure.
    pub VmbPacketAllocate: unsafe extern "system" fn(Channel: VMBCHANNEL) -> VMBPACKET,
    /// `VmbPacketFree(Packet)`: only for packets never sent (or with a replaced completion).
    pub VmbPacketFree: unsafe extern "system" fn(VmbPacket: VMBPACKET),
    /// `VmbPacketSetCompletionRoutine(Packet, CompletionRoutine)`.
    pub VmbPacketSetCompletionRoutine: unsafe extern "system" fn(
        PacketObject: VMBPACKET,
        CompletionRoutine: PFN_VMB_PACKET_COMPLETION_ROUTINE,
    ),
    /// `VmbPacketSend(Packet, Buffer, BufferLength, ExternalDataMdl, Flags)`.
    pub VmbPacketSend: unsafe extern "system" fn(
        PacketObject: VMBPACKET,
        Buffer: *mut c_void,
        BufferLength: u32,
        ExternalDataMdl: PMDL,
        Flags: u32,
    ) -> NTSTATUS,
    /// `VmbChannelGetMmioSpace(Channel, *MmioAddress, *MmioSize)`, docs only (kmcl.md §5):
    /// valid after Opened; behaviour on a server channel undocumented. **Optional**: not
    /// statically imported, so the driver loads where the host library lacks it.
    pub VmbChannelGetMmioSpace: Option<
        unsafe extern "system" fn(Channel: VMBCHANNEL, MmioAddress: *mut u64, MmioSize: *mut u64),
    >,
}
