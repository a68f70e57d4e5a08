//! Which KMCL entries the driver cannot work without, and why.
//!
//! One static list, in [`KmclFunction::ALL`] order, so a dev build and an LTO release build
//! resolve exactly the same names (nothing here depends on what the linker keeps).
//!
//! - **Required**: no server channel with guest MMIO can be created, run or torn down without
//!   it, or the driver's channel wrapper (`crate::server`) calls it unconditionally. A missing
//!   required entry fails driver start with a message naming every one.
//! - **Optional**: the wrapper already copes with its absence (`Option` fields of
//!   [`crate::KmclApi`]); the driver runs without it and reports it.
//!
//! Evidence (kmcl.md §1a): only `VmbChannelEnable`, `VmbConvertVmbusHandleToKernelHandle` and
//! `VmbChannelSetPointer` (of the names used here) are *evidenced as `vmbkmclr.sys` exports*
//! (`vmswitch.sys` imports them as `vmbkmclr!…`). The other required entries are required
//! because of what they do (kmcl.md §2, and the host init/teardown order of §4), not because
//! their export is proven; that is exactly why the driver must resolve them at run time and
//! name any that are missing instead of failing to load.

use crate::error::KmclFunction;

/// Whether the driver can run without an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryPolicy {
    /// DriverEntry fails (naming it) when the entry is missing.
    Required,
    /// The driver runs without it and reports it as missing.
    Optional,
}

/// One KMCL entry point: its export name, policy and the reason for the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntrySpec {
    /// Which [`crate::KmclApi`] field it fills.
    pub function: KmclFunction,
    /// The exported (undecorated C) name.
    pub name: &'static str,
    /// Required or optional.
    pub policy: EntryPolicy,
    /// Whether the name is evidenced as a `vmbkmclr.sys` export (kmcl.md §1a).
    pub evidenced_export: bool,
    /// One line: why this policy.
    pub reason: &'static str,
}

const fn required(
    function: KmclFunction,
    name: &'static str,
    evidenced_export: bool,
    reason: &'static str,
) -> EntrySpec {
    EntrySpec {
        function,
        name,
        policy: EntryPolicy::Required,
        evidenced_export,
        reason,
    }
}

const fn optional(function: KmclFunction, name: &'static str, reason: &'static str) -> EntrySpec {
    EntrySpec {
        function,
        name,
        policy: EntryPolicy::Optional,
        evidenced_export: false,
        reason,
    }
}

use KmclFunction as F;

