//! `badfd trace --json`: one JSON object per line with every field, lossless
//! for paths and comms that are not UTF-8.

use base64::Engine as _;
use serde::Serialize;

use crate::{errno, pipeline::open_flags::open_flags_names, pipeline::Anomaly};

/// One JSON line of `badfd trace --json`. Field names are a public interface:
/// documented in docs/trace.md; add fields, never rename.
#[derive(Serialize)]
struct JsonLine<'a> {
    /// RFC 3339, UTC, nanoseconds: when the open started.
    time: String,
    /// The same instant as the kernel's CLOCK_MONOTONIC, in ns.
    monotonic_ns: u64,
    pid: u32,
    /// The parent's pid when the open happened (the kernel's
    /// `real_parent`); `null` where the kernel had no offsets for it.
    ppid: Option<u32>,
    tid: u32,
    /// The real uid (as `uid`: `bpf_get_current_uid_gid`) and the effective
    /// one; `euid` is `null` where the kernel has no offsets for it.
    uid: u32,
    euid: Option<u32>,
    gid: u32,
    comm: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    comm_base64: Option<String>,
    /// The process's executable (`/proc/PID/exe`, read as the event arrived);
    /// absent where it could not be read (see docs/trace.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    executable: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    executable_base64: Option<String>,
    syscall: &'static str,
    flags: u64,
    flags_names: String,
    mode: u32,
    dirfd: i32,
    ret: i64,
    errno: Option<&'static str>,
    error: Option<&'static str>,
    failed: bool,
    slow: bool,
    /// `null` where the open was not timed (`--no-timing`).
    latency_ns: Option<u64>,
    /// The path as the process passed it.
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_base64: Option<String>,
    /// Absolute (unless `resolution` is `unresolved`).
    resolved_path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    resolved_path_base64: Option<String>,
    resolution: &'a str,
    path_truncated: bool,
    path_unreadable: bool,
    cgroup_id: u64,
    /// The container the open was made in, where its cgroup says (`pipeline::containers`).
    #[serde(skip_serializing_if = "Option::is_none")]
    container_id: Option<&'a str>,
    /// The rest of what the container lookup found, under the names of the
    /// OTLP records' attributes (docs/otlp.md), each where known.
    #[serde(skip_serializing_if = "Option::is_none")]
    container_runtime: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pod_uid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pod_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    systemd_unit: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cgroup_path: Option<&'a str>,
    /// Inode number of the process's mount namespace; 0 if unknown.
    mnt_ns: u32,
    /// For a failure: `true` when its process opened a file of the same name
    /// soon after (a search path's probe; written with --all-failures only),
    /// `false` when not. Absent for a slow successful open, or with
    /// --found-later-window 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    found_later: Option<bool>,
    /// For an ENOENT/ENOTDIR failure not found later: the first component of
    /// the resolved path that was missing (or not a directory) when badfd
    /// looked, after the failure was decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    missing: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    missing_base64: Option<String>,
    /// "does not exist" or "is not a directory".
    #[serde(skip_serializing_if = "Option::is_none")]
    missing_reason: Option<&'static str>,
    /// Says that `missing` was checked afterwards (the file system may have changed).
    #[serde(skip_serializing_if = "Option::is_none")]
    missing_note: Option<&'static str>,
}

/// Bytes that are not UTF-8 go out twice: a readable string with U+FFFD for
/// each invalid sequence, and the exact bytes in standard base64.
fn lossless(bytes: &[u8]) -> (String, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_string(), None),
        Err(_) => (
            String::from_utf8_lossy(bytes).into_owned(),
            Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
        ),
    }
}

/// [`lossless`] of bytes that may be absent: both fields absent then.
fn lossless_optional(bytes: Option<&[u8]>) -> (Option<String>, Option<String>) {
    match bytes.map(lossless) {
        Some((s, b)) => (Some(s), b),
        None => (None, None),
    }
}

/// `missing_note`: the first missing component is badfd's own look, later.
pub const MISSING_NOTE: &str = "checked by badfd afterwards (when the failure was decided); the file system may have changed since";

/// The JSON line of an anomaly (no trailing newline), with its container
/// where the pipeline looked it up.
pub fn json_line(a: &Anomaly) -> String {
    let e = &a.event;
    let (comm, comm_base64) = lossless(e.comm_bytes());
    let (path, path_base64) = lossless(&e.path);
    let (resolved_path, resolved_path_base64) = lossless(&a.resolved.path);
    let (executable, executable_base64) = lossless_optional(a.executable.as_ref().and_then(|e| e.as_deref()));
    let (missing, missing_base64) = lossless_optional(a.missing.as_ref().map(|m| m.path.as_slice()));
    let line = JsonLine {
        time: humantime::format_rfc3339_nanos(a.wall_time()).to_string(),
        monotonic_ns: e.start_ns,
        pid: e.pid,
        ppid: (e.ppid != 0).then_some(e.ppid),
        tid: e.tid,
        uid: e.uid,
        euid: e.euid,
        gid: e.gid,
        comm,
        comm_base64,
        executable,
        executable_base64,
        syscall: e.syscall.name(),
        flags: e.open_flags,
        flags_names: open_flags_names(e.open_flags),
        mode: e.mode,
        dirfd: e.dirfd,
        ret: e.ret,
        errno: e.errno().map(errno::name),
        error: e.errno().map(errno::meaning),
        failed: e.failed(),
        slow: e.slow(),
        latency_ns: e.latency_ns(),
        path,
        path_base64,
        resolved_path,
        resolved_path_base64,
        resolution: a.resolved.how.name(),
        path_truncated: e.path_truncated(),
        path_unreadable: e.path_unreadable(),
        cgroup_id: e.cgroup_id,
        container_id: a.container.as_ref().and_then(|c| c.container_id.as_deref()),
        container_runtime: a.container.as_ref().and_then(|c| c.runtime).map(|r| r.name()),
        pod_uid: a.container.as_ref().and_then(|c| c.pod_uid.as_deref()),
        pod_name: a.container.as_ref().and_then(|c| c.pod_name.as_deref()),
        namespace: a.container.as_ref().and_then(|c| c.namespace.as_deref()),
        container_name: a.container.as_ref().and_then(|c| c.container_name.as_deref()),
        systemd_unit: a.container.as_ref().and_then(|c| c.systemd_unit.as_deref()),
        cgroup_path: a.container.as_ref().map(|c| c.cgroup_path.as_str()).filter(|p| !p.is_empty()),
        mnt_ns: e.mnt_ns,
        found_later: a.found_later,
        missing,
        missing_base64,
        missing_reason: a.missing.as_ref().map(|m| if m.not_a_directory { "is not a directory" } else { "does not exist" }),
        missing_note: a.missing.as_ref().map(|_| MISSING_NOTE),
    };
    serde_json::to_string(&line).expect("a struct of strings and numbers serializes")
}

