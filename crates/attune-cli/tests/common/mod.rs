//! Helpers shared by the binary's end-to-end tests.
// Each test binary compiles this module and uses only some of its helpers.
#![allow(dead_code)]
use std::io::Write;
use std::process::{Command, Output, Stdio};

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

/// Runs `attune` with `input` on its standard input.
pub fn attune_with_stdin(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_attune"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run attune");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait for attune")
}
