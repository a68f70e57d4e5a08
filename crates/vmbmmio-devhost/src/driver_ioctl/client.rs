//! [`ProtoDriverClient`]: the requests of docs/ioctl.md (the five session requests and
//! QUERY_DRIVER), built and parsed with `vmbmmio-proto`, sent through an [`IoctlTransport`].
//!
//! OPEN_SESSION goes out as version 2 (the VM's id, the regions' names and consumer access),
//! so that host consumers can attach to the session. A driver older than version 2 refuses it
//! with `STATUS_REVISION_MISMATCH` (its header check comes first); the client then sends
//! version 1 (sizes and guest access only: the session works, consumers cannot see it) and
//! keeps to version 1 from then on, as it does for REPORT_MAPPING.

use core::num::NonZeroU64;

use vmbmmio_proto::ioctl::{
    ActedOn, CloseSessionRequest, GetRegionSectionRequest, GuestEvent, IoctlCode,
    NamedRegionRequest, OpenSessionRequest, OpenSessionV2Request, ProtoResult, QueryDriverRequest,
    QueryStatusRequest, RegionRequest, RegionSection, ReportMappingRequest, ReportMappingV2Request,
    SectionAccess as WireAccess, SessionOpened, Target, WaitGuestEventRequest, WireGuid,
    WireMessage, parse_close_session_reply, parse_get_region_section_reply,
    parse_open_session_reply, parse_query_driver_reply, parse_query_status_reply,
    parse_report_mapping_reply, parse_wait_guest_event_reply, round_up_to_page,
};

use super::mapping::mapping_to_wire;
use super::settings::{DriverSessionSettings, DriverTarget};
use super::transport::{IoctlFailure, IoctlTransport};
use crate::driver::{
    ChannelIdentity, DriverClient, DriverError, DriverFacts, MappingState, RegionInfo,
    SectionAccess, SessionId, SessionInfo, SessionRequest, SessionStatus,
};
use crate::guid::Guid;
use crate::platform::SectionHandle;
use crate::sequence::guest_wait::GuestEventTap;

/// The name docs/ioctl.md gives the request of `code`, for messages.
pub const fn request_name(code: IoctlCode) -> &'static str {
    match code {
        IoctlCode::OpenSession => "OPEN_SESSION",
        IoctlCode::GetRegionSection => "GET_REGION_SECTION",
        IoctlCode::ReportMapping => "REPORT_MAPPING",
        IoctlCode::QueryStatus => "QUERY_STATUS",
        IoctlCode::CloseSession => "CLOSE_SESSION",
        IoctlCode::QueryDriver => "QUERY_DRIVER",
        IoctlCode::WaitGuestEvent => "WAIT_GUEST_EVENT",
        IoctlCode::ListSessions => "LIST_SESSIONS",
        IoctlCode::AttachRegion => "ATTACH_REGION",
        IoctlCode::DetachRegion => "DETACH_REGION",
        IoctlCode::SetDoorbellEvent => "SET_DOORBELL_EVENT",
        IoctlCode::TakeDoorbells => "TAKE_DOORBELLS",
        IoctlCode::RingGuest => "RING_GUEST",
    }
}

fn rejected(code: IoctlCode, why: impl core::fmt::Display) -> DriverError {
    DriverError::Rejected {
        reason: format!("{}: {why}", request_name(code)),
    }
}

fn wire_guid(guid: Guid) -> WireGuid {
    WireGuid::from_u128(guid.to_u128())
}

/// The driver client over the control device's IOCTLs.
///
/// One client is one handle to the control device and at most one session (the driver's rule:
/// one session per file handle). The session id the driver returns is checked locally on every
/// later call; the requests themselves do not carry it, because the driver finds the session by
/// the file handle.
///
/// Ownership: the client owns the transport, hence the driver session (closing the handle ends
/// it, docs/ioctl.md). Section handles it returns belong to the caller.
pub struct ProtoDriverClient<T: IoctlTransport> {
    transport: T,
    settings: DriverSessionSettings,
    session: Option<(SessionId, SessionOpened)>,
    /// The driver refused REPORT_MAPPING version 2 (an older driver): version 1 from then on.
    report_v1_only: bool,
    /// The driver refused OPEN_SESSION version 2 (an older driver): version 1 from then on.
    open_v1_only: bool,
}

