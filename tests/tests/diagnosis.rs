//! The diagnosis of `badfd trace` (issue 19): hand-made programs of each
//! pattern, compiled here with gcc into a temporary directory, each run as
//! `badfd trace --json -- PROGRAM` (the real binary, the real kernel), and
//! checked on the output's last line (the diagnosis) and its found_later
//! lines. Where a count is the loader's or glibc's, it is compared with what
//! strace shows for the same program. Run as root; a test that cannot load
//! BPF fails (badfd exits before the program runs, and no diagnosis line
//! comes out), never skips.

use std::{
    collections::BTreeMap,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use badfd_tests::{badfd_path, TempDir};
use serde_json::Value;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Compiles `source` (C) into `dir/name` with gcc and `args`.
fn cc(dir: &Path, name: &str, source: &str, args: &[&str]) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, source).unwrap();
    let out = dir.join(name);
    let status = Command::new("gcc").arg("-O0").arg("-o").arg(&out).arg(&src).args(args).status().expect("run gcc");
    assert!(status.success(), "gcc {name} failed");
    out
}

/// The environment every run gets (badfd's and strace's alike).
fn env(cmd: &mut Command) -> &mut Command {
    cmd.env("LC_ALL", "C").env_remove("LD_LIBRARY_PATH").env_remove("LD_PRELOAD").env("BADFD_LOG", "warn")
}

struct Run {
    output: Output,
    /// Anomaly lines.
    lines: Vec<Value>,
    /// The last line: the diagnosis.
    last: Value,
}

impl Run {
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    fn diagnosis(&self) -> &Vec<Value> {
        self.last["diagnosis"].as_array().unwrap_or_else(|| panic!("no diagnosis: {}", self.last))
    }

    fn first(&self) -> &Value {
        self.diagnosis().first().unwrap_or_else(|| panic!("an empty diagnosis: {}\n{}", self.last, self.stderr()))
    }

    /// Every path a diagnosis entry names (its path and the places tried).
    fn diagnosis_paths(&self) -> Vec<String> {
        let mut v = Vec::new();
        for e in self.diagnosis() {
            v.push(e["path"].as_str().unwrap().to_string());
            for t in e["tried"].as_array().into_iter().flatten() {
                v.push(t.as_str().unwrap().to_string());
            }
        }
        v
    }

    /// Resolved paths of the lines marked found later, with their counts.
    fn found_later_lines(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for l in self.lines.iter().filter(|l| l["found_later"] == true) {
            *m.entry(l["resolved_path"].as_str().unwrap().to_string()).or_insert(0) += 1;
        }
        m
    }
}

/// `badfd trace --json -o FILE ARGS -- COMMAND`.
fn trace(out: &Path, args: &[&str], command: &[&str]) -> Run {
    let json = out.join("out.jsonl");
    let output = env(Command::new(badfd_path()).arg("trace").args(args).arg("--json").arg("-o").arg(&json).arg("--").args(command))
        .current_dir(out)
        .output()
        .expect("run badfd");
    let text = std::fs::read_to_string(&json).unwrap_or_default();
    let mut lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    let last = lines.pop().unwrap_or_else(|| {
        panic!("no output at all (did BPF load?); status {:?}, stderr:\n{}", output.status, String::from_utf8_lossy(&output.stderr))
    });
    assert!(
        last.get("diagnosis").is_some() && last.get("found_later").is_some() && last.get("exit").is_some(),
        "the last line is not the diagnosis: {last}"
    );
    assert!(lines.iter().all(|l| l.get("diagnosis").is_none()), "one diagnosis line, the last");
    Run { output, lines, last }
}

/// What strace sees of a run of `command`: each failure of an open or exec,
/// and whether the same process then opened or exec'd the same name
/// successfully within 1 s (found later, badfd's definition).
#[derive(Debug, Default)]
struct Strace {
    /// (path, errno name) of failures found later.
    found_later: Vec<(String, String)>,
    /// (path, errno name) of failures not found.
    not_found: Vec<(String, String)>,
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap()
}

