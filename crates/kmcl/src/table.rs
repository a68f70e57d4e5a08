//! The one table of KMCL entry points.
//!
//! Every KMCL call the driver makes goes through a [`KmclApi`]. Who fills it is described in the
//! crate documentation ("Where the table comes from"); in short: resolved at load time from the
//! loaded `vmbkmclr.sys` on Windows (`crate::resolve`, `crate::installed`), the simulator `hvsim`
//! in tests.
//!
//! # Required and optional entries
//! Entry points without which no server channel can be created, run or torn down are plain
//! function pointers (DriverEntry fails, naming them, if the host library lacks any); every other
//! entry is an `Option`, `None` when the library does not export it, and the driver runs
//! without it (`crate::resolve::policy` gives each entry's reason). The evidence for each required entry is on its field (kmcl.md §1a:
//! `vmswitch.sys`'s `vmbkmclr!` imports; kmcl.md §4: the init and teardown sequence of the host
//! `dxgkrnl.sys`).
//!
//! Signatures are those of kmcl.md §2 (prototypes from the header \[H\]; `VmbChannelGetMmioSpace`
//! from the docs \[D\] only). Field names keep the C function names.
#![allow(non_snake_case)]

use core::ffi::c_void;

use crate::entry_set::EntrySet;
use crate::error::KmclFunction;
use crate::raw::{
    BOOLEAN, GUID, HANDLE, NTSTATUS, PCUNICODE_STRING, PDEVICE_OBJECT,
    PFN_VMB_CHANNEL_PROCESS_PACKET, PFN_VMB_CHANNEL_PROCESSING_COMPLETE,
    PFN_VMB_PACKET_COMPLETION_ROUTINE, PMDL, PVMB_CHANNEL_STATE_CHANGE_CALLBACKS, VMBCHANNEL,
    VMBPACKET, VMBPACKETCOMPLETION,
};

/// `VmbChannelPause`.
pub type FnVmbChannelPause = unsafe extern "system" fn(Channel: VMBCHANNEL);
/// `VmbChannelInitSetFlags`.
pub type FnVmbChannelInitSetFlags =
    unsafe extern "system" fn(Channel: VMBCHANNEL, Flags: u32) -> NTSTATUS;
/// `VmbChannelPacketDeferToPassive` and `VmbChannelPacketFail` (same shape).
pub type FnVmbPacketCompletionOnly =
    unsafe extern "system" fn(PacketCompletionContext: VMBPACKETCOMPLETION);
/// `VmbPacketAllocate`.
pub type FnVmbPacketAllocate = unsafe extern "system" fn(Channel: VMBCHANNEL) -> VMBPACKET;
/// `VmbPacketFree`.
pub type FnVmbPacketFree = unsafe extern "system" fn(VmbPacket: VMBPACKET);
/// `VmbPacketSetCompletionRoutine`.
pub type FnVmbPacketSetCompletionRoutine = unsafe extern "system" fn(
    PacketObject: VMBPACKET,
    CompletionRoutine: PFN_VMB_PACKET_COMPLETION_ROUTINE,
);
/// `VmbPacketSend`.
pub type FnVmbPacketSend = unsafe extern "system" fn(
    PacketObject: VMBPACKET,
    Buffer: *mut c_void,
    BufferLength: u32,
    ExternalDataMdl: PMDL,
    Flags: u32,
) -> NTSTATUS;
/// `VmbChannelGetMmioSpace` (\[D\] only, kmcl.md §5).
pub type FnVmbChannelGetMmioSpace =
    unsafe extern "system" fn(Channel: VMBCHANNEL, MmioAddress: *mut u64, MmioSize: *mut u64);

