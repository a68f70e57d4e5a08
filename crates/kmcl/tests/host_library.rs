//! The load-time sequence DriverEntry runs (`load_host_library`), against synthetic module
//! lists and a synthetic `vmbkmclr.sys` mapped in memory: it finds the module, reads only its
//! headers and export directory, checks the kernel's view, and fails with a typed error (and the
//! NTSTATUS DriverEntry returns) for every way the host can differ.

mod pe_support;

use std::cell::RefCell;

use kmcl::raw::{
    STATUS_DLL_NOT_FOUND, STATUS_INVALID_IMAGE_FORMAT, STATUS_PROCEDURE_NOT_FOUND,
    STATUS_UNSUCCESSFUL,
};
use kmcl::resolve::loaded::{AUX_MODULE_EXTENDED_INFO_SIZE, HEADER_WINDOW, MODULE_PATH_LEN};
use kmcl::resolve::{
    ENTRIES, EntryPolicy, HostLibraryError, ListCopy, LoadedModules, ModuleError, PeError,
    ResolveError, ResolvedKmcl, find_module, load_host_library,
};
use kmcl::{EntrySet, KmclFunction};
use pe_support::*;
use proptest::prelude::*;

/// One `AUX_MODULE_EXTENDED_INFO` record (x64 layout).
fn record(base: usize, size: u32, path: &str) -> Vec<u8> {
    let mut bytes = vec![0u8; AUX_MODULE_EXTENDED_INFO_SIZE];
    bytes[0..8].copy_from_slice(&(base as u64).to_le_bytes());
    bytes[8..12].copy_from_slice(&size.to_le_bytes());
    let name_offset = path.rfind('\\').map_or(0, |i| i + 1) as u16;
    bytes[12..14].copy_from_slice(&name_offset.to_le_bytes());
    bytes[14..14 + path.len()].copy_from_slice(path.as_bytes());
    bytes
}

/// A fake kernel: a module list, one mapped image, and a log of every range read.
struct Fake {
    list: Vec<u8>,
    image: Vec<u8>,
    /// How many copies report "too small" before one succeeds.
    too_small: usize,
    /// Overrides `AuxKlibGetImageExportDirectory`'s answer.
    kernel_view: Option<usize>,
    reads: RefCell<Vec<(usize, usize)>>,
}

impl Fake {
    fn new(image: Vec<u8>, paths: &[&str]) -> Self {
        let mut fake = Self {
            list: Vec::new(),
            image,
            too_small: 0,
            kernel_view: None,
            reads: RefCell::new(Vec::new()),
        };
        let (base, size) = (fake.base(), fake.image.len() as u32);
        fake.list.extend(record(
            0xFFFF_F800_0000_0000,
            0x10_0000,
            "\\SystemRoot\\system32\\ntoskrnl.exe",
        ));
        for path in paths {
            fake.list.extend(record(base, size, path));
        }
        fake
    }

    fn base(&self) -> usize {
        self.image.as_ptr() as usize
    }

    /// `(offset, len)` of every range read, relative to the image base.
    fn ranges_read(&self) -> Vec<(usize, usize)> {
        let base = self.base();
        self.reads
            .borrow()
            .iter()
            .map(|&(a, l)| (a - base, l))
            .collect()
    }
}

impl LoadedModules for Fake {
    fn list_size(&mut self) -> Result<usize, ModuleError> {
        Ok(self.list.len())
    }

    fn copy_list(&mut self, buffer: &mut [u8]) -> Result<ListCopy, ModuleError> {
        if self.too_small > 0 {
            self.too_small -= 1;
            // The list grew by more than the slack between the two calls.
            self.list
                .extend(record(0x1000, 0x1000, "\\SystemRoot\\new.sys"));
            return Ok(ListCopy::TooSmall);
        }
        if buffer.len() < self.list.len() {
            return Ok(ListCopy::TooSmall);
        }
        buffer[..self.list.len()].copy_from_slice(&self.list);
        Ok(ListCopy::Copied {
            len: self.list.len(),
        })
    }

    unsafe fn mapped(&self, address: usize, len: usize) -> &[u8] {
        self.reads.borrow_mut().push((address, len));
        let offset = address - self.base();
        &self.image[offset..offset + len]
    }

    fn kernel_export_directory(&self, base: usize) -> usize {
        self.kernel_view.unwrap_or(base + EDATA_RVA as usize)
    }
}

fn image(names: &[&str]) -> Vec<u8> {
    let mut spec = Spec::named(names);
    spec.names.sort();
    Built::new(&spec).mapped
}

fn all_names() -> Vec<&'static str> {
    ENTRIES.iter().map(|e| e.name).collect()
}

