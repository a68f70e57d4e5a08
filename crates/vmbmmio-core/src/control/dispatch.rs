//! One IOCTL, checked then executed.

use vmbmmio_proto::ioctl::{
    BarRegion, CloseSessionReply, IoctlCode, MAX_REGIONS, MappingState, OpenSessionParams,
    ProtoError, RegionSection, ReportMappingReply, SectionAccess, SessionOpened, WireMessage,
    parse_close_session, parse_get_region_section, parse_open_session, parse_query_status,
    parse_report_mapping_any,
};

use alloc::boxed::Box;
use core::mem::MaybeUninit;

use kmcl::fallible::try_box;

use super::Handled;
use super::phases::{Begun, Finished, OpenDone, OpenWork, Teardown};
use super::session::{Busy, FileEntry, Session};
use super::{Caller, ControlDevice, ControlError, Platform};
use crate::guest::SessionContext;
use crate::guest_events::GuestEvents;
use crate::mmio_plan::MmioPlan;
use crate::sections::{RegionAccess, RegionId, RegionSpec};

/// [`IoctlCode::parse`], limited to the requests this engine serves: the consumer requests of
/// issue 14 (LIST_SESSIONS .. RING_GUEST) are not served yet and get
/// [`ProtoError::UnknownIoctl`], as before the interface defined them.
fn parse_served_code(code: u32) -> Result<IoctlCode, ProtoError> {
    match IoctlCode::parse(code)? {
        IoctlCode::ListSessions
        | IoctlCode::AttachRegion
        | IoctlCode::DetachRegion
        | IoctlCode::SetDoorbellEvent
        | IoctlCode::TakeDoorbells
        | IoctlCode::RingGuest => Err(ProtoError::UnknownIoctl { code }),
        served => Ok(served),
    }
}

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
        let result = parse_served_code(code)
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
        // A request refused because another one is opening or closing the session changes
        // nothing at all, not even this counter.
        if let (Err(error), Some(entry)) = (
            result,
            self.files
                .iter_mut()
                .find(|f| f.file == caller.file() && f.opener() == caller.process()),
        ) && *error != ControlError::SessionBusy
        {
            entry.rejected_requests = entry.rejected_requests.saturating_add(1);
        }
    }

    /// Handles one IOCTL from `caller` with every step in one call: [`ControlDevice::begin`],
    /// the work without the lock ([`OpenWork::run`], [`Teardown::run`]), the matching finish
    /// and the release of detached sections ([`super::Detached::release`]).
    /// For callers that hold `&mut self` throughout (tests, the simulated transport); the glue
    /// uses [`super::serve::dispatch`], which releases the table lock around the work.
    /// Returns how many bytes of `output` were written.
    ///
    /// IRQL: PASSIVE_LEVEL, **in the calling process's context** (`EvtIoInCallerContext`).
    pub fn dispatch(
        &mut self,
        caller: Caller,
        code: u32,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, ControlError> {
        let begun = self.begin(caller, code, input, output)?;
        match self.run_inline(begun, output)? {
            Handled::Done(written) => Ok(written),
            // A caller of this all-in-one path cannot keep a request pending: it is cancelled
            // at once, which consumes nothing (use `handle` to keep it).
            Handled::Pending(pending) => {
                pending.cancel();
                Err(ControlError::Cancelled)
            }
        }
    }

    /// The rest of a begun request, inline, for the all-in-one callers ([`Self::dispatch`],
    /// [`Self::handle`]: tests and the simulated transport, which hold `&mut self` throughout).
    /// A closed session's pending WAIT_GUEST_EVENT gets no wake here: these callers keep their
    /// parked request themselves and poll it, and its next delivery says `Cancel`; the glue gets
    /// the wake through [`super::serve`].
    pub(super) fn run_inline(
        &mut self,
        begun: Begun<X>,
        output: &mut [u8],
    ) -> Result<Handled<X>, ControlError> {
        match begun {
            Begun::Done(written) => Ok(Handled::Done(written)),
            Begun::Pending(pending) => Ok(Handled::Pending(pending)),
            Begun::Open(work) => {
                let finished = self.finish_open(work.run(output));
                if let Some(teardown) = finished.teardown {
                    self.finish_close(teardown.run()).release();
                }
                finished.result.map(Handled::Done)
            }
            Begun::Close(teardown) => {
                Ok(Handled::Done(self.finish_close(teardown.run()).release()))
            }
        }
    }

    /// Step one of an IOCTL, **under the table lock**: every check (IOCTL code, output length,
    /// the whole input message, then the session's rules), then either the whole request (the
    /// ones that never block) or the start of an open or close: the file's entry is marked
    /// [`Busy`] (so concurrent requests on it get [`ControlError::SessionBusy`]) and the
    /// blocking work is handed back to run **without** the lock. Nothing changes unless all
    /// checks pass.
    ///
    /// IRQL: PASSIVE_LEVEL, in the calling process's context.
    pub fn begin(
        &mut self,
        caller: Caller,
        code: u32,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<Begun<X>, ControlError> {
        let result = self.begin_checked(caller, code, input, output);
        self.count_rejection(caller, &result);
        result
    }

    fn begin_checked(
        &mut self,
        caller: Caller,
        code: u32,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<Begun<X>, ControlError> {
        if self.shut_down {
            return Err(ControlError::ShuttingDown);
        }
        let code = parse_served_code(code)?;
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
        // A session being opened or closed by another request is off limits until that request
        // finishes: its channel work runs without the table lock.
        if self.files.get(index).map(|f| f.busy) != Some(Busy::Idle) {
            return Err(ControlError::SessionBusy);
        }
        match code {
            IoctlCode::OpenSession => {
                let params = parse_open_session(input)?;
                // The work item's memory first, so a failed allocation leaves nothing reserved.
                let slot = try_box(MaybeUninit::<OpenWork<X>>::uninit())
                    .map_err(|_| ControlError::OutOfMemory)?;
                self.begin_open(index, caller, &params)
                    .map(|work| Begun::Open(Box::write(slot, work)))
            }
            IoctlCode::GetRegionSection => {
                let params = parse_get_region_section(input)?;
                self.get_region_section(index, caller, params.region_index, params.access, output)
                    .map(Begun::Done)
            }
            IoctlCode::ReportMapping => {
                // Either version (docs/ioctl.md): version 1 says nothing of `acted_on`.
                let report = parse_report_mapping_any(input)?;
                let params = report.params;
                let session = self.session_mut(index)?;
                let region = usize::try_from(params.region_index)
                    .ok()
                    .filter(|&i| i < session.channel.plan().regions().len());
                let slot = region.and_then(|i| session.mapping.get_mut(i).map(|slot| (i, slot)));
                let (region, slot) = slot.ok_or(ControlError::RegionOutOfRange {
                    index: params.region_index,
                })?;
                // The guest hears of it (table lock, then event lock: the documented order); an
                // `acted_on` beyond the newest event is refused before anything changes.
                session
                    .events
                    .mapping_changed(region, params.state, report.acted_on)
                    .map_err(|refused| ControlError::EventNotYetSent {
                        last_seen: refused.acted_on,
                        newest: refused.newest,
                    })?;
                *slot = params.state;
                Ok(Begun::Done(ReportMappingReply::new().encode(output)?))
            }
            IoctlCode::QueryStatus => {
                parse_query_status(input)?;
                let entry = self.files.get(index).ok_or(ControlError::UnknownFile)?;
                Ok(Begun::Done(entry.status(&self.sections).encode(output)?))
            }
            IoctlCode::QueryDriver => self.query_driver(input, output).map(Begun::Done),
            IoctlCode::WaitGuestEvent => self.wait_guest_event(index, input, output),
            // Refused by `parse_served_code` above; kept here so the match stays exhaustive.
            IoctlCode::ListSessions
            | IoctlCode::AttachRegion
            | IoctlCode::DetachRegion
            | IoctlCode::SetDoorbellEvent
            | IoctlCode::TakeDoorbells
            | IoctlCode::RingGuest => Err(ProtoError::UnknownIoctl { code: code.code() }.into()),
            IoctlCode::CloseSession => {
                parse_close_session(input)?;
                let entry = self.files.get_mut(index).ok_or(ControlError::UnknownFile)?;
                if entry.session.is_none() {
                    return Err(ControlError::NoSession);
                }
                // The reply first: once the session is out, nothing may fail any more.
                let written = CloseSessionReply::new().encode(output)?;
                let session = entry.session.take().ok_or(ControlError::NoSession)?;
                entry.busy = Busy::Closing;
                Ok(Begun::Close(Teardown::new(
                    Some(entry.file),
                    Some(session),
                    None,
                    written,
                )))
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

    /// OPEN_SESSION, under the lock: the plan and the sections' quota and id
    /// ([`crate::sections::SectionManager::reserve`]); the entry is marked [`Busy::Opening`] and
    /// the section creation and channel work are handed back, to run without the lock.
    fn begin_open(
        &mut self,
        index: usize,
        caller: Caller,
        params: &OpenSessionParams,
    ) -> Result<OpenWork<X>, ControlError> {
        let entry: &FileEntry<X> = self.files.get(index).ok_or(ControlError::UnknownFile)?;
        if entry.session.is_some() {
            return Err(ControlError::SessionExists);
        }
        let file = entry.file;
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
        // The last check: from here on nothing fails, so the reservation always reaches
        // `finish_open` (which commits or cancels it) inside the work item.
        let mut writable = [false; MAX_REGIONS];
        for (slot, region) in writable.iter_mut().zip(regions) {
            *slot = region.guest_writable;
        }
        let context = SessionContext::new(
            params.interface_instance(),
            &plan,
            writable.get(..count).unwrap_or(&[]),
        );
        let events = GuestEvents::new(file, context).ok_or(ControlError::OutOfMemory)?;
        let reservation = self.sections.reserve(specs.get(..count).unwrap_or(&[]))?;
        if let Some(entry) = self.files.get_mut(index) {
            entry.busy = Busy::Opening;
        }
        Ok(OpenWork {
            file,
            caller,
            params: *params,
            plan,
            reply,
            reservation,
            parent: self.parent,
            offer: self.offer,
            events,
            platform: core::marker::PhantomData,
        })
    }

    /// The last step of OPEN_SESSION, **under the table lock**: commits the reservation (the
    /// sections enter the ledger) and installs the session offered by [`OpenWork::run`], or
    /// cancels the reservation if the creation or the offer failed ([`OpenWork::run`] released
    /// the sections already, without the lock). Every reservation ends here, one way or the
    /// other. If the file was cleaned up meanwhile (its entry is gone), the request fails and
    /// the new session comes back as a [`Teardown`] the caller runs without the lock.
    ///
    /// IRQL: PASSIVE_LEVEL (no kernel call).
    pub fn finish_open(&mut self, done: OpenDone<X>) -> Finished<X> {
        let OpenDone {
            file,
            caller,
            reservation,
            events,
            outcome,
        } = done;
        let entry = self
            .files
            .iter_mut()
            .find(|f| f.file == file && f.busy == Busy::Opening);
        match (entry, outcome) {
            (Some(entry), Ok(opened)) => {
                entry.busy = Busy::Idle;
                let sections = self.sections.commit(reservation, opened.sections);
                entry.session = Some(Session {
                    sections,
                    channel: opened.channel,
                    mapping: [MappingState::Unmapped; MAX_REGIONS],
                    handles_issued: 0,
                    events,
                });
                Finished {
                    result: Ok(opened.written),
                    teardown: None,
                }
            }
            (entry, Err(error)) => {
                if let Some(entry) = entry {
                    entry.busy = Busy::Idle;
                }
                // Nothing of the session may stay behind: its quota is freed here, its
                // sections were released by `OpenWork::run`.
                self.sections.cancel(reservation);
                self.count_rejection(caller, &Err::<(), _>(error));
                Finished {
                    result: Err(error),
                    teardown: None,
                }
            }
            (None, Ok(opened)) => {
                // The session enters the ledger and leaves it on the usual close path: channel
                // first, then `finish_close` detaches the sections for release without the lock.
                let sections = self.sections.commit(reservation, opened.sections);
                Finished {
                    result: Err(ControlError::UnknownFile),
                    teardown: Some(Teardown::new(
                        None,
                        Some(Session {
                            sections,
                            channel: opened.channel,
                            mapping: [MappingState::Unmapped; MAX_REGIONS],
                            handles_issued: 0,
                            events,
                        }),
                        None,
                        0,
                    )),
                }
            }
        }
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