/// The KMCL entry points a server driver uses (kmcl.md §2.1–§2.3, §5).
///
/// Each field is an `unsafe extern "system"` function pointer with the prototype's exact
/// parameter order and types. IRQL: `VmbChannelAllocate` is annotated PASSIVE_LEVEL in \[H\];
/// Enable, Disable, Pause and the handle conversion are implied PASSIVE_LEVEL (they block or
/// run in a process context, kmcl.md §9 item 18); the Init calls run before Enable at
/// PASSIVE_LEVEL in practice; packet completion and sending are allowed up to DISPATCH_LEVEL.
#[derive(Clone, Copy)]
pub struct KmclApi {
    /// `VmbChannelAllocate(ParentDeviceObject, IsServer, *Channel)`, PASSIVE_LEVEL.
    /// Evidence: kmcl.md §4 init step 1 (host dxgkrnl).
    pub VmbChannelAllocate: unsafe extern "system" fn(
        ParentDeviceObject: PDEVICE_OBJECT,
        IsServer: BOOLEAN,
        Channel: *mut VMBCHANNEL,
    ) -> NTSTATUS,
    /// `VmbChannelCleanup(Channel)`: frees a Disabled channel.
    /// Evidence: kmcl.md §4 ("If any step fails: VmbChannelCleanup", host dxgkrnl).
    pub VmbChannelCleanup: unsafe extern "system" fn(Channel: VMBCHANNEL),
    /// `VmbChannelEnable(Channel)`: makes the offer; does not wait for the guest.
    /// Evidence: kmcl.md §1a (`vmswitch.sys` imports `vmbkmclr!VmbChannelEnable`), §4 step 11.
    pub VmbChannelEnable: unsafe extern "system" fn(Channel: VMBCHANNEL) -> NTSTATUS,
    /// `VmbChannelDisable(Channel)`: rescinds the offer and blocks until teardown completes.
    /// Evidence: kmcl.md §4 "Teardown" (recorded with the host sequence; not separately tagged
    /// \[B\]). Required: no channel can be torn down without it.
    pub VmbChannelDisable: unsafe extern "system" fn(Channel: VMBCHANNEL),
    /// `VmbChannelStart(Channel)`: leaves the paused state (host: call right after Enable).
    /// Evidence: kmcl.md §4 step 12 (host dxgkrnl).
    pub VmbChannelStart: unsafe extern "system" fn(Channel: VMBCHANNEL),
    /// `VmbChannelPause(Channel)`: blocks until paused. **Optional**: no host import observed.
    pub VmbChannelPause: Option<FnVmbChannelPause>,
    /// `VmbChannelInitSetMaximumPacketSize(Channel, PacketSize)`.
    /// Evidence: kmcl.md §4 step 3 (host dxgkrnl).
    pub VmbChannelInitSetMaximumPacketSize:
        unsafe extern "system" fn(Channel: VMBCHANNEL, PacketSize: u32) -> NTSTATUS,
    /// `VmbChannelInitSetStateChangeCallbacks(Channel, StateChangeCallbacks)`.
    /// Evidence: kmcl.md §4 step 6 (host dxgkrnl).
    pub VmbChannelInitSetStateChangeCallbacks: unsafe extern "system" fn(
        Channel: VMBCHANNEL,
        StateChangeCallbacks: PVMB_CHANNEL_STATE_CHANGE_CALLBACKS,
    ) -> NTSTATUS,
    /// `VmbChannelInitSetProcessPacketCallbacks(Channel, ProcessPacket, ProcessingComplete)`.
    /// Evidence: kmcl.md §4 step 7 (host dxgkrnl).
    pub VmbChannelInitSetProcessPacketCallbacks: unsafe extern "system" fn(
        Channel: VMBCHANNEL,
        ProcessPacketCallback: PFN_VMB_CHANNEL_PROCESS_PACKET,
        ProcessingCompleteCallback: PFN_VMB_CHANNEL_PROCESSING_COMPLETE,
    ) -> NTSTATUS,
    /// `VmbChannelInitSetFriendlyName(Channel, Name)`.
    /// Evidence: kmcl.md §4 step 9 (host dxgkrnl).
    pub VmbChannelInitSetFriendlyName:
        unsafe extern "system" fn(Channel: VMBCHANNEL, Name: PCUNICODE_STRING) -> NTSTATUS,
    /// `VmbChannelInitSetFlags(Channel, Flags)` (`VMBUS_CHANNEL_INIT_FLAGS`). **Optional**: no
    /// host import observed, and the driver does not need pipe mode.
    pub VmbChannelInitSetFlags: Option<FnVmbChannelInitSetFlags>,
    /// `VmbServerChannelInitSetFlags(Channel, Flags)` (`VMBUS_SERVER_CHANNEL_INIT_FLAGS`).
    /// Evidence: kmcl.md §4 step 8 (host dxgkrnl, flags 0x2 or 0x3).
    pub VmbServerChannelInitSetFlags:
        unsafe extern "system" fn(Channel: VMBCHANNEL, Flags: u32) -> NTSTATUS,
    /// `VmbServerChannelInitSetMmioMegabytes(Channel, MmioMegabytes, MmioMegabytesOptional)`.
    /// Evidence: kmcl.md §4 step 10 and §5 (host dxgkrnl calls it as `(ch, N, 0)`).
    pub VmbServerChannelInitSetMmioMegabytes: unsafe extern "system" fn(
        Channel: VMBCHANNEL,
        MmioMegabytes: u16,
        MmioMegabytesOptional: u16,
    ) -> NTSTATUS,
    /// `VmbServerChannelInitSetTargetInterfaceId(Channel, InterfaceType, InterfaceInstance)`;
    /// both GUIDs **by value** (kmcl.md §2.1, §9 item 6).
    /// Evidence: kmcl.md §4 step 5 (host dxgkrnl).
    pub VmbServerChannelInitSetTargetInterfaceId: unsafe extern "system" fn(
        Channel: VMBCHANNEL,
        InterfaceType: GUID,
        InterfaceInstance: GUID,
    ) -> NTSTATUS,
    /// `VmbServerChannelInitSetVmbusHandle(Channel, VmbusHandle)` (kernel handle).
    /// Evidence: kmcl.md §4 step 2 (host dxgkrnl).
    pub VmbServerChannelInitSetVmbusHandle:
        unsafe extern "system" fn(Channel: VMBCHANNEL, VmbusHandle: HANDLE) -> NTSTATUS,
    /// `VmbConvertVmbusHandleToKernelHandle(VmbusHandle, *KernelHandle)`; must run in the
    /// process that owns the user-mode handle; the caller closes the kernel handle.
    /// Evidence: kmcl.md §1a (`vmswitch.sys` imports it) and §6 (vmswitch's `VmsVmNicMorph`).
    pub VmbConvertVmbusHandleToKernelHandle:
        unsafe extern "system" fn(VmbusHandle: HANDLE, KernelHandle: *mut HANDLE) -> NTSTATUS,
    /// `VmbChannelSetPointer(Channel, Pointer)` (FASTCALL on x86 only).
    /// Evidence: kmcl.md §1a (`vmswitch.sys` imports it), §4 step 4.
    pub VmbChannelSetPointer: unsafe extern "system" fn(Channel: VMBCHANNEL, Pointer: *mut c_void),
    /// `VmbChannelGetPointer(Channel)` (FASTCALL on x86 only).
    /// Evidence: none observed directly. Required by contract: it is the only documented way
    /// back from a callback's `VMBCHANNEL` to the pointer stored with `VmbChannelSetPointer`
    /// (kmcl.md §2.1), which host code does import.
    pub VmbChannelGetPointer: unsafe extern "system" fn(Channel: VMBCHANNEL) -> *mut c_void,
    /// `VmbChannelSetIncomingProcessingAtPassive(Channel, RequirePassive)`.
    /// Evidence: kmcl.md §4 "Optional extras" (host dxgkrnl's VAIL path calls it after Allocate).
    pub VmbChannelSetIncomingProcessingAtPassive:
        unsafe extern "system" fn(Channel: VMBCHANNEL, RequirePassive: BOOLEAN),
    /// `VmbChannelPacketComplete(Packet, Buffer, BufSize)`: exactly once per delivered packet.
    /// Evidence: none observed directly. Required by contract: every ProcessPacket delivery must
    /// be balanced by exactly one completion (kmcl.md §2.2, §3).
    pub VmbChannelPacketComplete: unsafe extern "system" fn(
        PacketCompletionContext: VMBPACKETCOMPLETION,
        PacketCompletionBuffer: *mut c_void,
        BufSize: u32,
    ),
    /// `VmbChannelPacketDeferToPassive(Packet)`: only inline from ProcessPacket. **Optional**.
    pub VmbChannelPacketDeferToPassive: Option<FnVmbPacketCompletionOnly>,
    /// `VmbChannelPacketFail(Packet)`: stops the incoming queue. **Optional**.
    pub VmbChannelPacketFail: Option<FnVmbPacketCompletionOnly>,
    /// `VmbPacketAllocate(Channel)`: NULL on failure. **Optional**.
    pub VmbPacketAllocate: Option<FnVmbPacketAllocate>,
    /// `VmbPacketFree(Packet)`: only for packets never sent (or with a replaced completion).
    /// **Optional**.
    pub VmbPacketFree: Option<FnVmbPacketFree>,
    /// `VmbPacketSetCompletionRoutine(Packet, CompletionRoutine)`. **Optional**.
    pub VmbPacketSetCompletionRoutine: Option<FnVmbPacketSetCompletionRoutine>,
    /// `VmbPacketSend(Packet, Buffer, BufferLength, ExternalDataMdl, Flags)`. **Optional**.
    pub VmbPacketSend: Option<FnVmbPacketSend>,
    /// `VmbChannelGetMmioSpace(Channel, *MmioAddress, *MmioSize)`, docs only (kmcl.md §5):
    /// valid after Opened; behaviour on a server channel undocumented. **Optional**: not in the
    /// header \[H\], no host import observed.
    pub VmbChannelGetMmioSpace: Option<FnVmbChannelGetMmioSpace>,
}