/// `STATUS_REVISION_MISMATCH`, as an in-process transport sees it.
const STATUS_REVISION_MISMATCH: i32 = 0xC000_0059_u32 as i32;
/// `ERROR_REVISION_MISMATCH`: what `DeviceIoControl` reports for it.
const ERROR_REVISION_MISMATCH: u32 = 1306;

/// Whether `error` is the driver refusing a request's version.
fn revision_mismatch(error: &DriverError) -> bool {
    matches!(
        error,
        DriverError::Ioctl {
            failure: IoctlFailure::Win32(ERROR_REVISION_MISMATCH)
                | IoctlFailure::NtStatus(STATUS_REVISION_MISMATCH),
            ..
        }
    )
}

impl<T: IoctlTransport> ProtoDriverClient<T> {
    /// A client sending through `transport`, opening sessions with `settings`.
    pub fn new(transport: T, settings: DriverSessionSettings) -> Self {
        Self {
            transport,
            settings,
            session: None,
            report_v1_only: false,
            open_v1_only: false,
        }
    }

    /// Whether the driver refused OPEN_SESSION version 2 once, so that every session since is
    /// opened with version 1: without the VM id and the regions' names, invisible to host
    /// consumers.
    pub fn opens_v1_only(&self) -> bool {
        self.open_v1_only
    }

    /// Whether the driver refused REPORT_MAPPING version 2 once, so that every report since is
    /// version 1 (without `acted_on`).
    pub fn reports_v1_only(&self) -> bool {
        self.report_v1_only
    }

