//! The security descriptor every section the driver creates gets (with wdk-sys).
//!
//! Mechanical: what it grants is decided in `vmbmmio_core::sections::SECTION_OWNER_RIGHTS`
//! (why: see there). Built with the documented Rtl routines, each named after its Microsoft
//! page: `RtlCreateSecurityDescriptor` (absolute format, no owner, group, SACL or DACL yet),
//! `RtlCreateAcl` (an empty ACL), `RtlAddAccessAllowedAce` (the one `OWNER RIGHTS` ACE) and
//! `RtlSetDaclSecurityDescriptor` (`DaclPresent` TRUE with a non-NULL DACL: a NULL DACL would
//! grant everyone everything).
//!
//! The descriptor is passed in `OBJECT_ATTRIBUTES.SecurityDescriptor`
//! (`InitializeObjectAttributes`) to `ZwCreateSection`, which captures it; it only has to live
//! for the call. The owner is left to the object manager's default (the creator's token).
//!
//! IRQL: PASSIVE_LEVEL (the Rtl security routines are pageable).

use core::ffi::c_void;

use kmcl::raw::{NT_SUCCESS, NTSTATUS};
use wdk_sys::ntddk::{
    RtlAddAccessAllowedAce, RtlCreateAcl, RtlCreateSecurityDescriptor, RtlSetDaclSecurityDescriptor,
};
use wdk_sys::{ACL, PACL, SECURITY_DESCRIPTOR, SID, SID_IDENTIFIER_AUTHORITY, ULONG};

use vmbmmio_core::sections::SECTION_OWNER_RIGHTS;

/// `ACL_REVISION` (winnt.h).
const ACL_REVISION: ULONG = 2;
/// `SECURITY_DESCRIPTOR_REVISION` (winnt.h).
const SECURITY_DESCRIPTOR_REVISION: ULONG = 1;
/// `SID_REVISION` (winnt.h).
const SID_REVISION: u8 = 1;
/// `SECURITY_CREATOR_SID_AUTHORITY` (winnt.h: {0,0,0,0,0,3}).
const CREATOR_AUTHORITY: [u8; 6] = [0, 0, 0, 0, 0, 3];
/// `SECURITY_CREATOR_OWNER_RIGHTS_RID` (winnt.h): with the creator authority, S-1-3-4.
const OWNER_RIGHTS_RID: ULONG = 4;

// The spelled-out values must be the WDK's where bindgen generates them.
const _: () = assert!(
    wdk_sys::ACL_REVISION == ACL_REVISION
        && wdk_sys::SECURITY_DESCRIPTOR_REVISION == SECURITY_DESCRIPTOR_REVISION
        && wdk_sys::SECURITY_CREATOR_OWNER_RIGHTS_RID == OWNER_RIGHTS_RID
);

/// Room for the ACL header, one `ACCESS_ALLOWED_ACE` and a one-subauthority SID (28 bytes),
/// DWORD-aligned as `RtlCreateAcl` requires.
#[repr(C, align(4))]
struct AclBuffer([u8; 64]);

/// `AclLength` passed to `RtlCreateAcl`: the whole buffer.
const ACL_BUFFER_LENGTH: ULONG = super::driver::wdf_size::<AclBuffer>();

/// An absolute security descriptor and the storage its DACL points into. Not movable once
/// built (the descriptor holds a pointer to `acl`): [`SectionSecurity::build`] fills it in place.
pub(super) struct SectionSecurity {
    descriptor: SECURITY_DESCRIPTOR,
    acl: AclBuffer,
    owner_rights: SID,
}

impl SectionSecurity {
    /// Zeroed storage; call [`SectionSecurity::build`] before use.
    pub(super) fn new() -> Self {
        Self {
            descriptor: SECURITY_DESCRIPTOR::default(),
            acl: AclBuffer([0; 64]),
            owner_rights: SID {
                Revision: SID_REVISION,
                SubAuthorityCount: 1,
                IdentifierAuthority: SID_IDENTIFIER_AUTHORITY {
                    Value: CREATOR_AUTHORITY,
                },
                SubAuthority: [OWNER_RIGHTS_RID],
            },
        }
    }

    /// Builds the descriptor in place and returns the pointer for
    /// `OBJECT_ATTRIBUTES.SecurityDescriptor`, valid while `self` is neither moved nor dropped.
    ///
    /// IRQL: PASSIVE_LEVEL.
    pub(super) fn build(&mut self) -> Result<*mut c_void, NTSTATUS> {
        let acl: PACL = (&raw mut self.acl).cast::<ACL>();
        // SAFETY: `acl` points at 64 writable, DWORD-aligned bytes owned by `self`, and
        // ACL_BUFFER_LENGTH is exactly that size.
        let status = unsafe { RtlCreateAcl(acl, ACL_BUFFER_LENGTH, ACL_REVISION) };
        if !NT_SUCCESS(status) {
            return Err(status);
        }
        // SAFETY: `acl` was initialised by RtlCreateAcl above and has room for the ACE;
        // `owner_rights` is a valid one-subauthority SID (S-1-3-4) that the routine copies.
        let status = unsafe {
            RtlAddAccessAllowedAce(
                acl,
                ACL_REVISION,
                SECTION_OWNER_RIGHTS,
                (&raw mut self.owner_rights).cast::<c_void>(),
            )
        };
        if !NT_SUCCESS(status) {
            return Err(status);
        }
        let descriptor = (&raw mut self.descriptor).cast::<c_void>();
        // SAFETY: `descriptor` points at a SECURITY_DESCRIPTOR owned by `self`, the size of an
        // absolute descriptor, which the routine initialises.
        let status =
            unsafe { RtlCreateSecurityDescriptor(descriptor, SECURITY_DESCRIPTOR_REVISION) };
        if !NT_SUCCESS(status) {
            return Err(status);
        }
        // SAFETY: `descriptor` was initialised above; DaclPresent TRUE with the non-NULL `acl`
        // (which lives in `self` as long as the descriptor) and DaclDefaulted FALSE.
        let status = unsafe { RtlSetDaclSecurityDescriptor(descriptor, 1, acl, 0) };
        if !NT_SUCCESS(status) {
            return Err(status);
        }
        Ok(descriptor)
    }
}
