//! **Test facility**: a callback the simulated kernel runs at the start of the section calls
//! that take real time on Windows, so a test can do something "while the kernel is busy".
//!
//! # Why it exists
//! `ZwCreateSection` of a large pagefile-backed section and the final `ObDereferenceObject`
//! that deletes one take real time; the driver runs both without its table lock (issue 8).
//! The model itself is instantaneous and single-threaded (the KMCL model is per thread), so a
//! test proves the lock is not held by running code from inside the call: e.g. another file's
//! request through `control::serve`, whose test lock fails if it is taken while held.
//!
//! The hook runs on the calling thread, **before** the model's state is touched and with no
//! model lock held, so it may call the kernel (and the driver) itself. It is shared by every
//! clone of the kernel, like the rest of its state. Production code never installs one.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use super::ObjectId;

/// The section call in progress when the hook runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SectionCall {
    /// `SectionBackend::create_section` of `size` bytes (before `ZwCreateSection`).
    Create {
        /// The size asked for.
        size: u64,
    },
    /// `SectionBackend::close_section` of the driver's reference to `object` (before
    /// `ObDereferenceObject`).
    Close {
        /// The object whose reference is released.
        object: ObjectId,
    },
}

/// The callback type.
pub type SectionCallHook = Arc<dyn Fn(SectionCall) + Send + Sync>;

/// The installed hook, if any, shared by the kernel's clones.
#[derive(Clone, Default)]
pub(super) struct CallHook(Arc<Mutex<Option<SectionCallHook>>>);

impl CallHook {
    pub(super) fn set(&self, hook: Option<SectionCallHook>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = hook;
    }

    /// Runs the hook, if one is installed, with no lock held.
    pub(super) fn run(&self, call: SectionCall) {
        // These calls take real time on Windows: never under the driver's locks.
        crate::lock_rules::blocking_call(match call {
            SectionCall::Create { .. } => "ZwCreateSection",
            SectionCall::Close { .. } => "the section's final ObDereferenceObject",
        });
        let hook = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(hook) = hook {
            hook(call);
        }
    }
}

impl fmt::Debug for CallHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let installed = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some();
        f.debug_struct("CallHook")
            .field("installed", &installed)
            .finish()
    }
}