    /// The settings every OPEN_SESSION uses.
    pub fn settings(&self) -> &DriverSessionSettings {
        &self.settings
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// The transport, mutably (tests reconfigure their fakes).
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    /// The transport back; the driver session, if any, ends when it closes its handle.
    pub fn into_transport(self) -> T {
        self.transport
    }

    /// The driver's validated OPEN_SESSION reply (MMIO reservation, BAR layout) while a session
    /// is open.
    pub fn opened(&self) -> Option<&SessionOpened> {
        self.session.as_ref().map(|(_, opened)| opened)
    }

    fn wire_target(&self) -> Result<Target, DriverError> {
        match self.settings.target {
            DriverTarget::VmbusHandle(value) => NonZeroU64::new(value)
                .map(Target::VmbusHandle)
                .ok_or_else(|| rejected(IoctlCode::OpenSession, "VMBus handle 0")),
            DriverTarget::LoopbackOffer => Ok(Target::Loopback),
        }
    }

    /// Whether the guest may write region `index` of `request`: its access mode allows it and
    /// the settings do not take guest write access away ([`DriverSessionSettings`]).
    fn guest_writable(&self, request: &SessionRequest, index: usize) -> bool {
        self.settings.guest_writable
            && request
                .regions
                .get(index)
                .is_none_or(|region| region.access.guest_writable())
    }

    /// The OPEN_SESSION version 2 request this client sends for `request`: `request.target`
    /// is the session's `vm_id`, each region goes with its name, guest-write and consumer-write
    /// flags. Errors are [`DriverError::Rejected`] naming what the wire format does not allow
    /// (a nil VM id, a missing, invalid or repeated name, a bad size or count).
    pub fn open_session_request(
        &self,
        request: &SessionRequest,
    ) -> Result<OpenSessionV2Request, DriverError> {
        let code = IoctlCode::OpenSession;
        let target = self.wire_target()?;
        if request.regions.len() != request.region_sizes.len() {
            return Err(rejected(
                code,
                format_args!(
                    "{} region size(s) but {} name(s)",
                    request.region_sizes.len(),
                    request.regions.len()
                ),
            ));
        }
        if request.target.to_u128() == 0 {
            return Err(rejected(
                code,
                "the VM id is the nil GUID; version 2 names the VM host consumers attach to",
            ));
        }
        let regions: Vec<NamedRegionRequest> = request
            .region_sizes
            .iter()
            .zip(&request.regions)
            .enumerate()
            .map(|(index, (&size, region))| NamedRegionRequest {
                size,
                guest_writable: self.guest_writable(request, index),
                consumer_writable: region.access.consumer_writable(),
                name: region.name,
            })
            .collect();
        OpenSessionV2Request::build(
            target,
            wire_guid(self.settings.interface_type),
            wire_guid(self.settings.interface_instance),
            wire_guid(request.target),
            &regions,
        )
        .map_err(|error| rejected(code, format_args!("invalid request: {error:?}")))
    }

    /// The OPEN_SESSION version 1 request (for a driver that refuses version 2): sizes and
    /// guest-write flags only; the VM id, the names and the consumer access are not sent.
    pub fn open_session_request_v1(
        &self,
        request: &SessionRequest,
    ) -> Result<OpenSessionRequest, DriverError> {
        let code = IoctlCode::OpenSession;
        let target = self.wire_target()?;
        let regions: Vec<RegionRequest> = (0..request.region_sizes.len())
            .zip(&request.region_sizes)
            .map(|(index, &size)| RegionRequest {
                size,
                guest_writable: self.guest_writable(request, index),
            })
            .collect();
        OpenSessionRequest::build(
            target,
            wire_guid(self.settings.interface_type),
            wire_guid(self.settings.interface_instance),
            &regions,
        )
        .map_err(|error| rejected(code, format_args!("invalid request: {error:?}")))
    }

    /// OPEN_SESSION version 2, or version 1 if the driver refuses version 2's revision (now or
    /// before).
    fn send_open_session(
        &mut self,
        request: &SessionRequest,
    ) -> Result<SessionOpened, DriverError> {
        let code = IoctlCode::OpenSession;
        if !self.open_v1_only {
            let wire = self.open_session_request(request)?;
            match self.call(code, &wire, parse_open_session_reply) {
                Err(error) if revision_mismatch(&error) => self.open_v1_only = true,
                other => return other,
            }
        }
        let wire = self.open_session_request_v1(request)?;
        self.call(code, &wire, parse_open_session_reply)
    }

    /// Sends `request` with `code` and parses the reply with `parse`.
    fn call<M: WireMessage, R>(
        &mut self,
        code: IoctlCode,
        request: &M,
        parse: fn(&[u8]) -> ProtoResult<R>,
    ) -> Result<R, DriverError> {
        let mut input = vec![0u8; M::SIZE];
        request.encode(&mut input).map_err(|error| {
            rejected(code, format_args!("cannot encode the request: {error:?}"))
        })?;
        let mut output = vec![0u8; code.reply_size()];
        let written = self
            .transport
            .ioctl(code.code(), &input, &mut output)
            .map_err(|failure| DriverError::Ioctl {
                request: request_name(code),
                failure,
            })?;
        let reply = output.get(..written).ok_or_else(|| {
            rejected(
                code,
                format_args!(
                    "the driver reported {written} bytes written to a {}-byte buffer",
                    output.len()
                ),
            )
        })?;
        parse(reply).map_err(|error| rejected(code, format_args!("malformed reply: {error:?}")))
    }

    /// QUERY_DRIVER: what the driver runs without (optional KMCL entries) and how many file
    /// handles and sessions it has. Needs no session. A driver older than the request fails it
    /// with `STATUS_INVALID_DEVICE_REQUEST` ([`DriverError::Ioctl`]; on Windows
    /// `ERROR_INVALID_FUNCTION`); a reply that does not parse is [`DriverError::Rejected`].
    pub fn query_driver(&mut self) -> Result<DriverFacts, DriverError> {
        self.call(
            IoctlCode::QueryDriver,
            &QueryDriverRequest::new(),
            parse_query_driver_reply,
        )
    }

    /// WAIT_GUEST_EVENT: the first guest event after `last_seen` (0: none seen yet). **Blocks**
    /// until the driver has one: the driver keeps the request pending (docs/ioctl.md). Run it on
    /// a thread of its own ([`crate::sequence::guest_wait`]); on Windows it is cancelled with
    /// `CancelIoEx` (then [`DriverError::Ioctl`] with `ERROR_OPERATION_ABORTED`), which consumes
    /// nothing: the next request with the same `last_seen` gets the same event.
    pub fn wait_guest_event(&mut self, last_seen: u64) -> Result<GuestEvent, DriverError> {
        self.call(
            IoctlCode::WaitGuestEvent,
            &WaitGuestEventRequest::new(last_seen),
            parse_wait_guest_event_reply,
        )
    }

    /// The open session's reply if `session` is it.
    fn session(&self, code: IoctlCode, session: SessionId) -> Result<&SessionOpened, DriverError> {
        match &self.session {
            Some((id, opened)) if *id == session => Ok(opened),
            Some((id, _)) => Err(rejected(
                code,
                format_args!(
                    "no session {} (this handle's session is {})",
                    session.0, id.0
                ),
            )),
            None => Err(rejected(
                code,
                format_args!("no session {} (no session is open)", session.0),
            )),
        }
    }

    /// The reply's regions, in request order, if they are what `request` asked for.
    fn check_layout(
        opened: &SessionOpened,
        request: &SessionRequest,
    ) -> Result<Vec<RegionInfo>, String> {
        if opened.regions().len() != request.region_sizes.len() {
            return Err(format!(
                "the reply has {} region(s), {} were asked for",
                opened.regions().len(),
                request.region_sizes.len()
            ));
        }
        let mut regions = Vec::with_capacity(opened.regions().len());
        for (index, (region, &asked)) in opened
            .regions()
            .iter()
            .zip(&request.region_sizes)
            .enumerate()
        {
            // `build` accepted the request, so every size rounds up to whole pages.
            let wanted = round_up_to_page(asked).unwrap_or(u64::MAX);
            if region.size < wanted {
                return Err(format!(
                    "region {index} has {} bytes, {wanted} were asked for",
                    region.size
                ));
            }
            regions.push(RegionInfo {
                offset: region.offset,
                size: region.size,
            });
        }
        Ok(regions)
    }
}

impl<T: IoctlTransport> DriverClient for ProtoDriverClient<T> {
    /// The GUIDs OPEN_SESSION sends: the offer the driver makes is exactly this one.
    fn channel_identity(&self) -> Option<ChannelIdentity> {
        Some(ChannelIdentity {
            interface_type: self.settings.interface_type,
            interface_instance: self.settings.interface_instance,
        })
    }

