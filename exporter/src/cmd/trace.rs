//! `badfd trace`: anomalies printed as they happen, for a person at a shell,
//! or for one command and every process it starts (`badfd trace -- make`).
//!
//! Where the output goes, as strace and opensnoop do it: without a command the
//! table (or JSON) goes to stdout, so `badfd trace --json | jq` works; with a
//! command it goes to stderr, so the command's own stdout stays its own
//! (`badfd trace -- ./build.sh > log` keeps the log clean); `--output FILE`
//! sends it to a file in either case. Lines are written whole, one write each,
//! so they never break into the command's output mid-line. The summary always
//! goes to stderr.

mod child;

use std::{
    collections::BTreeSet,
    ffi::OsString,
    io::{IsTerminal, Write},
    os::fd::AsFd,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use badfd::{
    errno,
    containers::{Containers, ContainersOptions},
    probe::{ringbuf_size, CgroupFilterMode},
    redact::{RedactArgs, RedactSettings, Redactor},
    render::{self, Anomaly, Summary, TableStyle, WallClock},
    resolve::Resolver,
    OpenEvent, Probe, ProbeOptions,
};
use clap::{Args, ValueEnum};
use exporter_common::{
    Config, CONFIG_FAILURES_ONLY, CONFIG_TRACKED_ONLY, FILTER_ANY, SLOW_DISABLED, TASK_COMM_LEN,
};
use tokio::signal::unix::{signal, SignalKind};

use super::ProbeArgs;

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

With a command, badfd exits with the command's exit status (128+N if signal N
killed it). Ctrl-C reaches the command through the terminal; badfd waits for it
to end (a second Ctrl-C sends it SIGTERM, a third SIGKILL).")]
pub struct TraceArgs {
    #[command(flatten)]
    probe: ProbeArgs,
    /// Failed opens only (slow successful opens are counted, not shown).
    #[arg(long = "err")]
    failures_only: bool,
    /// Slow threshold in milliseconds; 0 turns slow reporting off. Same as --slow Nms.
    #[arg(long, value_name = "N", conflicts_with = "slow")]
    ms: Option<u64>,
    /// Slow threshold as a duration (10ms, 250us, 1.5s); 0 turns slow reporting off.
    #[arg(long, value_name = "DURATION", value_parser = parse_threshold, default_value = "10ms", env = "BADFD_SLOW")]
    slow: Duration,
    /// One JSON object per line with every field, instead of the table.
    #[arg(long)]
    json: bool,
    /// Full paths, never elided to fit the terminal.
    #[arg(long)]
    wide: bool,
    /// Colour: auto = on a terminal unless NO_COLOR is set.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    color: ColorChoice,
    /// Write the anomalies here (default: stdout; stderr when a command is given).
    #[arg(short = 'o', long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Only this process id (decided in the kernel).
    #[arg(long)]
    pid: Option<u32>,
    /// Only tasks whose command name (comm, which a thread may rename) is
    /// exactly this (at most 15 bytes, as the kernel keeps it; decided in the kernel).
    #[arg(long)]
    comm: Option<String>,
    /// Only this user, by id or name (decided in the kernel).
    #[arg(long, value_parser = parse_uid)]
    uid: Option<u32>,
    /// Only these errnos, by name or number: --errno ENOENT,EACCES. Hides slow
    /// successful opens.
    #[arg(long, value_delimiter = ',', value_parser = parse_errno)]
    errno: Vec<i32>,
    /// Only processes in this cgroup or below it (decided in the kernel;
    /// repeatable): a cgroup v2 directory (/sys/fs/cgroup/system.slice/docker-<id>.scope)
    /// or a path as /proc/PID/cgroup shows it (/system.slice/docker-<id>.scope).
    #[arg(long, value_name = "PATH")]
    cgroup: Vec<PathBuf>,
    /// Only files under this directory (of the resolved path; repeatable).
    #[arg(long = "path-prefix", value_name = "DIR")]
    path_prefix: Vec<PathBuf>,
    /// Stop after this long (10s, 5m; a bare number is seconds).
    #[arg(long, value_parser = parse_duration_seconds)]
    duration: Option<Duration>,
    /// No summary at the end.
    #[arg(long)]
    no_summary: bool,
    #[command(flatten)]
    redact: RedactArgs,
    /// The command to run and follow, with every process it starts.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ColorChoice {
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
    fn slow_threshold(&self) -> Duration {
        match self.ms {
            Some(ms) => Duration::from_millis(ms),
            None => self.slow,
        }
    }

