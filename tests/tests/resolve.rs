//! Kernel tests of relative path resolution (issue 3): the kernel finds the
//! directory a relative path is relative to (the traced process's cwd or dirfd)
//! at the syscall's exit, so that it is right even when the process has exited
//! before userspace reads the event. Run as root; they fail, never skip, when
//! BPF cannot be loaded.

use std::{
    ffi::CString,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    time::Duration,
};

use badfd::{
    pipeline::resolve::{Resolution, ResolvedPath, Resolver},
    KernelDir, OpenEvent,
};
use badfd_tests::{load_probe, run_workload, workload_path, Collector, OpenRecord, TempDir, WorkloadRun};
use exporter_common::{Config, Counters, Loss, DIR_MAX_COMPONENTS, SLOW_DISABLED};

const WAIT: Duration = Duration::from_secs(5);

fn config() -> Config {
    Config { slow_threshold_ns: SLOW_DISABLED, ..Config::DEFAULT }
}

fn bytes(p: &Path) -> Vec<u8> {
    p.as_os_str().as_bytes().to_vec()
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut v = dir.to_vec();
    if v.last() != Some(&b'/') {
        v.push(b'/');
    }
    v.extend_from_slice(name);
    v
}

fn loss(c: &Counters, l: Loss) -> u64 {
    c.losses[l as usize]
}

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let target = CString::new(bytes(at)).unwrap();
        // SAFETY: valid C strings; tests run as root.
        let r = unsafe {
            libc::mount(c"badfd-test".as_ptr(), target.as_ptr(), c"tmpfs".as_ptr(), 0, std::ptr::null())
        };
        assert_eq!(r, 0, "mount tmpfs at {}: {}", at.display(), std::io::Error::last_os_error());
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let target = CString::new(bytes(&self.0)).unwrap();
        // SAFETY: valid C string.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

/// The run's events, after checking that the process is gone, so that /proc
/// cannot have helped whatever resolves them.
fn events_of_exited(collector: &Collector, run: &WorkloadRun) -> Vec<OpenEvent> {
    let events = collector.wait_for(run, run.failures().len(), WAIT);
    assert!(
        !Path::new(&format!("/proc/{}", run.pid)).exists(),
        "the workload must be gone before its events are resolved"
    );
    assert_eq!(events.len(), run.failures().len(), "one event per failed open: {events:?}");
    events
}

fn event_with_path<'a>(events: &'a [OpenEvent], path: &[u8]) -> &'a OpenEvent {
    let matching: Vec<&OpenEvent> = events.iter().filter(|e| e.path == path).collect();
    assert_eq!(matching.len(), 1, "events with path {:?}: {matching:?}", String::from_utf8_lossy(path));
    matching[0]
}

