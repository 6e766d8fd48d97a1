//! Hostile load at the kernel's door (issue "Hostile load"): an unprivileged
//! attacker, in a uid and cgroup of its own, floods failing opens for 10 s in
//! the ways that reset or outgrow a per-process budget (a fork storm: every
//! child a new process; fat events: 4095-byte paths), while a victim of
//! another uid and cgroup fails a known set of opens. Every victim failure
//! must be streamed, and every attacker anomaly streamed or counted as
//! dropped. The probe watches only the two test cgroups, so the kernel's
//! counts are exactly theirs. Run as root; they fail, never skip, when BPF
//! cannot be loaded.

use std::time::Duration;

use badfd::{probe::CgroupFilterMode, ProbeOptions};
use badfd_tests::{load_probe_with, test_attach_mode, Collector, TempDir, TestCgroup, UidWorkload, FAIRNESS_UID};
use exporter_common::{source_limit, Config, Counters, Loss, Stream, CGROUP_FILTER_WATCH};

const ATTACKER_UID: u32 = FAIRNESS_UID + 1;
const VICTIM_UID: u32 = FAIRNESS_UID + 2;
const ATTACK_SECS: u64 = 10;
const VICTIM_FAILURES: u64 = 20;
/// Anomalies per second and source the fairness allows (the default: 1000).
const TEST_SOURCE_RATE: u32 = 250;

fn decided(c: &Counters) -> (u64, u64, u64) {
    (c.stream[Stream::Submitted as usize], c.losses[Loss::SourceThrottled as usize], c.losses[Loss::RingbufFull as usize])
}

/// One attack: `scenario` (a workload mode taking DIR SECS UID) against the victim.
fn attack(scenario: &str) {
    // The attacks take turns: they share the cgroup names, the uids and the
    // process-wide BADFD_WORKLOAD_CGROUP, and a second flood would skew the first.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let attacker_cgroup = TestCgroup::new("attacker");
    let victim_cgroup = TestCgroup::new("victim");
    // A 4 MiB ring, read every 50 ms once fairness has had to decide (below),
    // and a quarter of the default rate per source (250 nominal events/s): an
    // attacker in an emulated guest (the kernel matrix), a tenth of the
    // host's speed or less, then still streams well above its cgroup's
    // share, and the ring's upper half is far larger than what that cgroup
    // may stream past half a ring (a burst of one second at twice a
    // process's rate, 128 KiB of small events, and the rate itself): a held
    // reader sees the attack throttled before the ring is full.
    // Watching (no cgroup yet) from the moment it attaches: the host's other
    // failures must not reach the ring before `before` is read, or the reader
    // would take more events than the kernel submitted after it.
    let (source_interval_ns, source_burst_ns) = source_limit(TEST_SOURCE_RATE);
    let config = Config { cgroup_filter: CGROUP_FILTER_WATCH, source_interval_ns, source_burst_ns, ..Config::DEFAULT };
    let options = ProbeOptions { attach: test_attach_mode(), ringbuf_bytes: 4 << 20, config, ..ProbeOptions::default() };
    let mut probe = load_probe_with(&options);
    probe.set_cgroup_filter_mode(CgroupFilterMode::Watch).unwrap();
    probe.add_cgroup_path(&attacker_cgroup.0).unwrap();
    probe.add_cgroup_path(&victim_cgroup.0).unwrap();
    let before = decided(&probe.counters().unwrap());

    let attacker_dir = TempDir::lettered("attacker");
    let victim_dir = TempDir::lettered("victim");
    std::env::set_var("BADFD_WORKLOAD_CGROUP", &attacker_cgroup.0);
    let attack_start = std::time::Instant::now();
    let attacker = UidWorkload::spawn(&[scenario, attacker_dir.path().to_str().unwrap(), &ATTACK_SECS.to_string(), &ATTACKER_UID.to_string()]);
    // The reader is held (as a busy pipeline would be) until fairness has
    // had to decide: an attacker in an emulated guest (the kernel matrix)
    // makes a tenth of the host's failures or less, too few to fill half the
    // ring between two reads. Held at most 6 s; an attack that never got
    // throttled fails below.
    while decided(&probe.counters().unwrap()).1 == before.1 && attack_start.elapsed() < Duration::from_secs(6) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let throttled_after = attack_start.elapsed();
    let collector = Collector::start_with_interval(&mut probe, Duration::from_millis(50));
    std::thread::sleep(Duration::from_secs(3).saturating_sub(throttled_after) + Duration::from_millis(500));
    std::env::set_var("BADFD_WORKLOAD_CGROUP", &victim_cgroup.0);
    let victim = UidWorkload::spawn(&[
        "uidfail",
        victim_dir.path().to_str().unwrap(),
        &VICTIM_FAILURES.to_string(),
        &VICTIM_UID.to_string(),
        "100",
    ]);
    std::env::remove_var("BADFD_WORKLOAD_CGROUP");
    assert_eq!(victim.failures(), VICTIM_FAILURES);
    let attacker_made = attacker.failures();
    let after = decided(&probe.counters().unwrap());
    let (submitted, throttled, full) = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
    // Everything submitted is in the ring now: wait for the reader to take it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while (collector.all().len() as u64) < submitted && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let events = collector.all();
    let victim_events: Vec<_> = events.iter().filter(|e| e.uid == VICTIM_UID).collect();
    let attacker_events = events.iter().filter(|e| e.uid == ATTACKER_UID).count() as u64;
    eprintln!(
        "{scenario}: attacker made {attacker_made} failures in {ATTACK_SECS} s: {attacker_events} streamed, {throttled} throttled, \
         {full} lost to a full ring (throttling began after {} ms); victim: {} of {VICTIM_FAILURES} streamed",
        throttled_after.as_millis(),
        victim_events.len()
    );
    let mut victim_paths: Vec<String> = victim_events.iter().map(|e| String::from_utf8_lossy(&e.path).into_owned()).collect();
    victim_paths.sort();
    let mut want: Vec<String> = (0..VICTIM_FAILURES).map(|i| victim_dir.path().join(format!("quiet-{i}")).display().to_string()).collect();
    want.sort();
    assert_eq!(victim_paths, want, "every victim failure streamed, once");
    assert_eq!(events.len() as u64, submitted, "the reader took every event the kernel submitted");
    assert_eq!(attacker_events + VICTIM_FAILURES, submitted);
    assert_eq!(submitted + throttled + full, attacker_made + VICTIM_FAILURES, "every anomaly streamed or counted as dropped");
    assert!(throttled > 0, "the attack never had to be throttled: it did not flood");
}

#[test]
fn a_fork_storm_cannot_blind_badfd_to_another_user() {
    attack("forkflood");
}

#[test]
fn fat_events_cannot_blind_badfd_to_another_user() {
    attack("fatflood");
}
