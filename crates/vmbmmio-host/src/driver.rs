//! The transport under the client: one trait, so the client is the same on Windows
//! (`DeviceIoControl` and kernel32), in the simulator (a call into the driver's portable core,
//! its sections and events) and in tests (the scripted fake, [`crate::fake`]).
//!
//! Besides the IOCTL, the trait carries the few operating-system operations on the handles the
//! driver hands out (map a section, close a handle, create and wait an event): in the simulator
//! those handles live in the simulated process, not in this one.

use std::ptr::NonNull;
use std::time::Duration;

use crate::failure::DriverFailure;

/// One open handle to the driver's control device (a consumer handle: it never owns a
/// session), plus the handle operations of the process it was opened in.
///
/// Every method takes `&self`: one thread may wait for a doorbell while another rings or
/// reads. Ownership: the driver's attachments live as long as this handle (closing it is the
/// driver's cleanup path, which releases every attachment the handle still has).
pub trait Driver: Send + Sync {
    /// Sends one `METHOD_BUFFERED` IOCTL with `code`, `input` as the input buffer and
    /// `output` as the output buffer. Returns how many bytes of `output` the driver wrote, or
    /// the status it failed with.
    fn ioctl(&self, code: u32, input: &[u8], output: &mut [u8]) -> Result<usize, DriverFailure>;

    /// Maps `size` bytes of the section `section` (a handle the driver opened in this
    /// process), for writing too if `writable`. The view stays valid until [`Self::unmap`],
    /// even after the section handle is closed.
    fn map_section(
        &self,
        section: u64,
        size: u64,
        writable: bool,
    ) -> Result<Mapping, DriverFailure>;

    /// Unmaps a view [`Self::map_section`] returned.
    fn unmap(&self, mapping: Mapping);

    /// Closes a handle the driver opened in this process (a section) or
    /// [`Self::create_event`] created.
    fn close_handle(&self, handle: u64);

    /// Creates an unnamed auto-reset event, not signalled, for SET_DOORBELL_EVENT.
    fn create_event(&self) -> Result<u64, DriverFailure>;

    /// Waits until `event` is signalled (`true`) or `timeout` passed (`false`); `None` waits
    /// forever.
    fn wait_event(&self, event: u64, timeout: Option<Duration>) -> Result<bool, DriverFailure>;
}

/// A mapped view: its first byte and its length.
#[derive(Debug)]
pub struct Mapping {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: a Mapping is an address range of shared memory; it is only dereferenced through
// RegionView's volatile and atomic accesses, which are sound from any thread.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` gives out no references to the memory.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// A mapping of `len` bytes at `base`.
    ///
    /// # Safety
    /// `base..base + len` must be readable (and writable if the driver mapped it writable)
    /// memory that stays mapped until this value is handed back to [`Driver::unmap`], must not
    /// be reached through Rust references anywhere else, and `base` must be aligned to 8.
    pub unsafe fn new(base: NonNull<u8>, len: usize) -> Self {
        Self { base, len }
    }

    /// The first byte.
    pub fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the view is empty (never, for a region).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}
