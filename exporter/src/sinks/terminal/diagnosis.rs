//! The diagnosis `badfd trace` begins its summary with: of the failures that
//! were never found later (a search path's probes are set aside), the ones
//! that most likely explain how the command ended, most likely first.
//!
//! Failures are grouped by name: every failure of the same final path
//! component, errno and kind (open or exec) is one entry, so that a search
//! that never found a file (the loader trying each RPATH and hwcaps
//! directory for a missing library, a shell trying each `PATH` directory) is
//! one cause, counted, with the places tried. An entry's `path` is the most
//! telling of them: one of the command's own files rather than a system
//! directory, the shortest (`/opt/app/lib/libx.so` rather than its
//! `glibc-hwcaps/x86-64-v3/` variant), the first tried.
//!
//! Ranking, by points (ties: the latest failure first, then the most
//! frequent, then the path):
//! - +3 one of the command's own files, not a probe every program makes
//!   (under /usr/lib, /lib, /etc/ld.so*, locale, /proc, /sys, /dev...);
//! - +3 / +2 / +1 for the last, second and third latest entries when the
//!   command failed (a non-zero exit or a signal): what happened just before;
//! - +2 EACCES, EPERM, EROFS, ENOSPC, ELOOP (and ENOEXEC, EMFILE, ENFILE,
//!   EDQUOT, ETXTBSY): something is wrong, not merely absent;
//! - +2 a failed exec (a program or interpreter that could not start);
//! - +1 a name never found anywhere in the trace (no process found a file of
//!   that name later).
//!
//! Pure: no clock, no file system (what it needs from the file system, a
//! script's interpreter, is looked up by the sink and handed in).

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::text;
use crate::{
    errno,
    pipeline::{missing::MissingComponent, Anomaly},
};

/// Entries (distinct names) tracked; beyond it failures of new names are counted only.
pub const ENTRIES_TRACKED: usize = 10_000;
/// Distinct paths kept per entry (the places a search tried).
pub const PATHS_PER_ENTRY: usize = 32;
/// Places kept over all entries beyond each entry's first (memory stays
/// bounded on a long host-wide trace: at most this many paths of up to 4 KiB).
pub const PLACES_TRACKED: usize = 20_000;
/// Names found later remembered (for "never found anywhere").
const FOUND_NAMES_TRACKED: usize = 100_000;
/// Entries in the text diagnosis.
pub const TEXT_ENTRIES: usize = 10;
/// Entries in the JSON diagnosis line.
pub const JSON_ENTRIES: usize = 100;

/// How the traced command ended: an exit code or the signal that killed it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommandExit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl CommandExit {
    pub fn exited(code: i32) -> CommandExit {
        CommandExit { code: Some(code), signal: None }
    }

    pub fn killed(signal: i32) -> CommandExit {
        CommandExit { code: None, signal: Some(signal) }
    }

    /// A non-zero exit or a signal.
    pub fn failed(&self) -> bool {
        self.signal.is_some() || self.code.is_some_and(|c| c != 0)
    }

    /// The exit status as a shell reports it (128 + N for signal N).
    pub fn shell_code(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(code), _) => code,
            (None, Some(signal)) => 128 + signal,
            (None, None) => 1,
        }
    }

    pub fn signal_name(&self) -> Option<String> {
        self.signal.map(signal_name)
    }

    fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(code), _) => format!("the command exited with status {code}"),
            (None, Some(signal)) => format!("the command was killed by {}", signal_name(signal)),
            (None, None) => "the command ended".to_string(),
        }
    }
}

pub fn signal_name(signal: i32) -> String {
    match nix::sys::signal::Signal::try_from(signal) {
        Ok(s) => s.as_str().to_string(),
        Err(_) => format!("SIG{signal}"),
    }
}

/// A script's `#!` interpreter, read by badfd after its exec failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interpreter {
    /// As the script's first line names it.
    pub path: Vec<u8>,
    /// Its first missing component, when it does not exist (now).
    pub missing: Option<MissingComponent>,
}

