//! The PE32+ export-directory parser: golden tests on synthetic images built byte by byte (in
//! both the mapped and the file layout), hostile images (every truncation, out-of-range RVAs,
//! huge counts, unterminated names, bad magics, random mutation) that must give a typed error
//! and never panic, and a real PE32+ DLL from Debian's mingw-w64 packages.

mod pe_support;

use kmcl::resolve::{
    Export, ExportDirectory, ExportTarget, FileImage, ImageReader, MappedImage, PeError,
};
use pe_support::*;
use proptest::prelude::*;

/// Parses `reader` and touches everything a caller can: module name, every name, every lookup
/// by name and a range of ordinals. The first error, if any.
fn exercise<R: ImageReader>(reader: &R) -> Result<(), PeError> {
    let exports = ExportDirectory::parse(reader)?;
    exports.module_name()?;
    for index in 0..exports.number_of_names() {
        let name = exports.name(index)?;
        exports.find(name)?;
    }
    exports.find(b"not exported")?;
    let base = exports.ordinal_base();
    for ordinal in
        base.saturating_sub(1)..base.saturating_add(exports.number_of_functions().min(64))
    {
        exports.by_ordinal(ordinal)?;
    }
    Ok(())
}

/// [`exercise`] over both layouts of `built`; both must agree.
fn exercise_both(built: &Built) -> Result<(), PeError> {
    let mapped = exercise(&MappedImage::new(&built.mapped));
    let file = FileImage::new(&built.file).and_then(|file| exercise(&file));
    assert_eq!(mapped, file, "mapped and file layouts disagree");
    mapped
}

/// Runs `check` against both layouts of `built`.
macro_rules! both {
    ($built:expr, |$exports:ident| $body:block) => {{
        let mapped = MappedImage::new(&$built.mapped);
        let $exports = ExportDirectory::parse(&mapped).expect("mapped layout parses");
        $body
        let file = FileImage::new(&$built.file).expect("file headers parse");
        let $exports = ExportDirectory::parse(&file).expect("file layout parses");
        $body
    }};
}

fn code(ordinal: u32, rva: u32) -> Option<Export<'static>> {
    Some(Export {
        ordinal,
        target: ExportTarget::Rva(rva),
    })
}

#[test]
fn sorted_names_are_found_by_binary_search_in_both_layouts() {
    let built = Built::new(&Spec::named(&["Alpha", "Beta", "Delta", "Gamma", "Omega"]));
    both!(built, |exports| {
        assert!(exports.names_sorted());
        assert_eq!(exports.number_of_functions(), 5);
        assert_eq!(exports.number_of_names(), 5);
        assert_eq!(exports.module_name(), Ok(b"synthetic.dll".as_slice()));
        for (i, name) in ["Alpha", "Beta", "Delta", "Gamma", "Omega"]
            .iter()
            .enumerate()
        {
            let i = i as u32;
            assert_eq!(
                exports.find(name.as_bytes()),
                Ok(code(1 + i, code_rva(i))),
                "{name}"
            );
            assert_eq!(exports.by_ordinal(1 + i), Ok(code(1 + i, code_rva(i))));
        }
        for absent in ["", "A", "Alph", "Alphaa", "Beta2", "Zeta", "alpha"] {
            assert_eq!(exports.find(absent.as_bytes()), Ok(None), "{absent:?}");
        }
    });
}

#[test]
fn unsorted_names_are_found_by_linear_scan() {
    let built = Built::new(&Spec::named(&["Zulu", "Alpha", "Mike"]));
    both!(built, |exports| {
        assert!(!exports.names_sorted());
        assert_eq!(exports.find(b"Alpha"), Ok(code(2, code_rva(1))));
        assert_eq!(exports.find(b"Zulu"), Ok(code(1, code_rva(0))));
        assert_eq!(exports.find(b"Mike"), Ok(code(3, code_rva(2))));
        assert_eq!(exports.find(b"Bravo"), Ok(None));
    });
}

