//! The few kernel calls the section manager needs, behind a trait.
//!
//! The manager decides (quotas, ledger, isolation, release order); the backend only executes.
//! On Windows the backend is `glue::sections::KernelSections` (wdk-sys); in tests it is
//! `hvsim::sections::SimKernel`, which models the same object-manager behaviour byte-accurately.
//!
//! # Ownership contract every backend implements
//! - [`SectionBackend::create_section`] returns the driver's **kernel reference** to a new
//!   pagefile-backed `SEC_COMMIT`, `PAGE_READWRITE` section. The reference is process-context
//!   independent (an object pointer, not a handle in whatever process the call ran in) and is
//!   released exactly once, by [`SectionBackend::close_section`], which consumes it.
//! - [`SectionBackend::open_user_handle`] creates a **user-mode handle in the current process's
//!   handle table** (the device host, hdv.md §3.3 "Section handle") with exactly the requested
//!   access. The handle is handed over: the backend and the manager never close it. A kernel
//!   driver closing a user handle would have to guess whether the value still names the same
//!   object in the same process; handle values are reused after a close, so a late close could
//!   close an unrelated handle of the device host (or, in the wrong process context, of anybody).
//!   The device host closes it, or the OS does when the process exits.
//! - The section object stays alive while the kernel reference, any handle or any mapped view
//!   exists (general Windows object-manager semantics), so releasing the kernel reference never
//!   pulls memory from under a device host that still maps it.

use kmcl::raw::NTSTATUS;

/// `SECTION_QUERY` (winnt.h): query the section's size and attributes.
pub const SECTION_QUERY: u32 = 0x0001;
/// `SECTION_MAP_WRITE` (winnt.h): map views with write access.
pub const SECTION_MAP_WRITE: u32 = 0x0002;
/// `SECTION_MAP_READ` (winnt.h): map views with read access.
pub const SECTION_MAP_READ: u32 = 0x0004;

/// `READ_CONTROL` (winnt.h): read the object's security descriptor. Grants nothing over the
/// section's memory.
pub const READ_CONTROL: u32 = 0x0002_0000;

/// What the security descriptor of every section the driver creates grants in user mode: only
/// this mask, only to the object's owner, through one `ACCESS_ALLOWED` ACE for the `OWNER
/// RIGHTS` SID (S-1-3-4). Nobody else gets anything: the DACL has no other ACE.
///
/// Why not a plain empty DACL: an object's owner is implicitly granted `READ_CONTROL` and
/// `WRITE_DAC` whatever the DACL says, and the owner of a section the driver creates in the
/// device host's context is the device host's token (or, in the System process, its default
/// owner, the Administrators group). With `WRITE_DAC` a device host could duplicate its handle
/// with `WRITE_DAC` (`DuplicateHandle` checks the extra access against the descriptor), grant
/// itself `SECTION_MAP_WRITE` and duplicate again. An ACE for `OWNER RIGHTS` replaces the
/// implicit owner rights (Microsoft, "Well-known SIDs": the system ignores the implicit
/// `READ_CONTROL` and `WRITE_DAC` of the owner when an ACE with this SID applies), so the owner
/// keeps `READ_CONTROL` only. Kernel-mode opens (`ObOpenObjectByPointer` with `KernelMode`) skip
/// the access check and are unaffected.
pub const SECTION_OWNER_RIGHTS: u32 = READ_CONTROL;

/// What the guest (and therefore the device host's handle) may do with a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegionAccess {
    /// The guest reads and writes the region; the handle may map it read/write.
    ReadWrite,
    /// The guest only reads the region; the handle may only map it read-only.
    ReadOnly,
}

impl RegionAccess {
    /// The `ACCESS_MASK` of a user handle to a region with this access: what HDV needs to map
    /// and size the section (hdv.md §3.3: "rights that allow mapping it (read/write/query)"),
    /// without `SECTION_MAP_WRITE` for a read-only region, and nothing more (no
    /// `SECTION_EXTEND_SIZE`, no `SECTION_MAP_EXECUTE`, no `WRITE_DAC`).
    pub const fn access_mask(self) -> u32 {
        match self {
            Self::ReadWrite => SECTION_MAP_READ | SECTION_MAP_WRITE | SECTION_QUERY,
            Self::ReadOnly => SECTION_MAP_READ | SECTION_QUERY,
        }
    }
}

