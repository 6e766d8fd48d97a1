//! One anomaly as one OpenTelemetry log record: event name, severity, body,
//! time of the open, semantic-convention attributes.
//!
//! Attributes (semantic conventions where they exist, `badfd.*` where they do not):
//!
//! | attribute | value |
//! | --- | --- |
//! | `log.record.uid` | the record's id, 32 hex digits: the metrics' exemplars carry it as `log_record_uid` |
//! | `process.pid`, `thread.id` | the opener's pid (tgid) and tid |
//! | `thread.name` | the opening thread's name (its comm: at most 15 bytes, and what the program set; not an executable) |
//! | `process.executable.path`, `process.executable.name` | the target of `/proc/PID/exe` and its base name, read as the anomaly arrived (the pipeline's executable stage); absent when it could not be read (the process had exited; see `executable.rs`) |
//! | `process.user.id` | its **effective** uid, where the kernel could read it (BTF); absent otherwise |
//! | `process.real_user.id` | its real uid |
//! | `file.path` | the path **resolved** against the opener's cwd or dirfd (absolute where badfd could resolve it) |
//! | `badfd.file.path.opened` | the path exactly as passed to the syscall |
//! | `badfd.file.path.resolution` | how `file.path` was made absolute: absolute, kernel, proc, unresolved |
//! | `badfd.file.path.truncated` | true when the kernel copied only part of a longer path |
//! | `error.type` | the errno name, e.g. `ENOENT` (failed opens only) |
//! | `badfd.syscall` | open, openat, openat2 or creat |
//! | `badfd.open.flags` | the open flags as a number, and `badfd.open.flags.names` as `O_WRONLY\|O_CREAT` |
//! | `badfd.found_later` | failures: true when the process opened a file of the same name soon after (a search path's probe; severity DEBUG), false when it never did |
//! | `badfd.file.path.missing` | ENOENT/ENOTDIR never found: the first component of `file.path` that did not exist (or was not a directory), as badfd found it when the failure was decided, after the fact |
//! | `badfd.open.duration` | seconds from syscall entry to exit (absent with `--no-timing`) |
//! | `badfd.cgroup.id` | the opener's cgroup v2 id |
//! | `container.id`, `container.runtime.name` | the opener's container, where it runs in one |
//! | `k8s.pod.name`, `k8s.pod.uid`, `k8s.namespace.name`, `k8s.container.name`, `k8s.node.name` | its pod, where known (the UID from the cgroup path, names from the API in a cluster) |
//!
//! | `badfd.file.path.bytes`, `badfd.file.path.opened.bytes` | the exact bytes of `file.path` and `badfd.file.path.opened`, only when they are not valid UTF-8 |
//!
//! There is no trace context: an open is not part of a trace badfd knows of,
//! and a made-up trace id would send a backend looking for a trace that does
//! not exist. The metrics point at a record by its `log.record.uid`.
//!
//! The resource's attributes (`service.*`, `host.name`, and `k8s.*` of the
//! pod badfd runs in) describe badfd itself; the record's `k8s.*` and
//! `container.*` attributes describe the process that opened the file.
//!
//! `file.path` is the resolved path because that is the file a user looks for.
//! Paths are raw bytes in the kernel; the string attributes are UTF-8 with
//! U+FFFD for each invalid sequence, so a path that is not UTF-8 also gets its
//! exact bytes in a bytes-valued attribute (as `badfd trace --json` adds base64).

use std::{
    borrow::Cow,
    time::{Duration, SystemTime},
};

use opentelemetry::logs::{AnyValue, LogRecord as _, Severity};
use opentelemetry_sdk::logs::SdkLogRecord;

use crate::{
    errno,
    pipeline::{missing::MissingComponent, open_flags::open_flags_names, resolve::Resolution, OtelAttributes, RecordId},
    OpenEvent,
};

pub const EVENT_FAILED: &str = "file.open.failed";
pub const EVENT_SLOW: &str = "file.open.slow";
pub const EVENT_SUPPRESSED: &str = "file.open.suppressed";