    fn config(&self) -> anyhow::Result<Config> {
        let mut config = Config::DEFAULT;
        let slow = self.slow_threshold();
        config.slow_threshold_ns = if slow.is_zero() { SLOW_DISABLED } else { slow.as_nanos().min(u64::MAX as u128 - 1) as u64 };
        // --errno shows failures only: the kernel need not send slow successes.
        if self.failures_only || !self.errno.is_empty() {
            config.flags |= CONFIG_FAILURES_ONLY;
        }
        if !self.command.is_empty() {
            config.flags |= CONFIG_TRACKED_ONLY;
        }
        config.filter_pid = self.pid.unwrap_or(FILTER_ANY);
        config.filter_uid = self.uid.unwrap_or(FILTER_ANY);
        if let Some(comm) = &self.comm {
            config.filter_comm = comm_filter(comm)?;
        }
        if !self.cgroup.is_empty() {
            config.cgroup_filter = CgroupFilterMode::Watch.to_kernel();
        }
        Ok(config)
    }
}

/// The userspace filters: what the kernel cannot decide.
struct Filters {
    errnos: BTreeSet<i32>,
    /// Directory prefixes as bytes, without a trailing slash.
    prefixes: Vec<Vec<u8>>,
}

impl Filters {
    fn new(args: &TraceArgs) -> Filters {
        use std::os::unix::ffi::OsStrExt;
        let prefixes = args
            .path_prefix
            .iter()
            .map(|p| {
                let mut b = badfd::resolve::normalize(p.as_os_str().as_bytes());
                while b.len() > 1 && b.ends_with(b"/") {
                    b.pop();
                }
                b
            })
            .collect();
        Filters { errnos: args.errno.iter().copied().collect(), prefixes }
    }

    fn keep(&self, a: &Anomaly) -> bool {
        if !self.errnos.is_empty() && !a.event.errno().is_some_and(|e| self.errnos.contains(&e)) {
            return false;
        }
        self.prefixes.is_empty() || self.prefixes.iter().any(|p| is_under(&a.resolved.path, p))
    }
}

/// `path` is `dir` or inside it (by whole components: /etc does not hold /etcd).
fn is_under(path: &[u8], dir: &[u8]) -> bool {
    dir == b"/" || (path.starts_with(dir) && matches!(path.get(dir.len()), None | Some(b'/')))
}

/// Where the anomalies go.
enum Output {
    Stdout(std::io::Stdout),
    Stderr(std::io::Stderr),
    File(std::fs::File),
}

impl Output {
    fn open(args: &TraceArgs) -> anyhow::Result<Output> {
        Ok(match &args.output {
            Some(path) => Output::File(
                std::fs::File::create(path).with_context(|| format!("--output {}", path.display()))?,
            ),
            None if args.command.is_empty() => Output::Stdout(std::io::stdout()),
            None => Output::Stderr(std::io::stderr()),
        })
    }

    fn is_terminal(&self) -> bool {
        match self {
            Output::Stdout(s) => s.is_terminal(),
            Output::Stderr(s) => s.is_terminal(),
            Output::File(f) => f.is_terminal(),
        }
    }

    /// Columns of the terminal, asked again for every batch so that a resized
    /// window is followed.
    fn terminal_width(&self) -> Option<usize> {
        let size = match self {
            Output::Stdout(s) => terminal_size::terminal_size_of(s.as_fd()),
            Output::Stderr(s) => terminal_size::terminal_size_of(s.as_fd()),
            Output::File(f) => terminal_size::terminal_size_of(f.as_fd()),
        };
        size.map(|(w, _)| w.0 as usize).filter(|&w| w > 0)
    }

    /// Writes one whole line with one write call.
    fn line(&mut self, mut line: String) -> std::io::Result<()> {
        line.push('\n');
        match self {
            Output::Stdout(s) => s.lock().write_all(line.as_bytes()),
            Output::Stderr(s) => s.lock().write_all(line.as_bytes()),
            Output::File(f) => f.write_all(line.as_bytes()),
        }
    }
}

