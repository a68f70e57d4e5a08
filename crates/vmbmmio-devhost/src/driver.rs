//! What the device host needs from the vmbmmio driver, as a trait with Rust types.
//!
//! The driver creates one kernel section per shared region and, through its control device,
//! hands the device host user-mode section handles plus the layout of the regions in one BAR.
//! This trait is the device host's view of that control interface. It deliberately uses plain
//! Rust types instead of the IOCTL wire formats (`vmbmmio-proto`): the IOCTL implementation
//! over `DeviceIoControl` lives in `driver_ioctl` (`ProtoDriverClient`), and the loopback mode,
//! the simulator or a test can implement the trait directly.

use std::fmt;

pub use vmbmmio_proto::guest::RegionName;

use crate::driver_ioctl::IoctlFailure;
use crate::guid::Guid;
use crate::hresult::HResult;
use crate::platform::SectionHandle;
use crate::sequence::guest_wait::GuestEventTap;

/// A driver session: one device host serving one VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(pub u64);

/// What the device host asks the driver for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRequest {
    /// The VM (compute-system id) whose regions to serve. OPEN_SESSION version 2 sends it as
    /// the session's `vm_id`, the id host consumers attach by (docs/ioctl.md).
    pub target: Guid,
    /// Size of each region in bytes, in order (already rounded to whole pages).
    pub region_sizes: Vec<u64>,
    /// Name and access mode of each region, in the order of `region_sizes` (same length).
    pub regions: Vec<RegionIdentity>,
}

impl SessionRequest {
    /// A request for `sizes` with the `--region-size` shorthand's identities: regions named
    /// `region0`, `region1`, ... ([`default_region_name`]), each [`AccessMode::ReadWrite`].
    pub fn with_default_names(target: Guid, sizes: &[u64]) -> Self {
        Self {
            target,
            region_sizes: sizes.to_vec(),
            regions: (0..sizes.len())
                .map(|index| RegionIdentity {
                    name: default_region_name(index),
                    access: AccessMode::ReadWrite,
                })
                .collect(),
        }
    }
}

/// The name the `--region-size` shorthand gives region `index`: `region<index>`. Every index
/// below [`crate::layout::MAX_REGIONS`] gives a valid, unique name; a larger one (which no
/// configuration reaches) gives the empty name, which OPEN_SESSION version 2 refuses.
pub fn default_region_name(index: usize) -> RegionName {
    RegionName::required(&format!("region{index}")).unwrap_or(RegionName::EMPTY)
}

/// A region's name and access mode (`--region NAME:SIZE[:ACCESS]`, docs/devhost.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegionIdentity {
    /// The name host consumers attach by: 1..=32 bytes of UTF-8, no NUL, no ASCII control
    /// characters ([`RegionName::required`]); unique in the session (compared bytewise).
    pub name: RegionName,
    /// Who may write it.
    pub access: AccessMode,
}

/// Who may write a region: the guest (through the BAR) and/or host consumers (through
/// ATTACH_REGION). Everyone may read it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AccessMode {
    /// `rw`: the guest and host consumers read and write (the default).
    #[default]
    ReadWrite,
    /// `guest-ro`: the guest only reads; host consumers write.
    GuestReadOnly,
    /// `host-ro`: the guest writes; host consumers only read.
    HostReadOnly,
}

impl AccessMode {
    /// Every mode, in the order the documentation lists them.
    pub const ALL: [Self; 3] = [Self::ReadWrite, Self::GuestReadOnly, Self::HostReadOnly];

    /// The configuration's spelling: `rw`, `guest-ro` or `host-ro`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ReadWrite => "rw",
            Self::GuestReadOnly => "guest-ro",
            Self::HostReadOnly => "host-ro",
        }
    }

    /// The mode spelled `text` (exactly, lower case), if any.
    pub fn from_name(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|mode| mode.as_str() == text)
    }

    /// Whether the guest may write (OPEN_SESSION's `GUEST_WRITABLE`). The device host's own
    /// section handle, views and BAR mapping are writable exactly then (docs/ioctl.md).
    pub const fn guest_writable(self) -> bool {
        matches!(self, Self::ReadWrite | Self::HostReadOnly)
    }

    /// Whether host consumers may map it for writing (OPEN_SESSION version 2's
    /// `CONSUMER_WRITABLE`).
    pub const fn consumer_writable(self) -> bool {
        matches!(self, Self::ReadWrite | Self::GuestReadOnly)
    }

    /// The access the device host asks for on its own section handle and views.
    pub const fn device_host_access(self) -> SectionAccess {
        if self.guest_writable() {
            SectionAccess::ReadWrite
        } else {
            SectionAccess::Read
        }
    }
}

