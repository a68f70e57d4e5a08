//! [`SimDriver`]: the host library's transport (`vmbmmio_host::Driver`) into the simulated
//! machine. One `SimDriver` is one consumer process of the simulation with one handle to the
//! driver's control device; every call is a message to the simulator thread
//! ([`super::server`]), answered when the real driver core (or the object-manager model) is
//! done with it. Any number of threads may call at once; the simulator serves one call at a
//! time, like the driver's table lock.
//!
//! **Views are real memory.** The host library reads and writes a view through a pointer, with
//! volatile and atomic accesses. A mapped section's bytes are moved into one contiguous block
//! ([`SectionMemory::contiguous`]) that every other side (the guest through its BAR, the
//! device host's views) reads and writes too, so the consumer's bytes are the guest's bytes at
//! the region's BAR offset. The block lives while the section's memory does; this transport
//! holds the memory of each view it mapped until it is unmapped, so a view outlives its
//! attachment, its host handle, the session and even the simulator thread, as on Windows.
//!
//! **Waits poll.** The object-manager model's events record signals; `wait_event` asks the
//! simulator every [`POLL_INTERVAL`] whether the event was signalled (and consumes the signal,
//! auto-reset) until the timeout.

use std::collections::HashMap;
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use vmbmmio_host::{Driver, DriverFailure, Mapping};

use super::server::{
    Consumer, ERROR_DEVICE_NOT_CONNECTED, ERROR_INVALID_HANDLE, ERROR_NOT_ENOUGH_MEMORY, Envelope,
    Reply, Request,
};
use crate::memory::SectionMemory;
use crate::sections::ViewId;

/// How often `wait_event` looks at the event.
pub const POLL_INTERVAL: Duration = Duration::from_micros(200);

/// The way into a running simulator: messages to its thread. Clones reach the same simulator.
#[derive(Clone)]
pub struct SimLink {
    pub(super) sender: Sender<super::running::Message>,
}

impl SimLink {
    /// A new way in, and the messages it sends, for a loop serving a [`super::SimWorld`] on
    /// the caller's thread ([`super::SimWorld::serve`] ends once every link is dropped).
    pub fn pair() -> (Self, std::sync::mpsc::Receiver<super::running::Message>) {
        let (sender, messages) = channel();
        (Self { sender }, messages)
    }

    /// Sends `request` for `consumer` and waits for the answer.
    pub(super) fn call(
        &self,
        consumer: Option<Consumer>,
        request: Request,
    ) -> Result<Reply, DriverFailure> {
        let (reply, answer) = channel();
        let gone = DriverFailure::Win32(ERROR_DEVICE_NOT_CONNECTED);
        self.sender
            .send(super::running::Message::Driver(Envelope {
                consumer,
                request,
                reply,
            }))
            .map_err(|_| gone)?;
        answer.recv().map_err(|_| gone)?
    }
}

/// A view this transport mapped: the model's view and the memory it keeps alive.
struct MappedView {
    view: ViewId,
    _memory: Arc<SectionMemory>,
}

/// One simulated consumer process with a handle to the driver (`vmbmmio_host::Driver`).
pub struct SimDriver {
    link: SimLink,
    consumer: Consumer,
    /// Views by their first byte's address.
    views: Mutex<HashMap<usize, MappedView>>,
}

impl SimDriver {
    /// A new consumer process of the simulator behind `link` opens the control device.
    pub fn open(link: SimLink) -> Result<Self, DriverFailure> {
        match link.call(None, Request::Open)? {
            Reply::Opened(consumer) => Ok(Self {
                link,
                consumer,
                views: Mutex::new(HashMap::new()),
            }),
            _ => Err(DriverFailure::Win32(ERROR_INVALID_HANDLE)),
        }
    }

    /// The consumer's process in the simulation.
    pub fn process(&self) -> crate::memory::ProcessId {
        self.consumer.process
    }

    fn call(&self, request: Request) -> Result<Reply, DriverFailure> {
        self.link.call(Some(self.consumer), request)
    }

    fn views(&self) -> std::sync::MutexGuard<'_, HashMap<usize, MappedView>> {
        self.views.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Driver for SimDriver {
    fn ioctl(&self, code: u32, input: &[u8], output: &mut [u8]) -> Result<usize, DriverFailure> {
        match self.call(Request::Ioctl {
            code,
            input: input.to_vec(),
            output_len: output.len(),
        })? {
            Reply::Ioctl(bytes) => {
                let written = bytes.len().min(output.len());
                output[..written].copy_from_slice(&bytes[..written]);
                Ok(written)
            }
            _ => Err(DriverFailure::Win32(ERROR_INVALID_HANDLE)),
        }
    }

    fn map_section(
        &self,
        section: u64,
        size: u64,
        writable: bool,
    ) -> Result<Mapping, DriverFailure> {
        let Reply::Mapped(view, memory) = self.call(Request::Map { section, writable })? else {
            return Err(DriverFailure::Win32(ERROR_INVALID_HANDLE));
        };
        let len = usize::try_from(size.min(memory.size())).ok();
        let Some((base, len)) = memory.contiguous().zip(len) else {
            let _ = self.call(Request::Unmap(view));
            return Err(DriverFailure::Win32(ERROR_NOT_ENOUGH_MEMORY));
        };
        self.views().insert(
            base.as_ptr() as usize,
            MappedView {
                view,
                _memory: memory,
            },
        );
        // SAFETY: `base..base + len` is the section's contiguous block (`len` at most its
        // size), 8-aligned, kept alive by the `Arc<SectionMemory>` stored in `views` until
        // `unmap` gets this mapping back; nothing makes Rust references into it (every other
        // side uses atomic word operations, module docs). A read-only view is never written:
        // `RegionView` refuses writes and atomics on it.
        Ok(unsafe { Mapping::new(base, len) })
    }

    fn unmap(&self, mapping: Mapping) {
        let removed = self.views().remove(&(mapping.base().as_ptr() as usize));
        if let Some(mapped) = removed {
            let _ = self.call(Request::Unmap(mapped.view));
        }
    }

    fn close_handle(&self, handle: u64) {
        let _ = self.call(Request::CloseHandle(handle));
    }

    fn create_event(&self) -> Result<u64, DriverFailure> {
        match self.call(Request::CreateEvent)? {
            Reply::Handle(handle) => Ok(handle),
            _ => Err(DriverFailure::Win32(ERROR_INVALID_HANDLE)),
        }
    }

    fn wait_event(&self, event: u64, timeout: Option<Duration>) -> Result<bool, DriverFailure> {
        let deadline = timeout.and_then(|timeout| Instant::now().checked_add(timeout));
        loop {
            if let Reply::Signalled(true) = self.call(Request::TakeSignal(event))? {
                return Ok(true);
            }
            match (timeout, deadline) {
                (Some(_), Some(deadline)) if Instant::now() >= deadline => return Ok(false),
                _ => std::thread::sleep(POLL_INTERVAL),
            }
        }
    }
}

impl Drop for SimDriver {
    /// The last reference to the host's handle went away: the handle closes (the driver's file
    /// cleanup) and the consumer process exits. Views the process still maps are unmapped by
    /// its exit in the model; their memory stays with whoever still holds a `Mapping`.
    fn drop(&mut self) {
        let _ = self.call(Request::Close);
    }
}
