//! PLACEHOLDER for the lead: the [`DriverClient`] over the vmbmmio control device.
//!
//! The real client opens the driver's control device and implements every request with
//! `DeviceIoControl` and the wire formats of `vmbmmio-proto` (written separately). Until then
//! this client refuses every request with [`DriverError::NotImplemented`], so the device host
//! fails at "opening the driver session" and releases everything it acquired; `--loopback`
//! runs without the driver.

use crate::driver::{
    DriverClient, DriverError, MappingState, SectionAccess, SessionId, SessionInfo, SessionRequest,
    SessionStatus,
};
use crate::platform::SectionHandle;

/// The driver client over IOCTLs (not implemented yet).
#[derive(Debug, Default)]
pub struct IoctlDriverClient;

impl DriverClient for IoctlDriverClient {
    fn open_session(&mut self, _request: &SessionRequest) -> Result<SessionInfo, DriverError> {
        Err(DriverError::NotImplemented {
            operation: "open session (IOCTL)",
        })
    }

    fn region_section(
        &mut self,
        _session: SessionId,
        _region: u32,
        _access: SectionAccess,
    ) -> Result<SectionHandle, DriverError> {
        Err(DriverError::NotImplemented {
            operation: "get region section (IOCTL)",
        })
    }

    fn report_mapping(
        &mut self,
        _session: SessionId,
        _region: u32,
        _state: MappingState,
    ) -> Result<(), DriverError> {
        Err(DriverError::NotImplemented {
            operation: "report mapping (IOCTL)",
        })
    }

    fn status(&mut self, _session: SessionId) -> Result<SessionStatus, DriverError> {
        Err(DriverError::NotImplemented {
            operation: "query status (IOCTL)",
        })
    }

    fn close_session(&mut self, _session: SessionId) -> Result<(), DriverError> {
        Err(DriverError::NotImplemented {
            operation: "close session (IOCTL)",
        })
    }
}