    /// QUERY_DRIVER ([`ProtoDriverClient::query_driver`]).
    fn driver_facts(&mut self) -> Option<Result<DriverFacts, DriverError>> {
        Some(self.query_driver())
    }

    /// While a session is open and the transport can share its handle
    /// ([`IoctlTransport::waiter`]): a second client on the shared transport, whose
    /// WAIT_GUEST_EVENT reaches this session (the driver finds it by the file object), and the
    /// transport's canceller.
    fn guest_events(&mut self) -> Option<GuestEventTap> {
        self.session.as_ref()?;
        let waiter = self.transport.waiter()?;
        Some(GuestEventTap {
            source: Box::new(ProtoDriverClient::new(waiter.transport, self.settings)),
            cancel: waiter.cancel,
        })
    }

    /// While a session is open: whether it was opened with version 2 (consumers can attach).
    fn consumers_can_attach(&self) -> Option<bool> {
        self.session.as_ref().map(|_| !self.open_v1_only)
    }

    /// OPEN_SESSION, version 2 ([`ProtoDriverClient::open_session_request`]); version 1 if the
    /// driver refuses version 2 ([`ProtoDriverClient::opens_v1_only`]). The driver selects the
    /// VM by the settings' target; `request.target` (the VM's compute-system id) is the
    /// session's `vm_id`, which host consumers name. A reply whose layout contradicts the
    /// request closes the driver's session again (CLOSE_SESSION) before the error returns.
    fn open_session(&mut self, request: &SessionRequest) -> Result<SessionInfo, DriverError> {
        let code = IoctlCode::OpenSession;
        if let Some((id, _)) = &self.session {
            return Err(rejected(
                code,
                format_args!("session {} is already open on this handle", id.0),
            ));
        }
        let opened = self.send_open_session(request)?;
        match Self::check_layout(&opened, request) {
            Ok(regions) => {
                let session = SessionId(opened.session_id());
                let info = SessionInfo {
                    session,
                    bar_size: opened.bar_size(),
                    regions,
                };
                self.session = Some((session, opened));
                Ok(info)
            }
            Err(why) => {
                let close = CloseSessionRequest::new();
                let closed = self.call(IoctlCode::CloseSession, &close, parse_close_session_reply);
                let reason = match closed {
                    Ok(()) => format!("{why}; the session was closed again"),
                    Err(error) => format!("{why}; closing the session again failed: {error}"),
                };
                Err(rejected(code, reason))
            }
        }
    }

