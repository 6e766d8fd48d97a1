//! Scratch names and places the tests and benchmarks share.

use std::{
    ffi::CString,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use badfd::pipeline::containers::cgroup2_mount;

/// `n` in base-26 letters: unique names that label templating keeps (it
/// turns digits and hex into `<n>`).
pub fn letters(mut n: u64) -> String {
    let mut s = String::new();
    loop {
        s.push((b'a' + (n % 26) as u8) as char);
        n /= 26;
        if n == 0 {
            return s;
        }
    }
}

/// A cgroup v2 directory of the test's own (`badfd-test-PID-NAME` under the
/// v2 mount), removed on drop.
pub struct TestCgroup(pub PathBuf);

impl TestCgroup {
    pub fn new(name: &str) -> TestCgroup {
        let root = cgroup2_mount().expect("a cgroup v2 hierarchy is mounted");
        let dir = root.join(format!("badfd-test-{}-{name}", std::process::id()));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        TestCgroup(dir)
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// `n` slow FIFO opens: each on its own thread named `<comm_prefix><letters>`
/// (its own `comm`) in its own directory under `dir` (its own `path_prefix`),
/// all blocked until `hold` has passed, then released by opening their
/// writing ends. Panics if a FIFO cannot be made or opened.
pub fn hold_slow_fifo_opens(dir: &Path, n: usize, hold: Duration, comm_prefix: &str) {
    let c = |path: &Path| CString::new(path.as_os_str().as_bytes()).unwrap();
    let fifos: Vec<PathBuf> = (0..n)
        .map(|i| {
            let d = dir.join(format!("s{}", letters(i as u64)));
            std::fs::create_dir(&d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
            let fifo = d.join("fifo");
            // SAFETY: a valid C string.
            assert_eq!(unsafe { libc::mkfifo(c(&fifo).as_ptr(), 0o600) }, 0, "mkfifo {}", fifo.display());
            fifo
        })
        .collect();
    let readers: Vec<_> = fifos
        .iter()
        .enumerate()
        .map(|(i, fifo)| {
            let path = c(fifo);
            let comm = CString::new(format!("{comm_prefix}{}", letters(i as u64))).unwrap();
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    // SAFETY: PR_SET_NAME reads a NUL-terminated name, cut at 16 bytes.
                    unsafe { libc::prctl(libc::PR_SET_NAME, comm.as_ptr()) };
                    // SAFETY: a valid C string; blocks until a writer opens.
                    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
                    assert!(fd >= 0, "open FIFO for reading: {}", std::io::Error::last_os_error());
                    // SAFETY: our own fd.
                    unsafe { libc::close(fd) };
                })
                .expect("spawn a FIFO reader")
        })
        .collect();
    std::thread::sleep(hold);
    for fifo in &fifos {
        let path = c(fifo);
        // A non-blocking open for writing succeeds once its reader waits (ENXIO before).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // SAFETY: a valid C string.
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_NONBLOCK) };
            if fd >= 0 {
                // SAFETY: our own fd.
                unsafe { libc::close(fd) };
                break;
            }
            assert!(Instant::now() < deadline, "{}: no reader after 10 s", fifo.display());
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    for r in readers {
        r.join().unwrap();
    }
}