/// The interpreter named by a script's first bytes (`#!/usr/bin/python3 -u`
/// gives `/usr/bin/python3`); `None` when they do not start with `#!`. A
/// carriage return (a script saved with CRLF) stays part of the name, as the
/// kernel keeps it.
pub fn shebang_interpreter(head: &[u8]) -> Option<Vec<u8>> {
    let rest = head.strip_prefix(b"#!")?;
    let line = rest.split(|&b| b == b'\n').next().unwrap_or_default();
    let start = line.iter().position(|&b| b != b' ' && b != b'\t')?;
    let line = &line[start..];
    let end = line.iter().position(|&b| b == b' ' || b == b'\t').unwrap_or(line.len());
    (end > 0).then(|| line[..end].to_vec())
}

/// Errnos that say something is wrong rather than absent.
pub fn severe(errno: i32) -> bool {
    matches!(
        errno,
        libc::EACCES
            | libc::EPERM
            | libc::EROFS
            | libc::ENOSPC
            | libc::ELOOP
            | libc::ENOEXEC
            | libc::EMFILE
            | libc::ENFILE
            | libc::EDQUOT
            | libc::ETXTBSY
    )
}

/// Paths every program probes (the loader, locale, the C library's own
/// configuration, /proc, /sys): ranked below the command's own files.
pub fn system_probe(path: &[u8]) -> bool {
    const PREFIXES: &[&[u8]] = &[
        b"/usr/lib/",
        b"/usr/lib32/",
        b"/usr/lib64/",
        b"/usr/libx32/",
        b"/lib/",
        b"/lib32/",
        b"/lib64/",
        b"/libx32/",
        b"/etc/ld.so",
        b"/usr/share/locale/",
        b"/usr/share/i18n/",
        b"/usr/share/zoneinfo/",
        b"/etc/localtime",
        b"/proc/",
        b"/sys/",
        b"/dev/",
    ];
    PREFIXES.iter().any(|p| path.starts_with(p))
        || path.split(|&b| b == b'/').any(|c| c == b"locale" || c == b"glibc-hwcaps" || c == b"tls" || c == b"haswell")
}