#[test]
fn ordinal_only_exports_are_found_by_ordinal_not_by_name() {
    let spec = Spec {
        ordinal_base: 10,
        funcs: vec![
            Func::Code(code_rva(0)),
            Func::Empty,
            Func::Code(code_rva(2)),
        ],
        names: vec![],
    };
    let built = Built::new(&spec);
    both!(built, |exports| {
        assert_eq!(exports.number_of_names(), 0);
        assert_eq!(exports.ordinal_base(), 10);
        assert_eq!(exports.by_ordinal(10), Ok(code(10, code_rva(0))));
        assert_eq!(exports.by_ordinal(11), Ok(None), "empty slot");
        assert_eq!(exports.by_ordinal(12), Ok(code(12, code_rva(2))));
        assert_eq!(exports.by_ordinal(9), Ok(None), "below Base");
        assert_eq!(exports.by_ordinal(13), Ok(None), "beyond NumberOfFunctions");
        assert_eq!(exports.by_ordinal(u32::MAX), Ok(None));
        assert_eq!(exports.find(b"anything"), Ok(None));
    });
}

#[test]
fn forwarders_are_reported_and_never_followed_even_when_they_loop() {
    let spec = Spec {
        ordinal_base: 1,
        funcs: vec![
            Func::Code(code_rva(0)),
            Func::Forward("NTOSKRNL.KeBugCheck".into()),
            // Forwards to itself: following it would loop forever.
            Func::Forward("synthetic.Loop".into()),
            Func::Forward("synthetic.#3".into()),
        ],
        names: vec![
            ("Bug".into(), 1),
            ("Code".into(), 0),
            ("Loop".into(), 2),
            ("Ord".into(), 3),
        ],
    };
    let built = Built::new(&spec);
    both!(built, |exports| {
        let forwarded = |ordinal, target: &'static str| {
            Some(Export {
                ordinal,
                target: ExportTarget::Forwarded(target.as_bytes()),
            })
        };
        assert_eq!(exports.find(b"Code"), Ok(code(1, code_rva(0))));
        assert_eq!(
            exports.find(b"Bug"),
            Ok(forwarded(2, "NTOSKRNL.KeBugCheck"))
        );
        assert_eq!(exports.find(b"Loop"), Ok(forwarded(3, "synthetic.Loop")));
        assert_eq!(exports.find(b"Ord"), Ok(forwarded(4, "synthetic.#3")));
        assert_eq!(exports.by_ordinal(3), Ok(forwarded(3, "synthetic.Loop")));
    });
}

#[test]
fn aliases_and_empty_slots() {
    let spec = Spec {
        ordinal_base: 1,
        funcs: vec![Func::Code(code_rva(0)), Func::Empty],
        names: vec![("A".into(), 0), ("B".into(), 0), ("C".into(), 1)],
    };
    let built = Built::new(&spec);
    both!(built, |exports| {
        assert_eq!(exports.find(b"A"), Ok(code(1, code_rva(0))));
        assert_eq!(exports.find(b"B"), Ok(code(1, code_rva(0))));
        assert_eq!(
            exports.find(b"C"),
            Ok(None),
            "a name on an empty slot is not exported"
        );
    });
}

fn valid() -> Built {
    let mut spec = Spec::named(&["Alpha", "Beta", "Gamma"]);
    spec.funcs.push(Func::Forward("other.Fn".into()));
    spec.names.push(("Zeta".into(), 3));
    Built::new(&spec)
}

#[test]
fn every_truncation_of_a_valid_image_is_an_error_in_both_layouts() {
    let built = valid();
    assert_eq!(exercise_both(&built), Ok(()));
    for len in 0..built.mapped.len() {
        let result = exercise(&MappedImage::new(&built.mapped[..len]));
        assert!(
            result.is_err(),
            "mapped image truncated to {len} bytes accepted"
        );
    }
    for len in 0..built.file.len() {
        let result = FileImage::new(&built.file[..len]).and_then(|file| exercise(&file));
        assert!(result.is_err(), "file truncated to {len} bytes accepted");
    }
    // Spot checks of which check fires.
    let at = |len: usize| exercise(&MappedImage::new(&built.mapped[..len]));
    assert_eq!(at(0), Err(PeError::DosHeaderTruncated));
    assert_eq!(at(63), Err(PeError::DosHeaderTruncated));
    assert_eq!(
        at(64),
        Err(PeError::LfanewOutOfBounds {
            e_lfanew: LFANEW as u32
        })
    );
    assert_eq!(at(LFANEW + 4), Err(PeError::CoffHeaderTruncated));
    assert_eq!(at(OPT + 8), Err(PeError::OptionalHeaderTruncated));
    assert_eq!(at(SECTIONS + 40), Err(PeError::SectionTableOutOfBounds));
    let size = built.edata_len;
    assert_eq!(
        at(EDATA_RVA as usize + 39),
        Err(PeError::ExportDirectoryOutOfBounds {
            rva: EDATA_RVA,
            size
        })
    );
    // The export directory's size covers the strings: cutting its last byte cuts it.
    assert_eq!(
        at(built.mapped.len() - 1),
        Err(PeError::ExportDirectoryOutOfBounds {
            rva: EDATA_RVA,
            size
        })
    );
}

