//! A process that makes known opens through the raw syscalls and prints, one
//! JSON object per line, every open it made (its manifest), so that the kernel
//! tests can compare what badfd saw with what really happened.
//!
//!   workload failures DIR        failures of many errnos, from threads, odd paths
//!   workload fifo DIR DELAY_MS   a slow open (FIFO reader waits for a writer)
//!                                while another thread fails fast
//!   workload fast DIR COUNT      COUNT successful openat+close of one file
//!   workload cwd DIR             relative opens after chdir, then exit at once
//!   workload kdir DIR            relative failed opens against cwds and dirfds on
//!                                several mounts, with `..` and odd bytes; exits at once
//!   workload kdeep DIR N LEN     chdir N levels deep through names of LEN bytes
//!                                (created on the way), one relative failed open
//!   workload kwait DIR           one relative failed open in DIR, then wait for
//!                                stdin to close before exiting (alive meanwhile)
//!   workload kdetach DIR         open DIR/mnt/inner as dirfd and cwd, print
//!                                "ready", wait for a line on stdin (the test
//!                                unmounts DIR/mnt lazily), open relative to both
//!   workload exporter DIR        known failures per errno and directory, relative
//!                                ones (dirfd, chdir) by a process that stays a second
//!   workload flood DIR COUNT     COUNT failed opens of distinct names (not recorded)
//!   workload oddbytes DIR        failed opens of names with invalid UTF-8, newlines,
//!                                quotes, backslashes, control bytes; 4095- and 4096-byte paths
//!   workload uidflood DIR SECS UID THREADS
//!                                as uid UID, THREADS threads fail openat as fast as
//!                                they can for SECS s; prints `failures N`, no manifest
//!   workload uidfail DIR COUNT UID INTERVAL_MS
//!                                as uid UID, COUNT failed openat INTERVAL_MS apart;
//!                                prints `failures N`, no manifest
//!   workload uring DIR N         io_uring (raw syscalls): N IORING_OP_OPENAT and N
//!                                IORING_OP_OPENAT2 of missing files, 2 successful
//!                                OPENAT relative to DIR's fd, 2 OPENAT whose path is
//!                                too long to copy (they fail before they run)
//!   workload rewrite DIR N       failed opens whose path another thread (or the
//!                                process, after an io_uring submission) rewrites
//!                                meanwhile; each recorded with the path its
//!                                errno says the kernel walked
//!   workload signal DIR MODE     a thread blocks opening the FIFO DIR/fifo; prints
//!                                `reader TID`, waits for a line on stdin, then
//!                                MODE eintr: SIGUSR1 to it, handler without
//!                                SA_RESTART (its open returns EINTR); restart: the
//!                                same with SA_RESTART, then a writer 300 ms later
//!                                lets the restarted open finish; kill: waits to
//!                                be killed
//!   workload stale DIR           prints `tid TID`, waits for a line on stdin, then
//!                                fails one openat

use std::{
    ffi::CString,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    sync::Mutex,
    time::Duration,
};

use badfd_tests::OpenRecord;

static MANIFEST: Mutex<Vec<OpenRecord>> = Mutex::new(Vec::new());