impl KmclApi {
    /// The address of `function`'s entry, `None` for an absent optional entry (for reports and
    /// for checks that an entry points where it should; never called through).
    ///
    /// IRQL: any.
    pub fn address_of(&self, function: KmclFunction) -> Option<usize> {
        use KmclFunction as F;
        match function {
            F::VmbChannelAllocate => Some(self.VmbChannelAllocate as usize),
            F::VmbChannelCleanup => Some(self.VmbChannelCleanup as usize),
            F::VmbChannelEnable => Some(self.VmbChannelEnable as usize),
            F::VmbChannelDisable => Some(self.VmbChannelDisable as usize),
            F::VmbChannelStart => Some(self.VmbChannelStart as usize),
            F::VmbChannelPause => self.VmbChannelPause.map(|f| f as usize),
            F::VmbChannelInitSetMaximumPacketSize => {
                Some(self.VmbChannelInitSetMaximumPacketSize as usize)
            }
            F::VmbChannelInitSetStateChangeCallbacks => {
                Some(self.VmbChannelInitSetStateChangeCallbacks as usize)
            }
            F::VmbChannelInitSetProcessPacketCallbacks => {
                Some(self.VmbChannelInitSetProcessPacketCallbacks as usize)
            }
            F::VmbChannelInitSetFriendlyName => Some(self.VmbChannelInitSetFriendlyName as usize),
            F::VmbChannelInitSetFlags => self.VmbChannelInitSetFlags.map(|f| f as usize),
            F::VmbServerChannelInitSetFlags => Some(self.VmbServerChannelInitSetFlags as usize),
            F::VmbServerChannelInitSetMmioMegabytes => {
                Some(self.VmbServerChannelInitSetMmioMegabytes as usize)
            }
            F::VmbServerChannelInitSetTargetInterfaceId => {
                Some(self.VmbServerChannelInitSetTargetInterfaceId as usize)
            }
            F::VmbServerChannelInitSetVmbusHandle => {
                Some(self.VmbServerChannelInitSetVmbusHandle as usize)
            }
            F::VmbConvertVmbusHandleToKernelHandle => {
                Some(self.VmbConvertVmbusHandleToKernelHandle as usize)
            }
            F::VmbChannelSetPointer => Some(self.VmbChannelSetPointer as usize),
            F::VmbChannelGetPointer => Some(self.VmbChannelGetPointer as usize),
            F::VmbChannelSetIncomingProcessingAtPassive => {
                Some(self.VmbChannelSetIncomingProcessingAtPassive as usize)
            }
            F::VmbChannelPacketComplete => Some(self.VmbChannelPacketComplete as usize),
            F::VmbChannelPacketDeferToPassive => {
                self.VmbChannelPacketDeferToPassive.map(|f| f as usize)
            }
            F::VmbChannelPacketFail => self.VmbChannelPacketFail.map(|f| f as usize),
            F::VmbPacketAllocate => self.VmbPacketAllocate.map(|f| f as usize),
            F::VmbPacketFree => self.VmbPacketFree.map(|f| f as usize),
            F::VmbPacketSetCompletionRoutine => {
                self.VmbPacketSetCompletionRoutine.map(|f| f as usize)
            }
            F::VmbPacketSend => self.VmbPacketSend.map(|f| f as usize),
            F::VmbChannelGetMmioSpace => self.VmbChannelGetMmioSpace.map(|f| f as usize),
        }
    }

    /// The optional entries this table leaves `None` (what the driver runs without, reported
    /// to the device host). A table always has every required entry: they are not `Option`s.
    ///
    /// IRQL: any.
    pub fn missing_optional(&self) -> EntrySet {
        let mut missing = EntrySet::EMPTY;
        for function in KmclFunction::ALL {
            if self.address_of(function).is_none() {
                missing.insert(function);
            }
        }
        missing
    }
}
