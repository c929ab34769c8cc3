//! Helpers shared by the binary's end-to-end tests.
use std::process::{Command, Output};

/// Runs the `attune` binary built for this test run.
pub fn attune(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_attune"))
        .args(args)
        .output()
        .expect("run attune")
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