fn strace(dir: &Path, command: &[&str]) -> Strace {
    let log = dir.join("strace.txt");
    let status = env(Command::new("strace").args(["-f", "-qq", "-ttt", "-e", "trace=open,openat,openat2,creat,execve,execveat", "-o"]).arg(&log).arg("--").args(command))
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run strace");
    let _ = status;
    let text = std::fs::read_to_string(&log).unwrap();
    // (pid, time, path, Ok | Err(errno))
    let mut calls: Vec<(u32, f64, String, Result<(), String>)> = Vec::new();
    for line in text.lines() {
        assert!(!line.contains("unfinished") && !line.contains("resumed"), "interleaved strace line (one process at a time expected): {line}");
        let mut words = line.split_whitespace();
        let (Some(pid), Some(time)) = (words.next(), words.next()) else { continue };
        let rest = line[line.find(time).unwrap() + time.len()..].trim_start();
        if rest.starts_with("+++") || rest.starts_with("---") {
            continue;
        }
        let Some(q) = rest.find('"') else { continue };
        let path_end = rest[q + 1..].find('"').unwrap() + q + 1;
        let path = rest[q + 1..path_end].to_string();
        let ret = rest.rsplit_once(" = ").unwrap().1;
        let result = match ret.strip_prefix("-1 ") {
            Some(e) => Err(e.split_whitespace().next().unwrap().to_string()),
            None => Ok(()),
        };
        calls.push((pid.parse().unwrap(), time.parse().unwrap(), path, result));
    }
    let mut out = Strace::default();
    for (i, (pid, t, path, result)) in calls.iter().enumerate() {
        let Err(errno) = result else { continue };
        let found = calls[i + 1..]
            .iter()
            .any(|(p, t2, p2, r2)| p == pid && r2.is_ok() && *t2 - *t <= 1.0 && basename(p2) == basename(path));
        let abs = if path.starts_with('/') { path.clone() } else { format!("{}/{path}", s(dir)) };
        match found {
            true => out.found_later.push((abs, errno.clone())),
            false => out.not_found.push((abs, errno.clone())),
        }
    }
    out
}

fn multiset(v: impl IntoIterator<Item = String>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for k in v {
        *m.entry(k).or_insert(0) += 1;
    }
    m
}

