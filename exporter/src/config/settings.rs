//! `badfd serve` settings: flags (each with an environment fallback), the
//! optional TOML config file (`config::file`), and defaults, in that order of
//! precedence; validated once into [`Settings`]. The file is re-read on SIGHUP:
//! [`Settings::reload`] says what changes at once (the kernel-side settings,
//! the path-prefix depth) and what waits for a restart.

use std::{path::PathBuf, time::Duration};

use serde::Serialize;

use super::{
    file::FileSettings,
    kernel::{KernelSettings, MAX_FOUND_LATER_WINDOW},
    redact::RedactArgs,
    values::{duration_str, opt_duration_str, parse_duration, parse_listen_address, ListenAddress},
};
use exporter_common::CGROUP_FILTER_CAPACITY;

use crate::{pipeline::redact::RedactSettings, probe::CgroupFilterMode};

/// The default port: outside the fully allocated 9100-9999 exporter range,
/// not kubelet/kube-proxy's 10248-10259, below the ephemeral range, and ending
/// in 435 like ebpf_exporter's 9435.
pub const DEFAULT_LISTEN_ADDRESS: &str = ":19435";

/// Components of the path kept in the `path_prefix` label.
pub const DEFAULT_PATH_PREFIX_DEPTH: usize = 3;

/// Settings that can come from flags/env or the file (flags win).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct SettingsArgs {
    /// An open that takes at least this long is an anomaly (e.g. `10ms`, `1s`; `0` or `off` turns slow reporting off). [default: 10ms]
    #[arg(long = "slow-threshold", env = "BADFD_SLOW_THRESHOLD")]
    pub slow_threshold: Option<String>,
    /// Stream failed opens only (slow successful opens are still counted exactly).
    #[arg(long = "failures-only", env = "BADFD_FAILURES_ONLY", num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub failures_only: Option<bool>,
    /// Stream anomalies of this process id only.
    #[arg(long = "filter.pid", env = "BADFD_FILTER_PID")]
    pub filter_pid: Option<u32>,
    /// Stream anomalies of this user id only.
    #[arg(long = "filter.uid", env = "BADFD_FILTER_UID")]
    pub filter_uid: Option<u32>,
    /// Components of the path kept in the `path_prefix` label. [default: 3]
    #[arg(long = "path-prefix.depth", env = "BADFD_PATH_PREFIX_DEPTH")]
    pub path_prefix_depth: Option<usize>,
    /// Most named label sets per labeled metric; past that, new ones count in `other` (one per errno and found_later, on top). [default: 2000]
    #[arg(long = "metrics.max-label-sets", env = "BADFD_METRICS_MAX_LABEL_SETS")]
    pub max_label_sets: Option<usize>,
    /// Label sets idle this long are dropped (e.g. `1h`, `30m`). [default: 1h]
    #[arg(long = "metrics.label-set-ttl", env = "BADFD_METRICS_LABEL_SET_TTL")]
    pub label_set_ttl: Option<String>,
    /// Address to listen on: `:PORT` is every address, IPv6 and IPv4 (IPv4 only on a host
    /// without IPv6); `HOST:PORT` one address (`127.0.0.1:19435`, `[::1]:19435`).
    /// Repeatable (env: comma-separated): each is served, with the same web config. [default: :19435]
    #[arg(long = "web.listen-address", env = "BADFD_WEB_LISTEN_ADDRESS", value_delimiter = ',')]
    pub listen_address: Vec<String>,
    /// Stream anomalies of this cgroup and below it only, decided in the kernel (repeatable;
    /// env: comma-separated): a cgroup v2 directory (/sys/fs/cgroup/kubepods.slice/...) or a
    /// path as /proc/PID/cgroup shows it. Resolved again on SIGHUP.
    #[arg(long = "filter.cgroup", env = "BADFD_FILTER_CGROUP", value_delimiter = ',')]
    pub filter_cgroup: Vec<PathBuf>,
    /// Stream no anomaly of this cgroup or below it (repeatable; env: comma-separated);
    /// they are still counted in the exact metrics. Not together with --filter.cgroup.
    #[arg(long = "filter.cgroup-ignore", env = "BADFD_FILTER_CGROUP_IGNORE", value_delimiter = ',')]
    pub filter_cgroup_ignore: Vec<PathBuf>,
    /// Add `namespace`, `pod`, `container` and `container_id` labels to the anomaly metrics
    /// (within the same label-set budget). Takes effect at restart.
    #[arg(long = "metrics.container-labels", env = "BADFD_METRICS_CONTAINER_LABELS", num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub container_labels: Option<bool>,
    /// In a Kubernetes pod: watch this node's pods (needs NODE_NAME and RBAC to
    /// get/list/watch pods) for pod, namespace and container names. `false` turns it off.
    /// Outside a cluster it is always off. Takes effect at restart. [default: true]
    #[arg(long = "kubernetes.pod-metadata", env = "BADFD_KUBERNETES_POD_METADATA", num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub kubernetes_pod_metadata: Option<bool>,
    /// Prometheus exporter-toolkit web config (YAML): TLS (tls_server_config) and
    /// basic auth (basic_auth_users, bcrypt hashes); re-read on SIGHUP.
    /// A failed open is "found later" (a search path's probe: the loader,
    /// locale lookup, sys.path) when its process opens a file of the same
    /// name successfully within this window (1s, 500ms; 0 turns the
    /// classification off; at most 60s). Restart to change. [default: 1s]
    #[arg(long = "found-later.window", env = "BADFD_FOUND_LATER_WINDOW")]
    pub found_later_window: Option<String>,
    #[arg(long = "web.config.file", env = "BADFD_WEB_CONFIG_FILE")]
    pub web_config_file: Option<PathBuf>,
    #[command(flatten)]
    pub redact: RedactArgs,
}

