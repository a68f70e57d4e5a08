//! The end-to-end demo (driver + device host against the simulated host and guest) over several
//! region layouts: every page checked both ways, nothing left behind.

use hvsim::demo::{DemoOptions, DemoReport, run};
use vmbmmio_core::mmio_plan::PAGE_SIZE;
use vmbmmio_core::sections::SectionQuotas;

fn demo(region_sizes: Vec<u64>, mapping_has_no_effect: bool) -> (DemoReport, String) {
    let mut out = Vec::new();
    let report = run(
        &DemoOptions {
            region_sizes,
            mapping_has_no_effect,
            ..DemoOptions::default()
        },
        &mut out,
    )
    .unwrap();
    (report, String::from_utf8(out).unwrap())
}

fn pages(sizes: &[u64]) -> u64 {
    sizes.iter().map(|s| s.div_ceil(PAGE_SIZE)).sum()
}

fn assert_passed(sizes: Vec<u64>) -> DemoReport {
    let expected = pages(&sizes);
    let (report, text) = demo(sizes, false);
    assert!(report.passed(), "{report:?}\n{text}");
    assert_eq!(report.pages_verified, expected);
    assert_eq!(
        report.intercepted_accesses, 0,
        "fast path in effect:\n{text}"
    );
    report
}

#[test]
fn one_region() {
    assert_passed(vec![4096]);
}

#[test]
fn many_regions() {
    assert_passed((1..=16).map(|i| i * 4096 + 100).collect());
}

#[test]
fn a_region_ending_at_the_bar_end() {
    // 4 + 12 KiB fill a 16 KiB BAR exactly: the last region's last page is the BAR's last page.
    let report = assert_passed(vec![4096, 3 * 4096]);
    assert_eq!(report.pages_verified, 4);
}

#[test]
fn the_largest_session_the_driver_allows() {
    // The plan itself allows a 32 GiB BAR (tests/channel_offer.rs offers it); the driver's
    // default per-session quota caps what it will back with sections: 256 MiB.
    assert_passed(vec![SectionQuotas::default().session_bytes]);
}

#[test]
fn the_largest_bar_the_plan_and_the_ioctl_interface_allow() {
    // 8 regions of 4 GiB (the IOCTL's per-region maximum) fill the largest BAR the plan allows,
    // 32 GiB; the channel's reservation stays 1 MiB, nothing optional. Quotas are raised to let
    // the driver back it; pages are sampled (every 256th plus each region's first and last),
    // since walking 8 Mi pages is not a unit test. Section memory is sparse, so this is cheap.
    let sizes = vec![4 << 30; 8];
    let quotas = SectionQuotas {
        session_bytes: 32 << 30,
        global_bytes: 32 << 30,
        ..SectionQuotas::default()
    };
    let mut out = Vec::new();
    let report = run(
        &DemoOptions {
            region_sizes: sizes,
            quotas,
            page_stride: 256,
            ..DemoOptions::default()
        },
        &mut out,
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(report.passed(), "{report:?}\n{text}");
    assert_eq!(report.pages_verified, 8 * (4096 + 1));
    assert!(text.contains("(MmioMegabytes 1, optional 0)"), "{text}");
    assert!(text.contains("BAR2 sized 33554432 KiB"), "{text}");
}

#[test]
fn with_the_fast_path_not_in_effect_every_access_is_served_by_the_fallback() {
    let (report, text) = demo(vec![8192, 4096], true);
    assert!(report.passed(), "{report:?}\n{text}");
    assert_eq!(report.section_bytes, 0);
    assert!(report.intercepted_accesses > 0);
    assert!(text.contains("InterceptFallback"), "{text}");
}

#[test]
fn the_report_line_is_the_documented_one() {
    let (report, text) = demo(vec![4096], false);
    assert_eq!(
        report.to_string(),
        "demo: verified 1 pages, 0 mismatches, 0 leaked objects"
    );
    assert!(text.contains("guest: VMBus offer received (MmioMegabytes 1, optional 0)"));
}

#[test]
fn the_demo_command_exits_zero_and_ends_with_the_report_line() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hvsim"))
        .arg("demo")
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{stdout}");
    let last = stdout.lines().last().unwrap();
    assert!(
        last.starts_with("demo: verified ") && last.ends_with(", 0 mismatches, 0 leaked objects"),
        "{last}"
    );
}

#[test]
fn the_demo_command_rejects_bad_arguments_clearly() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hvsim"))
        .args(["demo", "--region", "twelve"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("\"twelve\" is not a size"), "{stderr}");
}

#[test]
fn on_the_observed_nested_build_neither_path_works_and_the_demo_says_so() {
    // hdv.md §3.3: the mapping had no effect and BAR accesses never reached the emulator.
    let mut out = Vec::new();
    let report = run(
        &DemoOptions {
            region_sizes: vec![8192],
            mapping_has_no_effect: true,
            bar_accesses_not_forwarded: true,
            ..DemoOptions::default()
        },
        &mut out,
    )
    .unwrap();
    assert!(!report.passed());
    assert_eq!(report.mismatches, 4, "2 pages, both directions");
    assert_eq!(report.leaked_objects, 0, "teardown is still complete");
    assert_eq!(report.intercepted_accesses, 0);
}
