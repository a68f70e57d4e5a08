//! Loopback mode (`--loopback`): a [`DriverClient`] inside the device host, for exercising the
//! HDV path on a Hyper-V host without the vmbmmio driver.
//!
//! It lays the regions out the way the driver does ([`BarLayout::plan`]), creates one
//! pagefile-backed section per region through a [`SectionFactory`] (on Windows
//! `CreateFileMappingW(INVALID_HANDLE_VALUE, ..., PAGE_READWRITE | SEC_COMMIT, ...)`, like the
//! sections of hdv.md §6.3) and hands out duplicated handles, which the device host closes
//! like the driver's. The sections live until the session closes.

use crate::driver::{
    ActedOn, DriverClient, DriverError, MappingState, RegionInfo, SectionAccess, SessionId,
    SessionInfo, SessionRequest, SessionState, SessionStatus, StatusCounters,
};
use crate::layout::BarLayout;
use crate::platform::SectionHandle;

/// Creates, duplicates and closes section handles in this process.
pub trait SectionFactory {
    /// A new zero-filled section of `size` bytes.
    fn create_section(&mut self, size: u64) -> Result<SectionHandle, DriverError>;
    /// A second handle to the same section (the caller owns it).
    fn duplicate_handle(
        &mut self,
        handle: SectionHandle,
        access: SectionAccess,
    ) -> Result<SectionHandle, DriverError>;
    /// Closes a handle this factory created.
    fn close_section(&mut self, handle: SectionHandle);
}

struct Session {
    id: SessionId,
    sections: Vec<SectionHandle>,
    states: Vec<MappingState>,
    handles_issued: u64,
}

/// The loopback driver.
pub struct LoopbackDriver<F: SectionFactory> {
    factory: F,
    session: Option<Session>,
    next_session: u64,
}

impl<F: SectionFactory> LoopbackDriver<F> {
    /// A loopback driver creating its sections with `factory`.
    pub fn new(factory: F) -> Self {
        Self {
            factory,
            session: None,
            next_session: 1,
        }
    }

    /// The factory (tests inspect their fake).
    pub fn factory(&self) -> &F {
        &self.factory
    }

    fn session(&mut self, id: SessionId) -> Result<&mut Session, DriverError> {
        match &mut self.session {
            Some(session) if session.id == id => Ok(session),
            _ => Err(DriverError::Rejected {
                reason: format!("no session {}", id.0),
            }),
        }
    }

    fn close_sections(&mut self, sections: Vec<SectionHandle>) {
        for handle in sections.into_iter().rev() {
            self.factory.close_section(handle);
        }
    }
}

impl<F: SectionFactory> DriverClient for LoopbackDriver<F> {
    fn open_session(&mut self, request: &SessionRequest) -> Result<SessionInfo, DriverError> {
        if self.session.is_some() {
            return Err(DriverError::Rejected {
                reason: "a session is already open".into(),
            });
        }
        let layout =
            BarLayout::plan(&request.region_sizes).map_err(|error| DriverError::Rejected {
                reason: error.to_string(),
            })?;
        let mut sections = Vec::with_capacity(layout.regions().len());
        for region in layout.regions() {
            match self.factory.create_section(region.size) {
                Ok(handle) => sections.push(handle),
                Err(error) => {
                    self.close_sections(sections);
                    return Err(error);
                }
            }
        }
        let id = SessionId(self.next_session);
        self.next_session += 1;
        let regions: Vec<RegionInfo> = layout.regions().to_vec();
        self.session = Some(Session {
            id,
            states: vec![MappingState::Unmapped; sections.len()],
            sections,
            handles_issued: 0,
        });
        Ok(SessionInfo {
            session: id,
            bar_size: layout.bar_size(),
            regions,
        })
    }

    fn region_section(
        &mut self,
        session: SessionId,
        region: u32,
        access: SectionAccess,
    ) -> Result<SectionHandle, DriverError> {
        let handle = self
            .session(session)?
            .sections
            .get(region as usize)
            .copied();
        let handle = handle.ok_or_else(|| DriverError::Rejected {
            reason: format!("no region {region}"),
        })?;
        let duplicate = self.factory.duplicate_handle(handle, access)?;
        let session = self.session(session)?;
        session.handles_issued = session.handles_issued.saturating_add(1);
        Ok(duplicate)
    }

    /// Records the state; `acted_on` means nothing here (no guest channel, no events).
    fn report_mapping(
        &mut self,
        session: SessionId,
        region: u32,
        state: MappingState,
        _acted_on: ActedOn,
    ) -> Result<(), DriverError> {
        let slot = self.session(session)?.states.get_mut(region as usize);
        let slot = slot.ok_or_else(|| DriverError::Rejected {
            reason: format!("no region {region}"),
        })?;
        *slot = state;
        Ok(())
    }

    /// What the driver's QUERY_STATUS would say. There is no channel in loopback mode, so no
    /// guest packets; the state is `Open` while the session exists (it is fully usable).
    fn status(&mut self, session: SessionId) -> Result<SessionStatus, DriverError> {
        let session = self.session(session)?;
        let mapped = session
            .states
            .iter()
            .filter(|state| **state == MappingState::SectionBacked)
            .count();
        Ok(SessionStatus {
            state: SessionState::Open,
            counters: StatusCounters {
                sections_created: session.sections.len() as u64,
                section_handles_issued: session.handles_issued,
                regions_mapped: mapped as u64,
                guest_packets: 0,
                protocol_errors: 0,
            },
        })
    }

    fn close_session(&mut self, session: SessionId) -> Result<(), DriverError> {
        self.session(session)?;
        if let Some(session) = self.session.take() {
            self.close_sections(session.sections);
        }
        Ok(())
    }
}

impl<F: SectionFactory> Drop for LoopbackDriver<F> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.close_sections(session.sections);
        }
    }
}