/// Validated settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Settings {
    /// `None`: slow reporting off.
    #[serde(with = "opt_duration_str")]
    pub slow_threshold: Option<Duration>,
    pub failures_only: bool,
    pub filter_pid: Option<u32>,
    pub filter_uid: Option<u32>,
    pub path_prefix_depth: usize,
    pub max_label_sets: usize,
    #[serde(with = "duration_str")]
    pub label_set_ttl: Duration,
    /// At least one; `listen_address` in the file and `--config.check`.
    #[serde(rename = "listen_address")]
    pub listen_addresses: Vec<ListenAddress>,
    /// Cgroup v2 directories to watch (only these and below are streamed).
    pub filter_cgroup: Vec<PathBuf>,
    /// Cgroup v2 directories to ignore; at most one of the two lists is non-empty.
    pub filter_cgroup_ignore: Vec<PathBuf>,
    pub container_labels: bool,
    pub kubernetes_pod_metadata: bool,
    pub web_config_file: Option<PathBuf>,
    pub paths_redact: RedactSettings,
    /// Anomalies per second per process (`--source-rate`, a probe flag, over
    /// the file's `source_rate`, over the default).
    pub source_rate: u32,
    /// Zero: classification off.
    #[serde(with = "duration_str")]
    pub found_later_window: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// Not `source`: the message carries the cause already, and a chained
    /// source would print it twice on the one error line (`{:#}`).
    #[error("config file {path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// `key`: the flag (`--slow-threshold`) when the value came from the
    /// flag or its variable, else the file and its key.
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

