//! The flags of `badfd trace`, and the values they take as people write them
//! (thresholds with a unit, users and errnos by name).

use std::{ffi::OsString, path::PathBuf, time::Duration};

use anyhow::bail;
use clap::{Args, ValueEnum};
use exporter_common::TASK_COMM_LEN;

use super::{kernel::KernelSettings, probe::ProbeArgs, redact::RedactArgs};
use crate::{errno, probe::CgroupFilterMode};

#[derive(Args)]
// `--pid -1` is a bad value of that flag, not an unknown flag `-1`.
#[command(allow_negative_numbers = true)]
#[command(after_help = "\
Examples:
  badfd trace                         every failed or slow open on the host
  badfd trace --err -- make           failed opens of make and everything it starts
  badfd trace --slow 50ms --comm java opens of java processes taking 50 ms or more
  badfd trace --json -o opens.jsonl -- ./start.sh
  badfd trace --cgroup /system.slice/docker-<id>.scope   one container (and below)
  sudo badfd trace -x -u $USER -- ./app   failures of ./app, run as you (not root)
  badfd trace --all -n nginx          every open of nginx, successful ones too

With a command, badfd exits with the command's exit status (128+N if signal N
killed it). Ctrl-C reaches the command through the terminal; badfd waits for it
to end (a second Ctrl-C sends it SIGTERM, a third SIGKILL).

Failures found later (a search path's probes: the same process opened a file
of the same name within --found-later-window, as the loader, locale lookup and
sys.path do) are held back and counted; --all-failures shows them, marked
\"probe\" in the table and \"found_later\": true in JSON (without it, JSON
has no line for them either). Failures are shown once decided, up to the
window (plus ~0.15 s) after they happen.

The summary on stderr begins with a diagnosis: the failures not found later
that most likely explain how the command ended, most likely first (the last
ones before a non-zero exit or a signal, permission and read-only errors, the
command's own files above probes every program makes, failed execs, names never
found anywhere); one entry per name, with the places tried; for ENOENT the
first missing directory, and for a script that cannot start its missing #!
interpreter (both checked by badfd afterwards). With --json, the last line of
the output is always one object, a stable interface, even with --no-summary:
  {\"diagnosis\": [{\"path\", \"errno\", \"count\", \"pid\", \"comm\", ...}],
   \"found_later\": N, \"exit\": {\"code\": N|null, \"signal\": \"SIGSEGV\"|null}}
(\"exit\": null without a command, or when --duration ended first).")]
pub struct TraceArgs {
    #[command(flatten)]
    pub probe: ProbeArgs,
    /// Failed opens only (slow successful opens are counted, not shown).
    #[arg(short = 'x', long = "err")]
    pub failures_only: bool,
    /// Successful opens too, as opensnoop shows them ("which config did it
    /// load?"), marked "ok"; within the other filters. Not with --err or
    /// --errno.
    #[arg(long, conflicts_with_all = ["failures_only", "errno"])]
    pub all: bool,
    /// Slow threshold in milliseconds; 0 turns slow reporting off. Same as --slow Nms.
    #[arg(long, value_name = "N", conflicts_with = "slow")]
    pub ms: Option<u64>,
    /// Slow threshold as a duration (10ms, 250us, 1.5s); 0 turns slow reporting off.
    #[arg(long, value_name = "DURATION", value_parser = parse_threshold, default_value = "10ms", env = "BADFD_SLOW")]
    pub slow: Duration,
    /// One JSON object per line with every field, instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Full paths, never elided to fit the terminal.
    #[arg(long)]
    pub wide: bool,
    /// Colour: auto = on a terminal unless NO_COLOR is set.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// Write the anomalies here (default: stdout; stderr when a command is given).
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Only this process id (decided in the kernel).
    #[arg(short = 'p', long)]
    pub pid: Option<u32>,
    /// Only tasks whose command name (comm, which a thread may rename) is
    /// exactly this (at most 15 bytes, as the kernel keeps it; decided in the kernel).
    #[arg(short = 'n', long)]
    pub comm: Option<String>,
    /// Only this user, by id or name (decided in the kernel).
    #[arg(long, value_parser = parse_uid)]
    pub uid: Option<u32>,
    /// Only these errnos, by name or number: --errno ENOENT,EACCES. Hides slow
    /// successful opens.
    #[arg(long, value_delimiter = ',', value_parser = parse_errno)]
    pub errno: Vec<i32>,
    /// Only processes in this cgroup or below it (decided in the kernel;
    /// repeatable): a cgroup v2 directory (/sys/fs/cgroup/system.slice/docker-<id>.scope)
    /// or a path as /proc/PID/cgroup shows it (/system.slice/docker-<id>.scope).
    #[arg(long, value_name = "PATH")]
    pub cgroup: Vec<PathBuf>,
    /// Only files under this directory (of the resolved path; repeatable).
    #[arg(long = "path-prefix", value_name = "DIR")]
    pub path_prefix: Vec<PathBuf>,
    /// Stop after this long (10s, 5m; a bare number is seconds).
    #[arg(long, value_parser = parse_duration_seconds)]
    pub duration: Option<Duration>,
    /// Also show failures found later: a search path's probes, which the same
    /// process followed with a successful open of the same name (the loader,
    /// locale lookup, sys.path). Hidden by default; counted in the summary.
    #[arg(long)]
    pub all_failures: bool,
    /// A failure is found later when its process opens the same name
    /// successfully within this long (0 turns the classification off: every
    /// failure is shown at once, none is found later).
    #[arg(long, value_name = "DURATION", value_parser = parse_window, default_value = "1s")]
    pub found_later_window: Duration,
    /// No summary on stderr at the end (the JSON last line of --json stays).
    #[arg(long)]
    pub no_summary: bool,
    #[command(flatten)]
    pub redact: RedactArgs,
    /// Run the command as this user (name or id), with the user's group and
    /// supplementary groups, as strace -u does: under sudo the command
    /// otherwise runs as root, where EACCES does not reproduce and the files
    /// it creates belong to root. The environment is left as it is.
    #[arg(short = 'u', long = "user", value_name = "USER", value_parser = parse_run_as, requires = "command")]
    pub run_as: Option<RunAs>,
    /// The command to run and follow, with every process it starts.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// The identity `-u USER` runs the command with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the user's primary group among them).
    pub groups: Vec<u32>,
}