fn basename(path: &[u8]) -> &[u8] {
    let trimmed = path.strip_suffix(b"/").unwrap_or(path);
    match trimmed.iter().rposition(|&b| b == b'/') {
        Some(i) => &trimmed[i + 1..],
        None => trimmed,
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One place a failing name was tried.
#[derive(Clone, Debug)]
struct Place {
    path: Vec<u8>,
    first_ns: u64,
    pid: u32,
    comm: String,
    syscall: &'static str,
    missing: Option<MissingComponent>,
    count: u64,
}

#[derive(Clone, Debug)]
struct Group {
    errno: i32,
    exec: bool,
    count: u64,
    last_ns: u64,
    places: Vec<Place>,
    places_not_kept: u64,
    interpreter: Option<Interpreter>,
}

type Key = (Vec<u8>, i32, bool);

/// The failures a diagnosis is made of.
#[derive(Debug, Default)]
pub struct Diagnosis {
    groups: HashMap<Key, Group>,
    /// Not-found failures of names beyond `ENTRIES_TRACKED`.
    pub not_tracked: u64,
    found_names: HashSet<Vec<u8>>,
    /// Failures found later (a search path's probes), shown or not.
    pub found_later: u64,
    /// Failures not found later (or not classified).
    pub not_found: u64,
    /// Places kept beyond each entry's first.
    extra_places: usize,
}

/// One entry of the diagnosis, most likely cause first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The resolved path (the most telling of the places tried).
    pub path: String,
    pub errno: &'static str,
    /// Failures of this entry, at every place tried.
    pub count: u64,
    pub pid: u32,
    pub comm: String,
    pub syscall: &'static str,
    /// The first missing component of `path` (ENOENT/ENOTDIR), checked by
    /// badfd afterwards.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing: Option<String>,
    /// "does not exist" or "is not a directory", with `missing`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing_reason: Option<&'static str>,
    /// For a script whose exec failed ENOENT: the `#!` interpreter it names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interpreter: Option<String>,
    /// Whether that interpreter was missing when badfd looked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interpreter_missing: Option<bool>,
    /// Every distinct place the name was tried, in order (when more than one).
    /// (At most `PATHS_PER_ENTRY`, the first ones.)
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tried: Vec<String>,
    /// Failures at places beyond those listed in `tried`.
    #[serde(skip_serializing_if = "is_zero")]
    pub tried_not_listed: u64,
    /// Points of the ranking (see the module's documentation).
    pub score: u32,
    #[serde(skip)]
    pub last_ns: u64,
    #[serde(skip)]
    raw_path: Vec<u8>,
}

impl Entry {
    /// What the text diagnosis says of the entry beyond its path, if anything.
    pub fn explanation(&self) -> Option<String> {
        if let (Some(interpreter), Some(true)) = (&self.interpreter, self.interpreter_missing) {
            return Some(format!(
                "{}: its interpreter {} does not exist (checked afterwards)",
                text::escape_for_terminal(&self.raw_path),
                text::escape_for_terminal(interpreter.as_bytes())
            ));
        }
        if let Some(interpreter) = &self.interpreter {
            return Some(format!("its interpreter is {} (it exists now)", text::escape_for_terminal(interpreter.as_bytes())));
        }
        match (&self.missing, self.missing_reason) {
            (Some(missing), Some(reason)) => {
                Some(format!("{} {reason} (checked afterwards)", text::escape_for_terminal(missing.as_bytes())))
            }
            _ => None,
        }
    }
}

impl Diagnosis {
    pub fn new() -> Diagnosis {
        Diagnosis::default()
    }

    /// Takes a decided anomaly (shown or not); `interpreter` for a failed
    /// exec of a script, as the sink read it.
    pub fn record(&mut self, a: &Anomaly, interpreter: Option<Interpreter>) {
        let e = &a.event;
        let Some(errno) = e.errno().filter(|_| e.failed()) else { return };
        let name = basename(&a.resolved.path).to_vec();
        if a.found_later == Some(true) {
            self.found_later += 1;
            if self.found_names.len() < FOUND_NAMES_TRACKED {
                self.found_names.insert(name);
            }
            return;
        }
        self.not_found += 1;
        let key = (name, errno, e.syscall.is_exec());
        let tracked = self.groups.len();
        let group = match self.groups.get_mut(&key) {
            Some(g) => g,
            None if tracked < ENTRIES_TRACKED => self.groups.entry(key).or_insert_with(|| Group {
                errno,
                exec: e.syscall.is_exec(),
                count: 0,
                last_ns: 0,
                places: Vec::new(),
                places_not_kept: 0,
                interpreter: None,
            }),
            None => {
                self.not_tracked += 1;
                return;
            }
        };
        group.count += 1;
        group.last_ns = group.last_ns.max(e.start_ns);
        if group.interpreter.is_none() {
            group.interpreter = interpreter;
        }
        let kept = group.places.len();
        match group.places.iter_mut().find(|p| p.path == a.resolved.path) {
            Some(place) => {
                place.count += 1;
                place.first_ns = place.first_ns.min(e.start_ns);
            }
            None if kept == 0 || (kept < PATHS_PER_ENTRY && self.extra_places < PLACES_TRACKED) => {
                self.extra_places += usize::from(kept > 0);
                group.places.push(Place {
                path: a.resolved.path.clone(),
                first_ns: e.start_ns,
                pid: e.pid,
                comm: String::from_utf8_lossy(e.comm_bytes()).into_owned(),
                syscall: e.syscall.name(),
                missing: a.missing.clone(),
                count: 1,
                })
            }
            None => group.places_not_kept += 1,
        }
    }

    /// The entries, most likely cause first. `exit`: how the command ended
    /// (`None`: no command, or it was still running).
    pub fn ranked(&self, exit: Option<&CommandExit>) -> Vec<Entry> {
        let failed = exit.is_some_and(|x| x.failed());
        // Latest first, for the recency points.
        let mut by_time: Vec<(&Key, &Group)> = self.groups.iter().collect();
        by_time.sort_by(|a, b| b.1.last_ns.cmp(&a.1.last_ns).then_with(|| a.0.cmp(b.0)));
        let mut entries: Vec<Entry> = by_time
            .iter()
            .enumerate()
            .map(|(rank, (key, g))| {
                let own = g.places.iter().any(|p| !system_probe(&p.path));
                let mut score = 0;
                if severe(g.errno) {
                    score += 2;
                }
                if failed {
                    score += [3, 2, 1].get(rank).copied().unwrap_or(0);
                }
                if own {
                    score += 3;
                }
                if g.exec {
                    score += 2;
                }
                if !self.found_names.contains(&key.0) {
                    score += 1;
                }
                let mut places: Vec<&Place> = g.places.iter().collect();
                places.sort_by_key(|p| p.first_ns);
                let components = |p: &Place| p.path.split(|&b| b == b'/').filter(|c| !c.is_empty()).count();
                let best = places
                    .iter()
                    .min_by_key(|p| (own && system_probe(&p.path), components(p), p.first_ns))
                    .expect("a group has a place");
                let tried = match places.len() {
                    1 => Vec::new(),
                    _ => places.iter().map(|p| String::from_utf8_lossy(&p.path).into_owned()).collect(),
                };
                Entry {
                    path: String::from_utf8_lossy(&best.path).into_owned(),
                    errno: errno::name(g.errno),
                    count: g.count,
                    pid: best.pid,
                    comm: best.comm.clone(),
                    syscall: best.syscall,
                    missing: best.missing.as_ref().map(|m| String::from_utf8_lossy(&m.path).into_owned()),
                    missing_reason: best.missing.as_ref().map(|m| match m.not_a_directory {
                        true => "is not a directory",
                        false => "does not exist",
                    }),
                    interpreter: g.interpreter.as_ref().map(|i| String::from_utf8_lossy(&i.path).into_owned()),
                    interpreter_missing: g.interpreter.as_ref().map(|i| i.missing.is_some()),
                    tried,
                    tried_not_listed: g.places_not_kept,
                    score,
                    last_ns: g.last_ns,
                    raw_path: best.path.clone(),
                }
            })
            .collect();
        entries.sort_by(|a, b| {
            b.score
                .cmp(&a.score)
                .then(b.last_ns.cmp(&a.last_ns))
                .then(b.count.cmp(&a.count))
                .then_with(|| a.path.cmp(&b.path))
        });
        entries
    }

    /// The diagnosis as text, the first lines of the summary (each ending in
    /// `\n`). Paths are elided at the front to `path_width` when given.
    pub fn render(&self, exit: Option<&CommandExit>, all_failures: bool, classified: bool, path_width: Option<usize>) -> String {
        let entries = self.ranked(exit);
        let mut out = String::new();
        let ending = exit.map(|x| format!("; {}", x.describe())).unwrap_or_default();
        if entries.is_empty() {
            out.push_str(&format!("diagnosis: no failure that was not found later{ending}\n"));
        } else {
            out.push_str(&format!("diagnosis (most likely cause first{ending}):\n"));
            for (i, entry) in entries.iter().take(TEXT_ENTRIES).enumerate() {
                let path = text::escape_for_terminal(&entry.raw_path);
                let path = match path_width {
                    Some(w) => text::elide_front(&path, w.saturating_sub(entry.errno.len() + 6)),
                    None => path,
                };
                out.push_str(&format!("  {}. {} {path}\n", i + 1, entry.errno));
                let times = match entry.count {
                    1 => "once".to_string(),
                    n => format!("{n} times"),
                };
                let places = match (entry.tried.len(), entry.tried_not_listed) {
                    (0, _) => String::new(),
                    (n, 0) => format!(", in {n} places"),
                    (n, _) => format!(", in more than {n} places"),
                };
                out.push_str(&format!(
                    "       {} by {} (pid {}), {times}{places}\n",
                    entry.syscall,
                    text::escape_for_terminal(entry.comm.as_bytes()),
                    entry.pid
                ));
                if let Some(why) = entry.explanation() {
                    out.push_str(&format!("       {why}\n"));
                }
            }
            if entries.len() > TEXT_ENTRIES {
                out.push_str(&format!("  ... and {} more (--json gives them all)\n", entries.len() - TEXT_ENTRIES));
            }
        }
        if self.not_tracked > 0 {
            out.push_str(&format!(
                "  ({} failures of names beyond the first {ENTRIES_TRACKED} were not ranked)\n",
                self.not_tracked
            ));
        }
        out.push_str(&match (self.found_later, all_failures) {
            _ if !classified => "no failure was set aside as a search-path probe (--found-later-window 0)\n".to_string(),
            (n, false) => format!("{n} failures were search-path probes found later (--all-failures shows them)\n"),
            (n, true) => format!("{n} failures were search-path probes found later (shown, marked \"probe\")\n"),
        });
        out
    }

    /// The last line of `--json` output (no trailing newline):
    /// `{"diagnosis": [...], "found_later": N, "exit": {"code": N|null, "signal": "SIG..."|null}}`,
    /// `"exit": null` without a command (or when it was still running).
    pub fn json_line(&self, exit: Option<&CommandExit>) -> String {
        #[derive(Serialize)]
        struct Exit {
            code: Option<i32>,
            signal: Option<String>,
        }
        #[derive(Serialize)]
        struct Line {
            diagnosis: Vec<Entry>,
            found_later: u64,
            not_found: u64,
            exit: Option<Exit>,
        }
        let mut diagnosis = self.ranked(exit);
        diagnosis.truncate(JSON_ENTRIES);
        let line = Line {
            diagnosis,
            found_later: self.found_later,
            not_found: self.not_found,
            exit: exit.map(|x| Exit { code: x.code, signal: x.signal_name() }),
        };
        serde_json::to_string(&line).expect("strings and numbers serialize")
    }
}

#[cfg(test)]
mod tests {
    use exporter_common::Syscall;

    use super::*;
    use crate::sinks::terminal::tests::anomaly;

    fn failure(path: &str, errno: i32, at_ms: u64, found_later: Option<bool>) -> Anomaly {
        let mut a = anomaly(path.as_bytes(), -(errno as i64), 1_000, false);
        a.event.start_ns = at_ms * 1_000_000;
        a.found_later = found_later;
        a
    }

    fn paths(d: &Diagnosis, exit: Option<&CommandExit>) -> Vec<String> {
        d.ranked(exit).into_iter().map(|e| e.path).collect()
    }

    #[test]
    fn the_last_failure_before_a_failed_exit_comes_first_and_probes_are_set_aside() {
        let mut d = Diagnosis::new();
        d.record(&failure("/etc/ld.so.preload", libc::ENOENT, 1, Some(false)), None);
        d.record(&failure("/usr/lib/locale/C.UTF-8/LC_CTYPE", libc::ENOENT, 2, Some(true)), None);
        d.record(&failure("/home/u/.apprc", libc::ENOENT, 3, Some(false)), None);
        d.record(&failure("/etc/myapp/app.conf", libc::ENOENT, 9, Some(false)), None);
        let exit = CommandExit::exited(1);
        assert_eq!(paths(&d, Some(&exit)), ["/etc/myapp/app.conf", "/home/u/.apprc", "/etc/ld.so.preload"]);
        assert_eq!(d.found_later, 1);
        assert_eq!(d.not_found, 3);
        // Exit 0: recency gives nothing; own files above the loader's probe.
        let ranked = paths(&d, Some(&CommandExit::exited(0)));
        assert_eq!(ranked.last().unwrap(), "/etc/ld.so.preload");
    }

    #[test]
    fn permission_errors_rank_above_plain_absence() {
        let mut d = Diagnosis::new();
        d.record(&failure("/var/log/app.log", libc::EACCES, 1, Some(false)), None);
        d.record(&failure("/home/u/.apprc", libc::ENOENT, 5, Some(false)), None);
        d.record(&failure("/proc/1/environ", libc::EACCES, 6, Some(false)), None);
        let exit = CommandExit::exited(1);
        // /var/log: own 3 + EACCES 2 + third latest 1 + never found 1 = 7;
        // /proc: EACCES 2 + latest 3 + 1 = 6; .apprc: own 3 + second 2 + 1 = 6, earlier.
        assert_eq!(paths(&d, Some(&exit)), ["/var/log/app.log", "/proc/1/environ", "/home/u/.apprc"]);
        // Without a command: own EACCES 6, own ENOENT 4, EACCES in /proc 3.
        assert_eq!(paths(&d, None), ["/var/log/app.log", "/home/u/.apprc", "/proc/1/environ"]);
        for errno in [libc::EACCES, libc::EPERM, libc::EROFS, libc::ENOSPC, libc::ELOOP] {
            assert!(severe(errno));
        }
        assert!(!severe(libc::ENOENT));
    }

    #[test]
    fn a_search_that_never_found_a_name_is_one_entry_at_its_most_telling_place() {
        let mut d = Diagnosis::new();
        let mut at = 10;
        for dir in ["/opt/app/d1", "/opt/app/d2", "/opt/app/d3"] {
            for hw in ["glibc-hwcaps/x86-64-v3/", "glibc-hwcaps/x86-64-v2/", ""] {
                d.record(&failure(&format!("{dir}/{hw}libgone.so.1"), libc::ENOENT, at, Some(false)), None);
                at += 1;
            }
        }
        d.record(&failure("/lib/x86_64-linux-gnu/libgone.so.1", libc::ENOENT, at, Some(false)), None);
        d.record(&failure("/usr/lib/locale/C.utf8/LC_CTYPE", libc::ENOENT, 1, Some(true)), None);
        let ranked = d.ranked(Some(&CommandExit::exited(127)));
        assert_eq!(ranked.len(), 1, "{ranked:#?}");
        assert_eq!(ranked[0].path, "/opt/app/d1/libgone.so.1");
        assert_eq!(ranked[0].count, 10);
        assert_eq!(ranked[0].tried.len(), 10);
        assert_eq!(ranked[0].tried[0], "/opt/app/d1/glibc-hwcaps/x86-64-v3/libgone.so.1");
        let text = d.render(Some(&CommandExit::exited(127)), false, true, None);
        assert!(text.starts_with("diagnosis (most likely cause first; the command exited with status 127):\n  1. ENOENT /opt/app/d1/libgone.so.1\n"), "{text}");
        assert!(text.ends_with("1 failures were search-path probes found later (--all-failures shows them)\n"), "{text}");
    }

    #[test]
    fn a_name_found_by_another_process_ranks_below_one_never_found() {
        let mut d = Diagnosis::new();
        d.record(&failure("/srv/a/plugin.so", libc::ENOENT, 1, Some(false)), None);
        d.record(&failure("/srv/b/other.so", libc::ENOENT, 1, Some(false)), None);
        d.record(&failure("/srv/c/plugin.so", libc::ENOENT, 2, Some(true)), None);
        assert_eq!(paths(&d, None), ["/srv/b/other.so", "/srv/a/plugin.so"]);
    }

    #[test]
    fn a_failed_exec_names_the_missing_interpreter() {
        let mut d = Diagnosis::new();
        d.record(&failure("/etc/ld.so.preload", libc::ENOENT, 1, Some(false)), None);
        let mut exec = failure("/opt/x/script", libc::ENOENT, 2, Some(false));
        exec.event.syscall = Syscall::Execve;
        let interpreter = Interpreter {
            path: b"/usr/bin/nonexistent-python".to_vec(),
            missing: Some(MissingComponent { path: b"/usr/bin/nonexistent-python".to_vec(), not_a_directory: false }),
        };
        d.record(&exec, Some(interpreter));
        d.record(&failure("/home/u/.cache/x", libc::ENOENT, 3, Some(false)), None);
        let exit = CommandExit::exited(127);
        let ranked = d.ranked(Some(&exit));
        assert_eq!(ranked[0].path, "/opt/x/script");
        assert_eq!(ranked[0].syscall, "execve");
        assert_eq!(ranked[0].interpreter.as_deref(), Some("/usr/bin/nonexistent-python"));
        assert_eq!(
            ranked[0].explanation().unwrap(),
            "/opt/x/script: its interpreter /usr/bin/nonexistent-python does not exist (checked afterwards)"
        );
        let v: serde_json::Value = serde_json::from_str(&d.json_line(Some(&exit))).unwrap();
        assert_eq!(v["diagnosis"][0]["interpreter"], "/usr/bin/nonexistent-python");
        assert_eq!(v["exit"]["code"], 127);
        assert_eq!(v["exit"]["signal"], serde_json::Value::Null);
    }

    #[test]
    fn the_json_line_has_the_stable_fields() {
        let mut d = Diagnosis::new();
        let mut a = failure("/etc/myapp/app.conf", libc::ENOENT, 1, Some(false));
        a.missing = Some(MissingComponent { path: b"/etc/myapp".to_vec(), not_a_directory: false });
        d.record(&a, None);
        d.record(&a, None);
        d.record(&failure("/x/y", libc::ENOENT, 1, Some(true)), None);
        let v: serde_json::Value = serde_json::from_str(&d.json_line(Some(&CommandExit::killed(libc::SIGSEGV)))).unwrap();
        let first = &v["diagnosis"][0];
        assert_eq!(first["path"], "/etc/myapp/app.conf");
        assert_eq!(first["errno"], "ENOENT");
        assert_eq!(first["count"], 2);
        assert_eq!(first["pid"], 4242);
        assert_eq!(first["comm"], "cat");
        assert_eq!(first["missing"], "/etc/myapp");
        assert_eq!(v["found_later"], 1);
        assert_eq!(v["exit"]["code"], serde_json::Value::Null);
        assert_eq!(v["exit"]["signal"], "SIGSEGV");
        let v: serde_json::Value = serde_json::from_str(&d.json_line(None)).unwrap();
        assert_eq!(v["exit"], serde_json::Value::Null);
        let text = d.render(None, false, true, None);
        assert!(d.render(None, false, false, None).ends_with("(--found-later-window 0)\n"));
        assert!(text.contains("       /etc/myapp does not exist (checked afterwards)\n"), "{text}");
    }

    #[test]
    fn memory_stays_bounded() {
        let mut d = Diagnosis::new();
        for i in 0..(PATHS_PER_ENTRY + 3) {
            d.record(&failure(&format!("/s/{i}/lib.so"), libc::ENOENT, i as u64, Some(false)), None);
        }
        let e = &d.ranked(None)[0];
        assert_eq!((e.count, e.tried.len(), e.tried_not_listed), ((PATHS_PER_ENTRY + 3) as u64, PATHS_PER_ENTRY, 3));
        d.extra_places = PLACES_TRACKED;
        d.record(&failure("/t/a/new.so", libc::ENOENT, 100, Some(false)), None);
        d.record(&failure("/t/b/new.so", libc::ENOENT, 101, Some(false)), None);
        let e = d.ranked(None).into_iter().find(|e| e.path.ends_with("new.so")).unwrap();
        assert_eq!((e.count, e.tried.len(), e.tried_not_listed), (2, 0, 1), "a new entry keeps its first place");
    }

    #[test]
    fn reads_the_interpreter_of_a_shebang() {
        assert_eq!(shebang_interpreter(b"#!/usr/bin/python3 -u\nprint()"), Some(b"/usr/bin/python3".to_vec()));
        assert_eq!(shebang_interpreter(b"#! /bin/sh\n"), Some(b"/bin/sh".to_vec()));
        assert_eq!(shebang_interpreter(b"#!/bin/bash\r\n"), Some(b"/bin/bash\r".to_vec()));
        assert_eq!(shebang_interpreter(b"\x7fELF"), None);
        assert_eq!(shebang_interpreter(b"#!\n"), None);
    }

    #[test]
    fn system_probes_are_recognised() {
        for p in ["/usr/lib/x86_64-linux-gnu/libc.so.6", "/etc/ld.so.preload", "/usr/share/locale/C/LC_MESSAGES/x.mo", "/proc/self/x", "/opt/a/glibc-hwcaps/x86-64-v3/l.so"] {
            assert!(system_probe(p.as_bytes()), "{p}");
        }
        for p in ["/etc/myapp.conf", "/tmp/x/d1/libm.so", "/home/u/.apprc"] {
            assert!(!system_probe(p.as_bytes()), "{p}");
        }
    }
}