/// An anomaly as it waits in the queue: everything the record needs, copied
/// from the event loop's borrowed data.
#[derive(Debug)]
pub(crate) struct QueuedAnomaly {
    pub event: OpenEvent,
    pub resolved: Vec<u8>,
    pub resolution: Resolution,
    pub time: SystemTime,
    /// `log.record.uid`, and the metrics' exemplar.
    pub record_id: RecordId,
    /// `/proc/PID/exe` as read when the record was queued.
    pub executable: Option<std::sync::Arc<[u8]>>,
    /// The container's attributes (see `ContainerInfo::otel_attributes`).
    pub container: Option<OtelAttributes>,
    /// A failure's found-later verdict; `None` when not classified.
    pub found_later: Option<bool>,
    pub missing: Option<MissingComponent>,
}

/// Records of one (user, cgroup, errno or slow) that the rate limit held back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Suppressed {
    /// The command of the latest one held back.
    pub comm: Vec<u8>,
    /// Its user and cgroup; `None` for the shared bucket past the key bound.
    pub source: Option<super::limiter::Source>,
    /// None for slow opens.
    pub errno: Option<i32>,
    pub count: u64,
    pub first: SystemTime,
    pub last: SystemTime,
}

/// errnos that mean the host is in trouble rather than a program looking for
/// an optional file: out of descriptors, I/O errors, full or read-only disks.
pub const SERIOUS_ERRNOS: [i32; 7] =
    [libc::EMFILE, libc::ENFILE, libc::EIO, libc::ENOSPC, libc::EROFS, libc::EDQUOT, libc::ENOMEM];

/// Failures that programs cause on purpose all the time (probing for optional
/// files, O_EXCL creation races).
pub const ORDINARY_ERRNOS: [i32; 3] = [libc::ENOENT, libc::EEXIST, libc::ENOTDIR];

