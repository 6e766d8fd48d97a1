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
    io::{IsTerminal, Write},
    os::fd::AsFd,
    path::PathBuf,
    time::Instant,
};

use anyhow::{bail, Context as _};
use badfd::{
    config::{trace::use_color, TraceArgs},
    pipeline::containers::{Containers, ContainersOptions},
    pipeline::redact::Redactor,
    pipeline::clock::WallClock,
    render::{self, Anomaly, Summary, TableStyle},
    pipeline::resolve::Resolver,
    OpenEvent, Probe,
};
use tokio::signal::unix::{signal, SignalKind};

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
                let mut b = badfd::pipeline::resolve::normalize(p.as_os_str().as_bytes());
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
    let kernel = args.kernel_settings()?;
    let redactor = Redactor::new(&args.redact.settings()?)?;
    let options = args.probe.options(&kernel, !args.command.is_empty());
    let output = Output::open(&args)?;
    let color = !args.json && use_color(args.color, output.is_terminal());
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
        .map(|p| badfd::pipeline::containers::cgroup_dir(p).map_err(|m| anyhow::anyhow!("--cgroup {m}")))
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
    fn path_prefixes_match_whole_components() {
        assert!(is_under(b"/etc/passwd", b"/etc"));
        assert!(is_under(b"/etc", b"/etc"));
        assert!(!is_under(b"/etcd/x", b"/etc"));
        assert!(is_under(b"/anything", b"/"));
        assert!(!is_under(b"relative", b"/etc"));
    }
}