/// `built` with `edit` applied, exercised in both layouts.
fn with(edit: impl FnOnce(&mut Built)) -> Result<(), PeError> {
    let mut built = valid();
    edit(&mut built);
    exercise_both(&built)
}

#[test]
fn bad_magics_and_headers_give_typed_errors() {
    assert_eq!(with(|b| b.patch(0, b"ZM")), Err(PeError::BadDosMagic));
    assert_eq!(
        with(|b| b.set_u32(0x3C, 0xFFFF_FFF0)),
        Err(PeError::LfanewOutOfBounds {
            e_lfanew: 0xFFFF_FFF0
        })
    );
    assert_eq!(
        with(|b| b.set_u32(0x3C, HEADERS as u32 + 0x10_0000)),
        Err(PeError::LfanewOutOfBounds {
            e_lfanew: HEADERS as u32 + 0x10_0000
        })
    );
    assert_eq!(
        with(|b| b.patch(LFANEW as u32, b"PE\0X")),
        Err(PeError::BadPeSignature)
    );
    assert_eq!(
        with(|b| b.set_u16(OFF_MACHINE as u32, 0x14C)),
        Err(PeError::NotAmd64 { machine: 0x14C })
    );
    assert_eq!(
        with(|b| b.set_u16(OFF_MAGIC as u32, 0x10B)),
        Err(PeError::NotPe32Plus { magic: 0x10B })
    );
    for count in [0, 17, 0x2000_0000, u32::MAX] {
        assert_eq!(
            with(|b| b.set_u32(OFF_NUMBER_OF_RVA_AND_SIZES as u32, count)),
            Err(PeError::BadDataDirectoryCount { count }),
            "{count}"
        );
    }
    assert_eq!(
        with(|b| b.set_u16(OFF_SIZE_OF_OPTIONAL as u32, 0xFFFF)),
        Err(PeError::OptionalHeaderTruncated)
    );
    assert_eq!(
        with(|b| b.set_u16(OFF_NUMBER_OF_SECTIONS as u32, 0xFFFF)),
        Err(PeError::SectionTableOutOfBounds)
    );
    assert_eq!(
        with(|b| {
            b.set_u32(OFF_EXPORT_RVA as u32, 0);
            b.set_u32(OFF_EXPORT_SIZE as u32, 0);
        }),
        Err(PeError::NoExportDirectory)
    );
}

#[test]
fn out_of_range_rvas_and_huge_counts_give_typed_errors() {
    let size = valid().edata_len;
    for rva in [0xFFFF_FF00, 0x7FFF_0000, EDATA_RVA + size - 10] {
        assert_eq!(
            with(|b| b.set_u32(OFF_EXPORT_RVA as u32, rva)),
            Err(PeError::ExportDirectoryOutOfBounds { rva, size }),
            "{rva:#x}"
        );
    }
    for bad_size in [0, 39, size + 1, u32::MAX] {
        assert_eq!(
            with(|b| b.set_u32(OFF_EXPORT_SIZE as u32, bad_size)),
            Err(PeError::ExportDirectoryOutOfBounds {
                rva: EDATA_RVA,
                size: bad_size
            }),
            "{bad_size}"
        );
    }
    for count in [0x4000_0000, 0x4000_0001, u32::MAX, 100_000] {
        assert_eq!(
            with(|b| b.set_u32(ED_NUMBER_OF_FUNCTIONS, count)),
            Err(PeError::FunctionTableOutOfBounds),
            "{count}"
        );
        assert_eq!(
            with(|b| b.set_u32(ED_NUMBER_OF_NAMES, count)),
            Err(PeError::NameTableOutOfBounds),
            "{count}"
        );
    }
    assert_eq!(
        with(|b| b.set_u32(ED_FUNCTIONS, u32::MAX - 3)),
        Err(PeError::FunctionTableOutOfBounds)
    );
    assert_eq!(
        with(|b| b.set_u32(ED_NAMES, 0x10_0000)),
        Err(PeError::NameTableOutOfBounds)
    );
    assert_eq!(
        with(|b| b.set_u32(ED_ORDINALS, u32::MAX)),
        Err(PeError::OrdinalTableOutOfBounds)
    );
    assert_eq!(
        with(|b| {
            let names = b.names_rva;
            b.set_u32(names + 4, 0xDEAD_0000);
        }),
        Err(PeError::NameOutOfBounds { index: 1 })
    );
    assert_eq!(
        with(|b| {
            let ordinals = b.ordinals_rva;
            b.set_u16(ordinals + 2, 4);
        }),
        Err(PeError::OrdinalOutOfRange {
            index: 1,
            ordinal: 4
        })
    );
    assert_eq!(
        with(|b| {
            let functions = b.functions_rva;
            b.set_u32(functions + 4, 0x7FFF_0000);
        }),
        Err(PeError::FunctionOutOfBounds { rva: 0x7FFF_0000 })
    );
    assert_eq!(
        with(|b| b.set_u32(ED_NAME, 0xFFFF_0000)),
        Err(PeError::BadModuleName)
    );
    assert_eq!(
        with(|b| b.set_u32(ED_BASE, u32::MAX)),
        Err(PeError::OrdinalOverflow)
    );
}