impl Settings {
    /// Flags/env over the file over defaults. `source_rate` is the
    /// `--source-rate` flag (a probe flag, which `trace` has too).
    pub fn resolve(args: &SettingsArgs, source_rate: Option<u32>, file: Option<&std::path::Path>) -> Result<Settings, SettingsError> {
        let f = match file {
            Some(path) => FileSettings::read(path)?,
            None => FileSettings::default(),
        };
        let redact_file = f.redact();
        // Names where a bad value came from, so that the one error line points at it.
        let invalid = |from_args: bool, flag: &str, key: &str, message: String| SettingsError::Invalid {
            key: match (from_args, file) {
                (false, Some(path)) => format!("config file {}: {key}", path.display()),
                (false, None) => key.to_string(),
                (true, _) => flag.to_string(),
            },
            message,
        };
        let slow = args.slow_threshold.clone().or(f.slow_threshold).unwrap_or_else(|| "10ms".into());
        let slow_threshold = if slow == "0" || slow == "off" {
            None
        } else {
            let d = parse_duration(&slow).map_err(|m| invalid(args.slow_threshold.is_some(), "--slow-threshold", "slow_threshold", m))?;
            if d.is_zero() { None } else { Some(d) }
        };
        let depth = args.path_prefix_depth.or(f.path_prefix_depth).unwrap_or(DEFAULT_PATH_PREFIX_DEPTH);
        if !(1..=32).contains(&depth) {
            return Err(invalid(
                args.path_prefix_depth.is_some(),
                "--path-prefix.depth",
                "path_prefix_depth",
                format!("{depth} is not between 1 and 32"),
            ));
        }
        let max = args.max_label_sets.or(f.max_label_sets).unwrap_or(2000);
        if max < 2 {
            return Err(invalid(
                args.max_label_sets.is_some(),
                "--metrics.max-label-sets",
                "max_label_sets",
                format!("{max}: at least 2 (one named label set and `other`)"),
            ));
        }
        let ttl_text = args.label_set_ttl.clone().or(f.label_set_ttl).unwrap_or_else(|| "1h".into());
        let label_set_ttl = parse_duration(&ttl_text).map_err(|m| invalid(args.label_set_ttl.is_some(), "--metrics.label-set-ttl", "label_set_ttl", m))?;
        if label_set_ttl < Duration::from_secs(1) {
            return Err(invalid(
                args.label_set_ttl.is_some(),
                "--metrics.label-set-ttl",
                "label_set_ttl",
                format!("{ttl_text:?}: at least 1s"),
            ));
        }
        let from_flag = !args.listen_address.is_empty();
        let listen = if from_flag { args.listen_address.clone() } else { f.listen_address.unwrap_or_else(|| vec![DEFAULT_LISTEN_ADDRESS.into()]) };
        if listen.is_empty() {
            return Err(invalid(false, "--web.listen-address", "listen_address", "an empty list: give at least one address".into()));
        }
        let listen_addresses = listen
            .iter()
            .map(|a| parse_listen_address(a).map_err(|m| invalid(from_flag, "--web.listen-address", "listen_address", m)))
            .collect::<Result<Vec<_>, _>>()?;
        let cgroups = |flag: &[PathBuf], file: Option<Vec<PathBuf>>, name: &'static str, key: &'static str| -> Result<Vec<PathBuf>, SettingsError> {
            let paths = if flag.is_empty() { file.unwrap_or_default() } else { flag.to_vec() };
            paths.iter().map(|p| crate::pipeline::containers::cgroup_dir(p).map_err(|m| invalid(!flag.is_empty(), name, key, m))).collect()
        };
        let filter_cgroup = cgroups(&args.filter_cgroup, f.filter_cgroup, "--filter.cgroup", "filter_cgroup")?;
        let filter_cgroup_ignore = cgroups(&args.filter_cgroup_ignore, f.filter_cgroup_ignore, "--filter.cgroup-ignore", "filter_cgroup_ignore")?;
        if !filter_cgroup.is_empty() && !filter_cgroup_ignore.is_empty() {
            return Err(invalid(
                !args.filter_cgroup.is_empty(),
                "--filter.cgroup",
                "filter_cgroup",
                "give filter_cgroup (watch only these) or filter_cgroup_ignore (all but these), not both".into(),
            ));
        }
        // Checked here, before a reload writes any of them: the kernel's map
        // holds this many, and a list it cannot hold must change nothing.
        for (list, from_args, flag, key) in [
            (&filter_cgroup, !args.filter_cgroup.is_empty(), "--filter.cgroup", "filter_cgroup"),
            (&filter_cgroup_ignore, !args.filter_cgroup_ignore.is_empty(), "--filter.cgroup-ignore", "filter_cgroup_ignore"),
        ] {
            if list.len() > CGROUP_FILTER_CAPACITY as usize {
                return Err(invalid(from_args, flag, key, format!("{} cgroups: at most {CGROUP_FILTER_CAPACITY}", list.len())));
            }
        }
        let paths_redact = args
            .redact
            .resolve(redact_file)
            .map_err(|(key, message)| match key {
                "paths_redact_under" => invalid(!args.redact.under.is_empty(), "--paths.redact-under", key, message),
                "paths_redact_keep" => invalid(args.redact.keep.is_some(), "--paths.redact-keep", key, message),
                _ => invalid(false, key, key, message),
            })?;
        let window_text = args.found_later_window.clone().or(f.found_later_window).unwrap_or_else(|| "1s".into());
        let found_later_window = match window_text.as_str() {
            "0" | "off" => Duration::ZERO,
            text => parse_duration(text)
                .map_err(|m| invalid(args.found_later_window.is_some(), "--found-later.window", "found_later_window", m))?,
        };
        if found_later_window > MAX_FOUND_LATER_WINDOW {
            return Err(invalid(
                args.found_later_window.is_some(),
                "--found-later.window",
                "found_later_window",
                format!("{window_text:?}: at most 60s (every failure waits this long for its verdict)"),
            ));
        }
        Ok(Settings {
            slow_threshold,
            failures_only: args.failures_only.or(f.failures_only).unwrap_or(false),
            filter_pid: args.filter_pid.or(f.filter_pid),
            filter_uid: args.filter_uid.or(f.filter_uid),
            path_prefix_depth: depth,
            max_label_sets: max,
            label_set_ttl,
            listen_addresses,
            filter_cgroup,
            filter_cgroup_ignore,
            container_labels: args.container_labels.or(f.container_labels).unwrap_or(false),
            kubernetes_pod_metadata: args.kubernetes_pod_metadata.or(f.kubernetes_pod_metadata).unwrap_or(true),
            web_config_file: args.web_config_file.clone().or(f.web_config_file),
            paths_redact,
            source_rate: source_rate.or(f.source_rate).unwrap_or(exporter_common::DEFAULT_SOURCE_RATE),
            found_later_window,
        })
    }

