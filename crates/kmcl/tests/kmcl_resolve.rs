//! Resolving the KMCL table from a synthetic `vmbkmclr.sys` export table: a missing optional
//! entry leaves a full table that reports it; missing required entries fail with every name;
//! forwarders are never used; the policy list matches the table.

mod pe_support;

use kmcl::resolve::{
    ENTRIES, EntryPolicy, EntrySet, ExportDirectory, Located, MappedImage, PeError, ResolveError,
    ResolvedKmcl, locate, resolve_mapped,
};
use kmcl::{KmclApi, KmclFunction};
use pe_support::*;

/// An image exporting `names` (in this order) as functions, plus `forwarded` as forwarders.
fn image(names: &[&str], forwarded: &[&str]) -> Built {
    let mut spec = Spec::named(names);
    for name in forwarded {
        spec.names.push((name.to_string(), spec.funcs.len() as u16));
        spec.funcs.push(Func::Forward(format!("vmbusr.{name}")));
    }
    spec.names.sort();
    Built::new(&spec)
}

fn names(filter: impl Fn(EntryPolicy) -> bool) -> Vec<&'static str> {
    ENTRIES
        .iter()
        .filter(|e| filter(e.policy))
        .map(|e| e.name)
        .collect()
}

fn required_names() -> Vec<&'static str> {
    names(|p| p == EntryPolicy::Required)
}

fn set(functions: &[KmclFunction]) -> EntrySet {
    let mut set = EntrySet::EMPTY;
    for &f in functions {
        set.insert(f);
    }
    set
}

fn locate_in(built: &Built) -> Result<Located, ResolveError> {
    let mapped = MappedImage::new(&built.mapped);
    locate(&ExportDirectory::parse(&mapped)?)
}

fn resolve(built: &Built) -> Result<ResolvedKmcl, ResolveError> {
    let mapped = MappedImage::new(&built.mapped);
    // SAFETY: the synthetic image is not a loaded module, but the returned function pointers are
    // only compared, never called.
    unsafe { resolve_mapped(&mapped) }
}

/// Every field's address, `None` for an absent optional entry.
fn addresses(api: &KmclApi) -> Vec<(KmclFunction, Option<usize>)> {
    KmclFunction::ALL
        .into_iter()
        .map(|function| (function, api.address_of(function)))
        .collect()
}

/// Every pointer of `resolved` is base + the export's RVA; absent entries are exactly `missing`.
fn assert_points_into(built: &Built, resolved: &ResolvedKmcl, missing: EntrySet) {
    let located = locate_in(built).expect("locates");
    let base = built.mapped.as_ptr() as usize;
    let table = addresses(&resolved.api);
    assert_eq!(table.len(), 27);
    for (function, address) in table {
        match located.rva(function) {
            Some(rva) => assert_eq!(address, Some(base + rva as usize), "{function:?}"),
            None => {
                assert_eq!(address, None, "{function:?}");
                assert!(missing.contains(function), "{function:?}");
            }
        }
    }
    assert_eq!(resolved.missing_optional, missing);
}

#[test]
fn a_module_exporting_everything_fills_every_entry() {
    let all: Vec<&str> = ENTRIES.iter().map(|e| e.name).collect();
    let built = image(&all, &[]);
    let resolved = resolve(&built).expect("resolves");
    assert!(resolved.missing_optional.is_empty());
    assert_points_into(&built, &resolved, EntrySet::EMPTY);
}

#[test]
fn missing_optional_entries_leave_a_working_table_that_reports_them() {
    // Only the required entries, in unsorted order (linear lookup).
    let mut required = required_names();
    required.reverse();
    let built = image(&required, &[]);
    let resolved = resolve(&built).expect("resolves without any optional entry");
    use KmclFunction as F;
    let optional = set(&[
        F::VmbChannelPause,
        F::VmbChannelInitSetFlags,
        F::VmbChannelPacketDeferToPassive,
        F::VmbChannelPacketFail,
        F::VmbPacketAllocate,
        F::VmbPacketFree,
        F::VmbPacketSetCompletionRoutine,
        F::VmbPacketSend,
        F::VmbChannelGetMmioSpace,
    ]);
    assert_points_into(&built, &resolved, optional);
    assert_eq!(
        resolved.missing_optional.to_string(),
        "VmbChannelPause, VmbChannelInitSetFlags, VmbChannelPacketDeferToPassive, \
         VmbChannelPacketFail, VmbPacketAllocate, VmbPacketFree, VmbPacketSetCompletionRoutine, \
         VmbPacketSend, VmbChannelGetMmioSpace"
    );
    // Just one optional entry missing: only it is reported.
    let mut names = required_names();
    names.extend([
        "VmbChannelPause",
        "VmbChannelInitSetFlags",
        "VmbChannelPacketDeferToPassive",
        "VmbChannelPacketFail",
        "VmbPacketAllocate",
        "VmbPacketFree",
        "VmbPacketSetCompletionRoutine",
        "VmbPacketSend",
    ]);
    let built = image(&names, &[]);
    let resolved = resolve(&built).expect("resolves");
    assert_points_into(&built, &resolved, set(&[F::VmbChannelGetMmioSpace]));
    assert!(resolved.api.VmbChannelGetMmioSpace.is_none());
    assert!(resolved.api.VmbChannelPause.is_some());
}