/// ERROR for serious errnos, INFO for ordinary ones, WARN for the rest
/// (permission denied, loops, bad descriptors ...) and for slow opens.
pub fn severity(errno: Option<i32>) -> Severity {
    match errno {
        Some(e) if SERIOUS_ERRNOS.contains(&e) => Severity::Error,
        Some(e) if ORDINARY_ERRNOS.contains(&e) => Severity::Info,
        _ => Severity::Warn,
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn int(v: impl Into<i64>) -> AnyValue {
    AnyValue::Int(v.into())
}

/// Fills a fresh record from the SDK with one anomaly.
pub(crate) fn fill_anomaly(record: &mut SdkLogRecord, a: &QueuedAnomaly) {
    let e = &a.event;
    let errno = e.errno().filter(|_| e.failed());
    let comm = e.comm_lossy();
    let resolved = lossy(&a.resolved);
    // A search path's probe: below INFO, so that one filter drops them all.
    let sev = if a.found_later == Some(true) { Severity::Debug } else { severity(errno) };
    record.set_event_name(if errno.is_some() { EVENT_FAILED } else { EVENT_SLOW });
    record.set_severity_number(sev);
    record.set_severity_text(sev.name());
    record.set_timestamp(a.time);
    record.set_observed_timestamp(SystemTime::now());
    let body = match errno {
        Some(n) => format!("{comm} (pid {}) could not open {resolved}: {} ({})", e.pid, errno::name(n), errno::meaning(n)),
        None => format!("{comm} (pid {}) took {:.3} s to open {resolved}", e.pid, e.latency_ns as f64 / 1e9),
    };
    record.set_body(AnyValue::String(body.into()));
    record.add_attribute("log.record.uid", AnyValue::String(super::LogRecordUid(a.record_id).to_string().into()));
    record.add_attribute("process.pid", int(e.pid));
    record.add_attribute("thread.id", int(e.tid));
    record.add_attribute("thread.name", AnyValue::String(comm.into()));
    if let Some(path) = &a.executable {
        record.add_attribute("process.executable.path", AnyValue::String(lossy(path).into()));
        record.add_attribute("process.executable.name", AnyValue::String(lossy(super::executable::base_name(path)).into()));
    }
    if let Some(euid) = e.euid {
        record.add_attribute("process.user.id", int(euid));
    }
    record.add_attribute("process.real_user.id", int(e.uid));
    record.add_attribute("file.path", AnyValue::String(resolved.into()));
    record.add_attribute("badfd.file.path.opened", AnyValue::String(lossy(&e.path).into()));
    // Lossless where the strings are not.
    for (key, bytes) in [("badfd.file.path.bytes", &a.resolved), ("badfd.file.path.opened.bytes", &e.path)] {
        if std::str::from_utf8(bytes).is_err() {
            record.add_attribute(key, AnyValue::Bytes(Box::new(bytes.clone())));
        }
    }
    record.add_attribute("badfd.file.path.resolution", AnyValue::String(Cow::Borrowed(a.resolution.name()).into()));
    if e.path_truncated() {
        record.add_attribute("badfd.file.path.truncated", AnyValue::Boolean(true));
    }
    if let Some(n) = errno {
        record.add_attribute("error.type", AnyValue::String(Cow::Borrowed(errno::name(n)).into()));
        if let Some(found_later) = a.found_later {
            record.add_attribute("badfd.found_later", AnyValue::Boolean(found_later));
        }
    }
    if let Some(m) = &a.missing {
        record.add_attribute("badfd.file.path.missing", AnyValue::String(lossy(&m.path).into()));
    }
    record.add_attribute("badfd.syscall", AnyValue::String(Cow::Borrowed(e.syscall.name()).into()));
    record.add_attribute("badfd.open.flags", AnyValue::Int(e.open_flags as i64));
    record.add_attribute("badfd.open.flags.names", AnyValue::String(open_flags_names(e.open_flags).into()));
    if let Some(latency_ns) = e.latency_ns() {
        record.add_attribute("badfd.open.duration", AnyValue::Double(latency_ns as f64 / 1e9));
    }
    record.add_attribute("badfd.cgroup.id", AnyValue::Int(e.cgroup_id as i64));
    for (key, value) in a.container.iter().flat_map(|c| c.iter()) {
        record.add_attribute(*key, AnyValue::String(value.clone().into()));
    }
}

/// Fills a fresh record with the summary of suppressed records.
pub(crate) fn fill_summary(record: &mut SdkLogRecord, s: &Suppressed, window: Duration) {
    let comm = lossy(&s.comm);
    record.set_event_name(EVENT_SUPPRESSED);
    record.set_severity_number(Severity::Warn);
    record.set_severity_text(Severity::Warn.name());
    record.set_timestamp(s.last);
    record.set_observed_timestamp(SystemTime::now());
    let what = match s.errno {
        Some(n) => format!("failed opens ({})", errno::name(n)),
        None => "slow opens".to_string(),
    };
    let secs = s.last.duration_since(s.first).unwrap_or_default().max(window).as_secs_f64();
    record.set_body(AnyValue::String(
        format!("suppressed {} {what} by {comm} over {secs:.1} s (rate limit per user, cgroup and errno)", s.count).into(),
    ));
    record.add_attribute("thread.name", AnyValue::String(comm.into()));
    if let Some(source) = s.source {
        record.add_attribute("process.real_user.id", int(source.uid));
        record.add_attribute("badfd.cgroup.id", AnyValue::Int(source.cgroup_id as i64));
    }
    if let Some(n) = s.errno {
        record.add_attribute("error.type", AnyValue::String(Cow::Borrowed(errno::name(n)).into()));
    }
    record.add_attribute("badfd.suppressed.count", AnyValue::Int(s.count as i64));
    record.add_attribute(
        "badfd.suppressed.event_name",
        AnyValue::String(Cow::Borrowed(if s.errno.is_some() { EVENT_FAILED } else { EVENT_SLOW }).into()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_follow_the_errno() {
        assert_eq!(severity(Some(libc::ENOENT)), Severity::Info);
        assert_eq!(severity(Some(libc::EACCES)), Severity::Warn);
        for e in [libc::EMFILE, libc::ENFILE, libc::EIO, libc::ENOSPC, libc::EROFS, libc::EDQUOT] {
            assert_eq!(severity(Some(e)), Severity::Error, "{}", errno::name(e));
        }
        assert_eq!(severity(None), Severity::Warn);
    }
}
