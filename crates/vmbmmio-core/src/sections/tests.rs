//! Unit tests of the manager against a minimal counting backend. The simulator-backed tests
//! (byte accuracy, process exit, object lifetime) are in `tests/sections*.rs`.

use alloc::collections::BTreeSet;
use core::cell::{Cell, RefCell};

use kmcl::raw::{NTSTATUS, STATUS_INSUFFICIENT_RESOURCES};

use super::*;

/// Counts references; fails the `fail_create`-th create (1-based) when set.
#[derive(Default)]
struct Fake {
    live: RefCell<BTreeSet<u64>>,
    /// Every release, in order.
    released: RefCell<alloc::vec::Vec<u64>>,
    next: Cell<u64>,
    creates: Cell<u64>,
    fail_create: Cell<u64>,
    fail_open: Cell<bool>,
    current: Cell<u64>,
}

struct FakeSection(u64);

impl SectionBackend for &Fake {
    type Section = FakeSection;

    fn create_section(&self, size: u64) -> Result<FakeSection, NTSTATUS> {
        assert!(size > 0 && size.is_multiple_of(4096));
        self.creates.set(self.creates.get() + 1);
        if self.creates.get() == self.fail_create.get() {
            return Err(STATUS_INSUFFICIENT_RESOURCES);
        }
        self.next.set(self.next.get() + 1);
        self.live.borrow_mut().insert(self.next.get());
        Ok(FakeSection(self.next.get()))
    }

    fn current_process(&self) -> ProcessKey {
        ProcessKey(self.current.get())
    }

    fn open_user_handle(&self, section: &FakeSection, _mask: u32) -> Result<UserHandle, NTSTATUS> {
        assert!(self.live.borrow().contains(&section.0));
        if self.fail_open.get() {
            return Err(STATUS_INSUFFICIENT_RESOURCES);
        }
        Ok(UserHandle(section.0 * 4))
    }

    fn close_section(&self, section: FakeSection) {
        assert!(self.live.borrow_mut().remove(&section.0), "double release");
        self.released.borrow_mut().push(section.0);
    }
}

const HOST: ProcessKey = ProcessKey(1000);
const RW: RegionAccess = RegionAccess::ReadWrite;

fn manager(fake: &Fake) -> SectionManager<&Fake> {
    fake.current.set(HOST.0);
    SectionManager::new(fake, SectionQuotas::default())
}

#[test]
fn creates_one_section_per_region_and_releases_on_close() {
    let fake = Fake::default();
    let mut sections = manager(&fake);
    let id = sections
        .create_session(&[RegionSpec::read_write(1), RegionSpec::read_only(4097)])
        .unwrap();
    assert_eq!(fake.live.borrow().len(), 2);
    assert_eq!(
        sections.region(id, RegionId::new(id, 1)).unwrap().pages(),
        2
    );
    assert_eq!(sections.counters().bytes_in_use, 3 * 4096);
    let detached = sections.close_session(id).unwrap();
    // Out of the ledger, not yet released: the caller releases after unlocking.
    assert_eq!(fake.live.borrow().len(), 2);
    assert_eq!(detached.len(), 2);
    assert!(sections.counters().all_released());
    detached.release();
    assert!(fake.live.borrow().is_empty());
    assert_eq!(
        sections.close_session(id).unwrap_err(),
        SectionError::UnknownSession { session: id }
    );
}

#[test]
fn failure_part_way_releases_what_was_created() {
    let fake = Fake::default();
    let mut sections = manager(&fake);
    fake.fail_create.set(3);
    let error = sections
        .create_session(&[RegionSpec::read_write(4096); 4])
        .unwrap_err();
    assert_eq!(
        error,
        SectionError::Platform {
            index: 2,
            status: STATUS_INSUFFICIENT_RESOURCES
        }
    );
    assert!(fake.live.borrow().is_empty());
    let counters = sections.counters();
    assert_eq!(
        (counters.sections_created, counters.sections_released),
        (2, 2)
    );
    assert!(counters.all_released());
}

#[test]
fn handles_are_recorded_and_dropped_on_process_release() {
    let fake = Fake::default();
    let mut sections = manager(&fake);
    let id = sections
        .create_session(&[RegionSpec::read_write(4096)])
        .unwrap();
    let handle = sections
        .open_user_handle(id, RegionId::new(id, 0), RW, HOST)
        .unwrap();
    assert_eq!(
        sections.handles(id).unwrap(),
        &[HandedOutHandle {
            region: 0,
            process: HOST,
            handle,
            access: RW,
        }]
    );
    assert_eq!(sections.release_process(ProcessKey(7)), 0);
    assert_eq!(sections.release_process(HOST), 1);
    assert!(sections.handles(id).unwrap().is_empty());
    // The section stays with its session.
    assert_eq!(fake.live.borrow().len(), 1);
}

