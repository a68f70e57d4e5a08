//! Resolving [`crate::KmclApi`] from an export directory.
//!
//! Two steps, so that everything but the last pointer conversion is safe and testable:
//! 1. [`locate`] looks every entry of [`ENTRIES`] up by name and fails, naming *every* missing
//!    required entry, if any is absent (a forwarded export counts as absent: it is never
//!    followed, and the loaded module's own code is not at that RVA).
//! 2. [`resolve_mapped`] (`unsafe`) adds the loaded module's base to each RVA and turns the
//!    addresses into the table's function pointers.

use core::fmt;

use crate::entry_set::EntrySet;

use crate::error::KmclFunction;
use crate::resolve::error::PeError;
use crate::resolve::exports::{ExportDirectory, ExportTarget};
use crate::resolve::image::{ImageReader, MappedImage};
use crate::resolve::policy::{ENTRIES, EntryPolicy};
use crate::table::KmclApi;

/// Why the table could not be resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResolveError {
    /// The image or its export directory is malformed.
    Image(PeError),
    /// Required entries are not exported (`missing`, all of them), some of them because the
    /// export is a forwarder (`forwarded`, a subset), which is never followed.
    MissingRequired {
        /// Every missing required entry.
        missing: EntrySet,
        /// Those of them that were forwarders.
        forwarded: EntrySet,
    },
    /// Base + RVA overflowed the address space (the mapping cannot be a loaded module).
    AddressOverflow,
    /// An entry's address came out as zero.
    NullAddress,
}

impl From<PeError> for ResolveError {
    fn from(error: PeError) -> Self {
        Self::Image(error)
    }
}

impl fmt::Display for ResolveError {
    /// One line for the event log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Image(error) => write!(f, "vmbkmclr.sys export table refused: {error}"),
            Self::MissingRequired { missing, forwarded } => {
                write!(
                    f,
                    "vmbkmclr.sys does not export required KMCL entries: {missing}"
                )?;
                if !forwarded.is_empty() {
                    write!(f, " (forwarded, not followed: {forwarded})")?;
                }
                Ok(())
            }
            Self::AddressOverflow => f.write_str("vmbkmclr.sys export address overflows"),
            Self::NullAddress => f.write_str("vmbkmclr.sys export address is null"),
        }
    }
}

/// Every entry's RVA, after [`locate`] found all required ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Located {
    rvas: [u32; 27],
    missing_optional: EntrySet,
    forwarded: EntrySet,
}

impl Located {
    /// The RVA of `function`'s code, or `None` if it is missing.
    pub fn rva(&self, function: KmclFunction) -> Option<u32> {
        self.rvas
            .get(function as usize)
            .copied()
            .filter(|&rva| rva != 0)
    }

    /// The optional entries the module does not export (or only forwards).
    pub fn missing_optional(&self) -> EntrySet {
        self.missing_optional
    }

    /// The optional entries that were forwarders (a subset of [`Self::missing_optional`]).
    pub fn forwarded_optional(&self) -> EntrySet {
        self.forwarded
    }
}

/// Looks every entry of [`ENTRIES`] up in `exports`.
///
/// Errors: [`ResolveError::Image`] if a lookup meets a malformed table;
/// [`ResolveError::MissingRequired`] naming every required entry that is missing or forwarded.
pub fn locate<R: ImageReader>(exports: &ExportDirectory<'_, R>) -> Result<Located, ResolveError> {
    let mut rvas = [0u32; 27];
    let (mut missing, mut forwarded) = (EntrySet::EMPTY, EntrySet::EMPTY);
    for spec in ENTRIES.iter() {
        // Stored by the function's own index, the one `Located::rva` reads.
        let Some(slot) = rvas.get_mut(spec.function as usize) else {
            missing.insert(spec.function);
            continue;
        };
        match exports.find(spec.name.as_bytes())? {
            Some(export) => match export.target {
                ExportTarget::Rva(rva) => *slot = rva,
                ExportTarget::Forwarded(_) => {
                    missing.insert(spec.function);
                    forwarded.insert(spec.function);
                }
            },
            None => missing.insert(spec.function),
        }
    }
    let mut missing_required = EntrySet::EMPTY;
    let mut missing_optional = EntrySet::EMPTY;
    for spec in &ENTRIES {
        if missing.contains(spec.function) {
            match spec.policy {
                EntryPolicy::Required => missing_required.insert(spec.function),
                EntryPolicy::Optional => missing_optional.insert(spec.function),
            }
        }
    }
    if !missing_required.is_empty() {
        return Err(ResolveError::MissingRequired {
            missing: missing_required,
            forwarded: EntrySet(forwarded.0 & missing_required.0),
        });
    }
    Ok(Located {
        rvas,
        missing_optional,
        forwarded: EntrySet(forwarded.0 & missing_optional.0),
    })
}

