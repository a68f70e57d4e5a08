//! Region validation, page rounding and the byte quotas.
//!
//! Sections are pagefile-backed `SEC_COMMIT`: every byte is charged against the host's commit
//! limit the moment the section is created, whether or not anybody touches it. The quotas make
//! sure a misconfigured VM, or a device host that keeps asking, cannot exhaust that limit: one
//! session (VM) is bounded by [`SectionQuotas::session_bytes`], all sessions together by
//! [`SectionQuotas::global_bytes`]. Both are checked on the page-rounded total **before** any
//! section is created, so a refused session leaves nothing behind.

use super::backend::RegionAccess;
use super::error::SectionError;
use crate::mmio_plan::{MAX_BAR_SIZE, MAX_REGIONS, PAGE_SIZE};

/// Default per-session (per-VM) byte quota: 256 MiB, room for a few full-HD frame buffers and
/// rings while keeping one VM well below a host's commit limit.
pub const DEFAULT_SESSION_BYTES: u64 = 256 << 20;
/// Default global byte quota across all sessions: 1 GiB.
pub const DEFAULT_GLOBAL_BYTES: u64 = 1 << 30;
/// Default limit on live sessions: 64 VMs served at once.
pub const DEFAULT_MAX_SESSIONS: usize = 64;
/// Default limit on user handles one session hands out before its device host exits or the
/// session closes: four per region at the largest region count. The driver cannot see a device
/// host close a handle, so this bounds what a device host stuck in a retry loop can pile up.
pub const DEFAULT_MAX_HANDLES_PER_SESSION: usize = 4 * MAX_REGIONS;

/// The limits the section manager enforces. Configurable; [`Default`] gives the documented
/// defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SectionQuotas {
    /// Most page-rounded bytes one session may hold.
    pub session_bytes: u64,
    /// Most page-rounded bytes all sessions together may hold.
    pub global_bytes: u64,
    /// Most live sessions.
    pub max_sessions: usize,
    /// Most user handles one session may hand out (see [`DEFAULT_MAX_HANDLES_PER_SESSION`]).
    pub max_handles_per_session: usize,
}

impl Default for SectionQuotas {
    fn default() -> Self {
        Self {
            session_bytes: DEFAULT_SESSION_BYTES,
            global_bytes: DEFAULT_GLOBAL_BYTES,
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_handles_per_session: DEFAULT_MAX_HANDLES_PER_SESSION,
        }
    }
}

/// One shared region as configured for a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionSpec {
    /// Size in bytes; rounded up to whole pages.
    pub size: u64,
    /// What the guest may do with it.
    pub access: RegionAccess,
    /// Whether host consumers may map it for writing (ATTACH_REGION, `CONSUMER_WRITABLE`).
    pub consumer_writable: bool,
}

impl RegionSpec {
    /// A region the guest reads and writes.
    pub const fn read_write(size: u64) -> Self {
        Self {
            size,
            access: RegionAccess::ReadWrite,
            consumer_writable: false,
        }
    }

    /// A region the guest only reads.
    pub const fn read_only(size: u64) -> Self {
        Self {
            size,
            access: RegionAccess::ReadOnly,
            consumer_writable: false,
        }
    }

    /// The same region, host consumers allowed to map it for writing if `writable`.
    pub const fn consumer_writable(self, writable: bool) -> Self {
        Self {
            consumer_writable: writable,
            ..self
        }
    }
}

/// `size` rounded up to whole pages, if that neither overflows nor exceeds the largest BAR.
pub const fn section_size(size: u64) -> Option<u64> {
    if size == 0 {
        return None;
    }
    const MASK: u64 = PAGE_SIZE - 1;
    match size.checked_add(MASK) {
        Some(padded) if padded & !MASK <= MAX_BAR_SIZE => Some(padded & !MASK),
        _ => None,
    }
}