    /// What these settings ask of the kernel.
    pub fn kernel_settings(&self) -> KernelSettings {
        KernelSettings {
            slow_threshold: self.slow_threshold,
            failures_only: self.failures_only,
            tracked_only: false,
            filter_pid: self.filter_pid,
            filter_uid: self.filter_uid,
            filter_comm: None,
            cgroup_filter: match (self.filter_cgroup.is_empty(), self.filter_cgroup_ignore.is_empty()) {
                (false, _) => CgroupFilterMode::Watch,
                (true, false) => CgroupFilterMode::Ignore,
                (true, true) => CgroupFilterMode::Off,
            },
            source_rate: self.source_rate,
            found_later_window: self.found_later_window,
            stream_opens: false,
        }
    }

    /// The cgroup directories the kernel's cgroup filter lists (watched or ignored).
    pub fn filter_cgroups(&self) -> &[PathBuf] {
        if self.filter_cgroup.is_empty() { &self.filter_cgroup_ignore } else { &self.filter_cgroup }
    }

    /// Takes what a reload can change from `new` (the kernel-side settings and
    /// the path-prefix depth, which the caller applies) and keeps the rest as
    /// it runs; returns the names of the settings `new` changes in vain, which
    /// take effect at the next restart.
    pub fn reload(&mut self, new: Settings) -> Vec<&'static str> {
        // Every field is named, so that a new setting has to be put on one side.
        let Settings {
            slow_threshold,
            failures_only,
            filter_pid,
            filter_uid,
            path_prefix_depth,
            filter_cgroup,
            filter_cgroup_ignore,
            source_rate,
            max_label_sets,
            label_set_ttl,
            listen_addresses,
            container_labels,
            kubernetes_pod_metadata,
            web_config_file,
            paths_redact,
            found_later_window,
        } = new;
        let restart_only = [
            ("metrics.max-label-sets", max_label_sets != self.max_label_sets),
            ("metrics.label-set-ttl", label_set_ttl != self.label_set_ttl),
            ("web.listen-address", listen_addresses != self.listen_addresses),
            ("metrics.container-labels", container_labels != self.container_labels),
            ("kubernetes.pod-metadata", kubernetes_pod_metadata != self.kubernetes_pod_metadata),
            ("web.config.file", web_config_file != self.web_config_file),
            ("paths.redact", paths_redact != self.paths_redact),
            // The kernel's epochs and the pipeline's stage are sized by it.
            ("found-later.window", found_later_window != self.found_later_window),
        ];
        self.slow_threshold = slow_threshold;
        self.failures_only = failures_only;
        self.filter_pid = filter_pid;
        self.filter_uid = filter_uid;
        self.path_prefix_depth = path_prefix_depth;
        self.filter_cgroup = filter_cgroup;
        self.filter_cgroup_ignore = filter_cgroup_ignore;
        self.source_rate = source_rate;
        restart_only.into_iter().filter(|(_, changed)| *changed).map(|(name, _)| name).collect()
    }
}