fn gettid() -> u32 {
    // SAFETY: no arguments.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

fn record(syscall: &str, dirfd: i32, path: &[u8], flags: u64, mode: u32, ret: i64) -> i64 {
    MANIFEST.lock().unwrap().push(OpenRecord {
        tid: gettid(),
        syscall: syscall.into(),
        dirfd,
        path: path.to_vec(),
        flags,
        mode,
        ret,
    });
    ret
}

fn cstr(path: &[u8]) -> CString {
    CString::new(path).expect("no NUL in test paths")
}

fn ret_of(r: libc::c_long) -> i64 {
    if r < 0 { -(std::io::Error::last_os_error().raw_os_error().unwrap() as i64) } else { r as i64 }
}

fn close(fd: i64) {
    if fd >= 0 {
        // SAFETY: an fd this process opened.
        unsafe { libc::close(fd as i32) };
    }
}

fn openat(dirfd: i32, path: &[u8], flags: i32, mode: u32) -> i64 {
    let c = cstr(path);
    // SAFETY: valid C string; raw syscall so that the syscall is exactly openat.
    let r = unsafe { libc::syscall(libc::SYS_openat, dirfd, c.as_ptr(), flags, mode) };
    record("openat", dirfd, path, flags as u32 as u64, mode, ret_of(r))
}

// open(2) and creat(2) are in x86_64's syscall table only: arm64's (the
// generic one) has just openat and openat2, so the scenarios make them only
// where they exist (and the manifest says which were made).
#[cfg(target_arch = "x86_64")]
fn open(path: &[u8], flags: i32, mode: u32) -> i64 {
    let c = cstr(path);
    // SAFETY: as above.
    let r = unsafe { libc::syscall(libc::SYS_open, c.as_ptr(), flags, mode) };
    record("open", libc::AT_FDCWD, path, flags as u32 as u64, mode, ret_of(r))
}

#[cfg(target_arch = "x86_64")]
fn creat(path: &[u8], mode: u32) -> i64 {
    let c = cstr(path);
    // SAFETY: as above.
    let r = unsafe { libc::syscall(libc::SYS_creat, c.as_ptr(), mode) };
    let flags = (libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC) as u64;
    record("creat", libc::AT_FDCWD, path, flags, mode, ret_of(r))
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

fn openat2(dirfd: i32, path: &[u8], flags: u64, mode: u64) -> i64 {
    let c = cstr(path);
    let how = OpenHow { flags, mode, resolve: 0 };
    // SAFETY: valid pointers and the struct's true size.
    let r = unsafe {
        libc::syscall(libc::SYS_openat2, dirfd, c.as_ptr(), &how as *const OpenHow, std::mem::size_of::<OpenHow>())
    };
    record("openat2", dirfd, path, flags, mode as u32, ret_of(r))
}

fn bytes(p: &Path) -> Vec<u8> {
    p.as_os_str().as_bytes().to_vec()
}

fn join(dir: &Path, name: &[u8]) -> Vec<u8> {
    let mut v = bytes(dir);
    v.push(b'/');
    v.extend_from_slice(name);
    v
}

fn failures(dir: &Path) {
    let exists = join(dir, b"exists");
    close(openat(libc::AT_FDCWD, &exists, libc::O_CREAT | libc::O_WRONLY, 0o644));
    std::os::unix::fs::symlink(dir.join("exists"), dir.join("link")).unwrap();

    for _ in 0..20 {
        close(openat(libc::AT_FDCWD, &exists, libc::O_RDONLY, 0));
    }
    openat(libc::AT_FDCWD, &join(dir, b"missing"), libc::O_RDONLY, 0); // ENOENT
    openat(libc::AT_FDCWD, &join(dir, b"exists/below"), libc::O_RDONLY, 0); // ENOTDIR
    openat(libc::AT_FDCWD, &bytes(dir), libc::O_WRONLY, 0); // EISDIR
    openat(libc::AT_FDCWD, &exists, libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY, 0o600); // EEXIST
    openat(libc::AT_FDCWD, &join(dir, b"link"), libc::O_RDONLY | libc::O_NOFOLLOW, 0); // ELOOP
    let mut too_long = b"/".to_vec();
    too_long.extend(std::iter::repeat_n(b'a', 5000));
    openat(libc::AT_FDCWD, &too_long, libc::O_RDONLY, 0); // ENAMETOOLONG, truncated
    openat(9999, b"relative-to-bad-fd", libc::O_RDONLY, 0); // EBADF
    openat2(libc::AT_FDCWD, &exists, 1 << 40, 0); // EINVAL: unknown flag bits

    // Relative to a real directory fd.
    let dirfd = openat(libc::AT_FDCWD, &bytes(dir), libc::O_RDONLY | libc::O_DIRECTORY, 0);
    openat(dirfd as i32, b"missing-relative", libc::O_RDONLY, 0);
    close(dirfd);

    // A 4000-byte path: components of 199 bytes under DIR, ENOENT.
    let mut long = bytes(dir);
    while long.len() + 200 <= 4000 {
        long.push(b'/');
        long.extend(std::iter::repeat_n(b'd', 199));
    }
    long.push(b'/');
    long.extend(std::iter::repeat_n(b'f', 4000 - long.len()));
    assert_eq!(long.len(), 4000);
    openat(libc::AT_FDCWD, &long, libc::O_RDONLY, 0);

    // Odd bytes: invalid UTF-8, a newline, a quote, a backslash, a control byte.
    openat(libc::AT_FDCWD, &join(dir, b"bad\xff\nname\"\\\x01"), libc::O_RDONLY, 0);

    // The other syscalls.
    #[cfg(target_arch = "x86_64")]
    {
        open(&join(dir, b"missing-open"), libc::O_RDONLY, 0);
        creat(&join(dir, b"no-such-dir/file"), 0o640);
        close(open(&exists, libc::O_RDONLY, 0));
    }

    // Threads: each thread's opens carry its own tid.
    let handles: Vec<_> = (0..3)
        .map(|i| {
            let dir = dir.to_path_buf();
            std::thread::spawn(move || {
                for j in 0..5 {
                    openat(libc::AT_FDCWD, &join(&dir, format!("missing-thread-{i}-{j}").as_bytes()), libc::O_RDONLY, 0);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

fn fifo(dir: &Path, delay: Duration) {
    let fifo = dir.join("fifo");
    let c = cstr(&bytes(&fifo));
    // SAFETY: valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let fifo_bytes = bytes(&fifo);
    let reader = {
        let fifo_bytes = fifo_bytes.clone();
        // Blocks until the writer below opens the FIFO.
        std::thread::spawn(move || close(openat(libc::AT_FDCWD, &fifo_bytes, libc::O_RDONLY, 0)))
    };
    // While the reader is blocked, another thread fails fast: with enter and exit
    // matched per thread, neither disturbs the other's timing.
    std::thread::sleep(delay / 4);
    let dir2 = dir.to_path_buf();
    std::thread::spawn(move || {
        for j in 0..10 {
            openat(libc::AT_FDCWD, &join(&dir2, format!("missing-during-fifo-{j}").as_bytes()), libc::O_RDONLY, 0);
        }
    })
    .join()
    .unwrap();
    std::thread::sleep(delay - delay / 4);
    let writer = openat(libc::AT_FDCWD, &fifo_bytes, libc::O_WRONLY, 0);
    reader.join().unwrap();
    close(writer);
}

/// tests/semconv.rs: a thread named `SEMCONV_COMM` (not its executable's
/// name) whose real uid (65534) is not its effective uid (0) fails one open
/// and makes one slow (a FIFO its writer opens after `delay`), then lives on
/// for `linger` so that its executable can still be read.
fn semconv(dir: &Path, delay: Duration, linger: Duration) {
    // SAFETY: plain syscall wrappers; a NUL-terminated name.
    assert_eq!(unsafe { libc::setresuid(65534, 0, 0) }, 0, "setresuid: {}", std::io::Error::last_os_error());
    assert_eq!(unsafe { libc::prctl(libc::PR_SET_NAME, c"semconv-probe".as_ptr()) }, 0);
    openat(libc::AT_FDCWD, &join(dir, b"semconv-missing"), libc::O_RDONLY, 0);
    let fifo = dir.join("fifo");
    let c = cstr(&bytes(&fifo));
    // SAFETY: valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0, "mkfifo");
    let fifo_bytes = bytes(&fifo);
    let writer = {
        let fifo_bytes = fifo_bytes.clone();
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            openat(libc::AT_FDCWD, &fifo_bytes, libc::O_WRONLY, 0)
        })
    };
    // Blocks until the writer opens the FIFO: the slow open, on the main thread.
    let reader = openat(libc::AT_FDCWD, &fifo_bytes, libc::O_RDONLY, 0);
    close(writer.join().unwrap());
    close(reader);
    std::thread::sleep(linger);
}

fn fast(dir: &Path, count: usize) {
    let file = join(dir, b"fast");
    close(openat(libc::AT_FDCWD, &file, libc::O_CREAT | libc::O_WRONLY, 0o644));
    let c = cstr(&file);
    for _ in 0..count {
        // Not recorded one by one: the test only counts them.
        // SAFETY: valid C string.
        let fd = unsafe { libc::syscall(libc::SYS_openat, libc::AT_FDCWD, c.as_ptr(), libc::O_RDONLY, 0) };
        assert!(fd >= 0);
        close(fd);
    }
}

fn cwd(dir: &Path) {
    std::env::set_current_dir(dir).unwrap();
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    openat(libc::AT_FDCWD, b"missing-in-cwd", libc::O_RDONLY, 0);
    openat(libc::AT_FDCWD, b"sub/../sub/missing-deeper", libc::O_RDONLY, 0);
}

/// `per_second` ENOENT opens each second, evenly spaced, for `seconds`.
fn rate(dir: &Path, per_second: u64, seconds: u64) {
    // A comm of its own, so a test can tell this steady load from the others.
    // SAFETY: PR_SET_NAME takes a NUL-terminated name of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"steady-rate".as_ptr()) };
    let path = join(dir, b"missing-rate");
    let c = cstr(&path);
    let gap = Duration::from_nanos(1_000_000_000 / per_second.max(1));
    let start = std::time::Instant::now();
    for i in 0..per_second * seconds {
        // Not recorded: a count and a known rate are what the test needs.
        // SAFETY: valid C string.
        unsafe { libc::syscall(libc::SYS_openat, libc::AT_FDCWD, c.as_ptr(), libc::O_RDONLY, 0) };
        let due = gap * (i as u32 + 1);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
}

/// `count` ENOENT opens as fast as one thread can.
fn burst(dir: &Path, count: u64) {
    let c = cstr(&join(dir, b"missing-burst"));
    for _ in 0..count {
        // SAFETY: valid C string.
        unsafe { libc::syscall(libc::SYS_openat, libc::AT_FDCWD, c.as_ptr(), libc::O_RDONLY, 0) };
    }
}

/// ENOENT opens under `count` distinct directory names made of letters that
/// no templating rule folds (not hex, not numeric), one open each.
fn prefixes(dir: &Path, count: u64) {
    for i in 0..count {
        let mut name = b"dir-".to_vec();
        let mut n = i;
        loop {
            name.push(b'g' + (n % 20) as u8);
            n /= 20;
            if n == 0 {
                break;
            }
        }
        name.extend_from_slice(b"/missing");
        let c = cstr(&join(dir, &name));
        // SAFETY: valid C string.
        unsafe { libc::syscall(libc::SYS_openat, libc::AT_FDCWD, c.as_ptr(), libc::O_RDONLY, 0) };
    }
}

/// Relative failed opens whose absolute paths the test knows (see tests/resolve.rs).
fn kdir(dir: &Path) {
    let mkdir = |p: &Path| std::fs::create_dir_all(p).unwrap();
    // 1. AT_FDCWD after chdir, plain and through `..`.
    mkdir(&dir.join("cwd-a"));
    mkdir(&dir.join("cwd-b"));
    std::env::set_current_dir(dir.join("cwd-a")).unwrap();
    openat(libc::AT_FDCWD, b"missing-a", libc::O_RDONLY, 0);
    openat(libc::AT_FDCWD, b"../cwd-b/./missing-b", libc::O_RDONLY, 0);
    #[cfg(target_arch = "x86_64")]
    {
        open(b"missing-open-a", libc::O_RDONLY, 0);
        creat(b"no-such-dir/creat-a", 0o600);
    }
    // 2. A real dirfd (the cwd is elsewhere), with openat and openat2.
    mkdir(&dir.join("dfd"));
    let dfd = openat(libc::AT_FDCWD, &bytes(&dir.join("dfd")), libc::O_RDONLY | libc::O_DIRECTORY, 0);
    openat(dfd as i32, b"missing-dfd", libc::O_RDONLY, 0);
    openat2(dfd as i32, b"sub/../missing-dfd2", libc::O_RDONLY as u64, 0);
    // 3. A dirfd on another mount: procfs.
    let proc_sys = openat(libc::AT_FDCWD, b"/proc/sys", libc::O_RDONLY | libc::O_DIRECTORY, 0);
    openat(proc_sys as i32, b"no-such-sysctl", libc::O_RDONLY, 0);
    // 4. A dirfd inside the tmpfs the test mounted at DIR/mnt, and a cwd there.
    let inner = dir.join("mnt").join("inner");
    let tmpfs = openat(libc::AT_FDCWD, &bytes(&inner), libc::O_RDONLY | libc::O_DIRECTORY, 0);
    openat(tmpfs as i32, b"missing-in-tmpfs", libc::O_RDONLY, 0);
    std::env::set_current_dir(dir.join("mnt")).unwrap();
    openat(libc::AT_FDCWD, b"inner/../missing-at-tmpfs-root", libc::O_RDONLY, 0);
    // 5. Odd bytes in a directory's name.
    let odd = dir.join(std::ffi::OsStr::from_bytes(b"odd\xff\n\"\\\x01 dir"));
    mkdir(&odd);
    std::env::set_current_dir(&odd).unwrap();
    openat(libc::AT_FDCWD, b"missing-odd", libc::O_RDONLY, 0);
    // 6. A dirfd that is not open: EBADF, no directory.
    openat(9999, b"relative-to-bad-fd", libc::O_RDONLY, 0);
    // 7. The root directory as cwd; the file name carries the pid to be unique.
    std::env::set_current_dir("/").unwrap();
    openat(libc::AT_FDCWD, format!("badfd-missing-at-root-{}", std::process::id()).as_bytes(), libc::O_RDONLY, 0);
    // Exit at once: no descriptor is closed, the process is gone when the
    // events are read.
}

fn kdeep(dir: &Path, levels: usize, name_len: usize) {
    std::env::set_current_dir(dir).unwrap();
    let name = vec![b'n'; name_len];
    let name = std::ffi::OsStr::from_bytes(&name);
    // Relative steps: the whole path may be longer than PATH_MAX.
    for _ in 0..levels {
        std::fs::create_dir(name).unwrap();
        std::env::set_current_dir(name).unwrap();
    }
    openat(libc::AT_FDCWD, b"missing-deep", libc::O_RDONLY, 0);
}

fn kwait(dir: &Path, begin_ns: u64) {
    std::env::set_current_dir(dir).unwrap();
    openat(libc::AT_FDCWD, b"missing-while-alive", libc::O_RDONLY, 0);
    // Print the manifest now, then stay alive until the test closes stdin.
    print_manifest(begin_ns);
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
    std::process::exit(0);
}

fn kdetach(dir: &Path) {
    use std::io::{BufRead, Write};
    let inner = dir.join("mnt").join("inner");
    let dfd = openat(libc::AT_FDCWD, &bytes(&inner), libc::O_RDONLY | libc::O_DIRECTORY, 0);
    std::env::set_current_dir(&inner).unwrap();
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready").unwrap();
        out.flush().unwrap();
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).unwrap();
    openat(dfd as i32, b"missing-after-detach-dirfd", libc::O_RDONLY, 0);
    openat(libc::AT_FDCWD, b"missing-after-detach-cwd", libc::O_RDONLY, 0);
}

fn print_manifest(begin_ns: u64) {
    use std::io::Write;
    let manifest = MANIFEST.lock().unwrap();
    let mut out = std::io::stdout().lock();
    writeln!(out, "begin_ns {begin_ns}").unwrap();
    for r in manifest.iter() {
        writeln!(out, "{}", serde_json::to_string(r).unwrap()).unwrap();
    }
    out.flush().unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(args.get(2).expect("usage: workload SCENARIO DIR [N]"));
    // N where the scenario takes one (`signal` takes a mode there instead).
    let n: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(0);
    // The scenario's opens start now; everything before was the loader's.
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let begin_ns = now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64;
    // A cgroup to run in (hostile-load tests keep attacker and victim apart).
    if let Ok(cgroup) = std::env::var("BADFD_WORKLOAD_CGROUP") {
        std::fs::write(Path::new(&cgroup).join("cgroup.procs"), b"0").expect("join BADFD_WORKLOAD_CGROUP");
    }
    match args[1].as_str() {
        "failures" => failures(&dir),
        "fifo" => fifo(&dir, Duration::from_millis(n)),
        "fast" => fast(&dir, n as usize),
        "cwd" => cwd(&dir),
        "rate" => rate(&dir, n, args.get(4).map(|s| s.parse().unwrap()).unwrap_or(1)),
        "burst" => burst(&dir, n),
        "prefixes" => prefixes(&dir, n),
        "kdir" => kdir(&dir),
        "kdeep" => kdeep(&dir, n as usize, args.get(4).map(|s| s.parse().unwrap()).unwrap_or(1)),
        "kwait" => kwait(&dir, begin_ns),
        "kdetach" => kdetach(&dir),
        "exporter" => exporter(&dir),
        "flood" => flood(&dir, n as usize),
        "oddbytes" => oddbytes(&dir),
        "uidflood" => uid_flood(&dir, n, arg_at(&args, 4), arg_at(&args, 5)),
        "uidfail" => uid_failures(&dir, n, arg_at(&args, 4), arg_at(&args, 5)),
        "forkflood" => fork_flood(&dir, n, arg_at(&args, 4)),
        "fatflood" => fat_flood(&dir, n, arg_at(&args, 4)),
        "uring" => uring_opens(&dir, n as usize),
        "rewrite" => rewrite(&dir, n as usize),
        "signal" => signal(&dir, args.get(3).expect("workload signal DIR eintr|restart|kill")),
        "stale" => stale(&dir),
        "semconv" => semconv(&dir, Duration::from_millis(n), Duration::from_millis(arg_at(&args, 4))),
        other => panic!("unknown scenario {other}"),
    }
    let manifest = MANIFEST.lock().unwrap();
    let mut out = std::io::stdout().lock();
    {
        use std::io::Write;
        writeln!(out, "begin_ns {begin_ns}").unwrap();
    }
    for r in manifest.iter() {
        use std::io::Write;
        writeln!(out, "{}", serde_json::to_string(r).unwrap()).unwrap();
    }
}

/// Known failures for the exporter's labeled metrics: each kind under its own
/// subdirectory of DIR, so each lands in its own `path_prefix`.
fn exporter(dir: &Path) {
    for sub in ["a", "b", "c", "f-dir", "rel", "cwd"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    std::fs::write(dir.join("file"), b"").unwrap();
    for i in 0..7 {
        openat(libc::AT_FDCWD, &join(dir, format!("a/missing-{i}").as_bytes()), libc::O_RDONLY, 0); // ENOENT
    }
    for _ in 0..3 {
        openat(libc::AT_FDCWD, &join(dir, b"file/below"), libc::O_RDONLY, 0); // ENOTDIR
    }
    for _ in 0..2 {
        openat(libc::AT_FDCWD, &join(dir, b"f-dir"), libc::O_WRONLY, 0); // EISDIR
    }
    #[cfg(target_arch = "x86_64")]
    {
        open(&join(dir, b"b/missing-open"), libc::O_RDONLY, 0); // ENOENT through open
        creat(&join(dir, b"c/no-such-dir/file"), 0o640); // ENOENT through creat
    }
    openat(libc::AT_FDCWD, &join(dir, b"bad\xff\nname\"\\\x01"), libc::O_RDONLY, 0); // odd bytes
    // Relative to a directory fd, then to a changed cwd; the process lives on a
    // second so that userspace can still read its fd table and cwd.
    let dirfd = openat(libc::AT_FDCWD, &join(dir, b"rel"), libc::O_RDONLY | libc::O_DIRECTORY, 0);
    for i in 0..4 {
        openat(dirfd as i32, format!("sub/missing-{i}").as_bytes(), libc::O_RDONLY, 0);
    }
    std::env::set_current_dir(dir.join("cwd")).unwrap();
    for _ in 0..2 {
        openat(libc::AT_FDCWD, b"missing-in-cwd", libc::O_RDONLY, 0);
    }
    std::thread::sleep(Duration::from_secs(1));
    close(dirfd);
}

/// COUNT failed opens of distinct names (letters only, so none is templated
/// away): a flood of new label sets. Not recorded one by one.
fn flood(dir: &Path, count: usize) {
    let mut path = bytes(dir);
    path.push(b'/');
    let base = path.len();
    for i in 0..count {
        path.truncate(base);
        path.extend_from_slice(b"flood-");
        let mut n = i;
        loop {
            path.push(b'a' + (n % 26) as u8);
            n /= 26;
            if n == 0 {
                break;
            }
        }
        let c = cstr(&path);
        // SAFETY: valid C string.
        let fd = unsafe { libc::syscall(libc::SYS_openat, libc::AT_FDCWD, c.as_ptr(), libc::O_RDONLY, 0) };
        assert!(fd < 0, "flood paths do not exist");
    }
}

/// The names `oddbytes` opens under DIR (each missing: ENOENT), one directory
/// component each so that each lands in a `path_prefix` of its own.
const ODD_NAMES: [&[u8]; 9] = [
    b"inv\xff\xfeutf8",
    b"new\nline",
    b"quo\"te",
    b"back\\slash",
    b"ctl\x01\x02\x1b\x7f\t\r",
    b"uni-\xc3\xa9\xe2\x9c\x93",
    b"brace{x=\"y\",z}",
    b"hash # EOF",
    b"%41-percent",
];

/// Failed opens of odd names, then of the longest path the kernel takes (4095
/// bytes and its NUL: ENOENT) and of one a byte longer (ENAMETOOLONG, which
/// the kernel copies cut).
fn oddbytes(dir: &Path) {
    for name in ODD_NAMES {
        let mut path = join(dir, name);
        path.extend_from_slice(b"/missing");
        openat(libc::AT_FDCWD, &path, libc::O_RDONLY, 0);
    }
    for len in [4095, 4096] {
        let mut long = join(dir, b"long");
        while long.len() + 201 <= len {
            long.push(b'/');
            long.extend(std::iter::repeat_n(b'd', 199));
            // An odd byte deep in the path too.
            long.push(0xff);
        }
        long.push(b'/');
        // Different last bytes: the kernel's cut of the longer path must not
        // look like the shorter one.
        long.extend(std::iter::repeat_n(if len == 4095 { b'f' } else { b'g' }, len - long.len()));
        assert_eq!(long.len(), len);
        openat(libc::AT_FDCWD, &long, libc::O_RDONLY, 0);
    }
}

// ---------------------------------------------------------------------------
// Kernel fairness and floods (tests/tests/flood.rs, kernel.rs): failures made
// under a uid of their own, so that a kernel uid filter lets exactly these
// through and their counters can be compared exactly on a shared host.
// ---------------------------------------------------------------------------

fn arg_at<T: std::str::FromStr>(args: &[String], i: usize) -> T
where
    T::Err: std::fmt::Debug,
{
    args.get(i).unwrap_or_else(|| panic!("argument {i} missing")).parse().unwrap()
}

/// Becomes `uid` (every thread: glibc's wrapper, and before any is started),
/// so that every open from here on is this scenario's own.
fn become_uid(uid: u32) {
    // SAFETY: plain syscall wrapper.
    assert_eq!(unsafe { libc::setresgid(uid, uid, uid) }, 0, "setresgid: {}", std::io::Error::last_os_error());
    assert_eq!(unsafe { libc::setresuid(uid, uid, uid) }, 0, "setresuid: {}", std::io::Error::last_os_error());
}

fn print_failures(n: u64) -> ! {
    println!("failures {n}");
    std::process::exit(0);
}

/// Fails openat(DIR/missing) as fast as `threads` threads can for `secs` s.
fn uid_flood(dir: &Path, secs: u64, uid: u32, threads: usize) {
    let path = cstr(&join(dir, b"flood-missing"));
    become_uid(uid);
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    let total: u64 = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let path = &path;
                scope.spawn(move || {
                    let mut n = 0u64;
                    while std::time::Instant::now() < deadline {
                        for _ in 0..64 {
                            // SAFETY: valid C string; raw syscall.
                            let r = unsafe { libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path.as_ptr(), libc::O_RDONLY, 0) };
                            assert!(r < 0, "the flood path does not exist");
                            n += 1;
                        }
                    }
                    n
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    print_failures(total)
}

/// A fork storm for `secs` s: children, each a new process (a new budget
/// where fairness were per process only), that fail 64 opens each and exit.
/// Counts them through the exit status of each child.
fn fork_flood(dir: &Path, secs: u64, uid: u32) {
    let path = cstr(&join(dir, b"forked-missing"));
    become_uid(uid);
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    let mut total = 0u64;
    while std::time::Instant::now() < deadline {
        // SAFETY: the child only makes raw syscalls and exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            let mut failed = 0;
            for _ in 0..64 {
                // SAFETY: valid C string; raw syscall.
                let r = unsafe { libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path.as_ptr(), libc::O_RDONLY, 0) };
                failed += (r < 0) as i32;
            }
            // SAFETY: leave without the parent's destructors.
            unsafe { libc::_exit(failed) };
        }
        let mut status = 0;
        // SAFETY: our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        total += libc::WEXITSTATUS(status) as u64;
    }
    print_failures(total)
}

/// Failed opens of the longest paths there are (4095 bytes, so the fattest
/// events) as fast as one thread can for `secs` s.
fn fat_flood(dir: &Path, secs: u64, uid: u32) {
    let mut long = join(dir, b"fat-missing");
    while long.len() + 201 < 4095 {
        long.push(b'/');
        long.extend_from_slice(&[b'f'; 200]);
    }
    long.push(b'/');
    long.resize(4095, b'g');
    let path = cstr(&long);
    become_uid(uid);
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    let mut total = 0u64;
    while std::time::Instant::now() < deadline {
        for _ in 0..64 {
            // SAFETY: valid C string; raw syscall.
            let r = unsafe { libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path.as_ptr(), libc::O_RDONLY, 0) };
            assert!(r < 0, "the fat path does not exist");
            total += 1;
        }
    }
    print_failures(total)
}

/// `count` failed opens of DIR/quiet-N, `interval_ms` apart.
fn uid_failures(dir: &Path, count: u64, uid: u32, interval_ms: u64) {
    let paths: Vec<CString> = (0..count).map(|i| cstr(&join(dir, format!("quiet-{i}").as_bytes()))).collect();
    become_uid(uid);
    for path in &paths {
        // SAFETY: valid C string; raw syscall.
        let r = unsafe { libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path.as_ptr(), libc::O_RDONLY, 0) };
        assert!(r < 0, "quiet paths do not exist");
        std::thread::sleep(Duration::from_millis(interval_ms));
    }
    print_failures(count)
}

// ---------------------------------------------------------------------------
// tests/tests/exact.rs: io_uring opens, signal-ended opens, a stale entry.
// ---------------------------------------------------------------------------

/// io_uring's setup and ring layout (include/uapi/linux/io_uring.h).
mod uring {
    use std::sync::atomic::{AtomicU32, Ordering};

    pub const IORING_OP_OPENAT: u8 = 18;
    pub const IORING_OP_READ: u8 = 22;
    /// `IOSQE_IO_LINK`: the next request runs once this one completed.
    pub const IOSQE_IO_LINK: u8 = 1 << 2;
    pub const IORING_OP_OPENAT2: u8 = 28;
    const IORING_ENTER_GETEVENTS: u32 = 1;
    const IORING_OFF_SQ_RING: i64 = 0;
    const IORING_OFF_CQ_RING: i64 = 0x800_0000;
    const IORING_OFF_SQES: i64 = 0x1000_0000;
    pub const ENTRIES: u32 = 32;

    #[repr(C)]
    #[derive(Default)]
    struct SqOffsets {
        head: u32,
        tail: u32,
        ring_mask: u32,
        ring_entries: u32,
        flags: u32,
        dropped: u32,
        array: u32,
        resv1: u32,
        user_addr: u64,
    }

    #[repr(C)]
    #[derive(Default)]
    struct CqOffsets {
        head: u32,
        tail: u32,
        ring_mask: u32,
        ring_entries: u32,
        overflow: u32,
        cqes: u32,
        flags: u32,
        resv1: u32,
        user_addr: u64,
    }

    #[repr(C)]
    #[derive(Default)]
    struct Params {
        sq_entries: u32,
        cq_entries: u32,
        flags: u32,
        sq_thread_cpu: u32,
        sq_thread_idle: u32,
        features: u32,
        wq_fd: u32,
        resv: [u32; 3],
        sq_off: SqOffsets,
        cq_off: CqOffsets,
    }

    /// A submission queue entry, as the open opcodes use it.
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    pub struct Sqe {
        pub opcode: u8,
        pub flags: u8,
        pub ioprio: u16,
        pub fd: i32,
        /// `addr2` for OPENAT2: the `struct open_how *`.
        pub off: u64,
        /// The path.
        pub addr: u64,
        /// OPENAT's mode; OPENAT2's `sizeof(struct open_how)`.
        pub len: u32,
        /// OPENAT's flags.
        pub open_flags: u32,
        pub user_data: u64,
        pub buf_index: u16,
        pub personality: u16,
        pub file_index: u32,
        pub addr3: u64,
        pub pad: u64,
    }

    #[repr(C)]
    struct Cqe {
        user_data: u64,
        res: i32,
        flags: u32,
    }

    pub struct Ring {
        fd: i32,
        sq: *mut u8,
        cq: *mut u8,
        sqes: *mut Sqe,
        params: Params,
    }

    fn map(fd: i32, len: usize, offset: i64) -> *mut u8 {
        // SAFETY: a shared mapping of the ring fd at one of its offsets.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED | libc::MAP_POPULATE, fd, offset) };
        assert_ne!(p, libc::MAP_FAILED, "mmap of the io_uring ring: {}", std::io::Error::last_os_error());
        p.cast()
    }

    impl Ring {
        pub fn new() -> Ring {
            let mut params = Params::default();
            // SAFETY: a valid params struct of the size the kernel expects.
            let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, ENTRIES, &mut params as *mut Params) };
            assert!(fd >= 0, "io_uring_setup: {}", std::io::Error::last_os_error());
            let fd = fd as i32;
            let sq = map(fd, (params.sq_off.array + params.sq_entries * 4) as usize, IORING_OFF_SQ_RING);
            let cq = map(fd, (params.cq_off.cqes + params.cq_entries * 16) as usize, IORING_OFF_CQ_RING);
            let sqes = map(fd, params.sq_entries as usize * std::mem::size_of::<Sqe>(), IORING_OFF_SQES).cast();
            Ring { fd, sq, cq, sqes, params }
        }

        fn word(base: *mut u8, offset: u32) -> &'static AtomicU32 {
            // SAFETY: a u32 of the mapped ring, shared with the kernel.
            unsafe { AtomicU32::from_ptr(base.add(offset as usize).cast()) }
        }

        /// Submits `batch` (at most `ENTRIES`) at once and waits for all of
        /// them: their results, in order.
        pub fn run(&mut self, batch: &[Sqe]) -> Vec<i32> {
            self.run_then(batch, || {})
        }

        /// As `run`, calling `between` once the batch is submitted (the kernel
        /// prepared every request: copied their paths) and before waiting.
        pub fn run_then(&mut self, batch: &[Sqe], between: impl FnOnce()) -> Vec<i32> {
            assert!(batch.len() as u32 <= ENTRIES);
            let sq_mask = Self::word(self.sq, self.params.sq_off.ring_mask).load(Ordering::Relaxed);
            let tail = Self::word(self.sq, self.params.sq_off.tail);
            let mut t = tail.load(Ordering::Relaxed);
            for (i, sqe) in batch.iter().enumerate() {
                let index = t & sq_mask;
                // SAFETY: index is within the SQE array and the ring's index array.
                unsafe {
                    *self.sqes.add(index as usize) = Sqe { user_data: i as u64, ..*sqe };
                    *self.sq.add((self.params.sq_off.array + index * 4) as usize).cast::<u32>() = index;
                }
                t = t.wrapping_add(1);
            }
            tail.store(t, Ordering::Release);
            // SAFETY: the ring's own fd; no signal mask.
            let submitted = unsafe { libc::syscall(libc::SYS_io_uring_enter, self.fd, batch.len() as u32, 0u32, 0u32, std::ptr::null::<u8>(), 0) };
            assert!(submitted >= 0, "io_uring_enter: {}", std::io::Error::last_os_error());
            between();
            let mut results = vec![None; batch.len()];
            let mut to_submit = batch.len() as u32 - submitted as u32;
            let mut done = 0;
            let cq_mask = Self::word(self.cq, self.params.cq_off.ring_mask).load(Ordering::Relaxed);
            let head = Self::word(self.cq, self.params.cq_off.head);
            let cq_tail = Self::word(self.cq, self.params.cq_off.tail);
            while done < batch.len() {
                // SAFETY: the ring's own fd; no signal mask.
                let r = unsafe {
                    libc::syscall(libc::SYS_io_uring_enter, self.fd, to_submit, (batch.len() - done) as u32, IORING_ENTER_GETEVENTS, std::ptr::null::<u8>(), 0)
                };
                assert!(r >= 0, "io_uring_enter: {}", std::io::Error::last_os_error());
                to_submit -= r as u32;
                let mut h = head.load(Ordering::Relaxed);
                while h != cq_tail.load(Ordering::Acquire) {
                    // SAFETY: a CQE of the ring, below its tail.
                    let cqe = unsafe { &*self.cq.add((self.params.cq_off.cqes + (h & cq_mask) * 16) as usize).cast::<Cqe>() };
                    results[cqe.user_data as usize] = Some(cqe.res);
                    done += 1;
                    h = h.wrapping_add(1);
                }
                head.store(h, Ordering::Release);
            }
            results.into_iter().map(|r| r.expect("one completion per request")).collect()
        }
    }

    impl Drop for Ring {
        fn drop(&mut self) {
            // SAFETY: our own fd (the mappings go with the process).
            unsafe { libc::close(self.fd) };
        }
    }
}

/// io_uring open requests, each recorded as the program saw it (its CQE's
/// result), under `io_uring_openat` / `io_uring_openat2`.
fn uring_opens(dir: &Path, n: usize) {
    use uring::{Ring, Sqe, IORING_OP_OPENAT, IORING_OP_OPENAT2};
    std::fs::write(dir.join("exists"), b"").unwrap();
    let mut ring = Ring::new();
    let missing = cstr(&join(dir, b"uring-missing-openat"));
    let missing2 = cstr(&join(dir, b"uring-missing-openat2"));
    let exists = cstr(b"exists");
    let mut too_long = b"/".to_vec();
    too_long.extend(std::iter::repeat_n(b'u', 5000));
    let too_long = cstr(&too_long);
    let how = OpenHow { flags: (libc::O_RDONLY | libc::O_CLOEXEC) as u64, mode: 0, resolve: 0 };
    let dirfd = openat(libc::AT_FDCWD, &bytes(dir), libc::O_RDONLY | libc::O_DIRECTORY, 0) as i32;

    let openat_sqe = |dirfd: i32, path: &CString, flags: i32| Sqe {
        opcode: IORING_OP_OPENAT,
        fd: dirfd,
        addr: path.as_ptr() as u64,
        len: 0,
        open_flags: flags as u32,
        ..Sqe::default()
    };
    let mut batches: Vec<(&str, Vec<Sqe>, i32, &CString, u64)> = Vec::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(uring::ENTRIES as usize) {
        let sqe = openat_sqe(libc::AT_FDCWD, &missing, libc::O_RDONLY);
        batches.push(("io_uring_openat", vec![sqe; chunk.len()], libc::AT_FDCWD, &missing, libc::O_RDONLY as u64));
        let sqe2 = Sqe {
            opcode: IORING_OP_OPENAT2,
            fd: libc::AT_FDCWD,
            addr: missing2.as_ptr() as u64,
            off: &how as *const OpenHow as u64,
            len: std::mem::size_of::<OpenHow>() as u32,
            ..Sqe::default()
        };
        batches.push(("io_uring_openat2", vec![sqe2; chunk.len()], libc::AT_FDCWD, &missing2, how.flags));
    }
    batches.push(("io_uring_openat", vec![openat_sqe(dirfd, &exists, libc::O_RDONLY); 2], dirfd, &exists, libc::O_RDONLY as u64));
    batches.push(("io_uring_openat", vec![openat_sqe(libc::AT_FDCWD, &too_long, libc::O_RDONLY); 2], libc::AT_FDCWD, &too_long, libc::O_RDONLY as u64));
    for (syscall, batch, dirfd, path, flags) in batches {
        for res in ring.run(&batch) {
            record(syscall, dirfd, path.as_bytes(), flags, 0, res as i64);
            close(res as i64);
        }
    }
    close(dirfd as i64);
}

/// Failed opens whose path the process rewrites while they go on. DIR/a is a
/// file and DIR/b absent, so DIR/a/x fails with ENOTDIR and DIR/b/x with
/// ENOENT: the errno says which path the kernel walked, and each open is
/// recorded with that path. (1) io_uring: an OPENAT of DIR/a/x linked behind
/// a read of an empty pipe is submitted (the kernel copies its path then),
/// its buffer rewritten to DIR/b/x, and only then the pipe written: the open
/// runs after the rewrite, on the kernel's copy. (2) N openat of one buffer
/// while another thread flips its byte between a and b.
fn rewrite(dir: &Path, n: usize) {
    use std::sync::{
        atomic::{AtomicBool, AtomicU8, Ordering},
        Arc,
    };
    use uring::{Ring, Sqe, IORING_OP_OPENAT, IORING_OP_READ, IOSQE_IO_LINK};
    std::fs::write(dir.join("a"), b"").unwrap();
    let walked = |ret: i64| -> Vec<u8> {
        let which = if ret == -(libc::ENOTDIR as i64) { b"a/x" } else { b"b/x" };
        join(dir, which)
    };
    let mut buf = join(dir, b"a/x");
    buf.push(0);
    let flip_at = buf.len() - 4;

    let mut pipe = [0i32; 2];
    // SAFETY: a valid array of two fds.
    assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
    let mut byte = 0u8;
    let read = Sqe { opcode: IORING_OP_READ, flags: IOSQE_IO_LINK, fd: pipe[0], addr: &mut byte as *mut u8 as u64, len: 1, ..Sqe::default() };
    let open = Sqe { opcode: IORING_OP_OPENAT, fd: libc::AT_FDCWD, addr: buf.as_ptr() as u64, ..Sqe::default() };
    let buf_ptr = buf.as_mut_ptr();
    let results = Ring::new().run_then(&[read, open], || {
        // SAFETY: the buffer is alive, and the kernel only reads it.
        unsafe { *buf_ptr.add(flip_at) = b'b' };
        // SAFETY: one byte from a valid buffer to the pipe.
        assert_eq!(unsafe { libc::write(pipe[1], b"g".as_ptr().cast(), 1) }, 1);
    });
    assert_eq!(results[0], 1, "the pipe read");
    let ret = results[1] as i64;
    record("io_uring_openat", libc::AT_FDCWD, &walked(ret), libc::O_RDONLY as u64, 0, ret);
    close(ret);
    close(pipe[0] as i64);
    close(pipe[1] as i64);

    buf[flip_at] = b'a';
    let stop = Arc::new(AtomicBool::new(false));
    let flip_addr = buf.as_mut_ptr() as usize + flip_at;
    let flipper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            // SAFETY: the byte outlives this thread (joined below); atomic
            // stores, so the opens read one letter or the other.
            let letter = unsafe { AtomicU8::from_ptr(flip_addr as *mut u8) };
            while !stop.load(Ordering::Relaxed) {
                letter.store(b'b', Ordering::Relaxed);
                letter.store(b'a', Ordering::Relaxed);
            }
        })
    };
    for _ in 0..n {
        // SAFETY: a NUL-terminated buffer; raw syscall so that it is exactly openat.
        let ret = ret_of(unsafe { libc::syscall(libc::SYS_openat, libc::AT_FDCWD, buf.as_ptr(), libc::O_RDONLY, 0) });
        record("openat", libc::AT_FDCWD, &walked(ret), libc::O_RDONLY as u64, 0, ret);
        close(ret);
    }
    stop.store(true, Ordering::Relaxed);
    flipper.join().unwrap();
}