/// Validates `regions` and returns the page-rounded total.
pub fn total_bytes(regions: &[RegionSpec]) -> Result<u64, SectionError> {
    if regions.is_empty() {
        return Err(SectionError::NoRegions);
    }
    if regions.len() > MAX_REGIONS {
        return Err(SectionError::TooManyRegions {
            count: regions.len(),
        });
    }
    let mut total: u64 = 0;
    for (index, region) in regions.iter().enumerate() {
        if region.size == 0 {
            return Err(SectionError::EmptyRegion { index });
        }
        let size = section_size(region.size).ok_or(SectionError::RegionTooLarge { index })?;
        // At most MAX_REGIONS * MAX_BAR_SIZE = 2^39: cannot overflow, checked anyway.
        total = total
            .checked_add(size)
            .ok_or(SectionError::RegionTooLarge { index })?;
    }
    Ok(total)
}

impl SectionQuotas {
    /// Checks a session of `requested` bytes against both byte quotas, given `in_use` bytes
    /// already held by other sessions (live, or reserved while their sections are created).
    pub fn check_bytes(&self, requested: u64, in_use: u64) -> Result<(), SectionError> {
        if requested > self.session_bytes {
            return Err(SectionError::SessionQuotaExceeded {
                requested,
                limit: self.session_bytes,
            });
        }
        let over = match in_use.checked_add(requested) {
            Some(total) => total > self.global_bytes,
            None => true,
        };
        if over {
            return Err(SectionError::GlobalQuotaExceeded {
                requested,
                in_use,
                limit: self.global_bytes,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_to_whole_pages() {
        assert_eq!(section_size(1), Some(4096));
        assert_eq!(section_size(4096), Some(4096));
        assert_eq!(section_size(4097), Some(8192));
        assert_eq!(section_size(0), None);
        assert_eq!(section_size(u64::MAX), None);
        assert_eq!(section_size(MAX_BAR_SIZE), Some(MAX_BAR_SIZE));
        assert_eq!(section_size(MAX_BAR_SIZE + 1), None);
    }

    #[test]
    fn validates_the_region_list() {
        assert_eq!(total_bytes(&[]), Err(SectionError::NoRegions));
        assert_eq!(
            total_bytes(&[RegionSpec::read_write(1); MAX_REGIONS + 1]),
            Err(SectionError::TooManyRegions {
                count: MAX_REGIONS + 1
            })
        );
        assert_eq!(
            total_bytes(&[RegionSpec::read_write(1), RegionSpec::read_only(0)]),
            Err(SectionError::EmptyRegion { index: 1 })
        );
        assert_eq!(
            total_bytes(&[RegionSpec::read_write(1), RegionSpec::read_write(u64::MAX)]),
            Err(SectionError::RegionTooLarge { index: 1 })
        );
        assert_eq!(
            total_bytes(&[RegionSpec::read_write(1), RegionSpec::read_only(5000)]),
            Ok(3 * 4096)
        );
        assert_eq!(
            total_bytes(&[RegionSpec::read_write(MAX_BAR_SIZE); MAX_REGIONS]),
            Ok(MAX_BAR_SIZE * MAX_REGIONS as u64)
        );
    }

    #[test]
    fn checks_both_quotas() {
        let quotas = SectionQuotas {
            session_bytes: 8192,
            global_bytes: 12288,
            ..Default::default()
        };
        assert_eq!(quotas.check_bytes(8192, 4096), Ok(()));
        assert_eq!(
            quotas.check_bytes(12288, 0),
            Err(SectionError::SessionQuotaExceeded {
                requested: 12288,
                limit: 8192
            })
        );
        assert_eq!(
            quotas.check_bytes(8192, 8192),
            Err(SectionError::GlobalQuotaExceeded {
                requested: 8192,
                in_use: 8192,
                limit: 12288
            })
        );
        assert!(quotas.check_bytes(1, u64::MAX).is_err());
    }

    #[test]
    fn defaults_are_consistent() {
        let quotas = SectionQuotas::default();
        assert!(quotas.session_bytes <= quotas.global_bytes);
        assert!(quotas.max_handles_per_session >= MAX_REGIONS);
    }
}
