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

use vmbmmio_core::sections::{
    READ_CONTROL, SECTION_MAP_READ, SECTION_MAP_WRITE, SECTION_OWNER_RIGHTS, SECTION_QUERY,
};

use crate::memory::SectionMemory;

/// `WRITE_DAC` (winnt.h).
pub const WRITE_DAC: u32 = 0x0004_0000;
/// `SECTION_ALL_ACCESS` (winnt.h): what a creator's default DACL grants its owner.
pub const SECTION_ALL_ACCESS: u32 = 0x000F_001F;

/// A section object's security descriptor, as far as a user-mode access check can see it.
///
/// The model always assumes the checking caller is the object's **owner** (strict: the owner
/// of a section created in the device host's context is the device host's token), and that the
/// caller may be anybody for the DACL's other ACEs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecurityDescriptor {
    /// No descriptor passed to `ZwCreateSection`: the object gets the creator's default DACL,
    /// which grants the creator full access (Microsoft, "Default DACL"). Modelled as granting
    /// `SECTION_ALL_ACCESS` to the caller.
    CreatorDefault,
    /// An explicit DACL: `granted` to anybody through its ACEs, and `owner_rights` when an
    /// `OWNER RIGHTS` (S-1-3-4) ACE replaces the owner's implicit `READ_CONTROL | WRITE_DAC`
    /// (Microsoft, "Well-known SIDs"); `None` leaves the implicit owner rights in place.
    Explicit {
        /// Rights the DACL grants any caller.
        granted: u32,
        /// Rights of the `OWNER RIGHTS` ACEs, if there is one.
        owner_rights: Option<u32>,
    },
}

impl SecurityDescriptor {
    /// The descriptor the driver gives every section (`vmbmmio_core::sections::
    /// SECTION_OWNER_RIGHTS`): one `OWNER RIGHTS` ACE, nothing else.
    pub const DRIVER: Self = Self::Explicit {
        granted: 0,
        owner_rights: Some(SECTION_OWNER_RIGHTS),
    };

    /// What a user-mode access check grants the (owning) caller. Strict: `WRITE_DAC` lets the
    /// holder rewrite the DACL and then grant itself anything, so it counts as everything.
    pub fn user_mode_grant(self) -> u32 {
        let granted = match self {
            Self::CreatorDefault => SECTION_ALL_ACCESS,
            Self::Explicit {
                granted,
                owner_rights: Some(owner),
            } => granted | owner,
            Self::Explicit {
                granted,
                owner_rights: None,
            } => granted | READ_CONTROL | WRITE_DAC,
        };
        if granted & WRITE_DAC == 0 {
            granted
        } else {
            SECTION_ALL_ACCESS | SECTION_MAP_READ | SECTION_MAP_WRITE | SECTION_QUERY
        }
    }

    /// Whether a user-mode access check grants all of `desired`.
    pub fn grants(self, desired: u32) -> bool {
        desired & !self.user_mode_grant() == 0
    }
}

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
    /// The descriptor user-mode access checks are made against.
    pub security: SecurityDescriptor,
}

impl SectionObject {
    /// A new object of `size` bytes with no reference yet.
    pub fn new(size: usize, security: SecurityDescriptor) -> Self {
        Self {
            memory: SectionMemory::new(size),
            pointers: 0,
            handles: 0,
            views: 0,
            security,
        }
    }

    /// Whether nothing keeps the object alive any more.
    pub fn unreferenced(&self) -> bool {
        self.pointers == 0 && self.handles == 0 && self.views == 0
    }
}