/// Every KMCL entry the driver resolves, in [`KmclFunction::ALL`] order.
pub static ENTRIES: [EntrySpec; 27] = [
    // kmcl.md §2.1, §4 step 1 (host dxgkrnl): the channel itself.
    required(
        F::VmbChannelAllocate,
        "VmbChannelAllocate",
        false,
        "creates the server channel; nothing works without it",
    ),
    // kmcl.md §2.1, §4 "If any step fails" and "Teardown".
    required(
        F::VmbChannelCleanup,
        "VmbChannelCleanup",
        false,
        "frees the channel; without it every channel leaks",
    ),
    // kmcl.md §1a: vmswitch.sys imports vmbkmclr!VmbChannelEnable (evidenced export).
    required(
        F::VmbChannelEnable,
        "VmbChannelEnable",
        true,
        "makes the offer the guest sees",
    ),
    // kmcl.md §2.1, §4 "Teardown": rescinds the offer and waits for the guest.
    required(
        F::VmbChannelDisable,
        "VmbChannelDisable",
        false,
        "rescinds the offer; Cleanup requires a disabled channel",
    ),
    // kmcl.md §4 item 3 and step 12: a host channel stays paused until Start.
    required(
        F::VmbChannelStart,
        "VmbChannelStart",
        false,
        "a host channel stays paused (no packets) until started",
    ),
    // kmcl.md §2.1: the driver tears down with Disable and never pauses.
    optional(
        F::VmbChannelPause,
        "VmbChannelPause",
        "never called by the driver (teardown uses Disable)",
    ),
    // kmcl.md §2.1, §4 step 3.
    required(
        F::VmbChannelInitSetMaximumPacketSize,
        "VmbChannelInitSetMaximumPacketSize",
        false,
        "Init call the driver makes: sizes the ring for its protocol packets",
    ),
    // kmcl.md §2.1, §3, §4 step 6.
    required(
        F::VmbChannelInitSetStateChangeCallbacks,
        "VmbChannelInitSetStateChangeCallbacks",
        false,
        "Init call the driver makes: Opened/Closed drive the session",
    ),
    // kmcl.md §2.1, §3, §4 step 7.
    required(
        F::VmbChannelInitSetProcessPacketCallbacks,
        "VmbChannelInitSetProcessPacketCallbacks",
        false,
        "Init call the driver makes: the guest's requests arrive as packets",
    ),
    // kmcl.md §2.1, §4 step 9.
    required(
        F::VmbChannelInitSetFriendlyName,
        "VmbChannelInitSetFriendlyName",
        false,
        "Init call the driver makes (the wrapper names every channel)",
    ),
    // kmcl.md §2.1, §7: only pipe mode; the driver does not use it.
    optional(
        F::VmbChannelInitSetFlags,
        "VmbChannelInitSetFlags",
        "only sets pipe mode, which the driver does not use",
    ),
    // kmcl.md §2.1, §4 step 8, §7 (ENUMERATE_DEVICE_INTERFACE).
    required(
        F::VmbServerChannelInitSetFlags,
        "VmbServerChannelInitSetFlags",
        false,
        "Init call the driver makes: the offer's server flags",
    ),
    // kmcl.md §4 step 10, §5: the guest MMIO range is the driver's purpose.
    required(
        F::VmbServerChannelInitSetMmioMegabytes,
        "VmbServerChannelInitSetMmioMegabytes",
        false,
        "requests the guest MMIO range, the driver's whole purpose",
    ),
    // kmcl.md §2.1, §4 step 5.
    required(
        F::VmbServerChannelInitSetTargetInterfaceId,
        "VmbServerChannelInitSetTargetInterfaceId",
        false,
        "gives the offer the interface type/instance the guest binds to",
    ),
    // kmcl.md §4 step 2, §6: targets the offer at the VM.
    required(
        F::VmbServerChannelInitSetVmbusHandle,
        "VmbServerChannelInitSetVmbusHandle",
        false,
        "targets the offer at the device host's VM",
    ),
    // kmcl.md §1a: vmswitch.sys imports vmbkmclr!VmbConvertVmbusHandleToKernelHandle; §6.
    required(
        F::VmbConvertVmbusHandleToKernelHandle,
        "VmbConvertVmbusHandleToKernelHandle",
        true,
        "turns the device host's VMBus handle into the kernel handle SetVmbusHandle takes",
    ),
    // kmcl.md §1a: vmswitch.sys imports vmbkmclr!VmbChannelSetPointer; §4 step 4.
    required(
        F::VmbChannelSetPointer,
        "VmbChannelSetPointer",
        true,
        "stores the channel context the callbacks need",
    ),
    // kmcl.md §2.1: the only way from a callback's VMBCHANNEL back to that context.
    required(
        F::VmbChannelGetPointer,
        "VmbChannelGetPointer",
        false,
        "every callback finds its context through it",
    ),
    // kmcl.md §4 "Optional extras" (host dxgkrnl's VAIL path); the wrapper always calls it.
    required(
        F::VmbChannelSetIncomingProcessingAtPassive,
        "VmbChannelSetIncomingProcessingAtPassive",
        false,
        "Init call the driver makes: packet handling at PASSIVE_LEVEL",
    ),
    // kmcl.md §2.2, §3: every delivered packet must be completed exactly once.
    required(
        F::VmbChannelPacketComplete,
        "VmbChannelPacketComplete",
        false,
        "every delivered packet must be completed, or the channel stalls",
    ),
    // kmcl.md §2.2: an optimisation the driver can do without (it handles packets at PASSIVE).
    optional(
        F::VmbChannelPacketDeferToPassive,
        "VmbChannelPacketDeferToPassive",
        "not needed: packets are already delivered at PASSIVE_LEVEL",
    ),
    // kmcl.md §2.2: malformed packets can be completed with an error reply instead.
    optional(
        F::VmbChannelPacketFail,
        "VmbChannelPacketFail",
        "malformed packets are completed with an error reply instead",
    ),
    // kmcl.md §2.3: host-initiated sends; the driver only answers requests.
    optional(
        F::VmbPacketAllocate,
        "VmbPacketAllocate",
        "host-initiated sends only; the driver answers through packet completion",
    ),
    optional(
        F::VmbPacketFree,
        "VmbPacketFree",
        "host-initiated sends only; the driver answers through packet completion",
    ),
    optional(
        F::VmbPacketSetCompletionRoutine,
        "VmbPacketSetCompletionRoutine",
        "host-initiated sends only; the driver answers through packet completion",
    ),
    optional(
        F::VmbPacketSend,
        "VmbPacketSend",
        "host-initiated sends only; the driver answers through packet completion",
    ),
    // kmcl.md §5, §9 items 1 and 4: docs-only, not in the header, server behaviour undocumented.
    optional(
        F::VmbChannelGetMmioSpace,
        "VmbChannelGetMmioSpace",
        "docs-only and undocumented on a server channel; the driver works without it",
    ),
];

/// The entry of `function`.
pub fn spec(function: KmclFunction) -> Option<&'static EntrySpec> {
    ENTRIES.iter().find(|spec| spec.function == function)
}

impl KmclFunction {
    /// The exported C name of this entry point.
    pub fn c_name(self) -> &'static str {
        spec(self).map_or("?", |spec| spec.name)
    }
}