    /// GET_REGION_SECTION. A handle whose size or BAR offset contradicts the session's layout
    /// is closed (through the transport) and refused.
    fn region_section(
        &mut self,
        session: SessionId,
        region: u32,
        access: SectionAccess,
    ) -> Result<SectionHandle, DriverError> {
        let code = IoctlCode::GetRegionSection;
        let opened = self.session(code, session)?;
        let count = opened.regions().len();
        let placement = usize::try_from(region)
            .ok()
            .and_then(|index| opened.regions().get(index))
            .copied()
            .ok_or_else(|| {
                rejected(
                    code,
                    format_args!("no region {region} (the session has {count})"),
                )
            })?;
        let access = match access {
            SectionAccess::Read => WireAccess::Read,
            SectionAccess::ReadWrite => WireAccess::ReadWrite,
        };
        let wire = GetRegionSectionRequest::build(region, access)
            .map_err(|error| rejected(code, format_args!("invalid request: {error:?}")))?;
        let section: RegionSection = self.call(code, &wire, parse_get_region_section_reply)?;
        if section.size() != placement.size || section.offset_in_bar() != placement.offset {
            self.transport.close_handle(section.section_handle());
            return Err(rejected(
                code,
                format_args!(
                    "region {region}: the section has {} bytes at BAR offset {:#x}, the session \
                     placed {} bytes at {:#x} (the handle was closed)",
                    section.size(),
                    section.offset_in_bar(),
                    placement.size,
                    placement.offset
                ),
            ));
        }
        Ok(SectionHandle(section.section_handle()))
    }

    /// REPORT_MAPPING, with the state and HRESULT of [`mapping_to_wire`](super::mapping_to_wire):
    /// version 2 with `acted_on` for [`ActedOn::Sequence`], version 1 for
    /// [`ActedOn::Unknown`]. A driver that refuses version 2 (`STATUS_REVISION_MISMATCH`: an
    /// older driver, which also cannot tell reports apart) gets the same report as version 1,
    /// and every later one too.
    fn report_mapping(
        &mut self,
        session: SessionId,
        region: u32,
        state: MappingState,
        acted_on: ActedOn,
    ) -> Result<(), DriverError> {
        let code = IoctlCode::ReportMapping;
        let count = self.session(code, session)?.regions().len();
        if usize::try_from(region).map_or(true, |index| index >= count) {
            return Err(rejected(
                code,
                format_args!("no region {region} (the session has {count})"),
            ));
        }
        let (wire_state, hresult) = mapping_to_wire(state);
        let invalid = |error| {
            rejected(
                code,
                format_args!("cannot report {state:?} for region {region}: {error:?}"),
            )
        };
        if let (ActedOn::Sequence(acted_on), false) = (acted_on, self.report_v1_only) {
            let wire = ReportMappingV2Request::build(region, wire_state, hresult.0, acted_on)
                .map_err(invalid)?;
            match self.call(code, &wire, parse_report_mapping_reply) {
                Err(error) if revision_mismatch(&error) => self.report_v1_only = true,
                other => return other,
            }
        }
        let wire = ReportMappingRequest::build(region, wire_state, hresult.0).map_err(invalid)?;
        self.call(code, &wire, parse_report_mapping_reply)
    }

    /// QUERY_STATUS.
    fn status(&mut self, session: SessionId) -> Result<SessionStatus, DriverError> {
        let code = IoctlCode::QueryStatus;
        self.session(code, session)?;
        let wire = QueryStatusRequest::new();
        self.call(code, &wire, parse_query_status_reply)
    }

    /// CLOSE_SESSION. The session is forgotten only when the driver confirms; if the request
    /// fails, the driver still ends the session when the transport closes its handle.
    fn close_session(&mut self, session: SessionId) -> Result<(), DriverError> {
        let code = IoctlCode::CloseSession;
        self.session(code, session)?;
        let wire = CloseSessionRequest::new();
        self.call(code, &wire, parse_close_session_reply)?;
        self.session = None;
        Ok(())
    }
}
