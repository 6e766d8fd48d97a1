//! Kernel tests of the event transport alone (issue 9): the bench-only kernel
//! program `bench_emit`, run with BPF_PROG_TEST_RUN, emits synthetic failing
//! opens of the calling thread through the real `emit` (path read from this
//! process's memory, comm, cgroup, the real ring buffer and loss counters).
//! Every event must be received or counted lost, and decode to what was made.
//! Run as root; they fail, never skip, when BPF cannot be loaded.

use std::ffi::CString;

use badfd::{probe::EventReader, KernelDir, OpenEvent, Probe, ProbeOptions};
use badfd_tests::{
    cgroup_id_of,
    kernel_bench::{load_test_object, BenchPaths, TransportBenchExt},
    test_attach_mode,
};
use exporter_common::{Config, Counters, Loss, Stream, Syscall, AT_FDCWD, EVENT_FAILED};

/// A pid no process can have (above PID_MAX_LIMIT, 2^22): with it as the
/// filter every real open of the host is filtered out, so only `bench_emit`
/// (which bypasses the filters, as it is the transport that is tested)
/// reaches the ring buffer.
const NO_REAL_PROCESS: u32 = u32::MAX - 1;

const ENOENT: i64 = 2;

fn isolated_config() -> Config {
    Config { filter_pid: NO_REAL_PROCESS, ..Config::DEFAULT }
}

/// The probe from the tests' object (which has `bench_emit`), or a panic.
fn load_bench_probe(options: &ProbeOptions) -> Probe {
    load_test_object(options).unwrap_or_else(|e| panic!("kernel test could not load badfd's BPF program: {e}"))
}

fn loaded(probe: &mut Probe) {
    if let Err(e) = probe.load_transport_bench() {
        panic!("kernel test could not load the bench_emit program (bpf_loop needs Linux 5.17+): {e}");
    }
}

/// The kernel's count of everything `bench_emit` made: each event is exactly
/// one of submitted, lost to a full ring buffer, or throttled (fairness).
fn accounted(c: &Counters) -> (u64, u64, u64) {
    (
        c.stream[Stream::Submitted as usize],
        c.losses[Loss::RingbufFull as usize],
        c.losses[Loss::SourceThrottled as usize],
    )
}

fn drain_all(reader: &mut EventReader) -> Vec<OpenEvent> {
    let mut events = Vec::new();
    // Everything submitted is in the ring once the test run has returned.
    reader.drain(|bytes| events.push(OpenEvent::decode(bytes).expect("every event decodes")));
    events
}

/// Runs `f` on a new thread named `comm` (its comm in the kernel) and returns
/// its tid and result.
fn on_named_thread<T: Send>(comm: &str, f: impl FnOnce() -> T + Send) -> (u32, T) {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name(comm.into())
            .spawn_scoped(s, || {
                // SAFETY: gettid has no preconditions.
                let tid = unsafe { libc::gettid() } as u32;
                (tid, f())
            })
            .unwrap()
            .join()
            .unwrap()
    })
}

#[test]
fn every_synthetic_event_arrives_and_decodes_to_what_was_made() {
    let mut probe = load_bench_probe(&ProbeOptions { attach: test_attach_mode(), config: isolated_config(), ..ProbeOptions::default() });
    loaded(&mut probe);
    let mut reader = probe.take_events().unwrap();
    let path = CString::new(format!("/nonexistent-badfd-transport/{}/file.conf", std::process::id())).unwrap();
    let before = accounted(&probe.counters().unwrap());
    const RUNS: u32 = 200;
    const PER_RUN: u32 = 50;
    let bench = probe.transport_bench().unwrap();
    let (tid, received) = on_named_thread("badfd-xport", || {
        let mut received = Vec::new();
        for _ in 0..RUNS {
            bench.run(&path, PER_RUN).expect("BPF_PROG_TEST_RUN of bench_emit");
            received.extend(drain_all(&mut reader));
        }
        received
    });
    let after = accounted(&probe.counters().unwrap());
    let produced = (RUNS * PER_RUN) as u64;
    let (submitted, ringbuf_full, throttled) = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
    assert_eq!(
        submitted + ringbuf_full + throttled,
        produced,
        "the kernel accounts for every event made (submitted {submitted}, ring full {ringbuf_full}, throttled {throttled})"
    );
    assert_eq!(received.len() as u64, submitted, "every submitted event is received");
    assert_eq!(received.len() as u64 + ringbuf_full + throttled, produced);
    // 10,000 small events, drained after each run of 50: nothing may be lost.
    assert_eq!((ringbuf_full, throttled), (0, 0));

    let pid = std::process::id();
    let cgroup = cgroup_id_of(pid).expect("this process's cgroup v2 id");
    // SAFETY: getuid/getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut comm = [0u8; 16];
    comm[..11].copy_from_slice(b"badfd-xport");
    for e in &received {
        assert_eq!(e.path, path.as_bytes());
        assert_eq!((e.pid, e.tid, e.uid, e.gid), (pid, tid, uid, gid));
        assert_eq!(e.comm, comm);
        assert_eq!(e.ret, -ENOENT);
        assert_eq!(e.syscall, Syscall::Openat);
        assert_eq!(e.dirfd, AT_FDCWD);
        assert_ne!(e.flags & EVENT_FAILED, 0);
        assert_eq!(e.cgroup_id, cgroup);
        assert_eq!(e.kernel_dir, KernelDir::NotAttempted, "an absolute path needs no directory");
    }
}

