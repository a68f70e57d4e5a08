//! The simulator thread's side of host consumers: each [`SimDriver`](super::SimDriver) is one
//! simulated consumer process with its own handle table in the object-manager model and one
//! file handle to the driver's control device; its requests arrive here as messages and run
//! against the real `ControlDevice` the way the glue runs them ([`crate::glue`]): file create
//! in the process's context, every IOCTL in the caller's context, cleanup when the handle
//! closes. Sections are mapped and events created and waited in that process.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::Sender;

use vmbmmio_core::control::{Caller, FileKey, Handled};
use vmbmmio_host::DriverFailure;

use crate::glue::SimGlue;
use crate::memory::{ProcessId, ResolveError, SectionAccess, SectionMemory};
use crate::sections::ViewId;

/// `ERROR_INVALID_HANDLE` (winerror.h).
pub const ERROR_INVALID_HANDLE: u32 = 6;
/// `ERROR_ACCESS_DENIED` (winerror.h).
pub const ERROR_ACCESS_DENIED: u32 = 5;
/// `ERROR_NOT_ENOUGH_MEMORY` (winerror.h): a section too large for a simulated view.
pub const ERROR_NOT_ENOUGH_MEMORY: u32 = 8;
/// `ERROR_DEVICE_NOT_CONNECTED` (winerror.h): the simulator stopped.
pub const ERROR_DEVICE_NOT_CONNECTED: u32 = 1167;
/// `ERROR_IO_PENDING` (winerror.h): a request the driver kept pending (consumers send none).
pub const ERROR_IO_PENDING: u32 = 997;

/// One consumer process and its file handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Consumer {
    /// Its process in the object-manager model.
    pub process: ProcessId,
    /// Its file handle, as the driver admits its requests.
    pub caller: Caller,
}

/// What a consumer asks the simulated machine for.
#[derive(Debug)]
pub enum Request {
    /// `CreateFileW(\\.\vmbmmio)` in a new process.
    Open,
    /// `DeviceIoControl`.
    Ioctl {
        /// The IOCTL code.
        code: u32,
        /// The input buffer.
        input: Vec<u8>,
        /// The output buffer's length.
        output_len: usize,
    },
    /// `MapViewOfFile` of the whole section behind a handle.
    Map {
        /// The section handle in the consumer's process.
        section: u64,
        /// `FILE_MAP_WRITE` too.
        writable: bool,
    },
    /// `UnmapViewOfFile`.
    Unmap(ViewId),
    /// `CloseHandle`.
    CloseHandle(u64),
    /// `CreateEventW` (auto-reset, not signalled).
    CreateEvent,
    /// Whether the event is signalled; consumes the signal (auto-reset).
    TakeSignal(u64),
    /// The handle to the control device closes (cleanup) and the process exits.
    Close,
}

/// The answer to a [`Request`].
#[derive(Debug)]
pub enum Reply {
    /// [`Request::Open`].
    Opened(Consumer),
    /// [`Request::Ioctl`]: the bytes the driver wrote.
    Ioctl(Vec<u8>),
    /// [`Request::Map`]: the view and the memory behind it.
    Mapped(ViewId, Arc<SectionMemory>),
    /// [`Request::CreateEvent`]: the handle.
    Handle(u64),
    /// [`Request::TakeSignal`].
    Signalled(bool),
    /// Done (unmap, close handle, close).
    Done,
}

/// A request with its consumer and where the answer goes.
pub struct Envelope {
    /// `None` only for [`Request::Open`].
    pub consumer: Option<Consumer>,
    /// The request.
    pub request: Request,
    /// The answer.
    pub reply: Sender<Result<Reply, DriverFailure>>,
}

/// The consumers of one simulated machine.
pub struct ConsumerServer {
    glue: SimGlue,
    /// Open consumers by file.
    open: HashMap<FileKey, Consumer>,
    /// File keys given so far (never reused).
    next_file: usize,
}

/// The first consumer file key (apart from the demo's device host's).
const FIRST_FILE: usize = 0xC0_0000;

impl ConsumerServer {
    /// Consumers of the driver and models behind `glue`.
    pub fn new(glue: SimGlue) -> Self {
        Self {
            glue,
            open: HashMap::new(),
            next_file: FIRST_FILE,
        }
    }

