//! Hostile load at the exporter (issue "Hostile load", items 3 and 5), with
//! `badfd serve` as users run it: a storm of new cgroups (each one a
//! container lookup, which walks the cgroup hierarchy) must not delay another
//! process's events, and a reload, whatever its outcome, must never stream
//! what neither the old nor the new cgroup filter streams. The floods at the
//! kernel's door are in hostile.rs; these are a test binary of their own
//! because the storm's attacker forks this process thousands of times, and
//! a fork of a process that has just collected a flood's million events
//! costs several times more (here: a few hundred cgroups in 10 s instead of
//! over 6000).
//! Run as root; they fail, never skip, when BPF cannot be loaded.

use std::{
    ffi::CString,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use badfd::pipeline::labels::path_prefix::path_prefix;
use badfd_tests::{Scrape, Serve, TempDir, TestCgroup};
use exporter_common::CGROUP_FILTER_CAPACITY;

/// The tests take turns: the storm's delays must be its own, and a reload
/// test's spinning process would skew them.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A forked child of this test that moves itself into a cgroup, names itself
/// (its `comm`, the label the tests count by) and makes failing opens.
/// Between fork and exit it makes only async-signal-safe syscalls on what the
/// parent prepared, as a child of a threaded process must.
struct Opener {
    pid: libc::pid_t,
    /// Each byte written makes the child fail one open; closing it ends it.
    trigger: Option<std::fs::File>,
}

/// How an [`Opener`] opens.
enum Opens {
    /// `n` failing opens, then exit.
    Count(u32),
    /// One failing open per byte written to `trigger`, until it is closed.
    Triggered,
    /// Failing opens as fast as it can, until killed.
    Spin,
}

impl Opener {
    fn start(cgroup: &Path, comm: &str, missing: &Path, opens: Opens) -> Opener {
        assert!(comm.len() <= 15, "{comm}: comm holds 15 bytes");
        let procs = std::fs::File::options()
            .write(true)
            .open(cgroup.join("cgroup.procs"))
            .unwrap_or_else(|e| panic!("open {}/cgroup.procs: {e}", cgroup.display()));
        let comm = CString::new(comm).unwrap();
        let missing = CString::new(missing.as_os_str().as_encoded_bytes()).unwrap();
        let mut fds = [0; 2];
        // SAFETY: a plain pipe(2) into a local array.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: the child makes only async-signal-safe syscalls on values
        // made before the fork, and leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            unsafe {
                libc::close(fds[1]);
                if libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                    libc::_exit(2);
                }
                libc::prctl(libc::PR_SET_NAME, comm.as_ptr());
                let fail = || {
                    let fd = libc::open(missing.as_ptr(), libc::O_RDONLY);
                    if fd >= 0 {
                        libc::_exit(3);
                    }
                };
                match opens {
                    Opens::Count(n) => (0..n).for_each(|_| fail()),
                    Opens::Triggered => {
                        let mut byte = 0u8;
                        while libc::read(fds[0], (&mut byte as *mut u8).cast(), 1) == 1 {
                            fail();
                        }
                    }
                    Opens::Spin => loop {
                        fail();
                    },
                }
                libc::_exit(0);
            }
        }
        // SAFETY: our own pipe's ends.
        unsafe { libc::close(fds[0]) };
        let trigger = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[1]) };
        Opener { pid, trigger: Some(trigger) }
    }

    /// One failing open of a `Triggered` child.
    fn open_once(&mut self) {
        use std::io::Write;
        self.trigger.as_mut().expect("running").write_all(b"x").expect("trigger the opener");
    }

    /// Waits for it to exit (a `Spin` child is killed first); panics unless it succeeded.
    fn finish(mut self) {
        self.trigger.take();
        let mut status = 0;
        // SAFETY: our own child.
        unsafe { libc::waitpid(self.pid, &mut status, 0) };
        self.pid = 0;
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "opener exited with {status:#x}");
    }

    fn kill(mut self) {
        // SAFETY: our own child, reaped here.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
        self.pid = 0;
    }
}

