//! The device host's views of sections, through the section model's resolver: the simulated
//! `MapViewOfFile` of a handle valid in the device-host process, and `CloseHandle`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use vmbmmio_devhost::driver::SectionAccess as DevhostAccess;
use vmbmmio_devhost::platform::SectionHandle;
use vmbmmio_devhost::views::{SectionMapper, SectionView, ViewError, check_bounds};

use crate::memory::{ProcessId, ResolveError, SectionAccess, SectionMemory, SectionResolver};

/// Views mapped and unmapped, handles closed.
#[derive(Debug, Default)]
pub struct ViewCounters {
    /// Views mapped.
    pub mapped: AtomicU64,
    /// Views unmapped (dropped).
    pub unmapped: AtomicU64,
    /// Handles closed through the mapper.
    pub handles_closed: AtomicU64,
}

/// A view of a section's bytes; unmapped (counted) when dropped.
pub struct SimView {
    memory: Arc<SectionMemory>,
    size: u64,
    writable: bool,
    counters: Arc<ViewCounters>,
}

impl SectionView for SimView {
    fn size(&self) -> u64 {
        self.size
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), ViewError> {
        check_bounds(offset, out.len(), self.size)?;
        self.memory
            .read(offset, out)
            .map_err(|_| ViewError::OutOfBounds {
                offset,
                len: out.len() as u64,
                size: self.size,
            })
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), ViewError> {
        if !self.writable {
            return Err(ViewError::AccessDenied);
        }
        check_bounds(offset, data.len(), self.size)?;
        self.memory
            .write(offset, data)
            .map_err(|_| ViewError::OutOfBounds {
                offset,
                len: data.len() as u64,
                size: self.size,
            })
    }
}

impl Drop for SimView {
    fn drop(&mut self) {
        self.counters.unmapped.fetch_add(1, Ordering::SeqCst);
    }
}

type HandleCloser = Box<dyn FnMut(ProcessId, u64) + Send>;

/// The device host's [`SectionMapper`] in the simulator.
pub struct SimSectionMapper {
    resolver: Arc<dyn SectionResolver + Send + Sync>,
    process: ProcessId,
    counters: Arc<ViewCounters>,
    closer: Option<HandleCloser>,
}

impl SimSectionMapper {
    /// A mapper for `process` (the device host) resolving handles through `resolver`.
    pub fn new(resolver: Arc<dyn SectionResolver + Send + Sync>, process: ProcessId) -> Self {
        Self {
            resolver,
            process,
            counters: Arc::default(),
            closer: None,
        }
    }

    /// Also tells the section model when the device host closes a handle.
    pub fn with_handle_closer(
        mut self,
        closer: impl FnMut(ProcessId, u64) + Send + 'static,
    ) -> Self {
        self.closer = Some(Box::new(closer));
        self
    }

    /// The counters (shared with every view).
    pub fn counters(&self) -> Arc<ViewCounters> {
        self.counters.clone()
    }
}

impl SectionMapper for SimSectionMapper {
    type View = SimView;

    fn map_view(
        &mut self,
        handle: SectionHandle,
        size: u64,
        access: DevhostAccess,
    ) -> Result<SimView, ViewError> {
        let (wanted, writable) = match access {
            DevhostAccess::Read => (SectionAccess::READ, false),
            DevhostAccess::ReadWrite => (SectionAccess::READ_WRITE, true),
        };
        let memory = self
            .resolver
            .resolve(self.process, handle.0, wanted)
            .map_err(|error| match error {
                ResolveError::InvalidHandle => ViewError::InvalidHandle,
                ResolveError::AccessDenied => ViewError::AccessDenied,
            })?;
        if size > memory.size() {
            return Err(ViewError::TooLarge {
                requested: size,
                available: memory.size(),
            });
        }
        self.counters.mapped.fetch_add(1, Ordering::SeqCst);
        Ok(SimView {
            memory,
            size,
            writable,
            counters: self.counters.clone(),
        })
    }

    fn close_handle(&mut self, handle: SectionHandle) {
        self.counters.handles_closed.fetch_add(1, Ordering::SeqCst);
        if let Some(closer) = &mut self.closer {
            closer(self.process, handle.0);
        }
    }
}
