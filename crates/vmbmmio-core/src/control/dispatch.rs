//! One IOCTL, checked then executed.

use kmcl::raw::GUID;
use vmbmmio_proto::ioctl::{
    BarRegion, CloseSessionReply, IoctlCode, MAX_REGIONS, MappingState, OpenSessionParams,
    RegionSection, ReportMappingReply, SectionAccess, SessionOpened, Target, WireGuid, WireMessage,
    parse_close_session, parse_get_region_section, parse_open_session, parse_query_status,
    parse_report_mapping,
};

use super::session::{FileEntry, Session};
use super::{Caller, ControlDevice, ControlError, Platform};
use crate::channel::{
    ChannelConfig, ChannelError, ChannelTarget, UserVmbusHandle, VmChannel, convert_vmbus_handle,
};
use crate::mmio_plan::MmioPlan;
use crate::sections::{RegionAccess, RegionId, RegionSpec};

impl<X: Platform> ControlDevice<X> {
    /// The checks that need only the request's code and buffer lengths: the IOCTL code, the
    /// input length (never longer than the request, so the glue's copy of the input never needs
    /// more than [`vmbmmio_proto::ioctl::MAX_REQUEST_SIZE`] bytes) and the output length. The
    /// glue calls this before it touches the buffers; a failure is counted like any rejected
    /// request.
    ///
    /// IRQL: PASSIVE_LEVEL (no kernel call; callers hold the control lock).
    pub fn precheck(
        &mut self,
        caller: Caller,
        code: u32,
        input_len: usize,
        output_len: usize,
    ) -> Result<(), ControlError> {
        let result = IoctlCode::parse(code)
            .and_then(|code| {
                code.check_input_len(input_len)?;
                code.check_output_len(output_len)
            })
            .map_err(ControlError::from);
        self.count_rejection(caller, &result);
        result
    }

    fn count_rejection<T>(&mut self, caller: Caller, result: &Result<T, ControlError>) {
        // Only the opener's own requests count: a request from another process through a
        // duplicated or inherited handle changes nothing of the opener's file.
        if let (Err(_), Some(entry)) = (
            result,
            self.files
                .iter_mut()
                .find(|f| f.file == caller.file() && f.opener() == caller.process()),
        ) {
            entry.rejected_requests = entry.rejected_requests.saturating_add(1);
        }
    }