impl Drop for Opener {
    fn drop(&mut self) {
        if self.pid > 0 {
            // SAFETY: our own child (a test that failed midway).
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

/// `clone3`'s arguments up to `cgroup` (`CLONE_ARGS_SIZE_VER2`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// A child born in the cgroup `dir` (`clone3` with `CLONE_INTO_CGROUP`, as
/// systemd and container runtimes start theirs: no migration, which costs an
/// RCU grace period per process) fails `n` opens of `missing` and exits;
/// waited for.
fn fail_in_new_cgroup(dir: &Path, missing: &CString, n: u32) {
    let cgroup = std::fs::File::open(dir).unwrap_or_else(|e| panic!("open {}: {e}", dir.display()));
    let args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 without a stack forks; the child makes only raw syscalls
    // on values made before and leaves with _exit.
    let pid = unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>()) };
    assert!(pid >= 0, "clone3 into {}: {}", dir.display(), std::io::Error::last_os_error());
    if pid == 0 {
        unsafe {
            for _ in 0..n {
                if libc::open(missing.as_ptr(), libc::O_RDONLY) >= 0 {
                    libc::_exit(3);
                }
            }
            libc::_exit(0);
        }
    }
    let mut status = 0;
    // SAFETY: our own child.
    unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "attacker child exited with {status:#x}");
}

/// Failures of `comm` the exporter has counted (every label set).
fn failures_of(scrape: &Scrape, comm: &str) -> f64 {
    scrape.sum("badfd_anomaly_failures_total", &[("comm", comm)])
}