const PATH: &str = "\\SystemRoot\\System32\\drivers\\vmbkmclr.sys";

fn load(fake: &mut Fake) -> Result<ResolvedKmcl, HostLibraryError> {
    // SAFETY: the table is only inspected, never called.
    unsafe { load_host_library(fake) }
}

#[test]
fn the_loaded_module_resolves_and_only_headers_and_exports_are_read() {
    let mut fake = Fake::new(image(&all_names()), &[PATH]);
    let resolved = load(&mut fake).expect("resolves");
    assert!(resolved.missing_optional.is_empty());
    let built = Built::new(&{
        let mut spec = Spec::named(&all_names());
        spec.names.sort();
        spec
    });
    assert_eq!(
        fake.ranges_read(),
        vec![
            (0, HEADER_WINDOW as usize),
            (EDATA_RVA as usize, built.edata_len as usize)
        ],
        "the headers' first page and the export directory, nothing else"
    );
    let allocate = resolved.api.VmbChannelAllocate as usize;
    assert!(allocate > fake.base() && allocate < fake.base() + fake.image.len());
}

#[test]
fn the_name_matches_case_insensitively_and_only_by_file_name() {
    let mut fake = Fake::new(
        image(&all_names()),
        &["\\SystemRoot\\System32\\DRIVERS\\VMBKMCLR.SYS"],
    );
    assert!(load(&mut fake).is_ok());
    let mut fake = Fake::new(image(&all_names()), &["\\SystemRoot\\vmbkmclr.sys.bak"]);
    let error = load(&mut fake).err().expect("refused");
    assert_eq!(error, HostLibraryError::Module(ModuleError::NotLoaded));
    assert_eq!(error.ntstatus(), STATUS_DLL_NOT_FOUND);
    assert!(
        error.to_string().contains("vmbkmclr.sys is not loaded"),
        "{error}"
    );
}

#[test]
fn two_modules_of_that_name_are_refused() {
    let mut fake = Fake::new(image(&all_names()), &[PATH, PATH]);
    let error = load(&mut fake).err().expect("refused");
    assert_eq!(error, HostLibraryError::Module(ModuleError::LoadedTwice));
    assert_eq!(error.ntstatus(), STATUS_INVALID_IMAGE_FORMAT);
}

#[test]
fn missing_required_entries_fail_driver_entry_naming_every_one() {
    let keep: Vec<&str> = all_names()
        .into_iter()
        .filter(|n| *n != "VmbChannelEnable" && *n != "VmbChannelGetPointer")
        .collect();
    let mut fake = Fake::new(image(&keep), &[PATH]);
    let error = load(&mut fake).err().expect("refused");
    assert_eq!(error.ntstatus(), STATUS_PROCEDURE_NOT_FOUND);
    let mut expected = EntrySet::EMPTY;
    expected.insert(KmclFunction::VmbChannelEnable);
    expected.insert(KmclFunction::VmbChannelGetPointer);
    assert_eq!(error.missing_bits(), expected.bits());
    let mut lines = Vec::new();
    error.event_lines(|line| lines.push(line.as_str().to_owned()));
    assert_eq!(
        lines,
        [
            "vmbkmclr.sys does not export required KMCL entry VmbChannelEnable",
            "vmbkmclr.sys does not export required KMCL entry VmbChannelGetPointer",
        ]
    );
    let line = error.to_string();
    assert!(
        line.starts_with("vmbmmio: cannot use the VMBus host library: ")
            && line.contains("VmbChannelEnable, VmbChannelGetPointer"),
        "{line}"
    );
}

#[test]
fn missing_optional_entries_load_and_are_reported() {
    let required: Vec<&str> = ENTRIES
        .iter()
        .filter(|e| e.policy == EntryPolicy::Required)
        .map(|e| e.name)
        .collect();
    let mut fake = Fake::new(image(&required), &[PATH]);
    let resolved = load(&mut fake).expect("resolves without optional entries");
    assert_eq!(resolved.missing_optional.len(), 9);
    assert_eq!(resolved.api.missing_optional(), resolved.missing_optional);
}

#[test]
fn a_list_that_grows_is_fetched_again_a_bounded_number_of_times() {
    let mut fake = Fake::new(image(&all_names()), &[PATH]);
    fake.too_small = 2;
    assert!(load(&mut fake).is_ok());
    let mut fake = Fake::new(image(&all_names()), &[PATH]);
    fake.too_small = usize::MAX;
    assert_eq!(
        load(&mut fake).err(),
        Some(HostLibraryError::Module(ModuleError::ModuleListUnstable))
    );
}

