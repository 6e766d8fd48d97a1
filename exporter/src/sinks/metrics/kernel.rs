//! The exact kernel counters and the probe's state, read from the maps at
//! each scrape (never from the event stream, so they stay exact when it
//! overflows).

use std::sync::{Arc, Mutex};

use exporter_common::{
    latency_bucket_upper_ns, Counters, Loss, Stream, Syscall, ERRNO_SLOTS, FOUND_ERRNO_SLOTS, LATENCY_BUCKETS, RESULT_FAILED, RESULT_OK,
};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, NoLabelSet},
    metrics::MetricType,
};

use super::exemplar::counter;
use crate::{
    errno,
    probe::{kernel_release, FoundLaterTally},
    Probe,
};

/// The probe, shared by the scrape (counters), reloads (config) and the
/// readiness check; `None` until it is attached and after it is detached.
pub type SharedProbe = Arc<Mutex<Option<Probe>>>;

/// The kernel's found-later counters as read so far (`serve` reads them every
/// 500 ms, since the kernel reuses an epoch's bucket a few epochs on); `None`
/// where the classification is off.
pub type SharedFoundLater = Arc<Mutex<Option<FoundLaterTally>>>;

/// Kernel log2 latency buckets exposed as `le` bounds: 2^8 ns (256 ns) to
/// 2^36 ns (about 69 s). Lower buckets are included cumulatively, higher ones
/// in `+Inf`, so the counts stay exact.
const EXPOSED_LATENCY_BUCKETS: std::ops::RangeInclusive<usize> = 8..=36;

/// The exact per-CPU kernel counters and the probe's state, read at each scrape.
pub struct KernelCollector {
    pub probe: SharedProbe,
    pub found_later: SharedFoundLater,
}

impl std::fmt::Debug for KernelCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KernelCollector")
    }
}

impl Collector for KernelCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let guard = self.probe.lock().unwrap_or_else(|e| e.into_inner());
        let mut m = encoder.encode_descriptor("ready", "1 while the programs are attached (what /-/ready reports), else 0.", None, MetricType::Gauge)?;
        m.encode_gauge(&(guard.is_some() as i64))?;
        let Some(probe) = guard.as_ref() else { return Ok(()) };
        let counters = match probe.counters() {
            Ok(c) => c,
            Err(error) => {
                tracing::warn!(%error, "reading the kernel counters failed; scrape has no kernel metrics");
                return Ok(());
            }
        };
        // Untimed (`--no-timing`): no latency, slow opens or in-flight entries
        // exist, so their families are left out rather than shown as zeros.
        let timed = probe.timed();
        let inflight = if timed { probe.inflight_len().ok() } else { None };
        let mode = probe.attach_mode().name();
        let arch = probe.arch();
        let missed_runs = probe.missed_runs_by_program();
        let fallback = probe.fallback_reason().unwrap_or("").trim().to_string();
        drop(guard);

        let mut m = encoder.encode_descriptor("opens", "Opens by syscall and result, every open on the host (exact, from the kernel).", None, MetricType::Counter)?;
        for s in Syscall::ALL {
            for (result, i) in [("success", RESULT_OK), ("failure", RESULT_FAILED)] {
                counter(&mut m, &[("syscall", s.name()), ("result", result)], counters.opens[s as usize][i])?;
            }
        }
        let mut m = encoder.encode_descriptor("open_failures", "Failed opens by syscall and errno (exact, from the kernel).", None, MetricType::Counter)?;
        for s in Syscall::ALL {
            // The errnos alerts name exist at 0 from start for the opens of
            // this architecture, so that increase() sees a node's first one.
            let at_zero = arch.syscalls().contains(&s) && !s.is_exec();
            for (n, &count) in counters.errnos[s as usize].iter().enumerate() {
                if count > 0 || (at_zero && ALWAYS_EXPOSED_ERRNOS.contains(&(n as i32))) {
                    let name = if n == ERRNO_SLOTS - 1 { "E255_OR_HIGHER" } else { errno::name(n as i32) };
                    counter(&mut m, &[("syscall", s.name()), ("errno", name)], count)?;
                }
            }
        }
        if timed {
            encode_timing(&mut encoder, &counters)?;
        }
        if let Some(tally) = self.found_later.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            encode_found_later(&mut encoder, tally)?;
        }
        let mut m = encoder.encode_descriptor("kernel_events_lost", "What the kernel could not do, by reason: events dropped (ring buffer full), opens not timed, paths unread or cut.", None, MetricType::Counter)?;
        for loss in Loss::ALL {
            counter(&mut m, &[("reason", loss.name())], counters.losses[loss as usize])?;
        }
        let mut m = encoder.encode_descriptor("kernel_events", "Anomalies by what the kernel did with them: submitted to the ring buffer (with the found notices, badfd_found_later_notices_total), filtered out, or slow but not streamed (failures-only).", None, MetricType::Counter)?;
        for (outcome, s) in [("submitted", Stream::Submitted), ("filtered", Stream::Filtered), ("slow_not_streamed", Stream::SlowNotStreamed)] {
            counter(&mut m, &[("outcome", outcome)], counters.stream[s as usize])?;
        }
        let mut m = encoder.encode_descriptor("opens_interrupted", "Open attempts a signal interrupted with a restart code (ERESTARTSYS): restarted by the kernel (the restart is counted as the open it is) or their task was killed. Not in badfd_opens_total: no program sees that result (an interruption the program sees as EINTR is a failure with errno EINTR).", None, MetricType::Counter)?;
        m.encode_counter::<NoLabelSet, u64, u64>(&counters.stream[Stream::Interrupted as usize], None)?;
        if let Some(n) = inflight {
            let m = encoder.encode_descriptor("inflight_opens", "Opens in progress now (entries in the kernel's in-flight map).", None, MetricType::Gauge)?;
            let mut m = m;
            m.encode_gauge(&(n as i64))?;
        }
        let mut m = encoder.encode_descriptor(
            "kernel_program_missed_runs",
            "Runs of a badfd program the kernel skipped because that program was already running on the CPU (recursion_misses, Linux 5.12+): the opens of those runs are neither counted nor streamed.",
            None,
            MetricType::Counter,
        )?;
        for (program, n) in &missed_runs {
            counter(&mut m, &[("program", program.as_str())], *n)?;
        }
        let mut m = encoder.encode_descriptor("kernel", "The running kernel and how the programs are attached.", None, MetricType::Info)?;
        m.encode_info(&[
            ("release", kernel_release().as_str()),
            ("attach_mode", mode),
            ("fallback_reason", fallback.as_str()),
            ("timing", if timed { "on" } else { "off" }),
        ])?;
        Ok(())
    }
}