#[test]
fn missing_required_entries_fail_naming_every_one() {
    let mut names = required_names();
    names.retain(|n| *n != "VmbChannelGetPointer" && *n != "VmbChannelPacketComplete");
    let built = image(&names, &[]);
    let error = resolve(&built).err().expect("must fail");
    use KmclFunction as F;
    assert_eq!(
        error,
        ResolveError::MissingRequired {
            missing: set(&[F::VmbChannelGetPointer, F::VmbChannelPacketComplete]),
            forwarded: EntrySet::EMPTY,
        }
    );
    let message = error.to_string();
    assert_eq!(
        message,
        "vmbkmclr.sys does not export required KMCL entries: VmbChannelGetPointer, \
         VmbChannelPacketComplete"
    );
    assert!(
        !message.contains("GetMmioSpace"),
        "optional entries are not named: {message}"
    );

    // Nothing exported at all: all eighteen required entries are named.
    let error = resolve(&image(&["Unrelated"], &[]))
        .err()
        .expect("must fail");
    let ResolveError::MissingRequired { missing, .. } = error else {
        panic!("{error:?}")
    };
    assert_eq!(missing.len(), 18);
    for name in required_names() {
        assert!(error.to_string().contains(name), "{name} not named");
    }
}

#[test]
fn forwarded_entries_count_as_missing_and_are_never_followed() {
    let mut names = required_names();
    names.retain(|n| *n != "VmbChannelEnable");
    let built = image(&names, &["VmbChannelEnable", "VmbChannelGetMmioSpace"]);
    let error = resolve(&built)
        .err()
        .expect("a forwarded required entry fails");
    let enable = set(&[KmclFunction::VmbChannelEnable]);
    assert_eq!(
        error,
        ResolveError::MissingRequired {
            missing: enable,
            forwarded: enable
        }
    );
    assert!(
        error
            .to_string()
            .ends_with("(forwarded, not followed: VmbChannelEnable)")
    );

    let built = image(&required_names(), &["VmbChannelGetMmioSpace"]);
    let located = locate_in(&built).expect("an optional forwarder is only reported");
    assert!(
        located
            .missing_optional()
            .contains(KmclFunction::VmbChannelGetMmioSpace)
    );
    assert_eq!(
        located.forwarded_optional(),
        set(&[KmclFunction::VmbChannelGetMmioSpace])
    );
}

#[test]
fn a_malformed_export_table_is_an_image_error() {
    let mut built = image(&required_names(), &[]);
    built.set_u32(ED_NUMBER_OF_NAMES, u32::MAX);
    assert_eq!(
        resolve(&built).err(),
        Some(ResolveError::Image(PeError::NameTableOutOfBounds))
    );
    let mut built = image(&required_names(), &[]);
    let functions = built.functions_rva;
    built.set_u32(functions, 0xFFFF_0000);
    assert!(matches!(
        resolve(&built).err(),
        Some(ResolveError::Image(PeError::FunctionOutOfBounds {
            rva: 0xFFFF_0000
        }))
    ));
}

#[test]
fn the_policy_list_covers_the_table_once_in_order() {
    assert_eq!(ENTRIES.len(), KmclFunction::ALL.len());
    for (i, (spec, function)) in ENTRIES.iter().zip(KmclFunction::ALL).enumerate() {
        assert_eq!(spec.function, function, "entry {i}");
        assert_eq!(spec.name, format!("{function:?}"), "export name = C name");
        assert_eq!(function.c_name(), spec.name);
        assert_eq!(function as usize, i);
        assert!(!spec.reason.is_empty(), "{} has no reason", spec.name);
    }
    // Required = exactly the non-Option fields of KmclApi (the wrapper cannot run without them).
    let resolved = resolve(&image(&required_names(), &[])).expect("resolves");
    for (function, address) in addresses(&resolved.api) {
        let policy = ENTRIES[function as usize].policy;
        assert_eq!(
            address.is_some(),
            policy == EntryPolicy::Required,
            "{function:?}"
        );
    }
    // kmcl.md §1a: the names evidenced as vmbkmclr.sys exports.
    let evidenced: Vec<_> = ENTRIES
        .iter()
        .filter(|e| e.evidenced_export)
        .map(|e| e.name)
        .collect();
    assert_eq!(
        evidenced,
        [
            "VmbChannelEnable",
            "VmbConvertVmbusHandleToKernelHandle",
            "VmbChannelSetPointer"
        ]
    );
}