/// Scrapes until `comm` has at least `n` failures counted, or `limit` passes;
/// the last count and the time it took.
fn wait_for_failures(serve: &Serve, comm: &str, n: f64, limit: Duration) -> (f64, Duration) {
    let start = Instant::now();
    loop {
        let seen = failures_of(&serve.scrape(), comm);
        if seen >= n || start.elapsed() > limit {
            return (seen, start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A subtree of new cgroups, all removed (deepest first) on drop.
struct CgroupTree {
    base: TestCgroup,
    children: Vec<PathBuf>,
}

impl CgroupTree {
    fn new(name: &str) -> CgroupTree {
        CgroupTree { base: TestCgroup::new(name), children: Vec::new() }
    }

    fn add(&mut self) -> PathBuf {
        let dir = self.base.0.join(format!("c{}", self.children.len()));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        self.children.push(dir.clone());
        dir
    }
}

impl Drop for CgroupTree {
    fn drop(&mut self) {
        for dir in self.children.iter().rev() {
            if let Err(e) = std::fs::remove_dir(dir) {
                eprintln!("could not remove test cgroup {}: {e}", dir.display());
            }
        }
    }
}

/// Storm length, and how long the victim's failure may take to be counted
/// (the bound).
const STORM: Duration = Duration::from_secs(10);
const DELAY_BOUND: Duration = Duration::from_secs(1);

/// An attacker makes thousands of new cgroups (a subtree of its own, as a
/// user with a delegated systemd subtree can), a child process in each
/// making failing opens, for 10 s: each new cgroup is a container lookup that
/// walks a hierarchy growing by the thousand. Meanwhile a victim in a cgroup
/// of its own fails one open at a time: each must be counted in /metrics
/// within a second (the lookups run off the event thread), every one of them,
/// and the lookups the queue had no room for are counted as dropped.
#[test]
fn a_storm_of_new_cgroups_cannot_delay_another_process() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let victim_cgroup = TestCgroup::new("storm-victim");
    let mut storm = CgroupTree::new("storm");
    let tmp = TempDir::lettered("storm");
    // Watching the two subtrees: other tests' floods on this machine stay out.
    let serve = Serve::start(&[
        "--metrics.container-labels",
        "--found-later.window",
        "0",
        "--metrics.max-label-sets",
        "1000000",
        "--filter.cgroup",
        storm.base.0.to_str().unwrap(),
        "--filter.cgroup",
        victim_cgroup.0.to_str().unwrap(),
    ]);
    let victim_comm = format!("bv-{}", std::process::id());
    let mut victim = Opener::start(&victim_cgroup.0, &victim_comm, &tmp.path().join("victim-missing"), Opens::Triggered);

    let done = Arc::new(AtomicBool::new(false));
    let attacker = {
        let done = done.clone();
        let missing = CString::new(tmp.path().join("attacker-missing").as_os_str().as_encoded_bytes()).unwrap();
        std::thread::Builder::new()
            .name("badfd-attacker".into())
            .spawn(move || {
                let start = Instant::now();
                while start.elapsed() < STORM && storm.children.len() < 20_000 {
                    let cgroup = storm.add();
                    fail_in_new_cgroup(&cgroup, &missing, 3);
                }
                done.store(true, Ordering::Release);
                storm
            })
            .unwrap()
    };

    let mut delays = Vec::new();
    while !done.load(Ordering::Acquire) {
        victim.open_once();
        let want = delays.len() as f64 + 1.0;
        let (seen, delay) = wait_for_failures(&serve, &victim_comm, want, Duration::from_secs(10));
        assert_eq!(seen, want, "victim failure {want} never counted");
        delays.push(delay);
        std::thread::sleep(Duration::from_millis(100));
    }
    let storm = attacker.join().expect("the attacker");
    victim.finish();
    let scrape = serve.scrape();
    let dropped = scrape.one("badfd_container_lookups_dropped_total", &[]);
    let lookups = scrape.one("badfd_container_lookups_total", &[]);
    let max = delays.iter().max().copied().unwrap_or_default();
    eprintln!(
        "cgroup storm: {} new cgroups in {STORM:?}; {} container lookups done, {dropped} dropped; victim: {} failures, \
         each counted in /metrics within {max:?} at most (median {:?})",
        storm.children.len(),
        lookups,
        delays.len(),
        { let mut d = delays.clone(); d.sort(); d[d.len() / 2] }
    );
    assert!(storm.children.len() >= 1000, "the storm made only {} cgroups", storm.children.len());
    assert!(delays.len() >= 20, "the victim failed only {} opens", delays.len());
    assert_eq!(failures_of(&scrape, &victim_comm), delays.len() as f64, "every victim failure counted, once");
    assert!(max < DELAY_BOUND, "a victim failure took {max:?} to be counted (bound {DELAY_BOUND:?})");
    assert!(dropped > 0.0, "{} new cgroups, and no lookup dropped: the queue never filled", storm.children.len());
    drop(storm);
    drop(serve);
}

/// Writes `body` as the config file and reloads; panics unless the reload's
/// outcome (`success` or `failure`) is counted.
fn reload(serve: &Serve, file: &Path, body: &str, outcome: &str) {
    let before = serve.scrape().sum("badfd_config_reloads_total", &[("result", outcome)]);
    std::fs::write(file, body).unwrap();
    serve.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while serve.scrape().sum("badfd_config_reloads_total", &[("result", outcome)]) < before + 1.0 {
        assert!(Instant::now() < deadline, "no {outcome} of the reload counted: {}", serve.log());
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Counts `comm`'s failures after a barrier: a `barrier_comm` child in a
/// streamed cgroup fails `n` opens after everything before has been made; once
/// they are counted, every earlier streamed event has been too (the pipeline
/// takes the ring in order).
fn after_barrier(serve: &Serve, barrier: &Path, barrier_comm: &str, missing: &Path, comm: &str) -> f64 {
    let before = failures_of(&serve.scrape(), barrier_comm);
    Opener::start(barrier, barrier_comm, missing, Opens::Count(3)).finish();
    let (seen, _) = wait_for_failures(serve, barrier_comm, before + 3.0, Duration::from_secs(10));
    assert_eq!(seen, before + 3.0, "the barrier's failures are streamed");
    failures_of(&serve.scrape(), comm)
}

/// A reload that cannot be applied (here: more cgroups than the kernel's
/// filter holds, one of them a cgroup not watched now, with a new depth too)
/// changes nothing: the unlisted cgroup is still not streamed, the watched
/// one still is, with the path-prefix depth as before. (Applied in the order
/// the list is given, the old reload watched the new cgroup before it failed.)
#[test]
fn a_failed_reload_keeps_the_running_filter_and_settings() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let watched = TestCgroup::new("reload-watched");
    let other = TestCgroup::new("reload-other");
    let mut many = CgroupTree::new("reload-many");
    for _ in 0..CGROUP_FILTER_CAPACITY {
        many.add();
    }
    let tmp = TempDir::lettered("reload-fail");
    let file = tmp.path().join("badfd.toml");
    let running = format!("filter_cgroup = [{:?}]\nfound_later_window = \"0\"\nmax_label_sets = 1000000\n", watched.0);
    std::fs::write(&file, &running).unwrap();
    let serve = Serve::start(&["--config.file", file.to_str().unwrap()]);
    let missing = tmp.path().join("missing");
    let (watched_comm, other_comm) = (format!("bw-{}", std::process::id()), format!("bo-{}", std::process::id()));

    Opener::start(&other.0, &other_comm, &missing, Opens::Count(5)).finish();
    assert_eq!(after_barrier(&serve, &watched.0, &watched_comm, &missing, &other_comm), 0.0, "the other cgroup is not watched");

    let mut list: Vec<String> = vec![format!("{:?}", other.0)];
    list.extend(many.children.iter().map(|d| format!("{d:?}")));
    assert_eq!(list.len(), CGROUP_FILTER_CAPACITY as usize + 1);
    let failing = format!("filter_cgroup = [{}]\nfound_later_window = \"0\"\nmax_label_sets = 1000000\npath_prefix_depth = 1\n", list.join(", "));
    reload(&serve, &file, &failing, "failure");
    assert!(serve.log().contains("at most 4096"), "the reason is logged: {}", serve.log());

    Opener::start(&other.0, &other_comm, &missing, Opens::Count(5)).finish();
    assert_eq!(after_barrier(&serve, &watched.0, &watched_comm, &missing, &other_comm), 0.0, "still not watched after the failed reload");
    // The depth is still 3: the watched cgroup's failures keep their full prefix.
    let prefixes: Vec<String> = serve
        .scrape()
        .matching("badfd_anomaly_failures_total", &[("comm", &watched_comm)])
        .map(|s| s.labels["path_prefix"].clone())
        .collect();
    let expected = path_prefix(missing.as_os_str().as_encoded_bytes(), 3);
    assert_ne!(expected, path_prefix(missing.as_os_str().as_encoded_bytes(), 1), "the depths tell apart");
    assert!(!prefixes.is_empty() && prefixes.iter().all(|p| *p == expected), "depth kept: {prefixes:?}, want {expected}");

    // The same reload, applicable (the list the map holds): the other cgroup is
    // watched now. Without this, the checks above could not tell.
    let fits = format!("filter_cgroup = [{:?}, {:?}]\nfound_later_window = \"0\"\nmax_label_sets = 1000000\n", watched.0, other.0);
    reload(&serve, &file, &fits, "success");
    Opener::start(&other.0, &other_comm, &missing, Opens::Count(5)).finish();
    assert_eq!(after_barrier(&serve, &watched.0, &watched_comm, &missing, &other_comm), 5.0, "watched after a good reload");
    drop(serve);
}

/// Many reloads switching between watching cgroup A and ignoring cgroup B
/// while a process in B fails opens as fast as it can: neither setting
/// streams B, so no moment of a switch may (written the wrong way round, the
/// map holds B's id while the kernel still watches, or A's while it still
/// ignores). A last reload watching B shows that B's failures are seen when
/// streamed.
#[test]
fn switching_watch_and_ignore_never_streams_the_ignored_cgroup() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let a = TestCgroup::new("switch-a");
    let b = TestCgroup::new("switch-b");
    let tmp = TempDir::lettered("reload-switch");
    let file = tmp.path().join("badfd.toml");
    let common = "found_later_window = \"0\"\nmax_label_sets = 1000000\n";
    let watch_a = format!("filter_cgroup = [{:?}]\n{common}", a.0);
    let ignore_b = format!("filter_cgroup_ignore = [{:?}]\n{common}", b.0);
    std::fs::write(&file, &watch_a).unwrap();
    let serve = Serve::start(&["--config.file", file.to_str().unwrap()]);
    let missing = tmp.path().join("missing");
    let (a_comm, b_comm) = (format!("ba-{}", std::process::id()), format!("bb-{}", std::process::id()));

    let spinner = Opener::start(&b.0, &b_comm, &missing, Opens::Spin);
    const SWITCHES: usize = 100;
    for i in 0..SWITCHES {
        reload(&serve, &file, if i % 2 == 0 { &ignore_b } else { &watch_a }, "success");
    }
    spinner.kill();
    let seen = after_barrier(&serve, &a.0, &a_comm, &missing, &b_comm);
    eprintln!("{SWITCHES} watch/ignore switches with a process in the ignored cgroup failing opens: {seen} of its failures streamed");
    assert_eq!(seen, 0.0, "the ignored cgroup was streamed during a switch");

    reload(&serve, &file, &format!("filter_cgroup = [{:?}, {:?}]\n{common}", a.0, b.0), "success");
    Opener::start(&b.0, &b_comm, &missing, Opens::Count(5)).finish();
    assert_eq!(after_barrier(&serve, &a.0, &a_comm, &missing, &b_comm), 5.0, "B's failures are seen once B is watched");
    drop(serve);
}
