//! The verifier's work for every program badfd loads, on the running kernel:
//! `verified_insns` of `bpf_prog_info` (Linux 5.16+), for each attach mode the
//! kernel allows, timed and `--no-timing`, and for the test-only programs.
//! Every shipped program must stay at or below 100,000 instructions, 10x under
//! the verifier's limit of 1,000,000: kernel builds differ in how much work the
//! verifier does for the same program (a test-only program once passed on one
//! 6.18 build and hit the limit on another).
//!
//! Prints one line per program, which the kernel matrix (tests/vm/run.sh)
//! gathers into its table:
//! `verifier: kernel=<release> mode=<mode> timing=<on|off> program=<name> insns=<n|n/a>`.
//! Run as root; it fails, never skips, when BPF cannot be loaded.

use badfd::{probe::kernel_release, AttachMode, AttachPreference, Probe, ProbeOptions};
use badfd_tests::{
    kernel_bench::{load_test_object, TransportBenchExt},
    kernel_has_fentry_helpers, kernel_version, test_attach_mode,
};

/// The most instructions the verifier may process for a program badfd ships.
const SHIPPED_LIMIT: u32 = 100_000;

/// Prints a program's line; returns its count.
fn report(mode: &str, timing: &str, program: &str, insns: Option<u32>) -> Option<u32> {
    let shown = insns.map_or_else(|| "n/a".to_string(), |n| n.to_string());
    println!("verifier: kernel={} mode={mode} timing={timing} program={program} insns={shown}", kernel_release());
    insns
}

/// The counts of every program `probe` loaded (the shipped ones).
fn check_shipped(probe: &Probe, mode: &str, timing: &str, over: &mut Vec<String>) {
    let counts = probe.verified_instructions();
    assert!(!counts.is_empty(), "the probe loaded no program");
    let has_count = kernel_version() >= (5, 16);
    for (program, insns) in counts {
        if has_count {
            assert!(insns.is_some(), "Linux 5.16+ reports verified_insns, but {program} has none");
        }
        if let Some(n) = report(mode, timing, &program, insns) {
            if n > SHIPPED_LIMIT {
                over.push(format!("{program} ({mode}, timing {timing}): {n}"));
            }
        }
    }
    if !has_count {
        println!("verifier: kernel={} has no verified_insns (Linux 5.16+): counts are n/a", kernel_release());
    }
}

#[test]
fn every_shipped_program_stays_ten_times_under_the_verifier_limit() {
    let modes: Vec<AttachPreference> = match test_attach_mode() {
        // auto: each mode the kernel allows (fentry is refused under lockdown,
        // and needs 5.15's helpers).
        AttachPreference::Auto => vec![AttachPreference::Tracepoint, AttachPreference::Fentry],
        explicit => vec![explicit],
    };
    let mut over = Vec::new();
    for attach in modes {
        for timing in [true, false] {
            let options = ProbeOptions { attach, timing, ..ProbeOptions::default() };
            let probe = match Probe::load(&options) {
                Ok(p) => p,
                Err(e) if test_attach_mode() == AttachPreference::Auto && attach == AttachPreference::Fentry => {
                    println!("verifier: kernel={} mode=fentry refused here: {e}", kernel_release());
                    assert!(
                        !kernel_has_fentry_helpers() || badfd_tests::kernel_locked_down() == Some(true),
                        "fentry was refused on a kernel that should allow it: {e}"
                    );
                    break;
                }
                Err(e) => panic!("kernel test could not load badfd's BPF program: {e}"),
            };
            let mode = match probe.attach_mode() {
                AttachMode::Fentry => "fentry",
                AttachMode::Tracepoint => "tracepoint",
            };
            // `--no-timing` needs 5.15; before, the probe times opens and says so.
            let timing = if probe.timed() { "on" } else { "off" };
            check_shipped(&probe, mode, timing, &mut over);
        }
    }
    assert!(over.is_empty(), "programs over {SHIPPED_LIMIT} verified instructions: {over:?}");
}

#[test]
fn the_test_only_programs_load_and_report_their_verifier_work() {
    // The tests' object in this run's attach mode, with bench_emit (bpf_loop,
    // Linux 5.17+) loaded beside the shipped programs.
    let options = ProbeOptions { attach: test_attach_mode(), ..ProbeOptions::default() };
    let mut probe = load_test_object(&options).unwrap_or_else(|e| panic!("kernel test could not load the tests' BPF object: {e}"));
    if kernel_version() < (5, 17) {
        println!("verifier: kernel={} program=bench_emit needs bpf_loop (Linux 5.17+): not loaded", kernel_release());
        return;
    }
    if let Err(e) = probe.load_transport_bench() {
        panic!("bench_emit did not load: {e}");
    }
    let counts = probe.verified_instructions();
    let (_, insns) = counts.iter().find(|(name, _)| name == "bench_emit").expect("bench_emit is loaded");
    let mode = match probe.attach_mode() {
        AttachMode::Fentry => "fentry",
        AttachMode::Tracepoint => "tracepoint",
    };
    report(mode, "test-only", "bench_emit", *insns);
}