/// Failures split by found later (exact, from the kernel), once decided.
fn encode_found_later(encoder: &mut DescriptorEncoder, tally: &FoundLaterTally) -> std::fmt::Result {
    let totals = tally.totals();
    let mut m = encoder.encode_descriptor(
        "open_failures_classified",
        "Failed opens (and execs) whose found-later window has closed, by errno and whether their process then opened a file of the same name (found_later=\"true\": a search path's probe) (exact, from the kernel; up to the window plus 1 s behind badfd_open_failures_total).",
        None,
        MetricType::Counter,
    )?;
    for slot in 0..FOUND_ERRNO_SLOTS {
        let (found, not_found) = (totals.found[slot], totals.not_found[slot]);
        // Never-seen errnos stay out, except those alerts name (present at 0).
        if found == 0 && not_found == 0 && !ALWAYS_EXPOSED_ERRNOS.contains(&(slot as i32)) {
            continue;
        }
        let name = if slot == FOUND_ERRNO_SLOTS - 1 { "E127_OR_HIGHER" } else { errno::name(slot as i32) };
        counter(&mut m, &[("errno", name), ("found_later", "true")], found)?;
        counter(&mut m, &[("errno", name), ("found_later", "false")], not_found)?;
    }
    let mut m = encoder.encode_descriptor(
        "found_later_inexact",
        "Where the found-later split may be off, by reason: late_epoch (an epoch read after the kernel reused its bucket), excess_finds (finds beyond an epoch's failures, counted as found).",
        None,
        MetricType::Counter,
    )?;
    counter(&mut m, &[("reason", "late_epoch")], tally.late_epochs)?;
    counter(&mut m, &[("reason", "excess_finds")], tally.excess_finds)?;
    Ok(())
}

/// errnos whose classified series exist from the start at 0, so that
/// `increase()` sees a node's first one (the alert rules name them).
const ALWAYS_EXPOSED_ERRNOS: [i32; 7] =
    [libc::EACCES, libc::EMFILE, libc::ENFILE, libc::ENOSPC, libc::EDQUOT, libc::EIO, libc::EROFS];

/// The kernel's slow-open counts and latency histogram (timed opens only).
fn encode_timing(encoder: &mut DescriptorEncoder, counters: &Counters) -> std::fmt::Result {
    let mut m = encoder.encode_descriptor("slow_opens", "Opens at or over the slow threshold, by syscall (exact, from the kernel).", None, MetricType::Counter)?;
    for s in Syscall::ALL {
        counter(&mut m, &[("syscall", s.name())], counters.slow[s as usize])?;
    }
    let mut m = encoder.encode_descriptor("open_duration_seconds", "Latency of every timed open, by syscall, from the kernel's log2 buckets (le = 2^i ns).", None, MetricType::Histogram)?;
    for s in Syscall::ALL {
        // The encoder takes per-bucket counts and accumulates them itself.
        // Buckets below the first exposed bound join it; those above the
        // last join +Inf.
        let buckets = &counters.latency[s as usize];
        debug_assert_eq!(buckets.len(), LATENCY_BUCKETS);
        let (first, last) = (*EXPOSED_LATENCY_BUCKETS.start(), *EXPOSED_LATENCY_BUCKETS.end());
        let mut exposed = Vec::with_capacity(last - first + 2);
        exposed.push((latency_bucket_upper_ns(first) as f64 / 1e9, buckets[..=first].iter().sum::<u64>()));
        for (i, &n) in buckets.iter().enumerate().take(last + 1).skip(first + 1) {
            exposed.push((latency_bucket_upper_ns(i) as f64 / 1e9, n));
        }
        exposed.push((f64::INFINITY, buckets[last + 1..].iter().sum::<u64>()));
        let cumulative: u64 = buckets.iter().sum();
        let sum = counters.latency_sum_ns[s as usize] as f64 / 1e9;
        m.encode_family(&[("syscall", s.name())])?.encode_histogram::<NoLabelSet>(sum, cumulative, &exposed, None)?;
    }
    Ok(())
}

