//! Running the `dmsrec` binary from integration tests.
#![allow(dead_code)] // each test file uses its own subset

use std::path::Path;
use std::process::{Command, Output};

pub fn dmsrec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dmsrec")).args(args).output().expect("run dmsrec")
}

/// Runs `dmsrec` and returns its stdout; fails the test with both streams if it fails.
pub fn ok(args: &[&str]) -> String {
    let out = dmsrec(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "dmsrec {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

pub fn p(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}
