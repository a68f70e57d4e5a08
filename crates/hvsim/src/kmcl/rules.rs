//! The rules the KMCL model enforces, each with the reference text it comes from.
//!
//! A broken rule is recorded as a [`Violation`] (visible to tests through `Sim::violations`),
//! and, where the entry point returns an NTSTATUS, answered with the documented error. Where the
//! reference is uncertain or silent the model takes the stricter reading and says so in the
//! citation.

use super::ChannelId;

/// One rule of the KMCL contract as the model enforces it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rule {
    /// An Init call on a channel that is not Disabled.
    InitWhileNotDisabled,
    /// An Init argument the reference documents as invalid (packet size 0, wrong callback
    /// table version or size, ...).
    InvalidInitArgument,
    /// `VmbServerChannelInitSetMmioMegabytes` with both values 0, or with `MmioMegabytes` 0.
    MmioMegabytesZero,
    /// Flag bits outside the documented mask.
    InvalidFlags,
    /// A call on a channel that was never allocated or is already cleaned up.
    UnknownChannel,
    /// `VmbChannelEnable` on a channel that is not Disabled.
    EnableWhileEnabled,
    /// `VmbChannelEnable` before the Init calls every observed host VSP makes: target interface
    /// id, state-change callbacks, process-packet callbacks, maximum packet size.
    EnableIncomplete,
    /// An offer with no partition to go to (neither a VMBus handle nor the loopback flag), or
    /// with both.
    NoPartitionTarget,
    /// `VmbChannelStart` before Enable or after Disable.
    StartOutsideEnabled,
    /// `VmbChannelStart` or `VmbChannelPause` inside a state-change callback.
    StartOrPauseInStateCallback,
    /// `VmbChannelDisable` or `VmbChannelPause` inside any callback of the channel (deadlock).
    BlockingCallInCallback,
    /// `VmbChannelCleanup` on a channel that is not Disabled.
    CleanupWhileEnabled,
    /// Delivered packets still not completed when Suspend returned.
    PacketsOutstandingAtSuspend,
    /// Delivered packets still not completed at Cleanup.
    PacketsOutstandingAtCleanup,
    /// `VmbChannelGetMmioSpace` before the Opened callback returned (inside Opened included),
    /// or after Closed.
    MmioSpaceBeforeOpened,
    /// `VmbChannelPacketComplete` (or Fail, or a defer) for a packet still outstanding when its
    /// channel reached Closed: a completion context used in Closed, after it, or after Cleanup.
    PacketCompletedAfterClosed,
    /// `VmbChannelPacketComplete` (or Fail) for a packet already completed.
    PacketCompletedTwice,
    /// A packet-completion context the model never delivered.
    UnknownPacket,
    /// `VmbChannelPacketDeferToPassive` outside ProcessPacket for that packet.
    DeferOutsideProcessPacket,
    /// A PASSIVE_LEVEL entry point called at DISPATCH_LEVEL.
    PassiveCallAtDispatch,
    /// `VmbConvertVmbusHandleToKernelHandle` outside the process that owns the user handle.
    ConvertOutsideOwningProcess,
    /// `VmbServerChannelInitSetVmbusHandle` with a kernel handle that is unknown or closed.
    InvalidKernelHandle,
    /// The kernel VMBus handle closed while a channel bound to it is not cleaned up.
    HandleClosedBeforeCleanup,
    /// A kernel handle closed twice, or a handle the model never issued.
    HandleClosedTwice,
    /// A required pointer argument is NULL.
    NullArgument,
    /// An outgoing packet used after it was freed, or freed twice.
    OutgoingPacketMisuse,
    /// The state-change callback table changed between `VmbChannelInitSetStateChangeCallbacks`
    /// and a callback.
    CallbackTableChanged,
    /// A VM's VMBus came back from a save while a channel its guest knew was still Enabled,
    /// without `VMBUS_SERVER_CHANNEL_INIT_FLAG_FORCE_NEW_CHANNEL` and without save/restore
    /// packet callbacks: nothing saved or abandons the channel's state.
    RestoredChannelNotSaved,
}

