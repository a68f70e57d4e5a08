//! A section object and the rule that decides when its bytes go away.
//!
//! General Windows object-manager semantics (the reference files name the calls, not the
//! lifetime rules): an object lives while its pointer count (kernel references such as the one
//! `ObReferenceObjectByHandle` returns) or its handle count is non-zero, and the memory of a
//! section also lives while any view of it is mapped. Windows keeps mapped memory alive
//! through the section's segment rather than the object itself; the model folds both into one
//! record, which is the observable behaviour: the bytes stay readable through a view after
//! every handle and reference is gone.

use std::sync::Arc;

use crate::memory::SectionMemory;

/// Identifies a section object in the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId(pub u64);

/// One section object.
#[derive(Debug)]
pub struct SectionObject {
    /// The bytes (pagefile-backed `SEC_COMMIT` reads as zero until written).
    pub memory: Arc<SectionMemory>,
    /// Kernel references (pointer count).
    pub pointers: u64,
    /// Open handles in any process.
    pub handles: u64,
    /// Mapped views in any process.
    pub views: u64,
}

impl SectionObject {
    /// A new object of `size` bytes with no reference yet.
    pub fn new(size: usize) -> Self {
        Self {
            memory: SectionMemory::new(size),
            pointers: 0,
            handles: 0,
            views: 0,
        }
    }

    /// Whether nothing keeps the object alive any more.
    pub fn unreferenced(&self) -> bool {
        self.pointers == 0 && self.handles == 0 && self.views == 0
    }
}