#[test]
fn the_kernel_and_the_headers_must_agree_on_the_export_directory() {
    let mut fake = Fake::new(image(&all_names()), &[PATH]);
    fake.kernel_view = Some(0);
    assert_eq!(
        load(&mut fake).err(),
        Some(HostLibraryError::Module(
            ModuleError::ExportDirectoryMismatch
        ))
    );
}

#[test]
fn an_export_directory_outside_the_recorded_image_size_is_refused_before_it_is_read() {
    let image = image(&all_names());
    let mut fake = Fake::new(image, &[]);
    // Record a size that ends before the export directory.
    fake.list.extend(record(fake.base(), EDATA_RVA, PATH));
    let error = load(&mut fake).err().expect("refused");
    assert!(
        matches!(
            error,
            HostLibraryError::Module(ModuleError::Image(
                PeError::ExportDirectoryOutOfBounds { .. }
            ))
        ),
        "{error:?}"
    );
    assert_eq!(fake.ranges_read().len(), 1, "only the headers were read");
}

#[test]
fn a_query_failure_is_passed_on_with_its_status() {
    struct Failing;
    impl LoadedModules for Failing {
        fn list_size(&mut self) -> Result<usize, ModuleError> {
            Err(ModuleError::Query {
                call: "AuxKlibInitialize",
                status: STATUS_UNSUCCESSFUL,
            })
        }
        fn copy_list(&mut self, _: &mut [u8]) -> Result<ListCopy, ModuleError> {
            unreachable!()
        }
        unsafe fn mapped(&self, _: usize, _: usize) -> &[u8] {
            unreachable!()
        }
        fn kernel_export_directory(&self, _: usize) -> usize {
            unreachable!()
        }
    }
    // SAFETY: nothing is resolved.
    let error = unsafe { load_host_library(&mut Failing) }
        .err()
        .expect("fails");
    assert_eq!(error.ntstatus(), STATUS_UNSUCCESSFUL);
    assert!(
        error
            .to_string()
            .contains("AuxKlibInitialize failed with status 0xc0000001")
    );
}

#[test]
fn a_missing_required_error_is_a_resolve_error() {
    let error = HostLibraryError::Resolve(ResolveError::AddressOverflow);
    assert_eq!(error.ntstatus(), STATUS_INVALID_IMAGE_FORMAT);
    assert_eq!(error.missing_bits(), 0);
}

/// Every line of every error fits one error-log entry (240 bytes with a 48-byte header and
/// one dump word: (88 + 1) UTF-16 units = 178 bytes).
#[test]
fn every_event_line_fits_an_error_log_entry() {
    let mut all = EntrySet::EMPTY;
    for f in KmclFunction::ALL {
        all.insert(f);
    }
    let errors = [
        HostLibraryError::Resolve(ResolveError::MissingRequired {
            missing: all,
            forwarded: all,
        }),
        HostLibraryError::Module(ModuleError::Query {
            call: "AuxKlibQueryModuleInformation",
            status: -1,
        }),
        HostLibraryError::Module(ModuleError::Image(PeError::ExportDirectoryOutOfBounds {
            rva: u32::MAX,
            size: u32::MAX,
        })),
        HostLibraryError::Module(ModuleError::ExportDirectoryMismatch),
        HostLibraryError::OutOfMemory,
    ];
    for error in errors {
        let mut count = 0;
        error.event_lines(|line| {
            count += 1;
            assert!(line.as_str().len() <= kmcl::resolve::EVENT_LINE_MAX);
            assert!(line.as_str().is_ascii() && !line.as_str().is_empty());
        });
        assert!(count >= 1);
    }
}

proptest! {
    /// Any bytes as a module list: a typed answer, never a panic.
    #[test]
    fn hostile_module_lists_never_panic(
        records in proptest::collection::vec(proptest::collection::vec(any::<u8>(), AUX_MODULE_EXTENDED_INFO_SIZE), 0..8),
        tail in 0usize..3,
        name_offset in any::<u16>(),
    ) {
        let mut list: Vec<u8> = records.concat();
        if let Some(first) = list.get_mut(12..14) {
            first.copy_from_slice(&name_offset.to_le_bytes());
        }
        list.extend(std::iter::repeat_n(0u8, tail));
        let _ = find_module(&list, "vmbkmclr.sys");
    }

    /// A record whose name fills the whole path buffer without a NUL is not a match.
    #[test]
    fn an_unterminated_path_never_matches(fill in any::<u8>().prop_filter("non-NUL", |b| *b != 0)) {
        let mut bytes = record(0x1000, 0x1000, "");
        for b in &mut bytes[14..14 + MODULE_PATH_LEN] {
            *b = fill;
        }
        prop_assert_eq!(find_module(&bytes, "vmbkmclr.sys"), Err(ModuleError::NotLoaded));
    }
}
