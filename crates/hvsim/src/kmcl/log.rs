//! The ordered log of every KMCL call the driver made and every callback the model made.

use kmcl::KmclFunction;
use kmcl::raw::{GUID, NTSTATUS};

use super::ChannelId;

/// The arguments worth checking, per entry point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallArgs {
    /// No interesting arguments (or only the channel).
    None,
    /// `VmbChannelAllocate`.
    Allocate {
        /// `IsServer`.
        is_server: bool,
    },
    /// A handle value (`VmbServerChannelInitSetVmbusHandle`, the conversion's input).
    Handle(usize),
    /// A 32-bit size (`VmbChannelInitSetMaximumPacketSize`, packet sends).
    Size(u32),
    /// Flags (`VmbServerChannelInitSetFlags`, `VmbChannelInitSetFlags`).
    Flags(u32),
    /// `VmbServerChannelInitSetTargetInterfaceId`.
    InterfaceId {
        /// `InterfaceType`.
        interface_type: GUID,
        /// `InterfaceInstance`.
        interface_instance: GUID,
    },
    /// `VmbChannelInitSetFriendlyName`, decoded.
    Name(String),
    /// `VmbServerChannelInitSetMmioMegabytes`.
    Mmio {
        /// `MmioMegabytes`.
        megabytes: u16,
        /// `MmioMegabytesOptional`.
        optional: u16,
    },
    /// A pointer value (`VmbChannelSetPointer`).
    Pointer(usize),
    /// A BOOLEAN (`VmbChannelSetIncomingProcessingAtPassive`).
    Bool(bool),
    /// A packet-completion context or outgoing packet (model token).
    Packet(u64),
}

/// One KMCL call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallRecord {
    /// The entry point.
    pub function: KmclFunction,
    /// The channel it was called on, if it names one the model knows.
    pub channel: Option<ChannelId>,
    /// Its arguments.
    pub args: CallArgs,
    /// What it returned, for entry points that return an NTSTATUS.
    pub status: Option<NTSTATUS>,
}

/// A callback the model made into the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallbackKind {
    /// `EvtChannelOpened`.
    Opened,
    /// `EvtChannelStarted`.
    Started,
    /// `EvtChannelPostStarted`.
    PostStarted,
    /// `EvtChannelSuspend`.
    Suspend,
    /// `EvtChannelClosed`.
    Closed,
    /// `EvtChannelProcessPacket`.
    ProcessPacket,
    /// `EvtVmbPacketCompletionRoutine` of an outgoing packet.
    PacketCompletion,
}

impl CallbackKind {
    /// Whether this is one of the five state-change callbacks.
    pub const fn is_state_change(self) -> bool {
        matches!(
            self,
            Self::Opened | Self::Started | Self::PostStarted | Self::Suspend | Self::Closed
        )
    }
}

/// One entry of the log, in the order things happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogEntry {
    /// The driver called KMCL.
    Call(CallRecord),
    /// KMCL called the driver.
    Callback {
        /// The channel.
        channel: ChannelId,
        /// Which callback.
        kind: CallbackKind,
        /// What it returned (Opened only).
        status: Option<NTSTATUS>,
    },
}