impl fmt::Display for AccessMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the driver placed one region in the BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionInfo {
    /// Byte offset from the start of the BAR (a multiple of 4 KiB).
    pub offset: u64,
    /// Size in bytes (a multiple of 4 KiB); the section is at least this large.
    pub size: u64,
}

/// The driver's answer to [`DriverClient::open_session`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// The session to name in later calls.
    pub session: SessionId,
    /// Size of the BAR in bytes: a power of two, at least 4 KiB.
    pub bar_size: u64,
    /// One entry per requested region, in request order.
    pub regions: Vec<RegionInfo>,
}

/// Access the device host asks for on a section handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SectionAccess {
    /// Map for reading.
    Read,
    /// Map for reading and writing.
    ReadWrite,
}

/// How one region reaches the guest, as the device host reports it to the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MappingState {
    /// No mapping (before mapping and after teardown).
    Unmapped,
    /// `HdvCreateSectionBackedMmioRange` succeeded and no guest access of the region has
    /// reached the emulator since.
    SectionBacked,
    /// The guest reaches the region through intercepted MMIO served from a view of the same
    /// section. `hresult` is the failed mapping call's result, or `S_OK` when the mapping call
    /// succeeded but guest accesses still reached the emulator (hdv.md §3.3: observed to have
    /// no effect on one Windows build).
    InterceptFallback {
        /// Why the fast path is not in effect.
        hresult: HResult,
    },
    /// The region is not reachable by the guest (mapping failed and the fallback is disabled).
    Failed {
        /// The failed mapping call's result.
        hresult: HResult,
    },
}

/// What the driver reports about a session: exactly what QUERY_STATUS returns (docs/ioctl.md).
///
/// The driver does not report per-region mapping states back (the device host is their source;
/// it keeps them itself, see `DeviceHost::mapping_states`), only the session's state and
/// counters. These are `vmbmmio-proto`'s plain value types, not wire structs: the state and
/// counters mean the same on both sides, so the device host reuses them instead of a copy.
pub use vmbmmio_proto::ioctl::{SessionState, SessionStatus, StatusCounters};

/// What the driver reports about itself (QUERY_DRIVER, docs/ioctl.md): which optional KMCL
/// entries it runs without (bit `i` = entry `i` of the driver's table, decoded with
/// `kmcl::EntrySet::from_bits`), and how many file handles and sessions it has. Like
/// [`SessionStatus`], `vmbmmio-proto`'s checked value type, reused as is.
pub use vmbmmio_proto::ioctl::DriverFacts;

/// Which guest event a REPORT_MAPPING answers (re-exported from the wire crate).
pub use vmbmmio_proto::ioctl::ActedOn;

/// The VMBus offer a session's channel is made with: what the pairing capability tells the
/// guest (`vmbmmio_proto::pci_cap`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChannelIdentity {
    /// Interface type GUID of the offer.
    pub interface_type: Guid,
    /// Interface instance GUID of the offer.
    pub interface_instance: Guid,
}

/// Why a driver request failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DriverError {
    /// The operating system failed the request (a Win32 error code, as the implementation
    /// documents).
    Os {
        /// The code.
        code: u32,
    },
    /// The control device's IOCTL failed (`driver_ioctl`): the driver or the I/O manager
    /// completed it with an error.
    Ioctl {
        /// The request, as `docs/ioctl.md` names it (`OPEN_SESSION`, ...).
        request: &'static str,
        /// The status the transport saw.
        failure: IoctlFailure,
    },
    /// The driver refused the request, or answered with something the device host cannot
    /// accept (a reply that does not parse, a layout other than the one asked for).
    Rejected {
        /// The reason, for the operator.
        reason: String,
    },
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Os { code } => write!(f, "the driver request failed with code 0x{code:08X}"),
            Self::Ioctl { request, failure } => write!(f, "{request} failed: {failure}"),
            Self::Rejected { reason } => write!(f, "the driver refused the request: {reason}"),
        }
    }
}

impl std::error::Error for DriverError {}

