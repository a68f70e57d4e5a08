//! Why a section request was refused, and the NTSTATUS each refusal completes with.

use kmcl::raw::{
    NT_SUCCESS, NTSTATUS, STATUS_ACCESS_DENIED, STATUS_INSUFFICIENT_RESOURCES,
    STATUS_INVALID_DEVICE_STATE, STATUS_INVALID_PARAMETER, STATUS_QUOTA_EXCEEDED,
    STATUS_UNSUCCESSFUL,
};

use super::backend::ProcessKey;
use super::ledger::SessionId;

/// Every way the section manager refuses a request. Nothing is created or left behind when
/// one of these is returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SectionError {
    /// A session needs at least one region.
    NoRegions,
    /// More regions than `mmio_plan::MAX_REGIONS`.
    TooManyRegions {
        /// How many were asked for.
        count: usize,
    },
    /// Region `index` has size zero.
    EmptyRegion {
        /// Index of the region.
        index: usize,
    },
    /// Region `index` is larger than a BAR can hold once rounded to pages (or overflows).
    RegionTooLarge {
        /// Index of the region.
        index: usize,
    },
    /// The session's regions together exceed the per-session byte quota.
    SessionQuotaExceeded {
        /// Bytes the session asked for, page-rounded.
        requested: u64,
        /// The per-session quota.
        limit: u64,
    },
    /// Creating the session would exceed the global byte quota.
    GlobalQuotaExceeded {
        /// Bytes the session asked for, page-rounded.
        requested: u64,
        /// Bytes already held by other sessions, live or reserved (being created).
        in_use: u64,
        /// The global quota.
        limit: u64,
    },
    /// The number of live sessions is at its limit.
    TooManySessions {
        /// The limit.
        limit: usize,
    },
    /// The session has handed out as many user handles as it may.
    HandleQuotaExceeded {
        /// The limit.
        limit: usize,
    },
    /// No live session has this id (never created, or already closed).
    UnknownSession {
        /// The id asked for.
        session: SessionId,
    },
    /// The region belongs to a different session than the caller's.
    ForeignRegion {
        /// The caller's session.
        caller: SessionId,
        /// The session the region belongs to.
        owner: SessionId,
    },
    /// The region index is past the end of the session's regions.
    RegionOutOfRange {
        /// The index asked for.
        index: u32,
        /// How many regions the session has.
        count: usize,
    },
    /// A read/write handle was asked for a region the guest may only read.
    WriteNotAllowed {
        /// The region index.
        index: u32,
    },
    /// The call does not run in the requesting process's context, so a user handle would land
    /// in the wrong process's handle table.
    WrongProcessContext {
        /// The process that asked (recorded when it opened the driver's file).
        requester: ProcessKey,
        /// The process the thread actually runs in.
        current: ProcessKey,
    },
    /// The driver is unloading: every section has been released and no new one may be made.
    Unloading,
    /// The ledger could not allocate its bookkeeping.
    OutOfMemory,
    /// A kernel call failed with this status; `index` is the region being created or opened.
    Platform {
        /// Region index.
        index: usize,
        /// The NTSTATUS the kernel returned.
        status: NTSTATUS,
    },
}

impl SectionError {
    /// The NTSTATUS a request that failed this way completes with.
    pub const fn to_ntstatus(self) -> NTSTATUS {
        match self {
            Self::NoRegions
            | Self::TooManyRegions { .. }
            | Self::EmptyRegion { .. }
            | Self::RegionTooLarge { .. }
            | Self::UnknownSession { .. }
            | Self::RegionOutOfRange { .. } => STATUS_INVALID_PARAMETER,
            Self::SessionQuotaExceeded { .. }
            | Self::GlobalQuotaExceeded { .. }
            | Self::TooManySessions { .. }
            | Self::HandleQuotaExceeded { .. } => STATUS_QUOTA_EXCEEDED,
            Self::ForeignRegion { .. }
            | Self::WriteNotAllowed { .. }
            | Self::WrongProcessContext { .. } => STATUS_ACCESS_DENIED,
            Self::Unloading => STATUS_INVALID_DEVICE_STATE,
            Self::OutOfMemory => STATUS_INSUFFICIENT_RESOURCES,
            // A backend that reports a success code as a failure must still fail the request.
            Self::Platform { status, .. } if NT_SUCCESS(status) => STATUS_UNSUCCESSFUL,
            Self::Platform { status, .. } => status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_maps_to_a_failure_status() {
        let session = SessionId::from_raw(1);
        for error in [
            SectionError::NoRegions,
            SectionError::TooManyRegions { count: 17 },
            SectionError::EmptyRegion { index: 0 },
            SectionError::RegionTooLarge { index: 0 },
            SectionError::SessionQuotaExceeded {
                requested: 1,
                limit: 0,
            },
            SectionError::GlobalQuotaExceeded {
                requested: 1,
                in_use: 0,
                limit: 0,
            },
            SectionError::TooManySessions { limit: 0 },
            SectionError::HandleQuotaExceeded { limit: 0 },
            SectionError::UnknownSession { session },
            SectionError::ForeignRegion {
                caller: session,
                owner: session,
            },
            SectionError::RegionOutOfRange { index: 3, count: 1 },
            SectionError::WriteNotAllowed { index: 0 },
            SectionError::WrongProcessContext {
                requester: ProcessKey(1),
                current: ProcessKey(4),
            },
            SectionError::Unloading,
            SectionError::OutOfMemory,
            SectionError::Platform {
                index: 0,
                status: STATUS_INSUFFICIENT_RESOURCES,
            },
            SectionError::Platform {
                index: 0,
                status: 0,
            },
        ] {
            assert!(!NT_SUCCESS(error.to_ntstatus()), "{error:?}");
        }
    }

    #[test]
    fn quota_and_isolation_statuses() {
        assert_eq!(
            SectionError::TooManySessions { limit: 1 }.to_ntstatus(),
            STATUS_QUOTA_EXCEEDED
        );
        assert_eq!(
            SectionError::ForeignRegion {
                caller: SessionId::from_raw(1),
                owner: SessionId::from_raw(2)
            }
            .to_ntstatus(),
            STATUS_ACCESS_DENIED
        );
        assert_eq!(
            SectionError::Platform {
                index: 2,
                status: STATUS_INSUFFICIENT_RESOURCES
            }
            .to_ntstatus(),
            STATUS_INSUFFICIENT_RESOURCES
        );
    }
}