#[test]
fn failed_open_records_nothing() {
    let fake = Fake::default();
    let mut sections = manager(&fake);
    let id = sections
        .create_session(&[RegionSpec::read_write(4096)])
        .unwrap();
    fake.fail_open.set(true);
    assert!(matches!(
        sections.open_user_handle(id, RegionId::new(id, 0), RW, HOST),
        Err(SectionError::Platform { index: 0, .. })
    ));
    assert_eq!(sections.counters().handles_handed_out, 0);
    assert!(sections.handles(id).unwrap().is_empty());
}

#[test]
fn refuses_the_wrong_process_context() {
    let fake = Fake::default();
    let mut sections = manager(&fake);
    let id = sections
        .create_session(&[RegionSpec::read_write(4096)])
        .unwrap();
    fake.current.set(4);
    assert_eq!(
        sections.open_user_handle(id, RegionId::new(id, 0), RW, HOST),
        Err(SectionError::WrongProcessContext {
            requester: HOST,
            current: ProcessKey(4)
        })
    );
}

#[test]
fn bounds_handles_per_session() {
    let fake = Fake::default();
    fake.current.set(HOST.0);
    let quotas = SectionQuotas {
        max_handles_per_session: 2,
        ..Default::default()
    };
    let mut sections = SectionManager::new(&fake, quotas);
    let id = sections
        .create_session(&[RegionSpec::read_write(4096)])
        .unwrap();
    let region = RegionId::new(id, 0);
    sections.open_user_handle(id, region, RW, HOST).unwrap();
    sections.open_user_handle(id, region, RW, HOST).unwrap();
    assert_eq!(
        sections.open_user_handle(id, region, RW, HOST),
        Err(SectionError::HandleQuotaExceeded { limit: 2 })
    );
    // A restarted device host gets a fresh allowance once the old one's records are dropped.
    sections.release_process(HOST);
    assert!(sections.open_user_handle(id, region, RW, HOST).is_ok());
}

#[test]
fn session_ids_are_not_reused_and_sessions_are_bounded() {
    let fake = Fake::default();
    fake.current.set(HOST.0);
    let quotas = SectionQuotas {
        max_sessions: 1,
        ..Default::default()
    };
    let mut sections = SectionManager::new(&fake, quotas);
    let first = sections
        .create_session(&[RegionSpec::read_write(1)])
        .unwrap();
    assert_eq!(
        sections.create_session(&[RegionSpec::read_write(1)]),
        Err(SectionError::TooManySessions { limit: 1 })
    );
    sections.close_session(first).unwrap();
    let second = sections
        .create_session(&[RegionSpec::read_write(1)])
        .unwrap();
    assert_ne!(first, second);
    assert_eq!(
        sections.open_user_handle(first, RegionId::new(first, 0), RW, HOST),
        Err(SectionError::UnknownSession { session: first })
    );
}

#[test]
fn release_all_empties_and_refuses_new_work() {
    let fake = Fake::default();
    let mut sections = manager(&fake);
    let id = sections
        .create_session(&[RegionSpec::read_write(1); 3])
        .unwrap();
    sections
        .open_user_handle(id, RegionId::new(id, 2), RW, HOST)
        .unwrap();
    sections.release_all();
    assert!(fake.live.borrow().is_empty());
    assert!(sections.counters().all_released());
    assert_eq!(
        sections.create_session(&[RegionSpec::read_write(1)]),
        Err(SectionError::Unloading)
    );
    assert_eq!(
        sections.open_user_handle(id, RegionId::new(id, 0), RW, HOST),
        Err(SectionError::Unloading)
    );
    sections.release_all();
}

#[test]
fn drop_releases_everything() {
    let fake = Fake::default();
    {
        let mut sections = manager(&fake);
        sections
            .create_session(&[RegionSpec::read_write(1); 2])
            .unwrap();
    }
    assert!(fake.live.borrow().is_empty());
}

fn quotas(global_pages: u64, max_sessions: usize) -> SectionQuotas {
    SectionQuotas {
        session_bytes: 2 * 4096,
        global_bytes: global_pages * 4096,
        max_sessions,
        ..Default::default()
    }
}

#[test]
fn reserve_creates_nothing_and_commit_enters_the_ledger() {
    let fake = Fake::default();
    let mut sections = manager(&fake);
    let mut reservation = sections
        .reserve(&[RegionSpec::read_write(1), RegionSpec::read_only(4097)])
        .unwrap();
    assert!(fake.live.borrow().is_empty());
    let pending = sections.counters();
    assert_eq!(
        (pending.pending_sessions, pending.pending_bytes),
        (1, 3 * 4096)
    );
    assert_eq!((pending.live_sessions, pending.bytes_in_use), (0, 0));
    assert!(!pending.all_released());
    assert_eq!(reservation.regions()[1].size, 2 * 4096);

    // The unlocked step: no manager involved.
    let created = reservation.create_sections().unwrap();
    assert_eq!(fake.live.borrow().len(), 2);
    let id = sections.commit(reservation, created);
    let counters = sections.counters();
    assert_eq!((counters.pending_sessions, counters.pending_bytes), (0, 0));
    assert_eq!((counters.live_sessions, counters.live_sections), (1, 2));
    assert_eq!(counters.sections_created, 2);
    assert_eq!(counters.bytes_in_use, 3 * 4096);
    assert_eq!(sections.region_count(id).unwrap(), 2);
    sections.close_session(id).unwrap().release();
    assert!(fake.live.borrow().is_empty());
    assert!(sections.counters().all_released());
}

