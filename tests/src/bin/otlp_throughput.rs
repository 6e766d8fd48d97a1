//! OTLP benchmark: log records per second that badfd's OTLP pipeline sustains
//! to a local receiver (gRPC and HTTP/protobuf, on 127.0.0.1) without a drop.
//!
//!   otlp_throughput [SECONDS_PER_STEP]     (run through bench/otlp_throughput.sh)
//!
//! A producer thread (standing in for the event loop) calls `Otlp::emit` at a
//! fixed rate for each step; the step passes when every record was exported and
//! none dropped. Prints one line per step and the highest rate that passed.
//! Synthetic events (no kernel needed); paths and commands vary so that the rate
//! limit, which is off here, would not matter anyway.
//!
//! A third series, "encode-only", replaces the network and the receiver with an
//! exporter that only does the OTLP protobuf encoding: the pipeline's own
//! capacity on this machine, without the receiver competing for the same cores.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use badfd::{
    config::OtlpArgs,
    pipeline::resolve::{Resolution, ResolvedPath},
    sinks::otlp::{Otlp, Protocol},
    OpenEvent,
};
use badfd_tests::otlp_receiver::{Receiver, Transport};
use exporter_common::EVENT_FAILED;

const RATES: [u64; 5] = [50_000, 100_000, 150_000, 200_000, 300_000];

fn events() -> Vec<(OpenEvent, ResolvedPath)> {
    (0..256)
        .map(|i| {
            let mut comm = [0u8; 16];
            let name = format!("bench-{}", i % 16);
            comm[..name.len()].copy_from_slice(name.as_bytes());
            let path = format!("/var/lib/bench/{i}/missing-config-file.toml").into_bytes();
            let e = OpenEvent {
                latency_ns: 12_345,
                cgroup_id: 4242,
                ret: -(libc::ENOENT as i64),
                open_flags: libc::O_RDONLY as u64 | libc::O_CLOEXEC as u64,
                pid: 1000 + i,
                tid: 1000 + i,
                uid: 1000,
                gid: 1000,
                flags: EVENT_FAILED,
                comm,
                path: path.clone(),
                ..Default::default()
            };
            (e, ResolvedPath { path, how: Resolution::Absolute })
        })
        .collect()
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

struct Step {
    sent: u64,
    exported: u64,
    dropped: u64,
    /// Of those, dropped because the export failed (the rest: queue full).
    export_failed: u64,
    seconds: f64,
}

/// Encodes each batch as an OTLP request and counts its records; sends nothing.
#[derive(Debug, Default)]
struct EncodeOnly {
    resource: Option<opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema>,
    records: std::sync::atomic::AtomicU64,
    bytes: std::sync::atomic::AtomicU64,
}

impl opentelemetry_sdk::logs::LogExporter for EncodeOnly {
    async fn export(&self, batch: opentelemetry_sdk::logs::LogBatch<'_>) -> opentelemetry_sdk::error::OTelSdkResult {
        use prost::Message;
        use std::sync::atomic::Ordering::Relaxed;
        let resource_logs = opentelemetry_proto::transform::logs::tonic::group_logs_by_resource_and_scope(
            &batch,
            self.resource.as_ref().unwrap(),
        );
        let request = opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest { resource_logs };
        self.bytes.fetch_add(request.encode_to_vec().len() as u64, Relaxed);
        self.records.fetch_add(batch.iter().count() as u64, Relaxed);
        Ok(())
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.resource = Some(resource.into());
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Send(Transport),
    EncodeOnly,
}

async fn step(mode: Mode, rate: u64, seconds: f64) -> Step {
    let transport = match mode {
        Mode::Send(t) => t,
        Mode::EncodeOnly => Transport::Grpc,
    };
    // Bound but unused in encode-only mode (the config needs an endpoint).
    let receiver = Receiver::bind(transport, false).await;
    let protocol = if transport == Transport::Grpc { Protocol::Grpc } else { Protocol::HttpProtobuf };
    let mut args = OtlpArgs::with_endpoint(&receiver.endpoint(), protocol);
    args.otlp_rate_limit = 0;
    args.otlp_batch_delay_ms = Some(100);
    if let Some(n) = std::env::var("BADFD_OTLP_MAX_BATCH").ok().and_then(|v| v.parse().ok()) {
        args.otlp_max_batch = Some(n);
    }
    let config = args.resolve_with(|_| None).unwrap().unwrap();
    let mut registry = prometheus_client::registry::Registry::with_prefix("badfd");
    let otlp = Arc::new(match mode {
        Mode::Send(_) => Otlp::start(config, &mut registry).unwrap(),
        Mode::EncodeOnly => Otlp::start_with_exporter(config, EncodeOnly::default(), &mut registry).unwrap(),
    });

    let producer = {
        let otlp = otlp.clone();
        std::thread::spawn(move || {
            let mut events = events();
            let started = Instant::now();
            let total = (rate as f64 * seconds) as u64;
            let mut sent = 0u64;
            while sent < total {
                // Emit what the clock says is due, then sleep a little: a paced source.
                let due = ((started.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
                while sent < due {
                    let i = sent as usize % events.len();
                    events[i].0.start_ns = monotonic_ns();
                    let (e, r) = &events[i];
                    otlp.emit(e, r);
                    sent += 1;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            sent
        })
    };
    let sent = tokio::task::spawn_blocking(move || producer.join().unwrap()).await.unwrap();
    let report = otlp.shutdown(Duration::from_secs(30)).await;
    let c = report.counts;
    if mode != Mode::EncodeOnly {
        assert_eq!(receiver.record_count(), c.exported, "the receiver got what was counted exported");
    }
    assert_eq!(c.anomalies_accounted(), sent, "every record accounted for");
    receiver.stop().await;
    Step {
        sent,
        exported: c.exported,
        dropped: c.dropped_queue_full + c.dropped_export_failed + c.dropped_shutdown,
        export_failed: c.dropped_export_failed,
        seconds,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds: f64 = std::env::args().nth(1).map(|s| s.parse().expect("SECONDS_PER_STEP")).unwrap_or(3.0);
    for mode in [Mode::Send(Transport::Grpc), Mode::Send(Transport::Http), Mode::EncodeOnly] {
        let name = match mode {
            Mode::Send(Transport::Grpc) => "grpc",
            Mode::Send(Transport::Http) => "http/protobuf",
            Mode::EncodeOnly => "encode-only",
        };
        let mut best = 0;
        for rate in RATES {
            let s = step(mode, rate, seconds).await;
            let ok = s.dropped == 0 && s.exported == s.sent;
            println!(
                "{name:14} offered {rate:>7} records/s for {:.0} s: sent {:>8}, exported {:>8}, dropped {:>7} (export failed {}) {}",
                s.seconds,
                s.sent,
                s.exported,
                s.dropped,
                s.export_failed,
                if ok { "ok" } else { "DROPS" }
            );
            if !ok {
                break;
            }
            best = rate;
        }
        println!("{name:14} sustained without drops: {best} records/s (highest offered rate that passed)");
    }
}