/// The resolved table and what it lacks.
#[derive(Clone, Copy)]
pub struct ResolvedKmcl {
    /// Every required entry, and the optional ones the module exports (`None` otherwise).
    pub api: KmclApi,
    /// The optional entries that are `None` in [`Self::api`] (report them).
    pub missing_optional: EntrySet,
}

/// The table for the module mapped as `image` (every byte of it readable: a test image or a
/// file mapped whole). A loaded driver is read through [`crate::resolve::LoadedImage`] and
/// [`resolve_loaded`] instead.
///
/// # Safety
/// As [`resolve_loaded`], with `image.base()` as the module's base.
pub unsafe fn resolve_mapped(image: &MappedImage<'_>) -> Result<ResolvedKmcl, ResolveError> {
    // SAFETY: forwarded from this function's contract.
    unsafe { resolve_loaded(image, image.base().addr()) }
}

/// The table for the loaded module at `base`, whose export directory `image` reads: the
/// directory is parsed and checked, every entry located ([`locate`]), and each RVA turned into
/// a function pointer at `base + rva`.
///
/// # Safety
/// - `image` reads the loaded `vmbkmclr.sys` whose image starts at `base`, and that module stays
///   loaded for as long as any copy of the returned table is used;
/// - the module's exports of these names are the KMCL functions with the prototypes the header
///   declares (kmcl.md §2), which are the types of [`KmclApi`]'s fields.
pub unsafe fn resolve_loaded<R: ImageReader>(
    image: &R,
    base: usize,
) -> Result<ResolvedKmcl, ResolveError> {
    let exports = ExportDirectory::parse(image)?;
    let located = locate(&exports)?;
    let address = |rva: u32| -> Result<usize, ResolveError> {
        let rva = usize::try_from(rva).map_err(|_| ResolveError::AddressOverflow)?;
        base.checked_add(rva).ok_or(ResolveError::AddressOverflow)
    };
    // SAFETY: `address` is base + RVA inside the loaded module (checked by the parser); by this
    // function's contract the export there is the KMCL function of the field's type.
    unsafe { build_table(&located, address) }
}