/// Colour on a terminal unless NO_COLOR (https://no-color.org) or TERM=dumb.
fn use_color(choice: ColorChoice, output: &Output) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            output.is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::env::var("TERM").map_or(true, |t| t != "dumb")
        }
    }
}

/// What the event loop carries from event to event.
struct Session {
    json: bool,
    output: Output,
    /// Set when the output failed (e.g. a closed pipe); nothing more is written.
    output_error: Option<std::io::Error>,
    clock: WallClock,
    resolver: Resolver,
    filters: Filters,
    summary: Summary,
    style: TableStyle,
    /// Container ids for `--json` (None for the table).
    containers: Option<Containers>,
    /// `--paths.redact`: applied after the filters (which see the real path)
    /// and before the table, the JSON and the summary.
    redactor: Redactor,
}

impl Session {
    fn refresh_width(&mut self) {
        self.style.width = if self.output.is_terminal() { self.output.terminal_width() } else { None };
    }

    fn header(&mut self) {
        if !self.json {
            let h = render::table::header(&self.style);
            self.write(h);
        }
    }

    fn write(&mut self, line: String) {
        if self.output_error.is_none() {
            if let Err(e) = self.output.line(line) {
                self.output_error = Some(e);
            }
        }
    }

    fn handle(&mut self, bytes: &[u8]) {
        if self.output_error.is_some() {
            // Nobody reads any more (`| head`): the summary counts what was shown.
            return;
        }
        let event = match OpenEvent::decode(bytes) {
            Ok(e) => e,
            Err(error) => {
                self.summary.undecodable += 1;
                tracing::warn!(%error, "undecodable event");
                return;
            }
        };
        let resolved = self.resolver.resolve(&event);
        let mut anomaly = Anomaly { wall_ns: self.clock.wall_ns(event.start_ns), event, resolved };
        if !self.filters.keep(&anomaly) {
            self.summary.hidden_by_filters += 1;
            return;
        }
        self.redactor.apply(&mut anomaly.event, &mut anomaly.resolved);
        self.summary.record(&anomaly);
        let line = if self.json {
            let container = self.containers.as_ref().and_then(|c| c.lookup_event(&anomaly.event));
            render::json_line_with(&anomaly, container.as_ref())
        } else {
            render::table::row(&anomaly, &chrono::Local, &self.style)
        };
        self.write(line);
    }
}