    /// Handles one IOCTL from `caller`: `input` is a copy of the request, `output` the reply
    /// buffer. Returns how many bytes of `output` were written.
    ///
    /// Checks, in order: the IOCTL code, the output length, the whole input message, then the
    /// session's rules; nothing changes unless all pass.
    ///
    /// IRQL: PASSIVE_LEVEL, **in the calling process's context** (`EvtIoInCallerContext`):
    /// OPEN_SESSION converts the caller's VMBus handle and GET_REGION_SECTION opens a section
    /// handle in the caller's process.
    pub fn dispatch(
        &mut self,
        caller: Caller,
        code: u32,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, ControlError> {
        let result = self.dispatch_checked(caller, code, input, output);
        self.count_rejection(caller, &result);
        result
    }

    fn dispatch_checked(
        &mut self,
        caller: Caller,
        code: u32,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, ControlError> {
        if self.shut_down {
            return Err(ControlError::ShuttingDown);
        }
        let code = IoctlCode::parse(code)?;
        code.check_input_len(input.len())?;
        code.check_output_len(output.len())?;
        let index = self
            .files
            .iter()
            .position(|f| f.file == caller.file())
            .ok_or(ControlError::UnknownFile)?;
        // A file handle duplicated into (or inherited by) another process does not carry its
        // session along: section handles must land in the device host that opened the file.
        // Compared by process object, which the entry keeps referenced: a later process that
        // reuses the opener's process id is a different object and is refused (module
        // `caller`).
        if self.files.get(index).map(FileEntry::opener) != Some(caller.process()) {
            return Err(ControlError::WrongProcess);
        }
        match code {
            IoctlCode::OpenSession => {
                let params = parse_open_session(input)?;
                self.open_session(index, caller, &params, output)
            }
            IoctlCode::GetRegionSection => {
                let params = parse_get_region_section(input)?;
                self.get_region_section(index, caller, params.region_index, params.access, output)
            }
            IoctlCode::ReportMapping => {
                let params = parse_report_mapping(input)?;
                let session = self.session_mut(index)?;
                let slot = usize::try_from(params.region_index)
                    .ok()
                    .filter(|&i| i < session.channel.plan().regions().len())
                    .and_then(|i| session.mapping.get_mut(i))
                    .ok_or(ControlError::RegionOutOfRange {
                        index: params.region_index,
                    })?;
                *slot = params.state;
                Ok(ReportMappingReply::new().encode(output)?)
            }
            IoctlCode::QueryStatus => {
                parse_query_status(input)?;
                let entry = self.files.get(index).ok_or(ControlError::UnknownFile)?;
                Ok(entry.status(&self.sections).encode(output)?)
            }
            IoctlCode::CloseSession => {
                parse_close_session(input)?;
                let entry = self.files.get_mut(index).ok_or(ControlError::UnknownFile)?;
                if entry.session.is_none() {
                    return Err(ControlError::NoSession);
                }
                entry.close_session(&mut self.sections);
                Ok(CloseSessionReply::new().encode(output)?)
            }
        }
    }

    fn session_mut(&mut self, index: usize) -> Result<&mut Session<X>, ControlError> {
        self.files
            .get_mut(index)
            .ok_or(ControlError::UnknownFile)?
            .session
            .as_mut()
            .ok_or(ControlError::NoSession)
    }

    /// OPEN_SESSION: plan, sections, VMBus handle, offer; all or nothing.
    fn open_session(
        &mut self,
        index: usize,
        caller: Caller,
        params: &OpenSessionParams,
        output: &mut [u8],
    ) -> Result<usize, ControlError> {
        let entry: &FileEntry<X> = self.files.get(index).ok_or(ControlError::UnknownFile)?;
        if entry.session.is_some() {
            return Err(ControlError::SessionExists);
        }
        let regions = params.regions();
        let mut sizes = [0u64; MAX_REGIONS];
        let mut specs = [RegionSpec::read_only(0); MAX_REGIONS];
        for ((size, spec), region) in sizes.iter_mut().zip(specs.iter_mut()).zip(regions) {
            *size = region.size;
            *spec = if region.guest_writable {
                RegionSpec::read_write(region.size)
            } else {
                RegionSpec::read_only(region.size)
            };
        }
        let count = regions.len();
        let plan = MmioPlan::new(sizes.get(..count).unwrap_or(&[]))?;
        let reply = session_reply(&plan)?;
        let sections = self
            .sections
            .create_session(specs.get(..count).unwrap_or(&[]))?;
        let channel = match self.offer_channel(caller, params, plan) {
            Ok(channel) => channel,
            Err(error) => {
                // Nothing of the session may stay behind (the id is this manager's own).
                let _ = self.sections.close_session(sections);
                return Err(error);
            }
        };
        let written = SessionOpened::new(
            sections.raw(),
            reply.mmio_megabytes(),
            reply.mmio_megabytes_optional(),
            reply.bar_size(),
            reply.regions(),
        )
        .and_then(|opened| opened.encode(output));
        let written = match written {
            Ok(written) => written,
            Err(error) => {
                channel.close();
                let _ = self.sections.close_session(sections);
                return Err(error.into());
            }
        };
        let entry = self.files.get_mut(index).ok_or(ControlError::UnknownFile)?;
        entry.session = Some(Session {
            sections,
            channel,
            mapping: [MappingState::Unmapped; MAX_REGIONS],
            handles_issued: 0,
        });
        Ok(written)
    }

    /// Converts the caller's VMBus handle (in its context) and offers the channel.
    fn offer_channel(
        &self,
        _caller: Caller,
        params: &OpenSessionParams,
        plan: MmioPlan,
    ) -> Result<VmChannel<X::Kmcl, X::HandleCloser>, ControlError> {
        let target = match params.target() {
            Target::VmbusHandle(handle) => {
                let user = UserVmbusHandle::new(handle.get()).map_err(ChannelError::from)?;
                ChannelTarget::VmbusHandle(convert_vmbus_handle::<X::Kmcl, X::HandleCloser>(user)?)
            }
            Target::Loopback => ChannelTarget::Loopback,
        };
        let config = ChannelConfig {
            interface_type: guid(params.interface_type()),
            interface_instance: guid(params.interface_instance()),
            friendly_name: self.offer.friendly_name,
            max_packet_size: self.offer.max_packet_size,
            target,
        };
        Ok(VmChannel::offer(self.parent, config, plan)?)
    }

    /// GET_REGION_SECTION: a handle to one of the session's sections, in the caller's process.
    fn get_region_section(
        &mut self,
        index: usize,
        _caller: Caller,
        region_index: u32,
        access: SectionAccess,
        output: &mut [u8],
    ) -> Result<usize, ControlError> {
        let entry = self.files.get_mut(index).ok_or(ControlError::UnknownFile)?;
        // `dispatch` checked that the caller's process is the opener.
        let opener = entry.opener();
        let session = entry.session.as_mut().ok_or(ControlError::NoSession)?;
        let placement = usize::try_from(region_index)
            .ok()
            .and_then(|i| session.channel.plan().region(i))
            .copied()
            .ok_or(ControlError::RegionOutOfRange {
                index: region_index,
            })?;
        let requested = if access.writes() {
            RegionAccess::ReadWrite
        } else {
            RegionAccess::ReadOnly
        };
        // Once opened, the handle belongs to the caller's process and the driver never closes
        // it (docs/sections.md): so everything that could still fail is checked first, with a
        // stand-in handle value. The output length was checked by the caller.
        RegionSection::new(u64::MAX, placement.size, placement.offset)?;
        let handle = self.sections.open_user_handle(
            session.sections,
            RegionId::new(session.sections, region_index),
            requested,
            opener,
        )?;
        session.handles_issued = session.handles_issued.saturating_add(1);
        // Only a NULL handle could fail here, and a successful open never returns one.
        let reply = RegionSection::new(handle.0, placement.size, placement.offset)?;
        Ok(reply.encode(output)?)
    }
}

/// The OPEN_SESSION reply content a plan gives (checked before anything is created).
fn session_reply(plan: &MmioPlan) -> Result<SessionOpened, ControlError> {
    let mut regions = [BarRegion { offset: 0, size: 0 }; MAX_REGIONS];
    for (wire, placement) in regions.iter_mut().zip(plan.regions()) {
        *wire = BarRegion {
            offset: placement.offset,
            size: placement.size,
        };
    }
    let count = plan.regions().len();
    Ok(SessionOpened::new(
        0,
        plan.mmio_megabytes(),
        plan.mmio_megabytes_optional(),
        plan.bar_size(),
        regions.get(..count).unwrap_or(&[]),
    )?)
}

/// A wire GUID as KMCL takes it.
fn guid(wire: WireGuid) -> GUID {
    GUID::from_u128(wire.to_u128())
}