#[test]
fn a_run_over_several_paths_keeps_their_order_and_resolves_a_relative_one() {
    let mut probe = load_bench_probe(&ProbeOptions { attach: test_attach_mode(), config: isolated_config(), ..ProbeOptions::default() });
    loaded(&mut probe);
    let kernel_dirs = probe.kernel_dir_resolution();
    let mut reader = probe.take_events().unwrap();
    let paths = ["/nonexistent-badfd-transport/a", "relative-badfd-transport/b", "/x", "/nonexistent-badfd-transport/a/much/longer/path/than/the/others.json"];
    let table = BenchPaths::new(&paths).unwrap();
    let bench = probe.transport_bench().unwrap();
    let (_, received) = on_named_thread("badfd-xport", || {
        bench.run_paths(&table, 10).unwrap();
        drain_all(&mut reader)
    });
    let got: Vec<&[u8]> = received.iter().map(|e| e.path.as_slice()).collect();
    let want: Vec<&[u8]> = (0..10).map(|i| paths[i % paths.len()].as_bytes()).collect();
    assert_eq!(got, want, "event i carries path i % 4, in order");
    let cwd = std::env::current_dir().unwrap();
    for e in received.iter().filter(|e| !e.path.starts_with(b"/")) {
        if kernel_dirs {
            assert_eq!(e.kernel_dir, KernelDir::Resolved(cwd.as_os_str().as_encoded_bytes().to_vec()));
        } else {
            assert_eq!(e.kernel_dir, KernelDir::NotAttempted);
        }
    }
}

#[test]
fn a_full_ring_buffer_counts_every_event_it_drops() {
    // The smallest ring buffer (one page; ~40 events of this size), never read
    // while the runs go: most events must be lost, every one of them counted.
    let options = ProbeOptions {
        attach: badfd_tests::test_attach_mode(),
        ringbuf_bytes: 4096,
        config: isolated_config(),
        ..ProbeOptions::default()
    };
    let mut probe = load_bench_probe(&options);
    loaded(&mut probe);
    let mut reader = probe.take_events().unwrap();
    let path = CString::new("/nonexistent-badfd-transport/full").unwrap();
    let before = accounted(&probe.counters().unwrap());
    const PRODUCED: u32 = 5_000;
    probe.transport_bench().unwrap().run(&path, PRODUCED).unwrap();
    let after = accounted(&probe.counters().unwrap());
    let (submitted, ringbuf_full, throttled) = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
    // Everything submitted is in the ring once the run has returned.
    let received = drain_all(&mut reader).len() as u64;
    eprintln!("made {PRODUCED}: received {received}, lost to a full ring {ringbuf_full}, throttled {throttled}");
    assert_eq!(received, submitted);
    assert_eq!(received + ringbuf_full + throttled, PRODUCED as u64, "ring full {ringbuf_full}, throttled {throttled}");
    assert!(ringbuf_full > 0, "a one-page ring buffer must overflow with {PRODUCED} unread events");
    assert!(received > 0 && received < 100, "a page holds a few dozen events, got {received}");
}
