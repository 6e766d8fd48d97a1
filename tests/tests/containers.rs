//! Kernel tests of issue 7: real cgroups made in this machine's cgroup v2
//! hierarchy, shaped like kubelet's and like a plain Docker container's; a
//! workload moved into them before it opens anything; its events carry the
//! cgroup's id, which userspace maps to the container id, runtime and pod UID;
//! the kernel's cgroup filter streams or drops it. Run as root; they fail,
//! never skip, when BPF cannot be loaded or cgroups cannot be made.

use std::{
    collections::BTreeMap,
    fs::File,
    os::{fd::AsRawFd, unix::fs::MetadataExt, unix::process::CommandExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use badfd::{
    pipeline::containers::{cgroup2_mount, cgroup_id_of_dir, Containers, ContainersOptions, Runtime},
    probe::CgroupFilterMode,
    OpenEvent,
};
use badfd_tests::{badfd_path, load_probe, workload_path, Collector, TempDir, WorkloadRun};
use exporter_common::{Config, Stream, SLOW_DISABLED};

const WAIT: Duration = Duration::from_secs(5);

/// Cgroup directories this test process made, with how many live tests use
/// each. Tests run in parallel and share parents (kubepods.slice,
/// system.slice): the last user removes them. Only directories made here are
/// ever removed (a real node's own kubepods.slice is left alone). The lock
/// also keeps one test from removing a parent while another makes a child in it.
static MADE: std::sync::Mutex<BTreeMap<PathBuf, usize>> = std::sync::Mutex::new(BTreeMap::new());

/// A test's hold on the cgroups it made or shares; on drop (passing or
/// failing) those nobody uses any more are removed, deepest first.
struct Cgroups {
    used: Vec<PathBuf>,
}

impl Cgroups {
    fn new() -> Cgroups {
        Cgroups { used: Vec::new() }
    }

    /// Makes `rel` under the cgroup v2 root, each missing level as its own
    /// cgroup; returns its directory.
    fn make(&mut self, rel: &str) -> PathBuf {
        let root = cgroup2_mount().expect("this machine has a cgroup v2 hierarchy mounted (see /proc/self/mountinfo)");
        let mut made = MADE.lock().unwrap_or_else(|e| e.into_inner());
        let mut dir = root.clone();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            dir.push(part);
            match std::fs::create_dir(&dir) {
                Ok(()) => {
                    made.insert(dir.clone(), 0);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => panic!("cannot make cgroup {} (mkdir in the cgroup v2 hierarchy): {e}", dir.display()),
            }
            if let Some(users) = made.get_mut(&dir) {
                *users += 1;
                self.used.push(dir.clone());
            }
        }
        dir
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        let mut made = MADE.lock().unwrap_or_else(|e| e.into_inner());
        for dir in &self.used {
            if let Some(users) = made.get_mut(dir) {
                *users -= 1;
            }
        }
        let mut unused: Vec<PathBuf> = made.iter().filter(|(_, &users)| users == 0).map(|(d, _)| d.clone()).collect();
        unused.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for dir in unused {
            if let Err(e) = std::fs::remove_dir(&dir) {
                eprintln!("could not remove test cgroup {}: {e}", dir.display());
            }
            made.remove(&dir);
        }
    }
}

/// Runs the workload with `args` inside the cgroup `dir`: it moves itself
/// there between fork and exec, so every open it makes is in the cgroup.
fn run_workload_in(dir: &Path, args: &[&str]) -> WorkloadRun {
    let procs = File::options()
        .write(true)
        .open(dir.join("cgroup.procs"))
        .unwrap_or_else(|e| panic!("open {}/cgroup.procs: {e}", dir.display()));
    let fd = procs.as_raw_fd();
    let mut command = Command::new(workload_path());
    command.args(args).stdout(Stdio::piped());
    // SAFETY: only write(2) between fork and exec (async-signal-safe). "0"
    // moves the writing process itself.
    unsafe {
        command.pre_exec(move || {
            if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().unwrap_or_else(|e| panic!("start the workload in {}: {e}", dir.display()));
    let pid = child.id();
    let out = child.wait_with_output().expect("wait for the workload");
    drop(procs);
    badfd_tests::workload_run(pid, args, out)
}

/// The workload's `failures` scenario (each run in a fresh directory: it
/// makes files there), inside the cgroup `dir` or, with `None`, in ours.
fn failures(cgroup: Option<&Path>) -> WorkloadRun {
    let tmp = TempDir::new("containers-workload");
    let args = ["failures", tmp.path().to_str().unwrap()];
    match cgroup {
        Some(dir) => run_workload_in(dir, &args),
        None => badfd_tests::run_workload(&args),
    }
}

fn config() -> Config {
    Config { slow_threshold_ns: SLOW_DISABLED, ..Config::DEFAULT }
}

/// A unique 64-hex container id and a pod UID for this run.
fn ids(tag: u8) -> (String, String) {
    let pid = std::process::id();
    let container = format!("{:08x}{:02x}{}", pid, tag, "c0ffee".repeat(9));
    let container = container[..64].to_string();
    let uid = format!("{:08x}-{:02x}aa-4bbb-8ccc-0123456789ab", pid, tag);
    (container, uid)
}

fn mnt_ns_of_this_process() -> u32 {
    std::fs::metadata("/proc/self/ns/mnt").expect("/proc/self/ns/mnt").ino() as u32
}

/// Events and userspace lookup for a kubelet-shaped container and a Docker one.
#[test]
fn events_carry_the_cgroup_and_map_to_container_and_pod() {
    let mut cgroups = Cgroups::new();
    let (kube_id, uid) = ids(1);
    let uid_ = uid.replace('-', "_");
    let pod_slice = format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice");
    let kube_rel = format!("{pod_slice}/cri-containerd-{kube_id}.scope");
    let kube_dir = cgroups.make(&kube_rel);
    let (docker_id, _) = ids(2);
    let docker_dir = cgroups.make(&format!("/system.slice/docker-{docker_id}.scope"));

    let mut probe = load_probe(config());
    let collector = Collector::start(&mut probe);
    let containers = Containers::new(ContainersOptions::default());

    for (dir, container_id, runtime, pod_uid) in [
        (&kube_dir, &kube_id, Runtime::Containerd, Some(uid.as_str())),
        (&docker_dir, &docker_id, Runtime::Docker, None),
    ] {
        let cgroup_id = cgroup_id_of_dir(dir).unwrap();
        let run = failures(Some(dir));
        let failures = run.failures().len();
        let events = collector.wait_for(&run, failures, WAIT);
        assert_eq!(events.len(), failures, "every failure of the workload in {}", dir.display());
        for e in &events {
            assert_eq!(e.cgroup_id, cgroup_id, "event of the workload in {}: {e:?}", dir.display());
            assert_eq!(e.mnt_ns, mnt_ns_of_this_process(), "the workload shares our mount namespace");
        }
        let info = containers.lookup(cgroup_id).unwrap_or_else(|| panic!("cgroup {cgroup_id} ({}) not found", dir.display()));
        assert_eq!(info.container_id.as_deref(), Some(container_id.as_str()), "{info:?}");
        assert_eq!(info.runtime, Some(runtime));
        assert_eq!(info.pod_uid.as_deref(), pod_uid);
        assert!(dir.ends_with(info.cgroup_path.trim_start_matches('/')), "{} vs {}", info.cgroup_path, dir.display());
        // Outside a cluster there are no names.
        assert_eq!((info.pod_name, info.namespace, info.container_name), (None, None, None));
        assert_eq!(containers.lookup_event(&events[0]).unwrap().container_id.as_deref(), Some(container_id.as_str()));
    }

    // Once the cgroup is gone, the lookup says so (after its recheck interval).
    let gone_id = cgroup_id_of_dir(&docker_dir).unwrap();
    drop(cgroups);
    assert!(!docker_dir.exists(), "the test's cgroups are removed");
    let fresh = Containers::new(ContainersOptions::default());
    assert_eq!(fresh.lookup(gone_id), None);
}

/// Deltas of the stream counters around `f`.
fn stream_delta(probe: &badfd::Probe, f: impl FnOnce()) -> (u64, u64) {
    let before = probe.counters().unwrap();
    f();
    std::thread::sleep(Duration::from_millis(200));
    let after = probe.counters().unwrap();
    let d = |s: Stream| after.stream[s as usize] - before.stream[s as usize];
    (d(Stream::Submitted), d(Stream::Filtered))
}

/// Watch one pod (its slice, so its containers below it too): only its
/// events are streamed, everything else is counted as filtered in the kernel.
#[test]
fn cgroup_filter_watches_only_the_listed_subtree() {
    let mut cgroups = Cgroups::new();
    let (container, uid) = ids(3);
    let uid_ = uid.replace('-', "_");
    let pod_slice = cgroups.make(&format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice"));
    let scope = cgroups.make(&format!(
        "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/cri-containerd-{container}.scope"
    ));
    let scope_id = cgroup_id_of_dir(&scope).unwrap();

    let mut probe = load_probe(Config { cgroup_filter: CgroupFilterMode::Watch.to_kernel(), ..config() });
    let pod_id = probe.add_cgroup_path(&pod_slice).expect("add the pod's slice to the filter");
    assert_eq!(pod_id, cgroup_id_of_dir(&pod_slice).unwrap());
    assert_eq!(probe.cgroups().unwrap(), [pod_id]);
    let collector = Collector::start(&mut probe);

    let mut inside = None;
    let mut outside = None;
    let (submitted, filtered) = stream_delta(&probe, || {
        inside = Some(failures(Some(&scope)));
        outside = Some(failures(None));
    });
    let (inside, outside) = (inside.unwrap(), outside.unwrap());
    let events = collector.wait_for(&inside, inside.failures().len(), WAIT);
    assert_eq!(events.len(), inside.failures().len(), "the watched workload's failures are streamed");
    assert!(collector.of_pid(outside.pid).is_empty(), "the other workload is not streamed");
    // Nothing but the watched container crossed to userspace, and the kernel
    // counted exactly that.
    let all: Vec<OpenEvent> = collector.all();
    assert!(all.iter().all(|e| e.cgroup_id == scope_id && e.pid == inside.pid), "{all:?}");
    assert_eq!(submitted, all.len() as u64, "Submitted counts what was streamed");
    assert!(
        filtered >= outside.failures().len() as u64,
        "Filtered ({filtered}) counts at least the other workload's {} failures",
        outside.failures().len()
    );

    // Removing it from the filter streams nothing at all in watch mode.
    assert!(probe.remove_cgroup(pod_id).unwrap());
    assert!(!probe.remove_cgroup(pod_id).unwrap(), "already removed");
    let (submitted, _) = stream_delta(&probe, || {
        failures(Some(&scope));
    });
    assert_eq!(submitted, 0);
}

/// Ignore one Docker container: its events are dropped in the kernel and
/// counted as filtered; everyone else's still stream.
#[test]
fn cgroup_filter_ignores_the_listed_subtree() {
    let mut cgroups = Cgroups::new();
    let (container, _) = ids(4);
    let scope = cgroups.make(&format!("/system.slice/docker-{container}.scope"));

    let mut probe = load_probe(config());
    probe.add_cgroup_path(&scope).unwrap();
    probe.set_cgroup_filter_mode(CgroupFilterMode::Ignore).unwrap();
    let collector = Collector::start(&mut probe);

    let mut ignored = None;
    let (_, filtered) = stream_delta(&probe, || {
        ignored = Some(failures(Some(&scope)));
    });
    let ignored = ignored.unwrap();
    let streamed = failures(None);
    let events = collector.wait_for(&streamed, streamed.failures().len(), WAIT);
    assert_eq!(events.len(), streamed.failures().len(), "a workload outside the ignored cgroup streams");
    assert!(collector.of_pid(ignored.pid).is_empty(), "the ignored container's events were dropped in the kernel");
    assert!(
        filtered >= ignored.failures().len() as u64,
        "Filtered ({filtered}) counts at least the ignored workload's {} failures",
        ignored.failures().len()
    );

    // Back to off: the same container streams again.
    probe.set_cgroup_filter_mode(CgroupFilterMode::Off).unwrap();
    let again = failures(Some(&scope));
    assert_eq!(collector.wait_for(&again, again.failures().len(), WAIT).len(), again.failures().len());
}

/// `badfd trace --cgroup DIR --json -- COMMAND`: the command moves itself into
/// the cgroup first, or not. Returns the JSON lines and stderr.
fn trace_in_cgroup(cgroup: &Path, move_in: bool, tmp: &Path) -> (Vec<serde_json::Value>, String) {
    let badfd = badfd_path();
    let out = tmp.join(format!("trace-{move_in}.jsonl"));
    let script = match move_in {
        true => r#"echo 0 > "$1/cgroup.procs" && exec "$2" failures "$3""#,
        false => r#"exec "$2" failures "$3""#,
    };
    let output = Command::new(&badfd)
        .args(["trace", "--json", "-o"])
        .arg(&out)
        .arg("--cgroup")
        .arg(cgroup)
        .args(["--", "/bin/sh", "-c", script, "sh"])
        .arg(cgroup)
        .arg(workload_path())
        .arg(tmp)
        .env("BADFD_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", badfd.display()));
    assert!(output.status.success(), "{:?}: {}", output.status, String::from_utf8_lossy(&output.stderr));
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let mut lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    // The last line is the diagnosis (one object, no event of its own).
    let diagnosis = lines.pop().unwrap_or_default();
    assert!(diagnosis.get("diagnosis").is_some(), "the last line is the diagnosis: {diagnosis}");
    (lines, String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn trace_watches_one_cgroup_and_shows_the_container_id() {
    let mut cgroups = Cgroups::new();
    let (container, _) = ids(5);
    let scope = cgroups.make(&format!("/system.slice/docker-{container}.scope"));

    let (lines, stderr) = trace_in_cgroup(&scope, true, TempDir::new("trace-in").path());
    let missing: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["path"].as_str().is_some_and(|p| p.ends_with("/missing"))).collect();
    assert_eq!(missing.len(), 1, "the workload's ENOENT, once: {lines:?}\n{stderr}");
    let id = cgroup_id_of_dir(&scope).unwrap();
    for l in &lines {
        assert_eq!(l["cgroup_id"], id, "{l}");
        assert_eq!(l["container_id"], container.as_str(), "{l}");
        assert_eq!(l["mnt_ns"], mnt_ns_of_this_process(), "{l}");
    }

    // The same command left outside the cgroup: nothing shown.
    let (lines, stderr) = trace_in_cgroup(&scope, false, TempDir::new("trace-out").path());
    assert!(lines.is_empty(), "{lines:?}");
    assert!(stderr.contains("badfd trace: 0 anomalies"), "{stderr}");

    // A path that is no cgroup: one clear line before anything loads.
    let output = Command::new(badfd_path())
        .args(["trace", "--cgroup", "/no/such/cgroup", "--duration", "1"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--cgroup /no/such/cgroup: not a cgroup v2 directory"), "{stderr}");
}

/// The RBAC badfd's pod watch needs, validated against the Kubernetes API
/// schemas (PyPI kubernetes-validate, installed by scripts/setup.sh --test),
/// and shown able to fail on a broken copy.
#[test]
fn rbac_manifest_validates_and_grants_exactly_pod_reads() {
    const VALIDATE: &str = "/opt/badfd-venv/bin/kubernetes-validate";
    assert!(Path::new(VALIDATE).exists(), "{VALIDATE} is missing: run scripts/setup.sh --test");
    let rbac = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/rbac.yaml");
    let validate = |file: &Path, version: &str| {
        Command::new(VALIDATE).args(["--strict", "-k", version]).arg(file).output().expect("run kubernetes-validate")
    };
    // The oldest and newest Kubernetes the schemas cover that badfd supports.
    for version in ["1.28", "1.37"] {
        let out = validate(&rbac, version);
        assert!(out.status.success(), "{version}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    let text = std::fs::read_to_string(&rbac).unwrap();
    let tmp = TempDir::new("rbac");
    let broken = tmp.path().join("broken.yaml");
    std::fs::write(&broken, text.replace("verbs:", "verbz:")).unwrap();
    assert!(!validate(&broken, "1.37").status.success(), "the validator rejects a rule without verbs");

    let docs: Vec<serde_yaml::Value> =
        serde_yaml::Deserializer::from_str(&text).map(|d| serde::Deserialize::deserialize(d).unwrap()).collect();
    let role = docs.iter().find(|d| d["kind"] == "ClusterRole").expect("a ClusterRole");
    let rules = role["rules"].as_sequence().unwrap();
    assert_eq!(rules.len(), 1, "only pods");
    assert_eq!(rules[0]["resources"], serde_yaml::from_str::<serde_yaml::Value>("[pods]").unwrap());
    assert_eq!(rules[0]["verbs"], serde_yaml::from_str::<serde_yaml::Value>("[get, list, watch]").unwrap());
    let binding = docs.iter().find(|d| d["kind"] == "ClusterRoleBinding").expect("a ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    let subject = &binding["subjects"][0];
    assert_eq!((subject["kind"].as_str(), subject["name"].as_str(), subject["namespace"].as_str()), (Some("ServiceAccount"), Some("badfd"), Some("badfd")));
}

// --- badfd serve: the cgroup filter flags, container labels, OTLP attributes ---

/// The stream counters of a scrape: (submitted, filtered).
fn stream_counters(scrape: &badfd_tests::Scrape) -> (f64, f64) {
    let outcome = |o| scrape.one("badfd_kernel_events_total", &[("outcome", o)]);
    (outcome("submitted"), outcome("filtered"))
}

/// Runs `f`, waits until the kernel has counted as many more streamed
/// anomalies as `f` says it expects (or 5 s), and returns the counter deltas
/// and the scrape after.
fn serve_delta(serve: &badfd_tests::Serve, f: impl FnOnce() -> f64) -> (f64, f64, badfd_tests::Scrape) {
    let before = stream_counters(&serve.scrape());
    let want = f();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        // The kernel counts at the syscall's exit: give the last ones a moment.
        std::thread::sleep(Duration::from_millis(200));
        let scrape = serve.scrape();
        let after = stream_counters(&scrape);
        let delta = (after.0 - before.0, after.1 - before.1);
        if delta.0 >= want || std::time::Instant::now() > deadline {
            return (delta.0, delta.1, scrape);
        }
    }
}

/// A scrape of `serve` once `ready` says so (the event thread aggregates a
/// little after the kernel counts), or the last one after 5 s.
fn scrape_when(serve: &badfd_tests::Serve, ready: impl Fn(&badfd_tests::Scrape) -> bool) -> badfd_tests::Scrape {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let scrape = serve.scrape();
        if ready(&scrape) || std::time::Instant::now() > deadline {
            return scrape;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Room for every label set: another process's flood of distinct paths on a
/// shared test machine must not fold the container's series into `other`.
const ROOMY: &str = "max_label_sets = 1000000\n";

/// `badfd serve --config.file` with the cgroup filter, container labels and
/// OTLP to a real receiver: a workload in a kubelet-shaped container scope and
/// one outside it. Watch mode streams exactly the first (counted as submitted
/// in the kernel; the other's failures as filtered); its records carry the
/// container and pod; a cgroup made again gets a new id, which a SIGHUP picks
/// up; switching the file to ignore mode on SIGHUP turns it around.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_filters_by_cgroup_and_labels_containers() {
    use badfd_tests::otlp_receiver::{Receiver, Transport};

    let mut cgroups = Cgroups::new();
    let (container, uid) = ids(6);
    let uid_ = uid.replace('-', "_");
    let pod_rel = format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice");
    let pod = cgroups.make(&pod_rel);
    let scope_rel = format!("{pod_rel}/cri-containerd-{container}.scope");
    let scope = cgroups.make(&scope_rel);
    let receiver = Receiver::bind(Transport::Grpc, true).await;
    let tmp = TempDir::new("serve-cgroup");
    let file = tmp.path().join("badfd.toml");
    // As /proc/PID/cgroup spells it: resolved under the cgroup v2 mount.
    std::fs::write(&file, format!("filter_cgroup = [{pod_rel:?}]\ncontainer_labels = true\nslow_threshold = \"off\"\n{ROOMY}")).unwrap();
    let endpoint = receiver.endpoint();
    let serve = tokio::task::spawn_blocking(move || {
        badfd_tests::Serve::start(&[
            "--config.file",
            file.to_str().unwrap(),
            "--otlp-endpoint",
            &endpoint,
            "--otlp-protocol",
            "grpc",
            "--otlp-batch-delay-ms",
            "50",
        ])
    })
    .await
    .unwrap();
    let file = tmp.path().join("badfd.toml");

    // Watch the pod: only the workload in its container is streamed.
    let mut inside = None;
    let mut outside = None;
    let (submitted, filtered, _) = tokio::task::block_in_place(|| {
        let (i, o) = (&mut inside, &mut outside);
        serve_delta(&serve, || {
            *i = Some(failures(Some(&scope)));
            *o = Some(failures(None));
            i.as_ref().unwrap().failures().len() as f64
        })
    });
    let (inside, outside) = (inside.unwrap(), outside.unwrap());
    // The workload's own failures and the dynamic loader's before them (both
    // in the cgroup): every record below is of its pid.
    let n = inside.failures().len();
    assert!(submitted >= n as f64, "the watched workload's failures are streamed: {submitted} < {n}");
    assert!(filtered >= outside.failures().len() as f64, "filtered {filtered} < {}", outside.failures().len());
    let labels = [
        ("namespace", ""),
        ("pod", ""),
        ("container", ""),
        ("container_id", &*format!("containerd://{container}")),
    ];
    let failures_sum = |s: &badfd_tests::Scrape| s.sum("badfd_anomaly_failures_total", &[]);
    // The kernel's submitted records include the found notices of the
    // container's successful opens (only its records pass the filter).
    let notices = |s: &badfd_tests::Scrape| s.one("badfd_found_later_notices_total", &[]);
    let scrape = tokio::task::block_in_place(|| scrape_when(&serve, |s| failures_sum(s) + notices(s) >= submitted));
    let anomalies = submitted - notices(&scrape);
    assert_eq!(scrape.sum("badfd_anomaly_failures_total", &labels), anomalies, "the container's series: {:?}", scrape.matching("badfd_anomaly_failures_total", &[]).collect::<Vec<_>>());
    assert_eq!(scrape.sum("badfd_anomaly_failures_total", &[]), anomalies, "and nothing else");
    let first = anomalies;
    let notices_first = notices(&scrape);

    // Its OTLP records carry the container and the pod UID (no names outside a cluster).
    assert_eq!(receiver.wait_for(first as u64, WAIT).await, first as u64);
    let scope_id = cgroup_id_of_dir(&scope).unwrap();
    for r in receiver.records() {
        assert_eq!(r.str_attr("container.id"), Some(container.as_str()));
        assert_eq!(r.str_attr("container.runtime.name"), Some("containerd"));
        assert_eq!(r.str_attr("k8s.pod.uid"), Some(uid.as_str()));
        assert_eq!(r.int_attr("badfd.cgroup.id"), Some(scope_id as i64));
        assert_eq!(r.int_attr("process.pid"), Some(inside.pid as i64));
        for absent in ["k8s.pod.name", "k8s.namespace.name", "k8s.container.name", "k8s.node.name"] {
            assert_eq!(r.attr(absent), None, "{absent}: not known outside a cluster");
        }
    }

    // The pod's slice made again has a new id: the filter misses it until a
    // SIGHUP resolves the path again.
    let old_id = cgroup_id_of_dir(&pod).unwrap();
    std::fs::remove_dir(&scope).unwrap();
    std::fs::remove_dir(&pod).unwrap();
    std::fs::create_dir(&pod).unwrap();
    std::fs::create_dir(&scope).unwrap();
    assert_ne!(cgroup_id_of_dir(&pod).unwrap(), old_id);
    let (submitted, _, _) = tokio::task::block_in_place(|| serve_delta(&serve, || {
        failures(Some(&scope));
        1.0
    }));
    assert_eq!(submitted, 0.0, "the stale id matches nothing");
    serve.signal(libc::SIGHUP);
    let (submitted, _, _) = tokio::task::block_in_place(|| {
        let deadline = std::time::Instant::now() + WAIT;
        while serve.scrape().sum("badfd_config_reloads_total", &[("result", "success")]) < 1.0 {
            assert!(std::time::Instant::now() < deadline, "no successful reload");
            std::thread::sleep(Duration::from_millis(50));
        }
        serve_delta(&serve, || {
            failures(Some(&scope));
            n as f64
        })
    });
    assert!(submitted >= n as f64, "after SIGHUP the new cgroup is watched: {submitted} < {n}");
    let scrape = tokio::task::block_in_place(|| scrape_when(&serve, |s| failures_sum(s) + notices(s) - notices_first >= first + submitted));
    let watched = first + submitted - (notices(&scrape) - notices_first);
    assert_eq!(scrape.sum("badfd_anomaly_failures_total", &labels), watched);
    let notices_watched = notices(&scrape);

    // Ignore mode from the file on SIGHUP: the container is dropped in the
    // kernel, everyone else streams.
    std::fs::write(&file, format!("filter_cgroup_ignore = [{:?}]\ncontainer_labels = true\nslow_threshold = \"off\"\n{ROOMY}", pod.to_str().unwrap())).unwrap();
    serve.signal(libc::SIGHUP);
    tokio::task::block_in_place(|| {
        let deadline = std::time::Instant::now() + WAIT;
        while serve.scrape().sum("badfd_config_reloads_total", &[("result", "success")]) < 2.0 {
            assert!(std::time::Instant::now() < deadline, "no second successful reload");
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let mut ignored = None;
    let mut streamed = None;
    let (submitted, filtered, _) = tokio::task::block_in_place(|| {
        let (i, s) = (&mut ignored, &mut streamed);
        serve_delta(&serve, || {
            *i = Some(failures(Some(&scope)));
            *s = Some(failures(None));
            s.as_ref().unwrap().failures().len() as f64
        })
    });
    let (ignored, streamed) = (ignored.unwrap(), streamed.unwrap());
    assert!(filtered >= ignored.failures().len() as f64, "filtered {filtered}");
    assert!(submitted >= streamed.failures().len() as f64, "submitted {submitted}");
    // Everyone else's found notices count in the submitted records too.
    let scrape = tokio::task::block_in_place(|| scrape_when(&serve, |s| failures_sum(s) + notices(s) - notices_watched >= watched + submitted));
    assert_eq!(scrape.sum("badfd_anomaly_failures_total", &labels), watched, "nothing more from the ignored container");
    assert!(
        scrape.sum("badfd_anomaly_failures_total", &[]) >= watched + streamed.failures().len() as f64,
        "the workload outside streams"
    );

    // Outside a cluster: one info line about pod names, no error, no retry loop.
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_none() {
        let log = std::env::temp_dir().join(format!("badfd-serve-{}-{}.log", std::process::id(), serve.address.port()));
        let log = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        assert_eq!(log.matches("not in a Kubernetes pod").count(), 1, "{log}");
        assert!(!log.contains("pods failed"), "{log}");
    }

    // A reload naming no cgroup fails and keeps the running filter.
    std::fs::write(&file, "filter_cgroup = [\"/no/such/cgroup\"]\n").unwrap();
    serve.signal(libc::SIGHUP);
    tokio::task::block_in_place(|| {
        let deadline = std::time::Instant::now() + WAIT;
        while serve.scrape().sum("badfd_config_reloads_total", &[("result", "failure")]) < 1.0 {
            assert!(std::time::Instant::now() < deadline, "the bad reload is counted as failed");
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    drop(serve);
    receiver.stop().await;
    drop(cgroups);
}

/// A cgroup filter path that is no cgroup: one clear line, before anything loads.
#[test]
fn serve_refuses_a_filter_path_that_is_no_cgroup() {
    let badfd = badfd_path();
    for flag in ["--filter.cgroup", "--filter.cgroup-ignore"] {
        let out = Command::new(&badfd).args(["serve", flag, "/no/such/cgroup", "--config.check"]).output().unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        let line = format!("{flag}: /no/such/cgroup: not a cgroup v2 directory");
        assert!(stderr.contains(&line), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
    let both = Command::new(&badfd)
        .args(["serve", "--filter.cgroup", "/", "--filter.cgroup-ignore", "/", "--config.check"])
        .output()
        .unwrap();
    assert!(!both.status.success());
    assert!(String::from_utf8_lossy(&both.stderr).contains("not both"));
}

const WEB_UID: &str = "3f0c2a4e-7b1d-4c8e-9a6f-5d2b1e0c9a87";
const NGINX_ID: &str = "8f2c7d5b4a3e19c0d6b7a8e9f0123456789abcdef0123456789abcdef0a1b2c3";

/// The pod cache filled from the recorded PodList (tests/fixtures/k8s).
fn recorded_pods() -> std::sync::Arc<std::sync::RwLock<badfd::pipeline::containers::PodCache>> {
    use k8s_openapi::api::core::v1::Pod;
    use kube::runtime::watcher::Event;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/k8s/podlist-node-a.recorded-example.json");
    let list: k8s_openapi::List<Pod> = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut cache = badfd::pipeline::containers::PodCache::new();
    cache.apply(Event::Init);
    for pod in list.items {
        cache.apply(Event::InitApply(pod));
    }
    cache.apply(Event::InitDone);
    std::sync::Arc::new(std::sync::RwLock::new(cache))
}

/// Real events of a workload in the nginx container of the recorded `web`
/// pod (its kubelet cgroup made here), through the serve pipeline with the pod
/// cache of the recorded API answers: the OTLP records at a real receiver carry
/// every container and k8s attribute, the metrics the container labels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_records_carry_the_pod_from_the_api() {
    use badfd::{
        config::OtlpArgs,
        pipeline::{Pipeline, PipelineStats, Sink},
        sinks::{
            metrics::{Aggregates, MetricsSink},
            otlp::{Otlp, OtlpSink, Protocol},
        },
    };
    use badfd_tests::otlp_receiver::{Receiver, Transport};
    use std::sync::{atomic::AtomicUsize, Arc, Mutex};

    let mut cgroups = Cgroups::new();
    let scope = cgroups.make(&format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{NGINX_ID}.scope",
        WEB_UID.replace('-', "_")
    ));
    let mut probe = load_probe(config());
    let collector = Collector::start(&mut probe);
    let run = tokio::task::block_in_place(|| failures(Some(&scope)));
    let n = run.failures().len();
    let events = tokio::task::block_in_place(|| collector.wait_for(&run, n, WAIT));
    assert_eq!(events.len(), n);

    let receiver = Receiver::bind(Transport::Grpc, true).await;
    let mut args = OtlpArgs::with_endpoint(&receiver.endpoint(), Protocol::Grpc);
    args.otlp_batch_delay_ms = Some(50);
    let mut registry = prometheus_client::registry::Registry::default();
    let otlp = Arc::new(Otlp::start(args.resolve_with(|_| None).unwrap().unwrap(), &mut registry).unwrap());
    let aggregates = Arc::new(Mutex::new(Aggregates::new(100, Duration::from_secs(3600))));
    let sinks: Vec<Box<dyn Sink>> =
        vec![Box::new(OtlpSink { otlp: otlp.clone() }), Box::new(MetricsSink { aggregates: aggregates.clone() })];
    let containers = Containers::new(ContainersOptions::default()).with_pods(recorded_pods(), "node-a");
    // The container lookup runs off the event thread and an event that
    // leaves before its answer carries no container (docs/containers.md):
    // held by the found-later stage as in serve, the failures leave at the
    // end of the stream, which waits for the lookups in flight.
    let mut pipeline = Pipeline::new(Arc::new(AtomicUsize::new(3)), sinks, PipelineStats::register(&mut registry))
        .with_containers(Arc::new(containers), true)
        .with_found_later(1_000_000_000)
        .with_record_ids(otlp.clone());
    for e in events {
        pipeline.push(e);
    }
    pipeline.finish();
    assert_eq!(receiver.wait_for(n as u64, WAIT).await, n as u64, "one record per failure");
    for r in receiver.records() {
        for (key, value) in [
            ("container.id", NGINX_ID),
            ("container.runtime.name", "containerd"),
            ("k8s.pod.name", "web-7d4b9c6f8-x2k9p"),
            ("k8s.pod.uid", WEB_UID),
            ("k8s.namespace.name", "shop"),
            ("k8s.container.name", "nginx"),
            ("k8s.node.name", "node-a"),
        ] {
            assert_eq!(r.str_attr(key), Some(value), "{key}");
        }
    }
    let a = aggregates.lock().unwrap();
    let labeled: Vec<_> = a.failures.iter().map(|((_, _, _, _, c), f)| (c.clone().expect("container labels on"), f.count)).collect();
    assert_eq!(labeled.iter().map(|(_, n)| n).sum::<u64>(), n as u64);
    for (c, _) in &labeled {
        assert_eq!(
            (c.namespace.as_str(), c.pod.as_str(), c.container.as_str(), c.container_id.clone()),
            ("shop", "web-7d4b9c6f8-x2k9p", "nginx", format!("containerd://{NGINX_ID}"))
        );
    }
    drop(a);
    otlp.shutdown(Duration::from_secs(2)).await;
    receiver.stop().await;
    drop(cgroups);
}
