//! [`Attachment`]: one region of one VM attached by this process: its section handle, its
//! mapping, its doorbells both ways. Released in one path, by [`Attachment::detach`] or drop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::driver::Driver;
use crate::error::{Error, Result};
use crate::host::Access;
use crate::view::RegionView;
use crate::vm_id::VmId;
use vmbmmio_proto::ioctl::AttachmentId;

use crate::wire::{self, Attached};

/// What TAKE_DOORBELLS returned: the guest's doorbells for this region since the last take.
///
/// Doorbells are interrupts, not a queue: several rings between two takes are one `count`
/// and the latest `last_value` (the data goes through the memory).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Doorbells {
    /// Guest doorbells for this region since the last take (saturating).
    pub count: u64,
    /// The value of the latest one (0 if there never was one).
    pub last_value: u64,
    /// Guest doorbells the rate limit refused, whole session.
    pub refused_from_guest: u64,
    /// This attachment's rings to the guest the rate limit refused.
    pub refused_to_guest: u64,
}

/// One attached region. `Send + Sync`: one thread may wait for doorbells while another rings
/// and a third reads a view.
///
/// Ownership: the attachment owns the driver's attachment (one owner on the driver's ledger)
/// and the section handle the driver opened in this process; [`Self::detach`] or drop releases
/// both and the doorbell event. Views made by [`Self::map`] are independent: they stay valid
/// memory after detach (docs/host-library.md).
pub struct Attachment {
    driver: Arc<dyn Driver>,
    id: AttachmentId,
    /// `None` once released.
    section: Mutex<Option<u64>>,
    size: u64,
    access: Access,
    region_index: u32,
    vm_id: VmId,
    name: String,
    /// The registered doorbell event, if any.
    event: Mutex<Option<u64>>,
    /// A request answered "session closed": the driver signalled the event for the last time,
    /// so a later wait would never wake; it fails at once instead.
    closed: AtomicBool,
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment")
            .field("id", &self.id.get())
            .field("vm_id", &self.vm_id)
            .field("name", &self.name)
            .field("size", &self.size)
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

impl Attachment {
    pub(crate) fn new(
        driver: Arc<dyn Driver>,
        attached: Attached,
        vm_id: VmId,
        name: String,
    ) -> Self {
        Self {
            driver,
            id: attached.attachment,
            section: Mutex::new(Some(attached.section_handle)),
            size: attached.size,
            access: if attached.write {
                Access::ReadWrite
            } else {
                Access::Read
            },
            region_index: attached.region_index,
            vm_id,
            name,
            event: Mutex::new(None),
            closed: AtomicBool::new(false),
        }
    }

    /// The driver's attachment id (non-zero, never reused while the driver runs).
    pub fn id(&self) -> u64 {
        self.id.get()
    }

    /// The region's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The access granted (the one asked for).
    pub fn access(&self) -> Access {
        self.access
    }

    /// The region's index in its session (the guest's region id).
    pub fn region_index(&self) -> u32 {
        self.region_index
    }

    /// The VM attached to.
    pub fn vm_id(&self) -> VmId {
        self.vm_id
    }

    /// The region's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The raw section handle in this process (0 once detached), for programs that map it
    /// themselves or duplicate it. It stays owned by the attachment: do not close it.
    pub fn section_handle(&self) -> u64 {
        lock(&self.section).unwrap_or(0)
    }

    /// Maps the region (`FILE_MAP_READ`, plus `FILE_MAP_WRITE` for a read-write
    /// attachment). Each call is a new view of the same memory.
    pub fn map(&self) -> Result<RegionView> {
        let section = lock(&self.section).ok_or(Error::InvalidArgument {
            what: "the attachment is detached".into(),
        })?;
        let writable = self.access.writes();
        let mapping = self
            .driver
            .map_section(section, self.size, writable)
            .map_err(|failure| Error::Os {
                call: "MapViewOfFile",
                failure,
            })?;
        if u64::try_from(mapping.len()).ok() != Some(self.size) {
            let len = mapping.len();
            self.driver.unmap(mapping);
            return Err(Error::MalformedReply {
                request: "MapViewOfFile",
                why: format!("a {len}-byte view of a {}-byte region", self.size),
            });
        }
        Ok(RegionView::new(Arc::clone(&self.driver), mapping, writable))
    }

