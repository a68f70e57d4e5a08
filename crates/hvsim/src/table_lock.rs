//! The simulated table lock: the driver's one WDF wait lock around its `ControlDevice`
//! (`src/glue/control.rs` on Windows), for the demo's transport and the explorer.
//!
//! Taking it while this thread holds it is a deadlock on Windows (a WDF wait lock is not
//! recursive); here it is recorded as a broken rule and the request fails as if the state were
//! gone, so a run reports it instead of hanging. While held it marks the thread
//! ([`crate::lock_rules::table_locked`]), so the models can flag a blocking call made under it.

use std::cell::RefCell;
use std::rc::Rc;

use vmbmmio_core::control::ControlDevice;
use vmbmmio_core::control::serve::TableLock;

use crate::lock_rules;
use crate::platform::SimPlatform;

/// The lock and the state it protects; clones share both.
#[derive(Clone)]
pub struct SimTableLock(pub Rc<RefCell<ControlDevice<SimPlatform>>>);

impl TableLock<SimPlatform> for SimTableLock {
    fn locked<R>(&self, f: impl FnOnce(&mut ControlDevice<SimPlatform>) -> R) -> Option<R> {
        let Ok(mut control) = self.0.try_borrow_mut() else {
            lock_rules::record(
                "the table lock was taken while held (a deadlock on Windows)".into(),
            );
            return None;
        };
        Some(lock_rules::table_locked(|| f(&mut control)))
    }
}