    /// Serves one envelope (on the simulator thread).
    pub fn serve(&mut self, envelope: Envelope) {
        let result = match (envelope.request, envelope.consumer) {
            (Request::Open, _) => self.open_consumer().map(Reply::Opened),
            (request, Some(consumer)) if self.open.contains_key(&consumer.caller.file()) => {
                self.serve_request(consumer, request)
            }
            // A request after the consumer closed (cannot happen through SimDriver).
            (_, _) => Err(DriverFailure::Win32(ERROR_INVALID_HANDLE)),
        };
        // The consumer may have stopped waiting (its thread ended): nothing to tell it then.
        let _ = envelope.reply.send(result);
    }

    fn open_consumer(&mut self) -> Result<Consumer, DriverFailure> {
        let process = self.glue.kernel.spawn_process();
        self.next_file += 1;
        let file = FileKey(self.next_file);
        match self.glue.open_file(process, file) {
            Ok(caller) => {
                let consumer = Consumer { process, caller };
                self.open.insert(file, consumer);
                Ok(consumer)
            }
            Err(status) => {
                self.glue.kernel.exit_process(process);
                Err(DriverFailure::NtStatus(status))
            }
        }
    }

    fn serve_request(
        &mut self,
        consumer: Consumer,
        request: Request,
    ) -> Result<Reply, DriverFailure> {
        let kernel = &self.glue.kernel;
        let process = consumer.process;
        match request {
            Request::Open => Err(DriverFailure::Win32(ERROR_INVALID_HANDLE)),
            Request::Ioctl {
                code,
                input,
                output_len,
            } => {
                let mut output = vec![0u8; output_len];
                match self
                    .glue
                    .ioctl(consumer.caller, process, code, &input, &mut output)
                {
                    Ok(Handled::Done(written)) => {
                        output.truncate(written);
                        Ok(Reply::Ioctl(output))
                    }
                    Ok(Handled::Pending(pending)) => {
                        // Only WAIT_GUEST_EVENT pends, and only for a device host.
                        crate::alloc_faults::driver_scope(|| pending.cancel());
                        Err(DriverFailure::Win32(ERROR_IO_PENDING))
                    }
                    Err(error) => Err(DriverFailure::NtStatus(error.to_ntstatus())),
                }
            }
            Request::Map { section, writable } => {
                let access = if writable {
                    SectionAccess::READ_WRITE
                } else {
                    SectionAccess::READ
                };
                let view = kernel
                    .map_view(process, section, access)
                    .map_err(resolve_failure)?;
                let Some(memory) = kernel.view_memory(process, view) else {
                    kernel.unmap_view(process, view);
                    return Err(DriverFailure::Win32(ERROR_INVALID_HANDLE));
                };
                Ok(Reply::Mapped(view, memory))
            }
            Request::Unmap(view) => {
                kernel.unmap_view(process, view);
                Ok(Reply::Done)
            }
            Request::CloseHandle(handle) => {
                kernel
                    .close_handle(process, handle)
                    .map_err(resolve_failure)?;
                Ok(Reply::Done)
            }
            Request::CreateEvent => kernel
                .create_event(process)
                .map(Reply::Handle)
                .map_err(DriverFailure::NtStatus),
            Request::TakeSignal(handle) => kernel
                .event_signalled(process, handle, true)
                .map(Reply::Signalled)
                .ok_or(DriverFailure::Win32(ERROR_INVALID_HANDLE)),
            Request::Close => {
                self.close(consumer);
                Ok(Reply::Done)
            }
        }
    }

    /// The consumer's handle closes (the driver's file cleanup), then its process exits (the
    /// OS closes its handles and unmaps its views).
    fn close(&mut self, consumer: Consumer) {
        if self.open.remove(&consumer.caller.file()).is_some() {
            self.glue.cleanup(consumer.caller.file());
            self.glue.kernel.exit_process(consumer.process);
        }
    }

    /// Closes every consumer still open (the simulated machine shuts down); returns how many.
    pub fn close_all(&mut self) -> usize {
        let open: Vec<Consumer> = self.open.values().copied().collect();
        for consumer in &open {
            self.close(*consumer);
        }
        open.len()
    }

    /// Consumers open now.
    pub fn open_consumers(&self) -> usize {
        self.open.len()
    }
}

fn resolve_failure(error: ResolveError) -> DriverFailure {
    DriverFailure::Win32(match error {
        ResolveError::InvalidHandle => ERROR_INVALID_HANDLE,
        ResolveError::AccessDenied => ERROR_ACCESS_DENIED,
    })
}
