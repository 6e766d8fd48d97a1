//! `badfd trace`: anomalies printed as they happen, for a person at a shell,
//! or for one command and every process it starts (`badfd trace -- make`).
//!
//! Where the output goes, as strace and opensnoop do it: without a command the
//! table (or JSON) goes to stdout, so `badfd trace --json | jq` works; with a
//! command it goes to stderr, so the command's own stdout stays its own
//! (`badfd trace -- ./build.sh > log` keeps the log clean); `--output FILE`
//! sends it to a file in either case. Lines are written whole, one write each,
//! so they never break into the command's output mid-line. The summary always
//! goes to stderr, beginning with the diagnosis (sinks/terminal/diagnosis.rs);
//! with `--json` the diagnosis is also the output's last line.

mod child;

use std::{
    io::Write,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicUsize},
        Arc, Mutex,
    },
};

use anyhow::{bail, Context as _};
use badfd::{
    config::{settings::DEFAULT_PATH_PREFIX_DEPTH, trace::use_color, TraceArgs},
    pipeline::{
        containers::{cgroup_dir, Containers, ContainersOptions},
        event_loop::EventLoop,
        filter::Filter,
        redact::Redactor,
        Pipeline, PipelineStats,
    },
    sinks::terminal::{CommandExit, KernelLosses, Output, TerminalOptions, TerminalSink},
    Probe,
};
use tokio::signal::unix::{signal, SignalKind};

/// The pipeline of `trace`: its userspace filters, redaction, the
/// container lookup for `--json`, and the terminal as its one sink.
fn pipeline(args: &TraceArgs, terminal: TerminalSink, stats: PipelineStats, redactor: Redactor) -> Pipeline {
    // `trace` shows no metric labels; the label stage runs at serve's default depth.
    let depth = Arc::new(AtomicUsize::new(DEFAULT_PATH_PREFIX_DEPTH));
    let pipeline = Pipeline::new(depth, vec![Box::new(terminal)], stats)
        .with_filter(Filter::new(&args.errno, &args.path_prefix))
        .with_redactor(redactor)
        .with_found_later(args.kernel_settings().map(|k| k.found_later_window_ns()).unwrap_or(0))
        .with_missing_components(true);
    match args.json {
        true => pipeline.with_containers(Arc::new(Containers::new(ContainersOptions::default())), false).with_executables(),
        false => pipeline,
    }
}

pub async fn run(args: TraceArgs) -> anyhow::Result<()> {
    if args.probe.no_timing && args.ms.is_some() {
        bail!("--ms: --no-timing times no opens, so there is no slow threshold to apply (drop one of the two)");
    }
    let kernel = args.kernel_settings()?;
    let redactor = Redactor::new(&args.redact.settings()?)?;
    let options = args.probe.options(&kernel, !args.command.is_empty());
    let output = Output::open(args.output.as_deref(), !args.command.is_empty())?;
    let color = !args.json && use_color(args.color, output.is_terminal());

    // Checked before loading, so that a typo is one clear line.
    if let Some(relative) = args.path_prefix.iter().find(|p| !p.is_absolute()) {
        bail!("--path-prefix {}: not an absolute path (paths are matched once resolved, e.g. /var/lib)", relative.display());
    }
    // The path itself, or the same path under the cgroup v2 mount (as /proc/PID/cgroup spells it).
    let cgroups: Vec<PathBuf> =
        args.cgroup.iter().map(|p| cgroup_dir(p).map_err(|m| anyhow::anyhow!("--cgroup {m}"))).collect::<anyhow::Result<_>>()?;
    let mut probe = Probe::load(&options)?;
    // The kernel streams nothing until these are in (watch mode, empty map).
    for dir in &cgroups {
        probe.add_cgroup_path(dir).with_context(|| format!("--cgroup {}", dir.display()))?;
    }
    tracing::info!("attached {}", probe.describe());
    let reader = probe.take_events()?;
    // Shared with the event thread, whose summary reads the loss counters.
    let probe = Arc::new(Mutex::new(probe));
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;

    let stats = PipelineStats::default();
    let losses: KernelLosses = {
        let probe = probe.clone();
        Box::new(move || Ok(probe.lock().unwrap_or_else(|e| e.into_inner()).counters()?.losses))
    };
    let terminal_options =
        TerminalOptions {
            json: args.json,
            wide: args.wide,
            color,
            summary: !args.no_summary,
            all_failures: args.all_failures,
            classified: !args.found_later_window.is_zero(),
        };
    let terminal = TerminalSink::new(output, terminal_options, stats.clone(), losses);
    let output_closed = terminal.closed();
    let exit_slot = terminal.exit_slot();
    let stop = Arc::new(AtomicBool::new(false));
    let events = EventLoop::new(reader, pipeline(&args, terminal, stats, redactor)).spawn(stop.clone())?;

    let track = |pid| probe.lock().unwrap_or_else(|e| e.into_inner()).track_pid(pid).map_err(Into::into);
    // How the command ended; set when it did (or could not start).
    let mut exit: Option<CommandExit> = None;
    let mut command = match args.command.is_empty() {
        true => None,
        false => match child::Command::start(&args.command, args.run_as.as_ref(), track).await {
            Ok(c) => Some(c),
            Err(e) => match e.downcast_ref::<child::NotRun>() {
                // Its failed exec was traced: the diagnosis below says why.
                Some(not_run) => {
                    eprintln!("badfd trace: {not_run}");
                    exit = Some(CommandExit::exited(not_run.exit_code()));
                    None
                }
                None => return Err(e),
            },
        },
    };
    let command_given = !args.command.is_empty();
    if command_given {
        say_who_runs_it(args.run_as.as_ref());
    }

    let mut interrupts = 0;
    while exit.is_none() {
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
                exit = Some(status);
                break;
            }
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                if let Some(c) = &command {
                    tracing::warn!(pid = c.pid(), "--duration is over; the command keeps running, no longer followed");
                }
                break;
            }
            // Nobody reads the output any more: done, unless a command is followed.
            _ = output_closed.notified(), if command.is_none() => break,
        }
    }
    // Every open of the command ended before it did, so its events are in the
    // ring buffer now: the event loop takes them, then the summary is written.
    *exit_slot.lock().unwrap_or_else(|e| e.into_inner()) = exit;
    stop.store(true, std::sync::atomic::Ordering::Release);
    tokio::task::spawn_blocking(move || events.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the event thread panicked"))?;
    drop(probe);
    if command_given {
        let _ = std::io::stdout().flush();
        // Still running after --duration: 0, as before.
        std::process::exit(exit.map_or(0, |x| x.shell_code()));
    }
    Ok(())
}

/// One line when the command runs as root only because badfd does (under
/// sudo): permission errors will not reproduce, and `-u` says as whom to run it.
fn say_who_runs_it(run_as: Option<&badfd::config::trace::RunAs>) {
    if let Some(user) = run_as {
        tracing::info!(user = %user.name, uid = user.uid, "running the command as {}", user.name);
        return;
    }
    if let (true, Some(user)) = (nix::unistd::geteuid().is_root(), std::env::var_os("SUDO_USER")) {
        let user = user.to_string_lossy();
        if user != "root" {
            eprintln!(
                "badfd trace: the command runs as root (badfd runs under sudo), so permission errors do not reproduce; -u {user} runs it as {user}"
            );
        }
    }
}
