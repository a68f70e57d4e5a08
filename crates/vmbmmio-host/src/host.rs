//! [`Host`]: a consumer's handle to the driver. Lists the attachable VMs and their regions and
//! attaches to a region by VM id and name.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::attachment::Attachment;
use crate::driver::Driver;
use crate::error::{Error, Result};
use crate::failure::Condition;
use crate::vm_id::VmId;
use crate::wire::{self, Call};

/// What a consumer may do with a region's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// Map for reading.
    Read,
    /// Map for reading and writing (only regions opened `CONSUMER_WRITABLE`).
    ReadWrite,
}

impl Access {
    /// Whether this access writes.
    pub const fn writes(self) -> bool {
        matches!(self, Self::ReadWrite)
    }

    /// `"read"` or `"read_write"` (the CLI's JSON).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::ReadWrite => "read_write",
        }
    }
}

/// Where a region is as the device host last reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegionState {
    /// Not in the guest's BAR (yet).
    Unmapped,
    /// Mapped into the guest's BAR: the guest reaches the same memory.
    Mapped,
    /// Served by the device host's intercepts (same bytes, slower for the guest).
    Intercepted,
}

impl RegionState {
    /// `"unmapped"`, `"mapped"` or `"intercepted"` (the CLI's JSON).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unmapped => "unmapped",
            Self::Mapped => "mapped",
            Self::Intercepted => "intercepted",
        }
    }
}

/// One region of a listed session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionInfo {
    /// Its index in the session (the guest's region id).
    pub index: u32,
    /// Its name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Whether the guest may write it.
    pub guest_writable: bool,
    /// Whether host consumers may map it for writing ([`Access::ReadWrite`]).
    pub consumer_writable: bool,
    /// Where it is.
    pub state: RegionState,
}

impl RegionInfo {
    /// The most a consumer can attach with.
    pub const fn max_access(&self) -> Access {
        if self.consumer_writable {
            Access::ReadWrite
        } else {
            Access::Read
        }
    }
}

/// One attachable session: a running VM's device host with named regions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmSession {
    /// The VM's compute-system id.
    pub vm_id: VmId,
    /// The driver's session id (a new one each time the device host starts).
    pub session_id: u64,
    /// Its regions, in index order.
    pub regions: Vec<RegionInfo>,
}

/// At most this many LIST_SESSIONS calls per [`Host::list`]: the driver has far fewer
/// sessions; a driver that never says "no more entries" cannot keep the client looping.
const MAX_LIST_CALLS: u32 = 4096;

/// A consumer's handle to the driver (one handle to the control device). Cheap to share
/// between threads (`&Host` is enough for everything); attachments keep the handle open.
#[derive(Clone)]
pub struct Host {
    driver: Arc<dyn Driver>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host").finish_non_exhaustive()
    }
}

impl Host {
    /// Opens the driver's control device `\\.\vmbmmio`. [`Error::DriverNotFound`] if the
    /// driver is not running, [`Error::NotPermitted`] if not Administrator;
    /// [`Error::Unsupported`] on systems other than Windows.
    pub fn open() -> Result<Self> {
        #[cfg(windows)]
        {
            let driver = crate::windows::ControlDevice::open().map_err(Error::from_open)?;
            Ok(Self::with_driver(driver))
        }
        #[cfg(not(windows))]
        {
            Err(Error::Unsupported)
        }
    }

    /// A host over another transport (the simulator, the scripted fake, a test's own).
    pub fn with_driver(driver: impl Driver + 'static) -> Self {
        Self {
            driver: Arc::new(driver),
        }
    }

    /// A host over a shared transport.
    pub fn with_shared_driver(driver: Arc<dyn Driver>) -> Self {
        Self { driver }
    }

    /// Sends `call` and parses its reply; driver failures become typed errors.
    pub(crate) fn send<R>(
        driver: &dyn Driver,
        call: Call,
        parse: fn(&[u8]) -> std::result::Result<R, String>,
        target: Option<(VmId, &str)>,
    ) -> Result<R> {
        let mut output = vec![0u8; call.reply_size];
        let written = driver
            .ioctl(call.code, &call.input, &mut output)
            .map_err(|failure| Error::from_driver(call.request, failure, target))?;
        let reply = output.get(..written).ok_or_else(|| Error::MalformedReply {
            request: call.request,
            why: format!(
                "{written} bytes reported written to a {}-byte buffer",
                call.reply_size
            ),
        })?;
        parse(reply).map_err(|why| Error::MalformedReply {
            request: call.request,
            why,
        })
    }

    /// Every attachable session (version-2 sessions, the VMs whose device host named its
    /// regions), ordered by session id. The list is read one entry per request, so it may
    /// change while it is read: a session that opens meanwhile may be missing, one that
    /// closes may still be listed (attaching to it then fails cleanly).
    pub fn list(&self) -> Result<Vec<VmSession>> {
        let mut sessions: Vec<VmSession> = Vec::new();
        let mut seen = BTreeSet::new();
        let mut cursor: u32 = 0;
        for _ in 0..MAX_LIST_CALLS {
            let entry = match Self::send(
                &*self.driver,
                wire::list_sessions(cursor),
                wire::parse_list_sessions_reply,
                None,
            ) {
                Ok(entry) => entry,
                Err(Error::Driver { failure, .. })
                    if failure.condition() == Condition::NoMoreEntries =>
                {
                    return Ok(sessions);
                }
                Err(error) => return Err(error),
            };
            if entry.index != cursor {
                return Err(Error::MalformedReply {
                    request: "LIST_SESSIONS",
                    why: format!("entry {} answers cursor {cursor}", entry.index),
                });
            }
            // A session that moved down while the list changed is not listed twice.
            if seen.insert(entry.session.session_id) {
                sessions.push(entry.session);
            }
            cursor = match cursor.checked_add(1) {
                Some(next) if next < entry.total => next,
                _ => return Ok(sessions),
            };
        }
        Ok(sessions)
    }

    /// Attaches to the region `name` of the VM `vm_id` with `access`: the driver opens a
    /// handle to the region's section in this process. [`Error::VmNotFound`],
    /// [`Error::RegionNotFound`], [`Error::AccessDenied`] (write asked for a region consumers
    /// may only read), [`Error::QuotaExceeded`].
    pub fn attach(&self, vm_id: VmId, name: &str, access: Access) -> Result<Attachment> {
        let call = wire::attach_region(vm_id, name, access)?;
        let attached = Self::send(
            &*self.driver,
            call,
            wire::parse_attach_region_reply,
            Some((vm_id, name)),
        )?;
        if attached.write != access.writes() {
            // The driver grants exactly what was asked; anything else is refused, and the
            // attachment released (it is this handle's until detached).
            let attachment =
                Attachment::new(Arc::clone(&self.driver), attached, vm_id, name.to_owned());
            let _ = attachment.detach();
            return Err(Error::MalformedReply {
                request: "ATTACH_REGION",
                why: format!("granted access differs from the {} asked", access.as_str()),
            });
        }
        Ok(Attachment::new(
            Arc::clone(&self.driver),
            attached,
            vm_id,
            name.to_owned(),
        ))
    }

    /// The first region named `name` of any listed session, with its VM id: a convenience for
    /// hosts with one VM using a name.
    pub fn find(&self, name: &str) -> Result<Option<(VmId, RegionInfo)>> {
        Ok(self.list()?.into_iter().find_map(|session| {
            session
                .regions
                .into_iter()
                .find(|region| region.name == name)
                .map(|region| (session.vm_id, region))
        }))
    }
}
