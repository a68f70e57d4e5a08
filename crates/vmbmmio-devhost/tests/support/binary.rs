//! Runs the built `vmbmmio-devhost` binary: the command-line tests' one way to call it.
//! Include with `#[path = "support/binary.rs"] mod binary;`.

use std::process::Command;

/// Runs the binary with `args`: its exit code (none if a signal ended it), stdout, stderr.
pub fn devhost(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_vmbmmio-devhost"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}