#[test]
fn unterminated_names_and_forwarders_give_typed_errors() {
    // The last name's NUL is the image's last byte.
    assert_eq!(
        with(|b| {
            let last = EDATA_RVA + b.edata_len - 1;
            b.patch(last, b"X");
        }),
        Err(PeError::NameNotTerminated { index: 3 })
    );
    // The forwarder "other.Fn" cut before its NUL by the export directory's size.
    assert_eq!(
        with(|b| {
            let rva = b.forwarder_rvas[3].unwrap();
            b.set_u32(OFF_EXPORT_SIZE as u32, rva + 8 - EDATA_RVA);
        }),
        Err(PeError::ForwarderNotTerminated {
            rva: valid().forwarder_rvas[3].unwrap()
        })
    );
}

/// Header and export-directory fields a mutation may target (RVAs; same in both layouts).
fn fields() -> Vec<(u32, usize)> {
    let mut fields = vec![
        (0x3C, 4),
        (OFF_MACHINE as u32, 2),
        (OFF_NUMBER_OF_SECTIONS as u32, 2),
        (OFF_SIZE_OF_OPTIONAL as u32, 2),
        (OFF_MAGIC as u32, 2),
        (OPT as u32 + 56, 4),
        (OPT as u32 + 60, 4),
        (OFF_NUMBER_OF_RVA_AND_SIZES as u32, 4),
        (OFF_EXPORT_RVA as u32, 4),
        (OFF_EXPORT_SIZE as u32, 4),
    ];
    for section in 0..2u32 {
        for field in [8, 12, 16, 20] {
            fields.push((SECTIONS as u32 + 40 * section + field, 4));
        }
    }
    for field in [
        ED_NAME,
        ED_BASE,
        ED_NUMBER_OF_FUNCTIONS,
        ED_NUMBER_OF_NAMES,
        ED_FUNCTIONS,
        ED_NAMES,
        ED_ORDINALS,
    ] {
        fields.push((field, 4));
    }
    let built = valid();
    for i in 0..4 {
        fields.push((built.functions_rva + 4 * i, 4));
        fields.push((built.names_rva + 4 * i, 4));
        fields.push((built.ordinals_rva + 2 * i, 2));
    }
    fields
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Random bytes anywhere, and a random truncation: never a panic.
    #[test]
    fn random_byte_mutation_never_panics(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
        truncate in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let mut built = valid();
        for (at, byte) in &edits {
            let i = at.index(built.mapped.len());
            built.mapped[i] = *byte;
            let j = at.index(built.file.len());
            built.file[j] = *byte;
        }
        if let Some(at) = truncate {
            let len = at.index(built.mapped.len());
            built.mapped.truncate(len);
            built.file.truncate(at.index(built.file.len()));
        }
        let _ = exercise(&MappedImage::new(&built.mapped));
        let _ = FileImage::new(&built.file).and_then(|file| exercise(&file));
    }

    /// Arbitrary values in the fields the parser trusts least: never a panic, and both layouts
    /// give the same answer.
    #[test]
    fn random_field_values_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u32>()), 1..6),
    ) {
        let fields = fields();
        let mut built = valid();
        for (which, value) in &edits {
            let (rva, width) = fields[which.index(fields.len())];
            built.patch(rva, &value.to_le_bytes()[..width]);
        }
        let mapped = exercise(&MappedImage::new(&built.mapped));
        let file = FileImage::new(&built.file).and_then(|file| exercise(&file));
        // Section-table, NumberOfSections, SizeOfOptionalHeader, SizeOfHeaders and SizeOfImage edits change only the
        // file layout's mapping.
        let section_edit = edits.iter().any(|(which, _)| {
            let (rva, _) = fields[which.index(fields.len())];
            (SECTIONS as u32..SECTIONS as u32 + 80).contains(&rva)
                || rva == OFF_NUMBER_OF_SECTIONS as u32
                || rva == OFF_SIZE_OF_OPTIONAL as u32
                || rva == OPT as u32 + 56
                || rva == OPT as u32 + 60
        });
        if !section_edit {
            prop_assert_eq!(mapped, file);
        }
    }
}