/// Identifies a process to the section manager: the identity of its **process object** (the
/// `PsGetCurrentProcess` address on Windows), never its process id, which is reused after the
/// process exits. The control device keeps the device host's process object referenced while
/// its file is open (`control::ProcessReference`), so the key cannot name another process
/// meanwhile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcessKey(pub u64);

/// A user-mode handle value, valid only in the process it was opened in.
///
/// The driver never dereferences or closes it; it is only returned to the device host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UserHandle(pub u64);

/// The kernel calls behind the section manager.
///
/// Implementations execute; they do not decide. Errors are the NTSTATUS the kernel returned.
///
/// `Clone`: the creation and the release of sections run without the driver's table lock, so
/// they need the backend without the manager (a reservation and each `OwnedSections` carry a
/// clone). Every clone must be the same kernel: the glue's backend is a stateless ZST, the
/// simulator's shares its state.
pub trait SectionBackend: Clone {
    /// The driver's kernel reference to one section object. Not `Clone`: it is released once,
    /// by [`SectionBackend::close_section`].
    type Section;

    /// Creates an unnamed pagefile-backed `SEC_COMMIT` `PAGE_READWRITE` section of `size` bytes
    /// (a non-zero multiple of 4 KiB, at most 32 GiB; the manager guarantees both) and returns
    /// the driver's kernel reference to it. No handle to it remains open in any process.
    ///
    /// The section gets an explicit security descriptor whose DACL grants nobody anything but
    /// [`SECTION_OWNER_RIGHTS`] to the owner ([`SECTION_OWNER_RIGHTS`] says why), never the
    /// caller's default DACL: otherwise a user-mode access check (a `DuplicateHandle` asking
    /// for more than the source handle has) could grant the device host write access.
    ///
    /// IRQL: PASSIVE_LEVEL (ZwCreateSection).
    fn create_section(&self, size: u64) -> Result<Self::Section, NTSTATUS>;

    /// The process object whose context the calling thread runs in ([`ProcessKey`]).
    ///
    /// IRQL: any (PsGetCurrentProcess).
    fn current_process(&self) -> ProcessKey;

    /// Opens a new user-mode handle to `section` in the **current process** with exactly
    /// `access_mask` ([`RegionAccess::access_mask`]). The handle is not inheritable. Ownership of
    /// the handle passes to that process (see the module docs).
    ///
    /// The open is made in kernel mode (no access check against the descriptor, which would
    /// refuse it), so the granted access is exactly `access_mask`, decided by the manager from
    /// the region's [`RegionAccess`]; the handle can never be widened from user mode.
    ///
    /// IRQL: PASSIVE_LEVEL (ObOpenObjectByPointer), in the requesting process's context.
    fn open_user_handle(
        &self,
        section: &Self::Section,
        access_mask: u32,
    ) -> Result<UserHandle, NTSTATUS>;

    /// Releases the driver's kernel reference. The object itself lives on while handles or
    /// views to it exist.
    ///
    /// IRQL: PASSIVE_LEVEL (ObDereferenceObject may run the section's deletion).
    fn close_section(&self, section: Self::Section);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_masks_are_exactly_what_hdv_needs() {
        assert_eq!(RegionAccess::ReadWrite.access_mask(), 0x7);
        assert_eq!(RegionAccess::ReadOnly.access_mask(), 0x5);
        assert_eq!(RegionAccess::ReadOnly.access_mask() & SECTION_MAP_WRITE, 0);
    }

    #[test]
    fn the_descriptor_grants_no_section_right_to_anyone() {
        let section_rights = SECTION_MAP_READ | SECTION_MAP_WRITE | SECTION_QUERY;
        assert_eq!(SECTION_OWNER_RIGHTS & section_rights, 0);
        // WRITE_DAC (0x0004_0000) would let the owner rewrite the DACL.
        assert_eq!(SECTION_OWNER_RIGHTS & 0x0004_0000, 0);
        assert_eq!(SECTION_OWNER_RIGHTS, READ_CONTROL);
    }
}
