//! Kernel tests of failed execs: counted and streamed as failures under
//! their own syscall, and a search of `PATH` (execvp) found later by the exec
//! that succeeds. The stream is filtered to the test's child; the kernel's
//! counters are checked on the execve row's EACCES, which nothing else on a
//! test machine makes. Run as root; they fail, never skip, when BPF cannot be
//! loaded.

use std::{ffi::CString, os::unix::fs::PermissionsExt, path::Path, time::Duration};

use badfd::{probe::FoundLaterTally, OpenEvent, ProbeOptions};
use badfd_tests::{load_probe_with, test_attach_mode, Collector, TempDir};
use exporter_common::{basename_hash, found_errno_slot, Config, Syscall, CONFIG_FOUND_NOTICES, CONFIG_STREAM_EXECS};

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Forks a child that runs `exec` (which must not return on success) and
/// exits 127 if it returns; returns the child's pid and exit status.
fn in_child(exec: impl FnOnce()) -> (u32, i32) {
    // SAFETY: the child only execs or exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        exec();
        // SAFETY: leave the child without running the parent's destructors.
        unsafe { libc::_exit(127) };
    }
    let mut status = 0;
    // SAFETY: our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    (pid as u32, libc::WEXITSTATUS(status))
}

fn execve(path: &Path) {
    let path = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let argv = [path.as_ptr(), std::ptr::null()];
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    // SAFETY: NUL-terminated arrays of C strings.
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
}

/// execvp as a shell's `PATH` search does it: each directory in turn.
fn execvp(name: &str, path_dirs: &str) {
    let name = CString::new(name).unwrap();
    let argv = [name.as_ptr(), std::ptr::null()];
    // SAFETY: setenv in the forked child only; execvp with a valid argv.
    unsafe {
        libc::setenv(c"PATH".as_ptr(), CString::new(path_dirs).unwrap().as_ptr(), 1);
        libc::execvp(name.as_ptr(), argv.as_ptr());
    }
}

fn execve_eacces(probe: &badfd::Probe) -> u64 {
    probe.counters().unwrap().errnos[Syscall::Execve as usize][libc::EACCES as usize]
}

fn check(timing: bool) {
    let config = Config { flags: CONFIG_FOUND_NOTICES | CONFIG_STREAM_EXECS, ..Config::DEFAULT };
    let mut probe = load_probe_with(&ProbeOptions { attach: test_attach_mode(), timing, config, ..ProbeOptions::default() });
    let mut tally = FoundLaterTally::new(&probe.config(), monotonic_ns()).unwrap();
    let collector = Collector::start(&mut probe);
    let dir = TempDir::new("exec");
    // a/ and b/ hold a `prog` that is not executable (EACCES, and execvp goes
    // on), c/ one that is: a shell script that exits 0.
    for sub in ["a", "b", "c"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        std::fs::write(dir.path().join(sub).join("badfd-prog"), b"#!/bin/sh\nexit 0\n").unwrap();
    }
    let mode = |sub: &str, m: u32| std::fs::set_permissions(dir.path().join(sub).join("badfd-prog"), std::fs::Permissions::from_mode(m)).unwrap();
    mode("a", 0o644);
    mode("b", 0o644);
    mode("c", 0o755);
    let eacces_before = execve_eacces(&probe);

    // A missing program: one failure, never found.
    let missing = dir.path().join("missing-badfd-prog");
    let (missing_pid, status) = in_child(|| execve(&missing));
    assert_eq!(status, 127);
    // The search: a/ and b/ fail with EACCES, c/ runs.
    let path_dirs = ["a", "b", "c"].map(|s| dir.path().join(s).display().to_string()).join(":");
    let (search_pid, status) = in_child(|| execvp("badfd-prog", &path_dirs));
    assert_eq!(status, 0, "the search ends in c/badfd-prog, which exits 0");

    std::thread::sleep(Duration::from_millis(300));
    let events_of = |pid: u32| -> Vec<OpenEvent> {
        collector.of_pid(pid).into_iter().filter(|e| e.syscall.is_exec()).collect()
    };
    let missing_events = events_of(missing_pid);
    assert_eq!(missing_events.len(), 1, "{missing_events:#?}");
    let e = &missing_events[0];
    assert_eq!((e.syscall, e.errno(), e.path.as_slice()), (Syscall::Execve, Some(libc::ENOENT), missing.as_os_str().as_encoded_bytes()));

    let search_events = events_of(search_pid);
    let failures: Vec<&OpenEvent> = search_events.iter().filter(|e| e.failed()).collect();
    assert_eq!(failures.len(), 2, "{search_events:#?}");
    for (f, sub) in failures.iter().zip(["a", "b"]) {
        assert_eq!(f.errno(), Some(libc::EACCES));
        assert_eq!(f.path, dir.path().join(sub).join("badfd-prog").as_os_str().as_encoded_bytes());
        assert_eq!(Some(f.name_hash), basename_hash(b"badfd-prog"));
    }
    let notices: Vec<&OpenEvent> = search_events.iter().filter(|e| e.found_notice()).collect();
    assert_eq!(notices.len(), 1, "the exec of c/badfd-prog finds both: {search_events:#?}");
    assert_eq!((notices[0].syscall, notices[0].ret, notices[0].name_hash), (Syscall::Execve, 0, basename_hash(b"badfd-prog").unwrap()));
    assert_eq!(execve_eacces(&probe) - eacces_before, 2, "execve EACCES counted exactly (timing {timing})");

    let end = monotonic_ns() + tally.delay_ns() + 200_000_000;
    while monotonic_ns() < end {
        tally.harvest(&probe.counters().unwrap(), monotonic_ns());
        std::thread::sleep(Duration::from_millis(100));
    }
    tally.harvest(&probe.counters().unwrap(), monotonic_ns());
    let eacces = found_errno_slot(libc::EACCES as u64);
    assert_eq!(tally.totals().found[eacces], 2, "both EACCES of the search found later, nothing else");
}

#[test]
fn failed_execs_are_failures_and_a_path_search_is_found_later() {
    // One after the other: both count execve EACCES.
    check(true);
    check(false);
}