/// A PE32+ DLL shipped by Debian's `mingw-w64-x86-64-dev` (installed by `.ci/run`).
const WINPTHREAD: &str = "/usr/x86_64-w64-mingw32/lib/libwinpthread-1.dll";

fn real_dll() -> Vec<u8> {
    std::fs::read(WINPTHREAD).unwrap_or_else(|error| {
        panic!(
            "{WINPTHREAD}: {error}. This test needs a real PE32+ DLL: \
             apt-get install mingw-w64-x86-64-dev (.ci/run installs it)"
        )
    })
}

/// A minimal loader: copies the headers and each section to its `VirtualAddress`.
fn map_like_a_loader(file: &[u8]) -> Vec<u8> {
    let u16_at = |at: usize| u16::from_le_bytes(file[at..at + 2].try_into().unwrap());
    let u32_at = |at: usize| u32::from_le_bytes(file[at..at + 4].try_into().unwrap()) as usize;
    let pe = u32_at(0x3C);
    let sections = u16_at(pe + 6) as usize;
    let opt = pe + 24;
    let table = opt + u16_at(pe + 20) as usize;
    let mut image = vec![0u8; u32_at(opt + 56)];
    let headers = u32_at(opt + 60);
    image[..headers].copy_from_slice(&file[..headers]);
    for s in 0..sections {
        let h = table + 40 * s;
        let (va, raw_size, raw) = (u32_at(h + 12), u32_at(h + 16), u32_at(h + 20));
        let virtual_size = u32_at(h + 8);
        let len = raw_size
            .min(virtual_size)
            .min(file.len().saturating_sub(raw));
        image[va..va + len].copy_from_slice(&file[raw..raw + len]);
    }
    image
}

#[test]
fn real_mingw_dll_exports_are_found_in_file_and_mapped_layouts() {
    let bytes = real_dll();
    let file = FileImage::new(&bytes).expect("libwinpthread-1.dll headers");
    let exports = ExportDirectory::parse(&file).expect("libwinpthread-1.dll export directory");
    assert_eq!(exports.module_name(), Ok(b"libwinpthread-1.dll".as_slice()));
    assert!(
        exports.names_sorted(),
        "linkers sort the name pointer table"
    );
    assert!(
        exports.number_of_names() > 100,
        "{}",
        exports.number_of_names()
    );
    let mapped_bytes = map_like_a_loader(&bytes);
    let mapped = MappedImage::new(&mapped_bytes);
    let mapped_exports = ExportDirectory::parse(&mapped).expect("mapped export directory");
    for name in [
        "pthread_create",
        "pthread_mutex_lock",
        "sched_yield",
        "nanosleep",
        "clock_gettime",
    ] {
        let export = exports
            .find(name.as_bytes())
            .expect("well-formed")
            .unwrap_or_else(|| panic!("{name} not found"));
        let ExportTarget::Rva(rva) = export.target else {
            panic!("{name} is a forwarder")
        };
        assert!(
            rva >= 0x1000 && rva < file.headers().size_of_image,
            "{name} at {rva:#x}"
        );
        assert_eq!(
            exports.by_ordinal(export.ordinal),
            Ok(Some(export)),
            "{name}"
        );
        assert_eq!(
            mapped_exports.find(name.as_bytes()),
            Ok(Some(export)),
            "{name}"
        );
    }
    // Binary search agrees with the table for every name.
    for index in 0..exports.number_of_names() {
        let name = exports.name(index).unwrap();
        assert!(
            exports.find(name).unwrap().is_some(),
            "{}",
            String::from_utf8_lossy(name)
        );
    }
    assert_eq!(exports.find(b"VmbChannelEnable"), Ok(None));
}
