//! `badfd trace` argument errors: one clear line, before anything is loaded.
//! (Having an integration test here also makes `cargo test` build the `badfd`
//! binary that tests/tests/trace.rs runs.)

use std::process::Command;

fn badfd(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_badfd")).args(args).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn bad_arguments_get_one_clear_error() {
    let (code, err) = badfd(&["trace", "--slow", "10"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("`10` has no unit: write e.g. 10ms (or use --ms 10)"), "{err}");

    let (code, err) = badfd(&["trace", "--errno", "ENOPE"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("`ENOPE` is not an errno name"), "{err}");

    let (code, err) = badfd(&["trace", "--ms", "5", "--slow", "5ms"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("cannot be used with"), "{err}");

    let (code, err) = badfd(&["trace", "--uid", "no-such-user-here"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no user named `no-such-user-here`"), "{err}");
}

#[test]
fn help_names_the_command_form() {
    let out = Command::new(env!("CARGO_BIN_EXE_badfd")).args(["trace", "--help"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success());
    assert!(help.contains("Usage: badfd trace [OPTIONS] [-- <COMMAND>...]"), "{help}");
    assert!(help.contains("exit status"), "{help}");
}