#[test]
fn pending_reservations_count_against_the_byte_quota() {
    let fake = Fake::default();
    fake.current.set(HOST.0);
    let mut sections = SectionManager::new(&fake, quotas(3, 8));
    let first = sections
        .reserve(&[RegionSpec::read_write(2 * 4096)])
        .unwrap();
    // Nothing exists yet, but the first open's two pages are spoken for.
    assert_eq!(
        sections
            .reserve(&[RegionSpec::read_write(2 * 4096)])
            .unwrap_err(),
        SectionError::GlobalQuotaExceeded {
            requested: 2 * 4096,
            in_use: 2 * 4096,
            limit: 3 * 4096
        }
    );
    let second = sections.reserve(&[RegionSpec::read_write(4096)]).unwrap();
    assert_eq!(sections.counters().pending_bytes, 3 * 4096);
    // A cancelled reservation frees its quota at once.
    sections.cancel(first);
    let third = sections
        .reserve(&[RegionSpec::read_write(2 * 4096)])
        .unwrap();
    sections.cancel(second);
    sections.cancel(third);
    assert!(sections.counters().all_released());
    assert!(fake.live.borrow().is_empty());
}

#[test]
fn pending_reservations_count_against_max_sessions() {
    let fake = Fake::default();
    fake.current.set(HOST.0);
    let mut sections = SectionManager::new(&fake, quotas(16, 2));
    let live = sections
        .create_session(&[RegionSpec::read_write(1)])
        .unwrap();
    let mut pending = sections.reserve(&[RegionSpec::read_write(1)]).unwrap();
    assert_eq!(
        sections.reserve(&[RegionSpec::read_write(1)]).unwrap_err(),
        SectionError::TooManySessions { limit: 2 }
    );
    // The pending one still commits: reserve made room in the ledger for it.
    let created = pending.create_sections().unwrap();
    let committed = sections.commit(pending, created);
    assert_ne!(committed, live);
    assert_eq!(sections.counters().live_sessions, 2);
    sections.release_all();
    assert!(sections.counters().all_released());
    assert!(fake.live.borrow().is_empty());
}

#[test]
fn a_failure_part_way_is_counted_at_cancel_and_leaves_nothing() {
    let fake = Fake::default();
    let mut sections = manager(&fake);
    let mut reservation = sections
        .reserve(&[RegionSpec::read_write(4096); 3])
        .unwrap();
    fake.fail_create.set(3);
    assert_eq!(
        reservation.create_sections().unwrap_err(),
        SectionError::Platform {
            index: 2,
            status: STATUS_INSUFFICIENT_RESOURCES
        }
    );
    // Released newest first, before create_sections returned.
    assert_eq!(*fake.released.borrow(), [2, 1]);
    assert!(fake.live.borrow().is_empty());
    sections.cancel(reservation);
    let counters = sections.counters();
    assert_eq!(
        (counters.sections_created, counters.sections_released),
        (2, 2)
    );
    assert!(counters.all_released());
}

#[test]
fn sections_of_a_cancelled_reservation_are_released_by_their_owner() {
    let fake = Fake::default();
    let mut sections = manager(&fake);
    let mut reservation = sections.reserve(&[RegionSpec::read_write(1); 2]).unwrap();
    let created = reservation.create_sections().unwrap();
    // The offer failed: cancel under the lock, release without it.
    sections.cancel(reservation);
    assert!(sections.counters().all_released());
    assert_eq!(fake.live.borrow().len(), 2);
    created.release();
    assert!(fake.live.borrow().is_empty());
    assert_eq!(*fake.released.borrow(), [2, 1]);
}

#[test]
fn dropped_bundles_release_their_kernel_references() {
    let fake = Fake::default();
    let mut sections = manager(&fake);
    // Created, then dropped without commit (a freed control state).
    let mut reservation = sections.reserve(&[RegionSpec::read_write(1); 2]).unwrap();
    drop(reservation.create_sections().unwrap());
    assert!(fake.live.borrow().is_empty());
    sections.cancel(reservation);
    // Detached at close, then dropped instead of released.
    let id = sections
        .create_session(&[RegionSpec::read_write(1)])
        .unwrap();
    drop(sections.close_session(id).unwrap());
    assert!(fake.live.borrow().is_empty());
    assert!(sections.counters().all_released());
}

#[test]
fn unloading_refuses_reservations() {
    let fake = Fake::default();
    let mut sections = manager(&fake);
    sections.release_all();
    assert_eq!(
        sections.reserve(&[RegionSpec::read_write(1)]).unwrap_err(),
        SectionError::Unloading
    );
    assert!(sections.counters().all_released());
}