impl Rule {
    /// Where the rule comes from (`shared/reference/kmcl.md`), and how strictly it is read.
    pub const fn citation(self) -> &'static str {
        match self {
            Self::InitWhileNotDisabled => {
                "kmcl.md §2.0: Init calls only while Disabled, else STATUS_INVALID_PARAMETER_1; §4 step 1"
            }
            Self::InvalidInitArgument => {
                "kmcl.md §2.1: documented Init errors (_PARAMETER_2: PacketSize 0, callback Version/Size)"
            }
            Self::MmioMegabytesZero => {
                "kmcl.md §5: both 0 -> STATUS_INVALID_PARAMETER; §9 item 5: SAL requires MmioMegabytes > 0 (stricter reading: 0 rejected too)"
            }
            Self::InvalidFlags => {
                "kmcl.md §2.1: invalid flag bits -> STATUS_INVALID_PARAMETER_2; §7 masks"
            }
            Self::UnknownChannel => {
                "kmcl.md §2.0: STATUS_INVALID_PARAMETER_1 for an invalid channel; §2.1 Cleanup frees it"
            }
            Self::EnableWhileEnabled => {
                "kmcl.md §4 steps 1-2: Enable moves Disabled -> Enabled (stricter reading: only from Disabled)"
            }
            Self::EnableIncomplete => {
                "kmcl.md §4 'Init order before VmbChannelEnable': the header documents no Enable precondition beyond Disabled, but every observed host VSP (dxgkrnl CreateServerVmBusChannel steps 3, 5, 6, 7) sets the maximum packet size, the target interface id, the state-change callbacks and the process-packet callbacks before Enable; what Enable requires is undocumented, so the stricter reading requires all four (STATUS_INVALID_DEVICE_STATE is the model's choice of error)"
            }
            Self::NoPartitionTarget => {
                "kmcl.md §6: the VMBus handle selects the partition; without one dxgkrnl sets LOOPBACK_OFFER (inferred, UNCERTAIN; stricter reading: exactly one of the two)"
            }
            Self::StartOutsideEnabled => {
                "kmcl.md §4: Start and Pause are valid only between Enable and Disable"
            }
            Self::StartOrPauseInStateCallback => {
                "kmcl.md §4 'Not allowed inside callbacks': Start and Pause must not be called inside state-change callbacks"
            }
            Self::BlockingCallInCallback => {
                "kmcl.md §4 'Not allowed inside callbacks': Disable/Pause from a callback would deadlock (inferred, stricter reading)"
            }
            Self::CleanupWhileEnabled => {
                "kmcl.md §4 step 8 and §2.1: Cleanup requires the channel to be Disabled"
            }
            Self::PacketsOutstandingAtSuspend => {
                "kmcl.md §3 Suspend / §4 step 6: all delivered packets must be completed; KMCL blocks until they are"
            }
            Self::PacketsOutstandingAtCleanup => {
                "kmcl.md §2.2: exactly one VmbChannelPacketComplete for every ProcessPacket delivery"
            }
            Self::MmioSpaceBeforeOpened => {
                "kmcl.md §4 'Validity windows' / §5 (Microsoft's VmbChannelGetMmioSpace page): valid only after the Opened callback, so a call inside Opened is too early; stricter reading: also not after Closed"
            }
            Self::PacketCompletedAfterClosed => {
                "kmcl.md §3 Suspend / §4 step 6: KMCL blocks at Suspend until every delivered packet is completed, so Closed (§4 step 7) never starts with one outstanding and Cleanup (§2.1) then frees the channel; a completion context used from Closed on names a packet of a channel a real host has torn down (use after free). The model does not block at Suspend (it records PacketsOutstandingAtSuspend and goes on), so it flags such a completion and ignores it"
            }
            Self::PacketCompletedTwice => {
                "kmcl.md §2.2: call VmbChannelPacketComplete exactly once per delivery"
            }
            Self::UnknownPacket => {
                "kmcl.md §7: VMBPACKETCOMPLETION identifies one incoming packet until completion"
            }
            Self::DeferOutsideProcessPacket => {
                "kmcl.md §2.2 / §4: VmbChannelPacketDeferToPassive only inline from ProcessPacket"
            }
            Self::PassiveCallAtDispatch => {
                "kmcl.md §2.1: Allocate is _IRQL_requires_(PASSIVE_LEVEL); §9 item 18: Enable/Disable/Pause/Convert implied PASSIVE"
            }
            Self::ConvertOutsideOwningProcess => {
                "kmcl.md §6: must run in the context of the user-mode process that owns the handle"
            }
            Self::InvalidKernelHandle => {
                "kmcl.md §6: VmbusHandle is a kernel-mode handle to the partition's VMBus (from VmbConvertVmbusHandleToKernelHandle)"
            }
            Self::HandleClosedBeforeCleanup => {
                "kmcl.md §4 'Teardown': closing the handle before Cleanup is UNCERTAIN; the model takes the stricter reading (after Cleanup only)"
            }
            Self::HandleClosedTwice => {
                "kmcl.md §6: the caller closes the kernel handle (once: one owner, one release)"
            }
            Self::NullArgument => "kmcl.md §2: _In_/_Out_ parameters are required (non-NULL)",
            Self::CallbackTableChanged => {
                "kmcl.md §2.1/§3 do not say whether KMCL copies VMB_CHANNEL_STATE_CHANGE_CALLBACKS; stricter reading: it keeps the pointer, so the table must stay valid and unchanged until Cleanup"
            }
            Self::RestoredChannelNotSaved => {
                "kmcl.md §7 'What the flags mean': FORCE_NEW_CHANNEL re-offers a new channel after a VM save/restore and abandons the old one; §2.4/§3: otherwise a server restores the channel's state (VmbChannelRestoreFromBuffer, the RestorePacket callback set with VmbServerChannelInitSetSaveRestorePacketCallbacks). A channel with neither has no defined state after a restore; stricter reading: a violation"
            }
            Self::OutgoingPacketMisuse => {
                "kmcl.md §2.3: VmbPacketFree only for packets never sent (or with a replaced completion routine)"
            }
        }
    }
}

/// What the model answers a `VmbChannelEnable` that breaks [`Rule::EnableIncomplete`]: the
/// real error is undocumented; `STATUS_INVALID_DEVICE_STATE` ("the device is not in a valid
/// state to perform this request") is the model's choice, the same it uses for an offer with no
/// partition target.
pub const ENABLE_INCOMPLETE_STATUS: kmcl::raw::NTSTATUS = kmcl::raw::STATUS_INVALID_DEVICE_STATE;

/// One broken rule, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The rule.
    pub rule: Rule,
    /// [`Rule::citation`] of that rule.
    pub citation: &'static str,
    /// The channel involved, if any.
    pub channel: Option<ChannelId>,
    /// What happened.
    pub detail: String,
}

impl Violation {
    /// A violation of `rule`.
    pub fn new(rule: Rule, channel: Option<ChannelId>, detail: impl Into<String>) -> Self {
        Self {
            rule,
            citation: rule.citation(),
            channel,
            detail: detail.into(),
        }
    }
}