/// The driver's control interface as the device host uses it.
///
/// Ownership: a session is owned by the device host from `open_session` until
/// `close_session`; each handle returned by `region_section` is owned by the device host, which
/// closes it through its `SectionMapper` (it is a handle of the device-host process).
pub trait DriverClient {
    /// Opens a session for `request.target` with the given region sizes.
    fn open_session(&mut self, request: &SessionRequest) -> Result<SessionInfo, DriverError>;
    /// A new handle, in this process, to the section of region `region` with `access`.
    fn region_section(
        &mut self,
        session: SessionId,
        region: u32,
        access: SectionAccess,
    ) -> Result<SectionHandle, DriverError>;
    /// Records how region `region` reaches the guest, decided after applying the guest's
    /// events up to `acted_on` (REPORT_MAPPING version 2; [`ActedOn::Unknown`] from a device
    /// host that does not follow the guest's events: version 1). The driver tells the guest
    /// its memory is backed only from a report decided after the newest guest event
    /// (docs/ioctl.md, "REPORT_MAPPING").
    fn report_mapping(
        &mut self,
        session: SessionId,
        region: u32,
        state: MappingState,
        acted_on: ActedOn,
    ) -> Result<(), DriverError>;
    /// The driver's view of the session.
    fn status(&mut self, session: SessionId) -> Result<SessionStatus, DriverError>;
    /// Closes the session.
    fn close_session(&mut self, session: SessionId) -> Result<(), DriverError>;
    /// The offer identity this client asks the driver for, if it sets one (a client that
    /// passes the configuration's GUIDs need not say; the device host then uses the
    /// configuration's).
    fn channel_identity(&self) -> Option<ChannelIdentity> {
        None
    }
    /// Driver-wide facts (QUERY_DRIVER), for the start-up log. `None` from a client that has no
    /// such request (the loopback driver, test fakes): the device host then logs nothing about
    /// it. An error is logged and never stops the device host (an older driver does not know
    /// the request).
    fn driver_facts(&mut self) -> Option<Result<DriverFacts, DriverError>> {
        None
    }
    /// The guest's events (WAIT_GUEST_EVENT, docs/ioctl.md) for the device host's waiting loop,
    /// asked once, right after `open_session` succeeded: a blocking source that shares this
    /// client's session without blocking its other requests, and a canceller for its pending
    /// wait. `None` from a client without them (the loopback driver, a transport that cannot
    /// share its handle, test fakes): the device host then follows the placement from the
    /// emulator's configuration space only.
    fn guest_events(&mut self) -> Option<GuestEventTap> {
        None
    }
    /// Whether host consumers can attach to the open session's regions, asked right after
    /// `open_session` succeeded: `Some(false)` when the driver only took OPEN_SESSION version 1
    /// (no VM id, no names; docs/ioctl.md). `None` from a client without host consumers (the
    /// loopback driver, test fakes): the device host then says nothing about it.
    fn consumers_can_attach(&self) -> Option<bool> {
        None
    }
}

impl<T: DriverClient + ?Sized> DriverClient for Box<T> {
    fn open_session(&mut self, request: &SessionRequest) -> Result<SessionInfo, DriverError> {
        (**self).open_session(request)
    }

    fn region_section(
        &mut self,
        session: SessionId,
        region: u32,
        access: SectionAccess,
    ) -> Result<SectionHandle, DriverError> {
        (**self).region_section(session, region, access)
    }

    fn report_mapping(
        &mut self,
        session: SessionId,
        region: u32,
        state: MappingState,
        acted_on: ActedOn,
    ) -> Result<(), DriverError> {
        (**self).report_mapping(session, region, state, acted_on)
    }

    fn status(&mut self, session: SessionId) -> Result<SessionStatus, DriverError> {
        (**self).status(session)
    }

    fn close_session(&mut self, session: SessionId) -> Result<(), DriverError> {
        (**self).close_session(session)
    }

    fn channel_identity(&self) -> Option<ChannelIdentity> {
        (**self).channel_identity()
    }

    fn driver_facts(&mut self) -> Option<Result<DriverFacts, DriverError>> {
        (**self).driver_facts()
    }

    fn guest_events(&mut self) -> Option<GuestEventTap> {
        (**self).guest_events()
    }

    fn consumers_can_attach(&self) -> Option<bool> {
        (**self).consumers_can_attach()
    }
}
