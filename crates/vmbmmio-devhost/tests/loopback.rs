//! The loopback driver: the driver's layout, one section per region, duplicated handles, and
//! every section closed with the session.

use std::collections::BTreeSet;

use vmbmmio_devhost::driver::{
    ActedOn, DriverClient, DriverError, MappingState, RegionInfo, SectionAccess, SessionRequest,
    SessionState, SessionStatus, StatusCounters,
};
use vmbmmio_devhost::guid::Guid;
use vmbmmio_devhost::loopback::{LoopbackDriver, SectionFactory};
use vmbmmio_devhost::platform::SectionHandle;

#[derive(Default)]
struct Factory {
    open: BTreeSet<u64>,
    next: u64,
    created: Vec<u64>,
    fail_create_after: Option<usize>,
}

impl SectionFactory for Factory {
    fn create_section(&mut self, size: u64) -> Result<SectionHandle, DriverError> {
        if self.fail_create_after == Some(self.created.len()) {
            return Err(DriverError::Os { code: 1455 });
        }
        self.next += 1;
        self.open.insert(self.next);
        self.created.push(size);
        Ok(SectionHandle(self.next))
    }

    fn duplicate_handle(
        &mut self,
        handle: SectionHandle,
        _access: SectionAccess,
    ) -> Result<SectionHandle, DriverError> {
        assert!(self.open.contains(&handle.0));
        self.next += 1;
        self.open.insert(self.next);
        Ok(SectionHandle(self.next))
    }

    fn close_section(&mut self, handle: SectionHandle) {
        assert!(self.open.remove(&handle.0), "closed once");
    }
}

fn request() -> SessionRequest {
    SessionRequest::with_default_names(Guid::from_u128(1), &[8192, 4096])
}

#[test]
fn serves_a_session_like_the_driver() {
    let mut driver = LoopbackDriver::new(Factory::default());
    let info = driver.open_session(&request()).unwrap();
    assert_eq!(info.bar_size, 16384);
    assert_eq!(
        info.regions,
        [
            RegionInfo {
                offset: 0,
                size: 8192
            },
            RegionInfo {
                offset: 8192,
                size: 4096
            }
        ]
    );
    assert_eq!(driver.factory().created, [8192, 4096]);
    assert!(
        driver.open_session(&request()).is_err(),
        "one session at a time"
    );
    let handle = driver
        .region_section(info.session, 1, SectionAccess::ReadWrite)
        .unwrap();
    assert!(
        driver
            .region_section(info.session, 2, SectionAccess::Read)
            .is_err()
    );
    driver
        .report_mapping(
            info.session,
            1,
            MappingState::SectionBacked,
            ActedOn::Unknown,
        )
        .unwrap();
    assert_eq!(
        driver.status(info.session).unwrap(),
        SessionStatus {
            state: SessionState::Open,
            counters: StatusCounters {
                sections_created: 2,
                section_handles_issued: 1,
                regions_mapped: 1,
                guest_packets: 0,
                protocol_errors: 0,
            },
        }
    );
    driver.close_session(info.session).unwrap();
    // Only the duplicate handed out is left; its owner (the device host) closes it.
    assert_eq!(
        driver.factory().open.iter().copied().collect::<Vec<_>>(),
        [handle.0]
    );
    assert!(driver.close_session(info.session).is_err());
}

#[test]
fn a_failed_section_creation_closes_the_ones_created() {
    let factory = Factory {
        fail_create_after: Some(1),
        ..Default::default()
    };
    let mut driver = LoopbackDriver::new(factory);
    assert_eq!(
        driver.open_session(&request()),
        Err(DriverError::Os { code: 1455 })
    );
    assert!(driver.factory().open.is_empty());
}

#[test]
fn dropping_the_driver_closes_an_open_session() {
    let mut driver = LoopbackDriver::new(Factory::default());
    driver.open_session(&request()).unwrap();
    assert_eq!(driver.factory().open.len(), 2);
    drop(driver);
}
