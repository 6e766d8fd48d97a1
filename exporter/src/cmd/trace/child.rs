//! Starting the command of `badfd trace -- command` so that nothing it does
//! escapes: the child is forked, stops before exec until its pid is in the
//! kernel's tracked set, and only then execs. From there the kernel's fork
//! tracepoint adds every process it starts, from the first instruction on.

use std::{
    ffi::OsString,
    io::{Read, Write},
    os::{
        fd::{AsRawFd, OwnedFd},
        unix::process::{CommandExt, ExitStatusExt},
    },
    process::ExitStatus,
};

use anyhow::Context as _;
use badfd::{config::trace::RunAs, sinks::terminal::CommandExit};
use nix::{fcntl::OFlag, sys::signal::Signal, unistd::Pid};
use tokio::sync::oneshot;

/// The command could not be started (not found, not executable...): the shell's
/// exit codes, 127 for not found and 126 otherwise.
#[derive(Debug, thiserror::Error)]
#[error("cannot run `{program}`: {source}")]
pub struct NotRun {
    pub program: String,
    #[source]
    pub source: std::io::Error,
}

impl NotRun {
    pub fn exit_code(&self) -> i32 {
        if self.source.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 }
    }
}

/// The running command.
pub struct Command {
    pid: u32,
    exit: oneshot::Receiver<std::io::Result<ExitStatus>>,
}