#[cfg(test)]
mod tests {
    use exporter_common::{CGROUP_FILTER_IGNORE, CGROUP_FILTER_OFF, CGROUP_FILTER_WATCH, CONFIG_FAILURES_ONLY, SLOW_DISABLED};

    use super::*;
    use crate::pipeline::redact::RedactMode;

    #[test]
    fn flags_win_over_the_file_which_wins_over_defaults() {
        let dir = std::env::temp_dir().join(format!("badfd-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("badfd.toml");
        std::fs::write(&file, "slow_threshold = \"50ms\"\nfailures_only = true\npath_prefix_depth = 2\n").unwrap();
        let args = SettingsArgs { path_prefix_depth: Some(4), ..Default::default() };
        let s = Settings::resolve(&args, None, Some(&file)).unwrap();
        assert_eq!(s.slow_threshold, Some(Duration::from_millis(50)));
        assert!(s.failures_only);
        assert_eq!(s.path_prefix_depth, 4);
        assert_eq!(s.max_label_sets, 2000);
        assert_eq!(s.label_set_ttl, Duration::from_secs(3600));
        assert_eq!(s.listen_addresses, [ListenAddress::EveryAddress(19435)]);
        let c = s.kernel_settings().config();
        assert_eq!(c.slow_threshold_ns, 50_000_000);
        assert_eq!(c.flags & CONFIG_FAILURES_ONLY, CONFIG_FAILURES_ONLY);

        std::fs::write(&file, "slow_threshold = \"fast\"\n").unwrap();
        let e = Settings::resolve(&SettingsArgs::default(), None, Some(&file)).unwrap_err().to_string();
        assert!(e.starts_with(&format!("config file {}: slow_threshold: \"fast\"", file.display())), "{e}");
        let flag = SettingsArgs { slow_threshold: Some("fast".into()), ..Default::default() };
        let e = Settings::resolve(&flag, None, Some(&file)).unwrap_err().to_string();
        assert!(e.starts_with("--slow-threshold: \"fast\""), "the flag's value is the bad one: {e}");
        std::fs::write(&file, "slow_treshold = \"5ms\"\n").unwrap();
        let e = Settings::resolve(&SettingsArgs::default(), None, Some(&file)).unwrap_err().to_string();
        assert!(e.contains("unknown field") && !e.contains('\n'), "{e}");

        // Redaction and the web config from the file; a bad mode is one line naming the key.
        std::fs::write(&file, "paths_redact = \"drop\"\npaths_redact_under = [\"/home\", \"/root\"]\nweb_config_file = \"/etc/badfd/web.yml\"\n").unwrap();
        let s = Settings::resolve(&SettingsArgs::default(), None, Some(&file)).unwrap();
        assert_eq!(s.paths_redact.mode, RedactMode::Drop);
        assert_eq!(s.paths_redact.under, ["/home", "/root"]);
        assert_eq!(s.web_config_file.as_deref(), Some(std::path::Path::new("/etc/badfd/web.yml")));
        std::fs::write(&file, "paths_redact = \"mask\"\n").unwrap();
        let e = Settings::resolve(&SettingsArgs::default(), None, Some(&file)).unwrap_err().to_string();
        assert!(e.contains("paths_redact") && e.contains("unknown variant") && !e.contains('\n'), "{e}");
        std::fs::write(&file, "paths_redact_under = [\"home\"]\n").unwrap();
        let e = Settings::resolve(&SettingsArgs::default(), None, Some(&file)).unwrap_err().to_string();
        assert!(e.contains("paths_redact_under: \"home\": not an absolute directory"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();

        let off = Settings::resolve(&SettingsArgs { slow_threshold: Some("off".into()), ..Default::default() }, None, None).unwrap();
        assert_eq!(off.kernel_settings().config().slow_threshold_ns, SLOW_DISABLED);
    }

    #[test]
    fn cgroup_filter_and_container_settings() {
        let defaults = Settings::resolve(&SettingsArgs::default(), None, None).unwrap();
        assert!(!defaults.container_labels, "container labels are opt-in");
        assert!(defaults.kubernetes_pod_metadata);
        assert_eq!(defaults.kernel_settings().config().cgroup_filter, CGROUP_FILTER_OFF);

        let bad = SettingsArgs { filter_cgroup: vec!["/no/such/cgroup".into()], ..Default::default() };
        let e = Settings::resolve(&bad, None, None).unwrap_err().to_string();
        assert!(e.starts_with("--filter.cgroup: /no/such/cgroup: not a cgroup v2 directory") && !e.contains('\n'), "{e}");
        // A plain directory is no cgroup either.
        let plain = SettingsArgs { filter_cgroup_ignore: vec![std::env::temp_dir()], ..Default::default() };
        let e = Settings::resolve(&plain, None, None).unwrap_err().to_string();
        assert!(e.starts_with("--filter.cgroup-ignore: ") && e.contains("not a cgroup v2 directory"), "{e}");

        // The root of the hierarchy is a cgroup, by its directory or as /proc spells it.
        let Some(root) = crate::pipeline::containers::cgroup2_mount() else { panic!("this machine has a cgroup v2 hierarchy") };
        let watch = SettingsArgs { filter_cgroup: vec![root.clone(), "/".into()], ..Default::default() };
        let s = Settings::resolve(&watch, None, None).unwrap();
        assert_eq!(s.filter_cgroup, [root.clone(), root.clone()]);
        assert_eq!(s.kernel_settings().config().cgroup_filter, CGROUP_FILTER_WATCH);
        assert_eq!(s.filter_cgroups(), [root.clone(), root.clone()]);
        let ignore = SettingsArgs { filter_cgroup_ignore: vec!["/".into()], ..Default::default() };
        assert_eq!(Settings::resolve(&ignore, None, None).unwrap().kernel_settings().config().cgroup_filter, CGROUP_FILTER_IGNORE);
        let too_many = SettingsArgs { filter_cgroup_ignore: vec!["/".into(); CGROUP_FILTER_CAPACITY as usize + 1], ..Default::default() };
        let e = Settings::resolve(&too_many, None, None).unwrap_err().to_string();
        assert_eq!(e, format!("--filter.cgroup-ignore: {} cgroups: at most {CGROUP_FILTER_CAPACITY}", CGROUP_FILTER_CAPACITY + 1));
        let full = SettingsArgs { filter_cgroup: vec!["/".into(); CGROUP_FILTER_CAPACITY as usize], ..Default::default() };
        assert!(Settings::resolve(&full, None, None).is_ok(), "as many as the map holds");
        let both = SettingsArgs { filter_cgroup: vec!["/".into()], filter_cgroup_ignore: vec!["/".into()], ..Default::default() };
        let e = Settings::resolve(&both, None, None).unwrap_err().to_string();
        assert!(e.contains("not both"), "{e}");

        let dir = std::env::temp_dir().join(format!("badfd-settings-cg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("badfd.toml");
        std::fs::write(&file, "filter_cgroup_ignore = [\"/\"]\ncontainer_labels = true\nkubernetes_pod_metadata = false\n").unwrap();
        let s = Settings::resolve(&SettingsArgs::default(), None, Some(&file)).unwrap();
        assert_eq!((s.filter_cgroup_ignore.len(), s.container_labels, s.kubernetes_pod_metadata), (1, true, false));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A reload takes the kernel-side settings and the depth at once, keeps
    /// the rest as running, and names what waits for a restart.
    #[test]
    fn reload_applies_what_it_can_and_names_the_rest() {
        let mut running = Settings::resolve(&SettingsArgs::default(), None, None).unwrap();
        let args = SettingsArgs {
            slow_threshold: Some("100ms".into()),
            path_prefix_depth: Some(5),
            max_label_sets: Some(10),
            listen_address: vec![":1".into()],
            ..Default::default()
        };
        let new = Settings::resolve(&args, Some(7), None).unwrap();
        let waiting = running.reload(new);
        assert_eq!(waiting, ["metrics.max-label-sets", "web.listen-address"]);
        assert_eq!((running.slow_threshold, running.path_prefix_depth, running.source_rate), (Some(Duration::from_millis(100)), 5, 7));
        assert_eq!((running.max_label_sets, &running.listen_addresses[..]), (2000, &[ListenAddress::EveryAddress(19435)][..]), "kept until a restart");
        assert!(running.clone().reload(running.clone()).is_empty(), "nothing changed, nothing named");
    }

    /// Several listen addresses from the flag (repeated) or the file (a list
    /// or one string); a bad one of them is named.
    #[test]
    fn listen_addresses_are_a_list() {
        let args = SettingsArgs { listen_address: vec![":9000".into(), "[::1]:9001".into()], ..Default::default() };
        let s = Settings::resolve(&args, None, None).unwrap();
        assert_eq!(s.listen_addresses, [ListenAddress::EveryAddress(9000), ListenAddress::At("[::1]:9001".parse().unwrap())]);
        let bad = SettingsArgs { listen_address: vec![":9000".into(), "nowhere".into()], ..Default::default() };
        let e = Settings::resolve(&bad, None, None).unwrap_err().to_string();
        assert_eq!(e, "--web.listen-address: \"nowhere\": expected HOST:PORT or :PORT");

        let dir = std::env::temp_dir().join(format!("badfd-settings-listen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("badfd.toml");
        for (text, want) in [
            ("listen_address = \"127.0.0.1:9\"\n", vec![ListenAddress::At("127.0.0.1:9".parse().unwrap())]),
            ("listen_address = [\":9\", \"[::1]:10\"]\n", vec![ListenAddress::EveryAddress(9), ListenAddress::At("[::1]:10".parse().unwrap())]),
        ] {
            std::fs::write(&file, text).unwrap();
            assert_eq!(Settings::resolve(&SettingsArgs::default(), None, Some(&file)).unwrap().listen_addresses, want, "{text}");
        }
        // The flag wins over the file's whole list.
        let flag = SettingsArgs { listen_address: vec![":11".into()], ..Default::default() };
        assert_eq!(Settings::resolve(&flag, None, Some(&file)).unwrap().listen_addresses, [ListenAddress::EveryAddress(11)]);
        std::fs::write(&file, "listen_address = []\n").unwrap();
        let e = Settings::resolve(&SettingsArgs::default(), None, Some(&file)).unwrap_err().to_string();
        assert!(e.ends_with("listen_address: an empty list: give at least one address"), "{e}");
        std::fs::write(&file, "listen_address = 19435\n").unwrap();
        let e = Settings::resolve(&SettingsArgs::default(), None, Some(&file)).unwrap_err().to_string();
        assert!(e.contains("line 1: listen_address: invalid type: integer `19435`, expected a string or a list of strings"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