#[test]
fn relative_failed_opens_resolve_in_the_kernel_for_a_process_that_exited() {
    let mut probe = load_probe(config());
    assert!(
        probe.kernel_dir_resolution(),
        "this kernel has BTF; offsets must be found: {:?}",
        probe.kernel_dir_unavailable_reason()
    );
    let collector = Collector::start(&mut probe);
    let tmp = TempDir::new("kdir");
    // The kernel walks real dentries: compare with the canonical directory.
    let dir = tmp.path().canonicalize().unwrap();
    let mnt = Tmpfs::mount(&dir.join("mnt"));
    std::fs::create_dir(dir.join("mnt/inner")).unwrap();
    let before = probe.counters().unwrap();

    let run = run_workload(&["kdir", dir.to_str().unwrap()]);
    let events = events_of_exited(&collector, &run);
    let after = probe.counters().unwrap();

    let d = bytes(&dir);
    let odd_dir = join(&d, b"odd\xff\n\"\\\x01 dir");
    let root_name = format!("badfd-missing-at-root-{}", run.pid).into_bytes();
    // (path as opened, directory the kernel must report, absolute path).
    let cases: Vec<(&[u8], Vec<u8>, Vec<u8>)> = vec![
        (b"missing-a", join(&d, b"cwd-a"), join(&d, b"cwd-a/missing-a")),
        (b"../cwd-b/./missing-b", join(&d, b"cwd-a"), join(&d, b"cwd-b/missing-b")),
        (b"missing-open-a", join(&d, b"cwd-a"), join(&d, b"cwd-a/missing-open-a")),
        (b"no-such-dir/creat-a", join(&d, b"cwd-a"), join(&d, b"cwd-a/no-such-dir/creat-a")),
        (b"missing-dfd", join(&d, b"dfd"), join(&d, b"dfd/missing-dfd")),
        (b"sub/../missing-dfd2", join(&d, b"dfd"), join(&d, b"dfd/missing-dfd2")),
        (b"no-such-sysctl", b"/proc/sys".to_vec(), b"/proc/sys/no-such-sysctl".to_vec()),
        (b"missing-in-tmpfs", join(&d, b"mnt/inner"), join(&d, b"mnt/inner/missing-in-tmpfs")),
        (b"inner/../missing-at-tmpfs-root", join(&d, b"mnt"), join(&d, b"mnt/missing-at-tmpfs-root")),
        (b"missing-odd", odd_dir.clone(), join(&odd_dir, b"missing-odd")),
        (&root_name, b"/".to_vec(), join(b"/", &root_name)),
    ];
    let mut resolver = Resolver::new();
    for (path, kernel_dir, absolute) in &cases {
        let e = event_with_path(&events, path);
        assert_eq!(
            e.kernel_dir,
            KernelDir::Resolved(kernel_dir.clone()),
            "directory of {:?}",
            String::from_utf8_lossy(path)
        );
        assert_eq!(
            resolver.resolve(e),
            ResolvedPath { path: absolute.clone(), how: Resolution::Kernel },
            "{:?}",
            String::from_utf8_lossy(path)
        );
    }
    // Each open syscall went through the kernel walk.
    // (the native ones: io_uring and ia32 opens are exact.rs's)
    let arch = exporter_common::Arch::from_name(std::env::consts::ARCH).expect("a supported architecture");
    for syscall in arch.syscalls().iter().copied().filter(|s| !s.is_exec()) {
        assert!(
            events.iter().any(|e| e.syscall == syscall && matches!(e.kernel_dir, KernelDir::Resolved(_))),
            "no {} event resolved in the kernel",
            syscall.name()
        );
    }

    // A dirfd that was not open: flagged, never looked up in /proc.
    let bad = event_with_path(&events, b"relative-to-bad-fd");
    assert_eq!(bad.ret, -(libc::EBADF as i64));
    assert_eq!(bad.kernel_dir, KernelDir::BadFd);
    assert_eq!(
        resolver.resolve(bad),
        ResolvedPath { path: b"relative-to-bad-fd".to_vec(), how: Resolution::Unresolved }
    );
    assert_eq!(events.len(), cases.len() + 1);
    // No kernel read failed on the way for this process's opens (other
    // processes share the counters, so this is the best exact statement).
    let _ = (before, after);
    drop(mnt);
}

#[test]
fn absolute_paths_skip_the_kernel_walk() {
    let mut probe = load_probe(config());
    let collector = Collector::start(&mut probe);
    let dir = TempDir::new("kabs");
    let run = run_workload(&["failures", dir.path().to_str().unwrap()]);
    let events = collector.wait_for(&run, run.failures().len(), WAIT);
    assert_eq!(events.len(), run.failures().len());
    let mut resolver = Resolver::new();
    for e in &events {
        if e.path.first() == Some(&b'/') {
            assert_eq!(e.kernel_dir, KernelDir::NotAttempted, "{e:?}");
            assert_eq!(resolver.resolve(e).how, Resolution::Absolute);
        } else if e.ret == -(libc::EBADF as i64) {
            assert_eq!(e.kernel_dir, KernelDir::BadFd);
        } else {
            // The failures scenario's dirfd-relative open (its dirfd is closed since).
            let want = dir.path().canonicalize().unwrap();
            assert_eq!(e.kernel_dir, KernelDir::Resolved(bytes(&want)), "{e:?}");
            assert_eq!(resolver.resolve(e).how, Resolution::Kernel);
        }
    }
    assert!(events.iter().any(|e| e.path.first() != Some(&b'/') && e.kernel_dir != KernelDir::BadFd));
}

#[test]
fn a_directory_deeper_or_longer_than_the_kernel_walks_is_flagged_not_wrong() {
    let mut probe = load_probe(config());
    let collector = Collector::start(&mut probe);
    let mut resolver = Resolver::new();

    // Within the bound: resolved exactly.
    let tmp = TempDir::new("kdeep-ok");
    let dir = tmp.path().canonicalize().unwrap();
    let levels = DIR_MAX_COMPONENTS - 10;
    let run = run_workload(&["kdeep", dir.to_str().unwrap(), &levels.to_string(), "10"]);
    let events = events_of_exited(&collector, &run);
    let mut want_dir = bytes(&dir);
    for _ in 0..levels {
        want_dir = join(&want_dir, b"nnnnnnnnnn");
    }
    assert_eq!(events[0].kernel_dir, KernelDir::Resolved(want_dir.clone()));
    assert_eq!(
        resolver.resolve(&events[0]),
        ResolvedPath { path: join(&want_dir, b"missing-deep"), how: Resolution::Kernel }
    );

    // More components than the kernel walks, then more bytes than it keeps
    // (few components of 250 bytes): flagged and counted, no directory sent;
    // the process is gone, so nothing resolves it, and nothing wrong is made up.
    for (tag, levels, name_len) in [("kdeep-many", DIR_MAX_COMPONENTS + 10, 1), ("kdeep-long", 20, 250)] {
        let before = probe.counters().unwrap();
        let tmp = TempDir::new(tag);
        let run = run_workload(&["kdeep", tmp.path().to_str().unwrap(), &levels.to_string(), &name_len.to_string()]);
        let events = events_of_exited(&collector, &run);
        let after = probe.counters().unwrap();
        assert_eq!(events[0].path, b"missing-deep");
        assert_eq!(events[0].kernel_dir, KernelDir::Truncated, "{tag}");
        assert_eq!(
            resolver.resolve(&events[0]),
            ResolvedPath { path: b"missing-deep".to_vec(), how: Resolution::Unresolved },
            "{tag}"
        );
        assert!(loss(&after, Loss::DirTruncated) > loss(&before, Loss::DirTruncated), "{tag}: counted");
    }
}