/// The table whose entry for each located export is the function at `address(rva)`.
///
/// This is the one place that turns addresses into a [`KmclApi`]: [`resolve_loaded`] maps an
/// RVA to `base + rva`; a test maps the RVAs of a synthetic image to the simulator's functions,
/// so the very table a driver would build is exercised end to end.
///
/// # Safety
/// For every entry `located` has, `address(rva)` is the entry point of a function with exactly
/// the prototype of the matching [`KmclApi`] field, which stays callable while the table is
/// used.
pub unsafe fn build_table(
    located: &Located,
    address: impl Fn(u32) -> Result<usize, ResolveError>,
) -> Result<ResolvedKmcl, ResolveError> {
    let address_of = |function: KmclFunction| -> Result<Option<usize>, ResolveError> {
        match located.rva(function).map(&address).transpose()? {
            // A null function pointer is not a value a Rust function pointer may hold.
            Some(0) => Err(ResolveError::NullAddress),
            other => Ok(other),
        }
    };
    // A required entry is present once `locate` succeeded; the error is unreachable in
    // practice but keeps the code free of panics.
    let needed = |function: KmclFunction| -> Result<usize, ResolveError> {
        address_of(function)?.ok_or(ResolveError::MissingRequired {
            missing: {
                let mut set = EntrySet::EMPTY;
                set.insert(function);
                set
            },
            forwarded: EntrySet::EMPTY,
        })
    };
    macro_rules! required {
        ($name:ident) => {{
            let address = needed(KmclFunction::$name)?;
            // SAFETY: by this function's contract, `address` is the entry of the KMCL function
            // whose prototype is this field's type.
            unsafe { function_at(address) }
        }};
    }
    macro_rules! optional {
        ($name:ident) => {{
            match address_of(KmclFunction::$name)? {
                None => None,
                // SAFETY: as for the required entries.
                Some(address) => Some(unsafe { function_at(address) }),
            }
        }};
    }
    let api = KmclApi {
        VmbChannelAllocate: required!(VmbChannelAllocate),
        VmbChannelCleanup: required!(VmbChannelCleanup),
        VmbChannelEnable: required!(VmbChannelEnable),
        VmbChannelDisable: required!(VmbChannelDisable),
        VmbChannelStart: required!(VmbChannelStart),
        VmbChannelPause: optional!(VmbChannelPause),
        VmbChannelInitSetMaximumPacketSize: required!(VmbChannelInitSetMaximumPacketSize),
        VmbChannelInitSetStateChangeCallbacks: required!(VmbChannelInitSetStateChangeCallbacks),
        VmbChannelInitSetProcessPacketCallbacks: required!(VmbChannelInitSetProcessPacketCallbacks),
        VmbChannelInitSetFriendlyName: required!(VmbChannelInitSetFriendlyName),
        VmbChannelInitSetFlags: optional!(VmbChannelInitSetFlags),
        VmbServerChannelInitSetFlags: required!(VmbServerChannelInitSetFlags),
        VmbServerChannelInitSetMmioMegabytes: required!(VmbServerChannelInitSetMmioMegabytes),
        VmbServerChannelInitSetTargetInterfaceId: required!(
            VmbServerChannelInitSetTargetInterfaceId
        ),
        VmbServerChannelInitSetVmbusHandle: required!(VmbServerChannelInitSetVmbusHandle),
        VmbConvertVmbusHandleToKernelHandle: required!(VmbConvertVmbusHandleToKernelHandle),
        VmbChannelSetPointer: required!(VmbChannelSetPointer),
        VmbChannelGetPointer: required!(VmbChannelGetPointer),
        VmbChannelSetIncomingProcessingAtPassive: required!(
            VmbChannelSetIncomingProcessingAtPassive
        ),
        VmbChannelPacketComplete: required!(VmbChannelPacketComplete),
        VmbChannelPacketDeferToPassive: optional!(VmbChannelPacketDeferToPassive),
        VmbChannelPacketFail: optional!(VmbChannelPacketFail),
        VmbPacketAllocate: optional!(VmbPacketAllocate),
        VmbPacketFree: optional!(VmbPacketFree),
        VmbPacketSetCompletionRoutine: optional!(VmbPacketSetCompletionRoutine),
        VmbPacketSend: optional!(VmbPacketSend),
        VmbChannelGetMmioSpace: optional!(VmbChannelGetMmioSpace),
    };
    Ok(ResolvedKmcl {
        api,
        missing_optional: located.missing_optional(),
    })
}

/// The function pointer of type `F` at `address`.
///
/// # Safety
/// `F` is a function-pointer type and `address` is the entry of a function with exactly that
/// prototype and calling convention, which stays loaded while the pointer is used.
unsafe fn function_at<F: Copy>(address: usize) -> F {
    const { assert!(core::mem::size_of::<F>() == core::mem::size_of::<usize>()) };
    // SAFETY: `F` is a pointer-sized function-pointer type (checked size; the caller guarantees
    // the type) and `address` is the non-null entry of a function of that type.
    unsafe { core::mem::transmute_copy::<usize, F>(&address) }
}