#[cfg(test)]
mod tests {
    use exporter_common::EVENT_PATH_TRUNCATED;

    use super::*;
    use crate::{
        pipeline::{containers::ContainerInfo, resolve::Resolution},
        sinks::terminal::tests::anomaly,
    };

    #[test]
    fn json_has_every_field_and_escapes_odd_bytes_losslessly() {
        let mut a = anomaly(b"/t/bad\xff\nname\"\\\x01", -2, 1234, false);
        a.event.flags |= EVENT_PATH_TRUNCATED;
        a.resolved.how = Resolution::Kernel;
        let line = json_line(&a);
        assert!(!line.contains('\n'), "one line: {line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["time"], "2023-11-14T22:13:20.123456789Z");
        assert_eq!(v["monotonic_ns"], 5_000_000_000u64);
        assert_eq!(v["pid"], 4242);
        assert_eq!(v["tid"], 4243);
        assert_eq!(v["uid"], 1000);
        assert_eq!(v["gid"], 100);
        assert_eq!(v["comm"], "cat");
        assert!(v.get("comm_base64").is_none());
        assert_eq!(v["syscall"], "openat");
        assert_eq!(v["flags"], 0o2000000);
        assert_eq!(v["flags_names"], "O_RDONLY|O_CLOEXEC");
        assert_eq!(v["mode"], 0);
        assert_eq!(v["dirfd"], -100);
        assert_eq!(v["ret"], -2);
        assert_eq!(v["errno"], "ENOENT");
        assert_eq!(v["error"], "No such file or directory");
        assert_eq!(v["failed"], true);
        assert_eq!(v["slow"], false);
        assert_eq!(v["latency_ns"], 1234);
        assert_eq!(v["path"], "/t/bad\u{fffd}\nname\"\\\u{1}");
        let raw = base64::engine::general_purpose::STANDARD.decode(v["path_base64"].as_str().unwrap()).unwrap();
        assert_eq!(raw, b"/t/bad\xff\nname\"\\\x01");
        assert_eq!(v["resolved_path"], v["path"]);
        assert_eq!(v["resolved_path_base64"], v["path_base64"]);
        assert_eq!(v["resolution"], "kernel");
        assert_eq!(v["path_truncated"], true);
        assert_eq!(v["path_unreadable"], false);
        assert_eq!(v["cgroup_id"], 77);
        assert!(v.get("container_id").is_none(), "no container known");
        assert_eq!(v["mnt_ns"], 0);
        a.container = Some(std::sync::Arc::new(ContainerInfo { container_id: Some("ab12".into()), ..Default::default() }));
        let v: serde_json::Value = serde_json::from_str(&json_line(&a)).unwrap();
        assert_eq!(v["container_id"], "ab12");

        let ok = json_line(&anomaly(b"/fifo", 3, 300_000_000, true));
        let v: serde_json::Value = serde_json::from_str(&ok).unwrap();
        assert_eq!(v["errno"], serde_json::Value::Null);
        assert_eq!(v["slow"], true);
        assert!(v.get("path_base64").is_none(), "valid UTF-8 needs no base64");
        assert!(v.get("found_later").is_none(), "a slow open is not classified");
    }

    #[test]
    fn failures_say_whether_found_later_and_what_was_missing() {
        let mut a = anomaly(b"/etc/myapp/app.conf", -2, 1, false);
        a.found_later = Some(false);
        a.missing = Some(crate::pipeline::missing::MissingComponent { path: b"/etc/myapp".to_vec(), not_a_directory: false });
        let v: serde_json::Value = serde_json::from_str(&json_line(&a)).unwrap();
        assert_eq!(v["found_later"], false);
        assert_eq!(v["missing"], "/etc/myapp");
        assert_eq!(v["missing_reason"], "does not exist");
        assert_eq!(v["missing_note"], MISSING_NOTE);
        a.found_later = Some(true);
        a.missing = None;
        let v: serde_json::Value = serde_json::from_str(&json_line(&a)).unwrap();
        assert_eq!(v["found_later"], true);
        assert!(v.get("missing").is_none());
    }
}