    /// Creates the doorbell event and registers it (SET_DOORBELL_EVENT), once; later calls do
    /// nothing. [`Self::wait_doorbell`] calls it itself.
    pub fn set_event(&self) -> Result<()> {
        let mut event = lock_guard(&self.event);
        if event.is_some() {
            return Ok(());
        }
        let handle = self.driver.create_event().map_err(|failure| Error::Os {
            call: "CreateEventW",
            failure,
        })?;
        match self.call(
            wire::set_doorbell_event(self.id, handle),
            wire::parse_set_doorbell_event_reply,
        ) {
            Ok(()) => {
                *event = Some(handle);
                Ok(())
            }
            Err(error) => {
                self.driver.close_handle(handle);
                Err(error)
            }
        }
    }

    /// Waits up to `timeout` (`None`: forever) for the guest's doorbell on this region, then
    /// takes the count (TAKE_DOORBELLS). `Ok(None)`: the time passed with no doorbell.
    /// [`Error::SessionClosed`] once the VM's session closed (the driver signals the event one
    /// last time then; later waits fail at once). One waiter per attachment: the event is
    /// auto-reset, so of two threads waiting on it only one would wake.
    pub fn wait_doorbell(&self, timeout: Option<Duration>) -> Result<Option<Doorbells>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::SessionClosed);
        }
        self.set_event()?;
        let event = lock(&self.event).ok_or(Error::InvalidArgument {
            what: "the attachment is detached".into(),
        })?;
        let deadline = timeout.and_then(|timeout| Instant::now().checked_add(timeout));
        loop {
            let left = match (timeout, deadline) {
                (None, _) => None,
                (Some(_), Some(deadline)) => {
                    Some(deadline.saturating_duration_since(Instant::now()))
                }
                // A timeout too large for the clock: forever.
                (Some(_), None) => None,
            };
            let signalled = self
                .driver
                .wait_event(event, left)
                .map_err(|failure| Error::Os {
                    call: "WaitForSingleObject",
                    failure,
                })?;
            if !signalled {
                return Ok(None);
            }
            let taken = self.take_doorbells()?;
            // A signal whose doorbells an earlier take already counted: wait on.
            if taken.count > 0 {
                return Ok(Some(taken));
            }
            if left.is_some_and(|left| left.is_zero()) {
                return Ok(None);
            }
        }
    }

    /// Takes the guest's doorbells without waiting (TAKE_DOORBELLS): the count since the last
    /// take (reset by this one), the latest value and the refusal counters.
    pub fn take_doorbells(&self) -> Result<Doorbells> {
        self.call(
            wire::take_doorbells(self.id),
            wire::parse_take_doorbells_reply,
        )
    }

    /// Rings the guest's doorbell for this region with `value` (RING_GUEST); the guest's
    /// program gets it as a DOORBELL event (coalesced: the latest value wins).
    /// [`Error::RateLimited`] when refused (counted), [`Error::NotSupported`] when the guest
    /// speaks protocol 1.0, [`Error::SessionClosed`].
    pub fn ring(&self, value: u64) -> Result<()> {
        self.call(
            wire::ring_guest(self.id, value),
            wire::parse_ring_guest_reply,
        )
    }

    /// Releases the attachment (DETACH_REGION, which works after the session closed too), its
    /// event and its section handle. Views stay valid.
    pub fn detach(mut self) -> Result<()> {
        self.release()
    }

    fn call<R>(
        &self,
        call: wire::Call,
        parse: fn(&[u8], AttachmentId) -> std::result::Result<R, String>,
    ) -> Result<R> {
        let id = self.id;
        let mut output = vec![0u8; call.reply_size];
        let request = call.request;
        let written = self
            .driver
            .ioctl(call.code, &call.input, &mut output)
            .map_err(|failure| {
                let error = Error::from_driver(request, failure, None);
                if error == Error::SessionClosed {
                    self.closed.store(true, Ordering::Release);
                }
                error
            })?;
        let reply = output.get(..written).ok_or_else(|| Error::MalformedReply {
            request,
            why: format!(
                "{written} bytes reported written to a {}-byte buffer",
                output.len()
            ),
        })?;
        parse(reply, id).map_err(|why| Error::MalformedReply { request, why })
    }

    /// The one release path (detach and drop): DETACH_REGION, then the event and the section
    /// handle are closed whatever the driver said (the driver releases its side at file
    /// cleanup anyway). The first error is returned.
    fn release(&mut self) -> Result<()> {
        let Some(section) = lock_guard(&self.section).take() else {
            return Ok(());
        };
        let detached = self.call(
            wire::detach_region(self.id),
            wire::parse_detach_region_reply,
        );
        if let Some(event) = lock_guard(&self.event).take() {
            self.driver.close_handle(event);
        }
        self.driver.close_handle(section);
        detached
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        let _ = self.release();
    }
}

fn lock_guard<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn lock<T: Copy>(mutex: &Mutex<T>) -> T {
    *lock_guard(mutex)
}