extern "C" fn on_signal(_: libc::c_int) {}

/// Reads one line from stdin: the test's go.
fn wait_for_go() {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).unwrap();
}

fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

/// A FIFO open blocked in the kernel, then ended by a signal as `mode` says.
fn signal(dir: &Path, mode: &str) {
    let restart = match mode {
        "eintr" | "kill" => false,
        "restart" => true,
        other => panic!("workload signal: unknown mode {other}"),
    };
    // SAFETY: an empty handler installed before any thread starts.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as *const () as usize;
        action.sa_flags = if restart { libc::SA_RESTART } else { 0 };
        assert_eq!(libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()), 0);
    }
    let fifo = dir.join("fifo");
    let c = cstr(&bytes(&fifo));
    // SAFETY: valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let fifo_bytes = bytes(&fifo);
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let reader = {
        let fifo_bytes = fifo_bytes.clone();
        std::thread::spawn(move || {
            tid_tx.send(gettid()).unwrap();
            // Blocks until a writer opens the FIFO, or a signal ends it.
            close(openat(libc::AT_FDCWD, &fifo_bytes, libc::O_RDONLY, 0));
        })
    };
    let reader_tid = tid_rx.recv().unwrap();
    say(&format!("reader {reader_tid}"));
    wait_for_go();
    if mode == "kill" {
        loop {
            std::thread::sleep(Duration::from_secs(60));
        }
    }
    // SAFETY: a thread of this process.
    assert_eq!(unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), reader_tid, libc::SIGUSR1) }, 0);
    if restart {
        std::thread::sleep(Duration::from_millis(300));
        let writer = openat(libc::AT_FDCWD, &fifo_bytes, libc::O_WRONLY, 0);
        reader.join().unwrap();
        close(writer);
    } else {
        reader.join().unwrap();
    }
}

/// One failed open of a thread whose tid the test knows beforehand.
fn stale(dir: &Path) {
    say(&format!("tid {}", gettid()));
    wait_for_go();
    openat(libc::AT_FDCWD, &join(dir, b"stale-missing"), libc::O_RDONLY, 0);
}