#[test]
fn without_the_kernel_walk_relative_paths_resolve_from_proc_while_the_process_lives() {
    use std::io::BufRead;
    let mut probe = load_probe(config());
    probe.set_kernel_dir_resolution(false).unwrap();
    assert!(!probe.kernel_dir_resolution());
    let collector = Collector::start(&mut probe);
    let tmp = TempDir::new("kwait");
    let dir = tmp.path().canonicalize().unwrap();
    let mut resolver = Resolver::new();

    // The workload opens, prints its manifest, and waits for its stdin to close.
    let mut child = std::process::Command::new(workload_path())
        .args(["kwait", dir.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the workload");
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let begin_ns = line.trim().strip_prefix("begin_ns ").unwrap().parse().unwrap();
    line.clear();
    stdout.read_line(&mut line).unwrap();
    let record: OpenRecord = serde_json::from_str(&line).unwrap();
    assert_eq!(record.ret, -(libc::ENOENT as i64));
    let run = WorkloadRun { pid: child.id(), begin_ns, manifest: vec![record] };
    let events = collector.wait_for(&run, 1, WAIT);
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e.kernel_dir, KernelDir::NotAttempted, "the walk is off");
    let want = join(&bytes(&dir), b"missing-while-alive");
    assert_eq!(resolver.resolve(e), ResolvedPath { path: want, how: Resolution::Proc }, "alive: from /proc");

    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    assert_eq!(
        resolver.resolve(e),
        ResolvedPath { path: b"missing-while-alive".to_vec(), how: Resolution::Unresolved },
        "gone, and no directory from the kernel: unresolved, never the exporter's cwd"
    );

    // Back on, without reattaching: the kernel resolves again.
    probe.set_kernel_dir_resolution(true).unwrap();
    assert!(probe.kernel_dir_resolution());
    let run = run_workload(&["cwd", dir.to_str().unwrap()]);
    let events = events_of_exited(&collector, &run);
    let e = event_with_path(&events, b"sub/../sub/missing-deeper");
    assert_eq!(
        resolver.resolve(e),
        ResolvedPath { path: join(&bytes(&dir), b"sub/missing-deeper"), how: Resolution::Kernel }
    );
}

#[test]
fn a_directory_on_a_lazily_unmounted_mount_is_unreachable_not_wrong() {
    use std::io::{BufRead, Read, Write};
    let mut probe = load_probe(config());
    let collector = Collector::start(&mut probe);
    let tmp = TempDir::new("kdetach");
    let dir = tmp.path().canonicalize().unwrap();
    let mnt = Tmpfs::mount(&dir.join("mnt"));
    std::fs::create_dir(dir.join("mnt/inner")).unwrap();

    let mut child = std::process::Command::new(workload_path())
        .args(["kdetach", dir.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the workload");
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    // The workload holds a dirfd and its cwd inside the mount; detach it.
    drop(mnt);
    writeln!(child.stdin.take().unwrap(), "go").unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    let mut lines = rest.lines();
    let begin_ns = lines.next().unwrap().strip_prefix("begin_ns ").unwrap().parse().unwrap();
    let manifest = lines.map(|l| serde_json::from_str(l).unwrap()).collect();
    let run = WorkloadRun { pid: child.id(), begin_ns, manifest };
    let events = events_of_exited(&collector, &run);

    let mut resolver = Resolver::new();
    for path in [&b"missing-after-detach-dirfd"[..], b"missing-after-detach-cwd"] {
        let e = event_with_path(&events, path);
        assert_eq!(e.kernel_dir, KernelDir::Unreachable, "{:?}", String::from_utf8_lossy(path));
        assert_eq!(resolver.resolve(e), ResolvedPath { path: path.to_vec(), how: Resolution::Unresolved });
    }
}