impl Command {
    /// Forks `argv`, calls `track` with the child's pid while the child waits
    /// before exec, then lets it exec, as `run_as` if given. If `track` fails
    /// the child never execs.
    pub async fn start(
        argv: &[OsString],
        run_as: Option<&RunAs>,
        track: impl FnOnce(u32) -> anyhow::Result<()>,
    ) -> anyhow::Result<Command> {
        let program = argv.first().context("no command given after --")?;
        // go: the parent releases the child by writing one byte (or aborts it by
        // closing). pid: the child sends its pid before it waits; std's spawn
        // only returns after exec, too late to track.
        let (go_read, go_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe")?;
        let (pid_read, pid_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe")?;
        let (child_go_read, child_go_write) = (go_read.as_raw_fd(), go_write.as_raw_fd());
        let (child_pid_read, child_pid_write) = (pid_read.as_raw_fd(), pid_write.as_raw_fd());

        let mut command = std::process::Command::new(program);
        command.args(&argv[1..]);
        // Groups first, then the group, then the user (after which the others
        // are no longer allowed); allocated here, before the fork.
        let identity = run_as.map(|r| (r.groups.iter().map(|&g| g as libc::gid_t).collect::<Vec<_>>(), r.gid, r.uid));
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe calls (close, getpid, write, read, setgroups,
        // setgid, setuid) on fds and memory it owns.
        unsafe {
            command.pre_exec(move || {
                // The child's copies of the parent's ends, so that EOF means
                // "the parent is gone" on both pipes.
                libc::close(child_go_write);
                libc::close(child_pid_read);
                let pid: i32 = libc::getpid();
                if libc::write(child_pid_write, (&raw const pid).cast(), 4) != 4 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(child_pid_write);
                let mut byte = 0u8;
                loop {
                    match libc::read(child_go_read, (&raw mut byte).cast(), 1) {
                        1 => break,
                        // The parent could not track us, or died: do not exec.
                        0 => return Err(std::io::Error::from_raw_os_error(libc::ECANCELED)),
                        _ if *libc::__errno_location() == libc::EINTR => continue,
                        _ => return Err(std::io::Error::last_os_error()),
                    }
                }
                if let Some((groups, gid, uid)) = &identity {
                    if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                        || libc::setgid(*gid) != 0
                        || libc::setuid(*uid) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }

        let (started_tx, started_rx) = oneshot::channel();
        let (exit_tx, exit_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name("badfd-command".into())
            .spawn(move || {
                let spawned = command.spawn();
                // Our copies of the child's ends: closing them makes a failed
                // fork show as EOF on the pid pipe.
                drop(go_read);
                drop(pid_write);
                match spawned {
                    Ok(mut child) => {
                        let _ = started_tx.send(Ok(child.id()));
                        let _ = exit_tx.send(child.wait());
                    }
                    Err(e) => {
                        let _ = started_tx.send(Err(e));
                    }
                }
            })
            .context("starting the thread that runs the command")?;

        let pid = tokio::task::spawn_blocking(move || read_pid(pid_read)).await??;
        let tracked = match pid {
            Some(pid) => {
                let tracked = track(pid);
                if tracked.is_ok() {
                    let mut go = std::fs::File::from(go_write);
                    go.write_all(b"g").context("releasing the command")?;
                } else {
                    drop(go_write); // the child sees EOF and does not exec
                }
                tracked
            }
            None => Ok(()),
        };
        let started = started_rx.await.context("the command's thread ended")?;
        tracked.context("following the command's pid in the kernel")?;
        match started {
            Ok(pid) => Ok(Command { pid, exit: exit_rx }),
            Err(source) => Err(NotRun { program: program.to_string_lossy().into_owned(), source }.into()),
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `signal` to the command (not to the processes it started).
    pub fn signal(&self, signal: Signal) {
        if let Err(e) = nix::sys::signal::kill(Pid::from_raw(self.pid as i32), signal) {
            tracing::debug!(pid = self.pid, %e, "signalling the command");
        }
    }

    /// Waits for the command to end: its exit code, or the signal that
    /// ended it (`CommandExit::shell_code` gives 128 + N then). Cancel-safe.
    pub async fn wait(&mut self) -> CommandExit {
        match (&mut self.exit).await {
            Ok(Ok(status)) => command_exit(status),
            Ok(Err(e)) => {
                tracing::error!(%e, "waiting for the command");
                CommandExit::exited(1)
            }
            Err(_) => CommandExit::exited(1),
        }
    }
}

fn command_exit(status: ExitStatus) -> CommandExit {
    match (status.code(), status.signal()) {
        (Some(code), _) => CommandExit::exited(code),
        (None, Some(signal)) => CommandExit::killed(signal),
        (None, None) => CommandExit::exited(1),
    }
}

/// The pid the child sends, or None if it never forked (EOF).
fn read_pid(pipe: OwnedFd) -> std::io::Result<Option<u32>> {
    let mut file = std::fs::File::from(pipe);
    let mut buf = [0u8; 4];
    match file.read_exact(&mut buf) {
        Ok(()) => Ok(Some(i32::from_ne_bytes(buf) as u32)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_after_tracking_and_passes_the_exit_status() {
        let mut seen = None;
        let mut c = Command::start(&["sh".into(), "-c".into(), "exit 7".into()], None, |pid| {
            // The child exists and has not exec'd yet: it is still our copy.
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
            assert_eq!(exe, std::env::current_exe().unwrap());
            seen = Some(pid);
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(seen, Some(c.pid()));
        assert_eq!(c.wait().await, CommandExit::exited(7));

        let mut killed = Command::start(&["sleep".into(), "30".into()], None, |_| Ok(())).await.unwrap();
        killed.signal(Signal::SIGKILL);
        let exit = killed.wait().await;
        assert_eq!(exit, CommandExit::killed(9));
        assert_eq!((exit.shell_code(), exit.signal_name().as_deref()), (128 + 9, Some("SIGKILL")));
    }

    #[tokio::test]
    async fn a_failed_track_means_no_exec_and_a_missing_program_is_127() {
        let marker = std::env::temp_dir().join(format!("badfd-never-{}", std::process::id()));
        let script = format!("touch {}", marker.display());
        let err = Command::start(&["sh".into(), "-c".into(), script.into()], None, |_| anyhow::bail!("no map"))
            .await
            .err()
            .expect("a failed track fails the start");
        assert!(format!("{err:#}").contains("no map"), "{err:#}");
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!marker.exists(), "the command ran although it was not tracked");

        let err = Command::start(&["/no/such/program".into()], None, |_| Ok(())).await.err().unwrap();
        let not_run = err.downcast_ref::<NotRun>().expect("NotRun");
        assert_eq!(not_run.exit_code(), 127);
    }

    #[tokio::test]
    async fn runs_as_the_user_with_its_groups() {
        // nobody exists on every Debian; its uid and groups come from the database.
        let nobody = RunAs { name: "nobody".into(), uid: 65534, gid: 65534, groups: vec![65534, 100] };
        let dir = std::env::temp_dir().join(format!("badfd-run-as-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("id");
        std::fs::File::create(&out).unwrap();
        std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
        let script = format!("echo $(id -u) $(id -g) $(id -G) > {}", out.display());
        let mut c = Command::start(&["sh".into(), "-c".into(), script.into()], Some(&nobody), |_| Ok(())).await.unwrap();
        assert_eq!(c.wait().await, CommandExit::exited(0));
        assert_eq!(std::fs::read_to_string(&out).unwrap().trim(), "65534 65534 65534 100");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
