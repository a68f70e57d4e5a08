//! Checks on the workspace itself that a Linux build depends on.

use std::process::Command;

const WDK_CRATES: [&str; 6] = [
    "wdk",
    "wdk-sys",
    "wdk-build",
    "wdk-alloc",
    "wdk-panic",
    "wdk-macros",
];

/// The `wdk*` crates in the resolved dependency graph of a build for `platform`.
fn resolved_wdk_crates(platform: &str) -> Vec<&'static str> {
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--filter-platform",
            platform,
        ])
        .args([
            "--manifest-path",
            concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
        ])
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata = String::from_utf8(output.stdout).expect("metadata is UTF-8");
    let (_, resolve) = metadata
        .split_once("\"resolve\":")
        .expect("metadata has a resolve section");
    // Registry package ids look like `registry+https://...crates.io-index#wdk-sys@0.5.2`.
    WDK_CRATES
        .into_iter()
        .filter(|name| resolve.contains(&format!("#{name}@")))
        .collect()
}

/// A Linux build must never resolve a `wdk*` crate: wdk-build refuses to compile off Windows.
#[test]
fn linux_build_resolves_no_wdk_crate() {
    assert_eq!(
        resolved_wdk_crates("x86_64-unknown-linux-gnu"),
        Vec::<&str>::new()
    );
}

/// The same query for the Windows target finds them all, so the check above can fail.
#[test]
fn windows_build_resolves_the_wdk_crates() {
    assert_eq!(
        resolved_wdk_crates("x86_64-pc-windows-msvc"),
        WDK_CRATES.to_vec()
    );
}