/// (a) The loader searches three RUNPATH directories (and their hwcaps and
/// tls variants, then the system's) for a library that was deleted: never
/// found, the cause; exit 127.
#[test]
fn a_missing_shared_library_is_the_cause() {
    let dir = TempDir::new("diag-loader");
    let d = dir.path();
    for sub in ["build", "d1", "d2", "d3"] {
        std::fs::create_dir(d.join(sub)).unwrap();
    }
    cc(&d.join("build"), "libgone.so", "int gone(void) { return 3; }\n", &["-shared", "-fPIC"]);
    let rpath = format!("-Wl,-rpath,{0}/d1:{0}/d2:{0}/d3", s(d));
    let prog = cc(d, "needsgone", "int gone(void);\nint main(void) { return gone(); }\n", &["-L", &format!("{}/build", s(d)), "-lgone", &rpath]);
    std::fs::remove_file(d.join("build/libgone.so")).unwrap();

    let st = strace(d, &[s(&prog)]);
    let gone: Vec<&(String, String)> = st.not_found.iter().filter(|(p, _)| basename(p) == "libgone.so").collect();
    assert!(gone.len() >= 3, "the loader tried each RUNPATH directory: {st:?}");

    let run = trace(d, &[], &[s(&prog)]);
    assert_eq!(run.output.status.code(), Some(127), "{}", run.stderr());
    assert_eq!(run.last["exit"]["code"], 127);
    assert_eq!(run.last["exit"]["signal"], Value::Null);
    let first = run.first();
    assert_eq!(first["path"], format!("{}/d1/libgone.so", s(d)), "{}", run.last);
    assert_eq!(first["errno"], "ENOENT");
    assert_eq!(first["comm"], "needsgone");
    assert_eq!(first["syscall"], "openat");
    assert_eq!(first["count"].as_u64(), Some(gone.len() as u64), "every place the loader tried, as strace counts: {}", run.last);
    assert_eq!(first["missing"], format!("{}/d1/libgone.so", s(d)));
    // The places tried, in the loader's order: the first 32 distinct ones
    // listed, the failures at the others counted.
    let tried: Vec<String> = first["tried"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
    let mut distinct: Vec<String> = Vec::new();
    for (p, _) in &gone {
        if !distinct.contains(p) {
            distinct.push(p.clone());
        }
    }
    let listed = distinct.len().min(32);
    assert_eq!(tried, distinct[..listed], "{}", run.last);
    let at_listed = gone.iter().filter(|(p, _)| tried.contains(p)).count() as u64;
    assert_eq!(first["tried_not_listed"].as_u64().unwrap_or(0), gone.len() as u64 - at_listed);
    assert_eq!(run.last["found_later"].as_u64(), Some(st.found_later.len() as u64), "strace: {:?}", st.found_later);
    // Not shown without --all-failures.
    assert!(run.found_later_lines().is_empty());
    let stderr = run.stderr();
    assert!(
        stderr.contains(&format!("diagnosis (most likely cause first; the command exited with status 127):\n  1. ENOENT {}/d1/libgone.so\n", s(d))),
        "{stderr}"
    );
    eprintln!(
        "(a) libgone.so: {} failures at {} distinct places (strace), count {}, found later {} (strace {})",
        gone.len(),
        distinct.len(),
        first["count"],
        run.last["found_later"],
        st.found_later.len()
    );
}

/// (b) Locale and hwcaps probing, found later: the loader finds a library in
/// the third RUNPATH directory after probing the first two (and hwcaps
/// variants), glibc finds C.utf8 after C.UTF-8, and the program finds its
/// data file in a third directory. The found-later count is strace's.
#[test]
fn locale_and_hwcaps_probes_are_found_later() {
    let dir = TempDir::new("diag-probes");
    let d = dir.path();
    for sub in ["d1", "d2", "d3", "p1", "p2", "p3"] {
        std::fs::create_dir(d.join(sub)).unwrap();
    }
    std::fs::write(d.join("p3/name.dat"), "x").unwrap();
    cc(&d.join("d3"), "libfound.so", "int found(void) { return 0; }\n", &["-shared", "-fPIC"]);
    let rpath = format!("-Wl,-rpath,{0}/d1:{0}/d2:{0}/d3", s(d));
    let source = r#"
#include <fcntl.h>
#include <locale.h>
#include <unistd.h>
int found(void);
int main(int argc, char **argv) {
    setlocale(LC_ALL, "C.UTF-8");
    for (int i = 1; i < argc; i++) {
        int fd = open(argv[i], O_RDONLY);
        if (fd >= 0) { close(fd); return found(); }
    }
    return 1;
}
"#;
    let prog = cc(d, "prober", source, &["-L", &format!("{}/d3", s(d)), "-lfound", &rpath]);
    let files: Vec<String> = ["p1", "p2", "p3"].iter().map(|p| format!("{}/{p}/name.dat", s(d))).collect();
    let mut command = vec![s(&prog)];
    command.extend(files.iter().map(|f| f.as_str()));

    let st = strace(d, &command);
    assert!(st.found_later.iter().any(|(p, _)| p.contains("/d1/") && p.ends_with("libfound.so")), "{st:?}");
    assert!(st.found_later.iter().any(|(p, _)| p.ends_with("/C.UTF-8/LC_CTYPE")), "{st:?}");
    assert!(st.found_later.contains(&(files[0].clone(), "ENOENT".into())) && st.found_later.contains(&(files[1].clone(), "ENOENT".into())));

    let run = trace(d, &["--all-failures"], &command);
    assert_eq!(run.output.status.code(), Some(0), "{}", run.stderr());
    assert_eq!(run.last["exit"]["code"], 0);
    assert_eq!(run.last["found_later"].as_u64(), Some(st.found_later.len() as u64), "strace: {:#?}", st.found_later);
    assert_eq!(run.found_later_lines(), multiset(st.found_later.iter().map(|(p, _)| p.clone())), "the found-later lines are strace's");
    let diagnosed = run.diagnosis_paths();
    for (p, _) in &st.found_later {
        assert!(!diagnosed.contains(p), "{p} was found later but is in the diagnosis: {}", run.last);
    }
    let not_found: Vec<Value> = run.lines.iter().filter(|l| l["failed"] == true && l["found_later"] == false).cloned().collect();
    assert_eq!(
        multiset(not_found.iter().map(|l| l["resolved_path"].as_str().unwrap().to_string())),
        multiset(st.not_found.iter().map(|(p, _)| p.clone())),
        "the failures not found are strace's"
    );

    // Without --all-failures: no found-later line, the same count.
    let run2 = trace(d, &[], &command);
    assert!(run2.found_later_lines().is_empty(), "{:?}", run2.found_later_lines());
    assert!(run2.lines.iter().all(|l| l["found_later"] != true));
    assert_eq!(run2.last["found_later"], run.last["found_later"]);
    let stderr = run2.stderr();
    assert!(
        stderr.contains(&format!("{} failures were search-path probes found later (--all-failures shows them)\n", st.found_later.len())),
        "{stderr}"
    );
    eprintln!("(b) found later: badfd {} / strace {}; not found: strace {:?}", run.last["found_later"], st.found_later.len(), st.not_found);
}

/// (c) A configuration fallback chain whose last candidate exists: nothing of
/// it in the diagnosis.
#[test]
fn a_fallback_chain_that_ends_in_a_file_is_not_a_cause() {
    let dir = TempDir::new("diag-fallback");
    let d = dir.path();
    std::fs::create_dir_all(d.join("defaults")).unwrap();
    std::fs::write(d.join("defaults/app.conf"), "x=1\n").unwrap();
    let source = format!(
        r#"
#include <stdio.h>
int main(void) {{
    const char *chain[] = {{ "{0}/etc/app/app.conf", "{0}/home/.config/app/app.conf", "{0}/defaults/app.conf" }};
    for (int i = 0; i < 3; i++) {{
        FILE *f = fopen(chain[i], "r");
        if (f) {{ fclose(f); return 0; }}
    }}
    return 1;
}}
"#,
        s(d)
    );
    let prog = cc(d, "fallback", &source, &[]);
    let st = strace(d, &[s(&prog)]);
    let chain_failures: Vec<&(String, String)> = st.found_later.iter().filter(|(p, _)| p.ends_with("app.conf")).collect();
    assert_eq!(chain_failures.len(), 2, "{st:?}");

    let run = trace(d, &["--all-failures"], &[s(&prog)]);
    assert_eq!(run.output.status.code(), Some(0), "{}", run.stderr());
    assert!(run.diagnosis_paths().iter().all(|p| !p.ends_with("app.conf")), "{}", run.last);
    assert_eq!(run.last["found_later"].as_u64(), Some(st.found_later.len() as u64));
    let fl = run.found_later_lines();
    assert_eq!(fl.get(&format!("{}/etc/app/app.conf", s(d))), Some(&1));
    assert_eq!(fl.get(&format!("{}/home/.config/app/app.conf", s(d))), Some(&1));
    eprintln!("(c) found later: badfd {} / strace {}; diagnosis {}", run.last["found_later"], st.found_later.len(), run.last["diagnosis"]);
}

/// (d) A missing configuration ends the program with exit 1: it is the
/// first entry (above an optional file it also did not find), with the
/// directory that is missing.
#[test]
fn a_missing_config_that_ends_the_program_comes_first() {
    let dir = TempDir::new("diag-config");
    let d = dir.path();
    std::fs::create_dir_all(d.join("etc")).unwrap();
    let source = format!(
        r#"
#include <stdio.h>
int main(void) {{
    FILE *optional = fopen("{0}/home/.myapprc", "r");
    if (optional) fclose(optional);
    FILE *f = fopen("{0}/etc/myapp/myapp.conf", "r");
    if (!f) {{ perror("myapp.conf"); return 1; }}
    return 0;
}}
"#,
        s(d)
    );
    let prog = cc(d, "needsconf", &source, &[]);
    let st = strace(d, &[s(&prog)]);

    let run = trace(d, &[], &[s(&prog)]);
    assert_eq!(run.output.status.code(), Some(1), "{}", run.stderr());
    assert_eq!(run.last["exit"]["code"], 1);
    assert_eq!(run.last["exit"]["signal"], Value::Null);
    let first = run.first();
    let conf = format!("{}/etc/myapp/myapp.conf", s(d));
    assert_eq!(first["path"], conf.as_str(), "{}", run.last);
    assert_eq!(first["errno"], "ENOENT");
    assert_eq!(first["count"], 1);
    assert_eq!(first["comm"], "needsconf");
    assert_eq!(first["missing"], format!("{}/etc/myapp", s(d)));
    assert_eq!(run.diagnosis()[1]["path"], format!("{}/home/.myapprc", s(d)), "the optional file second: {}", run.last);
    assert_eq!(run.last["found_later"].as_u64(), Some(st.found_later.len() as u64));
    let stderr = run.stderr();
    assert!(stderr.contains(&format!("  1. ENOENT {conf}\n")), "{stderr}");
    assert!(stderr.contains(&format!("       {}/etc/myapp does not exist (checked afterwards)\n", s(d))), "{stderr}");
    let line = run.lines.iter().find(|l| l["resolved_path"] == conf.as_str()).expect("the config's line");
    assert_eq!(line["found_later"], false);
    assert_eq!(line["missing"], format!("{}/etc/myapp", s(d)));
    assert!(line["missing_note"].as_str().unwrap().contains("afterwards"));
    eprintln!("(d) diagnosis {}", run.last["diagnosis"]);
}

/// (e) EACCES on the log file the program must write, as an unprivileged
/// user (root would bypass the mode): the first entry, above an earlier
/// optional file that is merely absent; the program aborts (SIGABRT).
#[test]
fn eacces_on_a_file_the_program_must_write_comes_first() {
    let dir = TempDir::new("diag-eacces");
    let d = dir.path();
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(d.join("log")).unwrap();
    std::fs::write(d.join("log/app.log"), "").unwrap();
    std::fs::set_permissions(d.join("log/app.log"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let source = format!(
        r#"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
int main(void) {{
    open("{0}/optional.conf", O_RDONLY);
    if (open("{0}/log/app.log", O_WRONLY | O_APPEND) < 0) {{ perror("app.log"); abort(); }}
    return 0;
}}
"#,
        s(d)
    );
    let prog = cc(d, "writelog", &source, &[]);
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    let command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", s(&prog)];

    let run = trace(d, &[], &command);
    assert_eq!(run.output.status.code(), Some(128 + libc::SIGABRT), "{}", run.stderr());
    assert_eq!(run.last["exit"]["code"], Value::Null);
    assert_eq!(run.last["exit"]["signal"], "SIGABRT");
    let first = run.first();
    assert_eq!(first["path"], format!("{}/log/app.log", s(d)), "{}", run.last);
    assert_eq!(first["errno"], "EACCES");
    assert_eq!(first["count"], 1);
    assert_eq!(first["comm"], "writelog");
    assert!(first.get("missing").is_none(), "EACCES has no missing component");
    assert!(run.diagnosis_paths().contains(&format!("{}/optional.conf", s(d))));
    let stderr = run.stderr();
    assert!(stderr.contains("the command was killed by SIGABRT):\n"), "{stderr}");
    eprintln!("(e) diagnosis {}", run.last["diagnosis"]);
}

/// (f) A script whose `#!` interpreter is missing: execve says ENOENT for
/// the script; the diagnosis names the interpreter. Run directly (badfd's
/// own exec of it fails) and through a shell.
#[test]
fn a_missing_shebang_interpreter_is_named() {
    let dir = TempDir::new("diag-shebang");
    let d = dir.path();
    let script = d.join("tool");
    let interpreter = format!("{}/nonexistent/bin/nonexistent-python", s(d));
    std::fs::write(&script, format!("#!{interpreter} -u\nprint('hello')\n")).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

    let check = |run: &Run, how: &str| {
        let first = run.first();
        assert_eq!(first["path"], s(&script), "{how}: {}", run.last);
        assert_eq!(first["errno"], "ENOENT");
        assert_eq!(first["syscall"], "execve");
        assert_eq!(first["count"], 1, "{how}: {}", run.last);
        assert_eq!(first["interpreter"], interpreter.as_str());
        assert_eq!(first["interpreter_missing"], true);
        assert_eq!(run.last["exit"]["code"], 127);
        let stderr = run.stderr();
        assert!(
            stderr.contains(&format!("{}: its interpreter {interpreter} does not exist (checked afterwards)", s(&script))),
            "{how}: {stderr}"
        );
        let line = run.lines.iter().find(|l| l["syscall"] == "execve" && l["resolved_path"] == s(&script)).expect("the exec's line");
        assert_eq!(line["found_later"], false);
    };

    let run = trace(d, &[], &[s(&script)]);
    assert_eq!(run.output.status.code(), Some(127), "{}", run.stderr());
    check(&run, "direct");

    let run = trace(d, &[], &["sh", "-c", s(&script)]);
    assert_eq!(run.output.status.code(), Some(127), "{}", run.stderr());
    check(&run, "through sh");
    eprintln!("(f) diagnosis {}", run.last["diagnosis"]);
}

/// Without a command (here ended by --duration): the diagnosis still ends
/// the JSON output, with `"exit": null`.
#[test]
fn without_a_command_the_exit_is_null() {
    let dir = TempDir::new("diag-nocommand");
    let d = dir.path();
    let name = "diagnoprobe";
    std::os::unix::fs::symlink("/bin/cat", d.join(name)).unwrap();
    let json = d.join("out.jsonl");
    let mut badfd = env(Command::new(badfd_path()).args(["trace", "--json", "--no-summary", "--comm", name, "--duration", "4s", "-o"]).arg(&json))
        .spawn()
        .expect("run badfd");
    // Until badfd ends: the first runs may come before it attached.
    let missing = d.join("nothing-here/app.conf");
    let mut runs = 0;
    while badfd.try_wait().unwrap().is_none() {
        let _ = env(&mut Command::new(d.join(name))).arg(&missing).stderr(std::process::Stdio::null()).status();
        runs += 1;
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let text = std::fs::read_to_string(&json).unwrap();
    let last: Value = serde_json::from_str(text.lines().last().expect("output")).unwrap();
    assert_eq!(last["exit"], Value::Null, "{last}");
    let first = &last["diagnosis"][0];
    assert_eq!(first["path"], s(&missing), "{last}");
    assert_eq!(first["missing"], format!("{}/nothing-here", s(d)));
    let count = first["count"].as_u64().unwrap();
    assert!(count >= 1 && count <= runs, "{count} of {runs} runs");
    assert_eq!(last["diagnosis"].as_array().unwrap().len(), 1, "only the filtered name: {last}");
}