pub async fn run(args: TraceArgs) -> anyhow::Result<()> {
    if args.probe.no_timing && args.ms.is_some() {
        bail!("--ms: --no-timing times no opens, so there is no slow threshold to apply (drop one of the two)");
    }
    let config = args.config()?;
    let redact = RedactSettings::resolve(&args.redact, None, None, None, None).map_err(|(key, message)| anyhow::anyhow!("--{}: {message}", key.replacen('_', ".", 1).replace('_', "-")))?;
    let redactor = Redactor::new(&redact)?;
    let options = ProbeOptions {
        attach: args.probe.attach,
        ringbuf_bytes: ringbuf_size(args.probe.ringbuf_bytes),
        follow_forks: !args.command.is_empty(),
        timing: !args.probe.no_timing,
        config: args.probe.apply(config, None),
    };
    let output = Output::open(&args)?;
    let color = !args.json && use_color(args.color, &output);
    let mut session = Session {
        json: args.json,
        output,
        output_error: None,
        clock: WallClock::now(),
        resolver: Resolver::new(),
        filters: Filters::new(&args),
        summary: Summary::new(),
        style: TableStyle { width: None, wide: args.wide, color },
        containers: args.json.then(|| Containers::new(ContainersOptions::default())),
        redactor,
    };
    session.refresh_width();

    // Checked before loading, so that a typo is one clear line.
    if let Some(relative) = args.path_prefix.iter().find(|p| !p.is_absolute()) {
        bail!("--path-prefix {}: not an absolute path (paths are matched once resolved, e.g. /var/lib)", relative.display());
    }
    // The path itself, or the same path under the cgroup v2 mount (as /proc/PID/cgroup spells it).
    let cgroups: Vec<PathBuf> = args
        .cgroup
        .iter()
        .map(|p| badfd::containers::cgroup_dir(p).map_err(|m| anyhow::anyhow!("--cgroup {m}")))
        .collect::<anyhow::Result<_>>()?;
    let mut probe = Probe::load(&options)?;
    // The kernel streams nothing until these are in (watch mode, empty map).
    for dir in &cgroups {
        probe.add_cgroup_path(dir).with_context(|| format!("--cgroup {}", dir.display()))?;
    }
    tracing::info!("attached {}", probe.describe());
    let mut events = probe.take_events()?.into_async()?;
    let started = Instant::now();
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;

    session.header();
    let mut command = match args.command.is_empty() {
        true => None,
        false => match child::Command::start(&args.command, |pid| probe.track_pid(pid).map_err(Into::into)).await {
            Ok(c) => Some(c),
            Err(e) => match e.downcast_ref::<child::NotRun>() {
                Some(not_run) => {
                    eprintln!("badfd trace: {not_run}");
                    std::process::exit(not_run.exit_code());
                }
                None => return Err(e),
            },
        },
    };

    let mut interrupts = 0;
    let mut exit_code = 0;
    loop {
        tokio::select! {
            _ = interrupt.recv() => match &command {
                None => break,
                Some(c) => {
                    // The terminal sent Ctrl-C to the command too: let it end.
                    interrupts += 1;
                    match interrupts {
                        1 => {}
                        2 => c.signal(nix::sys::signal::Signal::SIGTERM),
                        _ => c.signal(nix::sys::signal::Signal::SIGKILL),
                    }
                }
            },
            _ = terminate.recv() => match &command {
                None => break,
                Some(c) => c.signal(nix::sys::signal::Signal::SIGTERM),
            },
            _ = hangup.recv() => match &command {
                None => break,
                Some(c) => c.signal(nix::sys::signal::Signal::SIGHUP),
            },
            status = async { command.as_mut().expect("guarded").wait().await }, if command.is_some() => {
                exit_code = status;
                break;
            }
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                if let Some(c) = &command {
                    tracing::warn!(pid = c.pid(), "--duration is over; the command keeps running, no longer followed");
                }
                break;
            }
            _ = events.next_batch(|bytes| session.handle(bytes)) => {
                session.refresh_width();
                if session.output_error.is_some() && command.is_none() {
                    break;
                }
            }
        }
    }
    // Every open of the command ended before it did, so its events are in the
    // ring buffer now.
    events.drain(|bytes| session.handle(bytes));

    if let Some(error) = &session.output_error {
        if error.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("badfd trace: writing the output failed: {error}");
        }
    }
    if !args.no_summary {
        let losses = probe.counters()?.losses;
        let stderr = std::io::stderr();
        // Paths fit the terminal; in a log they stay whole.
        let path_width = match stderr.is_terminal() {
            true => terminal_size::terminal_size_of(stderr.as_fd()).map(|(w, _)| (w.0 as usize).saturating_sub(12).max(20)),
            false => None,
        };
        let text = session.summary.render(started.elapsed(), &losses, path_width);
        let mut stderr = stderr.lock();
        let _ = stderr.write_all(text.as_bytes());
    }
    drop(events);
    drop(probe);
    if command.is_some() {
        let _ = std::io::stdout().flush();
        std::process::exit(exit_code);
    }
    Ok(())
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
    }

    #[test]
    fn comm_is_cut_like_the_kernel_cuts_it() {
        assert_eq!(&comm_filter("cat").unwrap()[..4], b"cat\0");
        let long = comm_filter("a-very-long-command-name").unwrap();
        assert_eq!(&long[..15], b"a-very-long-com");
        assert_eq!(long[15], 0);
        assert!(comm_filter("").is_err());
    }

    #[test]
    fn path_prefixes_match_whole_components() {
        assert!(is_under(b"/etc/passwd", b"/etc"));
        assert!(is_under(b"/etc", b"/etc"));
        assert!(!is_under(b"/etcd/x", b"/etc"));
        assert!(is_under(b"/anything", b"/"));
        assert!(!is_under(b"relative", b"/etc"));
    }
}