fn parse_run_as(s: &str) -> Result<RunAs, String> {
    use nix::unistd::{Uid, User};
    let user = match s.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)),
        Err(_) => User::from_name(s),
    };
    let user = match user {
        Ok(Some(user)) => user,
        Ok(None) => return Err(format!("no user `{s}` in the user database")),
        Err(e) => return Err(format!("looking up user `{s}`: {e}")),
    };
    let name = std::ffi::CString::new(user.name.as_bytes()).map_err(|_| format!("user name `{}` has a NUL byte", user.name))?;
    let groups = nix::unistd::getgrouplist(&name, user.gid)
        .map_err(|e| format!("the groups of user `{}`: {e}", user.name))?
        .into_iter()
        .map(|g| g.as_raw())
        .collect();
    Ok(RunAs { name: user.name, uid: user.uid.as_raw(), gid: user.gid.as_raw(), groups })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

fn parse_threshold(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{s}` has no unit: write e.g. {s}ms (or use --ms {s})"));
    }
    humantime::parse_duration(s).map_err(|e| format!("`{s}`: {e} (e.g. 10ms, 250us, 1.5s)"))
}

fn parse_window(s: &str) -> Result<Duration, String> {
    let window = parse_threshold(s)?;
    if window > super::kernel::MAX_FOUND_LATER_WINDOW {
        return Err(format!("`{s}`: at most 60s (every failure waits this long before it is shown)"));
    }
    Ok(window)
}

fn parse_duration_seconds(s: &str) -> Result<Duration, String> {
    match s.trim().parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => humantime::parse_duration(s.trim()).map_err(|e| format!("`{s}`: {e} (e.g. 30s, 5m)")),
    }
}

fn parse_uid(s: &str) -> Result<u32, String> {
    if let Ok(uid) = s.parse() {
        return Ok(uid);
    }
    match nix::unistd::User::from_name(s) {
        Ok(Some(user)) => Ok(user.uid.as_raw()),
        Ok(None) => Err(format!("no user named `{s}`")),
        Err(e) => Err(format!("looking up user `{s}`: {e}")),
    }
}

fn parse_errno(s: &str) -> Result<i32, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i32>() {
        return if n > 0 { Ok(n) } else { Err(format!("errno {n} is not positive")) };
    }
    errno::from_name(s).ok_or_else(|| format!("`{s}` is not an errno name (e.g. ENOENT, EACCES)"))
}

/// The comm filter as the kernel compares it: NUL-padded, cut at 15 bytes.
fn comm_filter(comm: &str) -> anyhow::Result<[u8; TASK_COMM_LEN]> {
    let bytes = comm.as_bytes();
    if bytes.is_empty() || bytes.contains(&0) {
        bail!("--comm must be a non-empty name without NUL bytes");
    }
    let mut out = [0u8; TASK_COMM_LEN];
    let n = bytes.len().min(TASK_COMM_LEN - 1);
    if bytes.len() > n {
        tracing::warn!(comm, kept = %String::from_utf8_lossy(&bytes[..n]), "the kernel keeps 15 bytes of a command name; matching the first 15");
    }
    out[..n].copy_from_slice(&bytes[..n]);
    Ok(out)
}

impl TraceArgs {
    pub fn slow_threshold(&self) -> Duration {
        match self.ms {
            Some(ms) => Duration::from_millis(ms),
            None => self.slow,
        }
    }

    /// What the kernel is to decide: the slow threshold, failures only
    /// (also with --errno, which hides slow successful opens), the followed
    /// command's processes, and the pid, uid, comm and cgroup filters.
    pub fn kernel_settings(&self) -> anyhow::Result<KernelSettings> {
        let slow = self.slow_threshold();
        Ok(KernelSettings {
            slow_threshold: (!slow.is_zero()).then_some(slow),
            failures_only: self.failures_only || !self.errno.is_empty(),
            tracked_only: !self.command.is_empty(),
            filter_pid: self.pid,
            filter_uid: self.uid,
            filter_comm: self.comm.as_deref().map(comm_filter).transpose()?,
            cgroup_filter: if self.cgroup.is_empty() { CgroupFilterMode::Off } else { CgroupFilterMode::Watch },
            source_rate: self.probe.source_rate(None),
            found_later_window: self.found_later_window,
            stream_opens: self.all,
        })
    }
}

/// Colour on a terminal unless NO_COLOR (https://no-color.org) or TERM=dumb.
pub fn use_color(choice: ColorChoice, on_a_terminal: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            on_a_terminal
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::env::var("TERM").map_or(true, |t| t != "dumb")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_need_a_unit() {
        assert_eq!(parse_threshold("10ms"), Ok(Duration::from_millis(10)));
        assert_eq!(parse_threshold("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_threshold("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_threshold("0"), Ok(Duration::ZERO));
        assert!(parse_threshold("10").unwrap_err().contains("10ms"));
        assert!(parse_threshold("fast").is_err());
        assert_eq!(parse_duration_seconds("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration_seconds("2m"), Ok(Duration::from_secs(120)));
    }

    #[test]
    fn errnos_and_users_by_name_or_number() {
        assert_eq!(parse_errno("ENOENT"), Ok(libc::ENOENT));
        assert_eq!(parse_errno("eacces"), Ok(libc::EACCES));
        assert_eq!(parse_errno("13"), Ok(13));
        assert!(parse_errno("ENOPE").is_err());
        assert_eq!(parse_uid("0"), Ok(0));
        assert_eq!(parse_uid("root"), Ok(0));
        assert!(parse_uid("no-such-user-here").is_err());
        let root = parse_run_as("root").unwrap();
        assert_eq!((root.name.as_str(), root.uid, root.gid), ("root", 0, 0));
        assert!(root.groups.contains(&0), "{root:?}");
        assert_eq!(parse_run_as("0").unwrap(), root);
        assert!(parse_run_as("no-such-user-here").unwrap_err().contains("no user"));
    }

    #[test]
    fn comm_is_cut_like_the_kernel_cuts_it() {
        assert_eq!(&comm_filter("cat").unwrap()[..4], b"cat\0");
        let long = comm_filter("a-very-long-command-name").unwrap();
        assert_eq!(&long[..15], b"a-very-long-com");
        assert_eq!(long[15], 0);
        assert!(comm_filter("").is_err());
    }
}
