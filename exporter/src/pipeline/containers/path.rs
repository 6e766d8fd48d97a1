//! What a cgroup path says about its owner: container id and runtime, pod UID,
//! or systemd unit. Pure functions over the path text, for the layouts that
//! container runtimes and kubelet make (systemd and cgroupfs drivers, cgroup v1
//! and v2 alike: the path below the hierarchy's root is the same in both).

use std::fmt;

/// The container runtime a cgroup's name shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Runtime {
    Containerd,
    CriO,
    Docker,
    Podman,
    /// A systemd unit (service or scope), not a container.
    Systemd,
}

impl Runtime {
    /// The name used in labels and attributes (the CRI container id scheme
    /// where there is one: `containerd://`, `cri-o://`, `docker://`).
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::Docker => "docker",
            Runtime::Podman => "podman",
            Runtime::Systemd => "systemd",
        }
    }

    /// The runtime of a CRI `containerID` scheme (`containerd://<id>`).
    pub fn from_scheme(scheme: &str) -> Option<Runtime> {
        match scheme {
            "containerd" => Some(Runtime::Containerd),
            "cri-o" => Some(Runtime::CriO),
            "docker" => Some(Runtime::Docker),
            "podman" => Some(Runtime::Podman),
            _ => None,
        }
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The owner of a cgroup as its path shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupOwner {
    /// The innermost container's id (lowercase hex for every runtime here).
    pub container_id: Option<String>,
    /// `None` where the layout does not say (kubelet's cgroupfs driver names a
    /// container by its bare id; the pod's status then tells).
    pub runtime: Option<Runtime>,
    /// The Kubernetes pod UID, with dashes (systemd slices spell them `_`).
    pub pod_uid: Option<String>,
    /// For a process outside any container: its systemd unit
    /// (`nginx.service`, `session-3.scope`), with `runtime` = `Systemd`.
    pub systemd_unit: Option<String>,
}

impl CgroupOwner {
    pub fn is_empty(&self) -> bool {
        self.container_id.is_none() && self.pod_uid.is_none() && self.systemd_unit.is_none()
    }
}

/// Container scope prefixes of the systemd cgroup driver: `<prefix><id>.scope`.
/// The conmon scopes of CRI-O and podman hold the monitor, not the container.
const SCOPE_PREFIXES: [(&str, Runtime); 5] = [
    ("cri-containerd-", Runtime::Containerd),
    ("crio-", Runtime::CriO),
    ("docker-", Runtime::Docker),
    ("libpod-", Runtime::Podman),
    ("nerdctl-", Runtime::Containerd),
];

fn is_hex_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A container id in a runtime-prefixed name: hex, at least 12 digits (the
/// short form some tools print), lowercased.
fn prefixed_id(s: &str) -> Option<String> {
    (s.len() >= 12 && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
}

/// A pod UID as kubelet writes it: 36 chars of hex and dashes (cgroupfs), or
/// with underscores for dashes (systemd, where `-` separates slice levels).
fn pod_uid(s: &str) -> Option<String> {
    let uid: String = s.chars().map(|c| if c == '_' { '-' } else { c }).collect();
    let ok = uid.len() == 36
        && uid.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    ok.then(|| uid.to_ascii_lowercase())
}

/// The pod UID of one path component, if it is a pod's cgroup:
/// `kubepods-burstable-pod<uid_>.slice`, `kubepods-pod<uid_>.slice` (systemd
/// driver) or `pod<uid>` (cgroupfs driver).
fn pod_of_component(c: &str) -> Option<String> {
    if let Some(slice) = c.strip_suffix(".slice") {
        let (_, uid) = slice.rsplit_once("-pod")?;
        if !slice.starts_with("kubepods") {
            return None;
        }
        return pod_uid(uid);
    }
    pod_uid(c.strip_prefix("pod")?)
}

/// The container of one path component: `(id, runtime)`.
fn container_of_component(c: &str, in_pod: bool, parent: Option<&str>) -> Option<(String, Option<Runtime>)> {
    let name = c.strip_suffix(".scope").unwrap_or(c);
    for (prefix, runtime) in SCOPE_PREFIXES {
        if let Some(rest) = name.strip_prefix(prefix) {
            // crio-conmon-<id>.scope, libpod-conmon-<id>.scope: the monitor.
            return prefixed_id(rest).map(|id| (id, Some(runtime)));
        }
    }
    if is_hex_id(c) {
        // cgroupfs layouts: kubelet's /kubepods/<qos>/pod<uid>/<id>, Docker's
        // /docker/<id>, a bare id anywhere else is not trusted.
        return match parent {
            _ if in_pod => Some((c.to_ascii_lowercase(), None)),
            Some("docker") => Some((c.to_ascii_lowercase(), Some(Runtime::Docker))),
            Some("libpod_parent") => Some((c.to_ascii_lowercase(), Some(Runtime::Podman))),
            _ => None,
        };
    }
    None
}

/// What a cgroup path (as in `/proc/PID/cgroup`, relative to the hierarchy's
/// root, with or without the leading `/`) says about its owner.
pub fn parse_cgroup_path(path: &str) -> CgroupOwner {
    let mut owner = CgroupOwner::default();
    let mut parent: Option<&str> = None;
    let mut last_unit: Option<&str> = None;
    for c in path.split('/').filter(|c| !c.is_empty()) {
        if let Some(uid) = pod_of_component(c) {
            owner.pod_uid = Some(uid);
        } else if let Some((id, runtime)) = container_of_component(c, owner.pod_uid.is_some(), parent) {
            // The innermost container wins (docker in docker).
            owner.container_id = Some(id);
            owner.runtime = runtime;
            last_unit = None;
        } else if c.ends_with(".service") || c.ends_with(".scope") {
            last_unit = Some(c);
        }
        parent = Some(c);
    }
    if owner.container_id.is_none() && owner.pod_uid.is_none() {
        if let Some(unit) = last_unit {
            owner.systemd_unit = Some(unit.to_string());
            owner.runtime = Some(Runtime::Systemd);
        }
    }
    owner
}

/// The path a process's `/proc/PID/cgroup` gives for its container: the
/// cgroup v2 line (`0::/path`) if it says anything, else the v1 hierarchy that
/// does (systemd's named one first, then the controllers in their order).
pub fn owner_from_proc_cgroup(text: &str) -> CgroupOwner {
    let mut lines: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            Some((controllers, path))
        })
        .collect();
    // v2 first, then name=systemd, then the rest as listed.
    lines.sort_by_key(|(controllers, _)| match *controllers {
        "" => 0,
        "name=systemd" => 1,
        _ => 2,
    });
    lines
        .iter()
        .map(|(_, path)| parse_cgroup_path(path))
        .find(|o| !o.is_empty())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "8f2c7d5b4a3e19c0d6b7a8e9f0123456789abcdef0123456789abcdef0a1b2c3";
    const CID2: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const UID: &str = "3f0c2a4e-7b1d-4c8e-9a6f-5d2b1e0c9a87";

    fn owner(id: Option<&str>, runtime: Option<Runtime>, pod: Option<&str>, unit: Option<&str>) -> CgroupOwner {
        CgroupOwner {
            container_id: id.map(String::from),
            runtime,
            pod_uid: pod.map(String::from),
            systemd_unit: unit.map(String::from),
        }
    }

    /// Paths as kubelet, the runtimes and systemd make them, and what each says.
    #[test]
    fn real_layouts() {
        let uid_ = UID.replace('-', "_");
        let table: Vec<(String, CgroupOwner)> = vec![
            // kubelet, systemd driver, containerd (cgroup v2 and v1 alike).
            (
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{CID}.scope"),
                owner(Some(CID), Some(Runtime::Containerd), Some(UID), None),
            ),
            (
                format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/crio-{CID}.scope"),
                owner(Some(CID), Some(Runtime::CriO), Some(UID), None),
            ),
            // Guaranteed QoS: the pod slice is right under kubepods.slice.
            (
                format!("/kubepods.slice/kubepods-pod{uid_}.slice/docker-{CID}.scope"),
                owner(Some(CID), Some(Runtime::Docker), Some(UID), None),
            ),
            // The pod's own slice (the pause process on some set-ups).
            (
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice"),
                owner(None, None, Some(UID), None),
            ),
            // CRI-O's monitor scope is not the container.
            (
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/crio-conmon-{CID}.scope"),
                owner(None, None, Some(UID), None),
            ),
            // kubelet, cgroupfs driver (cgroup v1 memory hierarchy or v2).
            (format!("/kubepods/burstable/pod{UID}/{CID}"), owner(Some(CID), None, Some(UID), None)),
            (format!("/kubepods/besteffort/pod{UID}/{CID}"), owner(Some(CID), None, Some(UID), None)),
            (format!("/kubepods/pod{UID}/{CID}"), owner(Some(CID), None, Some(UID), None)),
            // CRI-O with the cgroupfs driver.
            (format!("/kubepods/burstable/pod{UID}/crio-{CID}"), owner(Some(CID), Some(Runtime::CriO), Some(UID), None)),
            // Inside a cgroup namespace-less container that runs more cgroups.
            (
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{CID}.scope/init.scope"),
                owner(Some(CID), Some(Runtime::Containerd), Some(UID), None),
            ),
            // Docker, systemd driver and cgroupfs driver (v1).
            (format!("/system.slice/docker-{CID}.scope"), owner(Some(CID), Some(Runtime::Docker), None, None)),
            (format!("/docker/{CID}"), owner(Some(CID), Some(Runtime::Docker), None, None)),
            // Docker in Docker: the innermost.
            (format!("/docker/{CID}/docker/{CID2}"), owner(Some(CID2), Some(Runtime::Docker), None, None)),
            // Podman (rootful and rootless) and its conmon.
            (format!("/machine.slice/libpod-{CID}.scope"), owner(Some(CID), Some(Runtime::Podman), None, None)),
            (
                format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{CID}.scope/container"),
                owner(Some(CID), Some(Runtime::Podman), None, None),
            ),
            (
                format!("/machine.slice/libpod-conmon-{CID}.scope"),
                owner(None, Some(Runtime::Systemd), None, Some(&format!("libpod-conmon-{CID}.scope"))),
            ),
            // Plain systemd units and sessions.
            ("/system.slice/nginx.service".into(), owner(None, Some(Runtime::Systemd), None, Some("nginx.service"))),
            (
                "/system.slice/containerd.service".into(),
                owner(None, Some(Runtime::Systemd), None, Some("containerd.service")),
            ),
            (
                "/user.slice/user-1000.slice/session-3.scope".into(),
                owner(None, Some(Runtime::Systemd), None, Some("session-3.scope")),
            ),
            (
                "/user.slice/user-1000.slice/user@1000.service/app.slice/dbus.service".into(),
                owner(None, Some(Runtime::Systemd), None, Some("dbus.service")),
            ),
            // Nothing to say.
            ("/".into(), CgroupOwner::default()),
            ("".into(), CgroupOwner::default()),
            ("/system.slice".into(), CgroupOwner::default()),
            // A bare id outside kubepods or docker is not a container.
            (format!("/somewhere/{CID}"), CgroupOwner::default()),
            // Not quite a pod UID.
            ("/kubepods/burstable/pod1234/abc".into(), CgroupOwner::default()),
            (format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice", &uid_[..30]), CgroupOwner::default()),
            // A runtime prefix with no hex id behind it.
            ("/system.slice/docker-compose@web.service".into(), owner(None, Some(Runtime::Systemd), None, Some("docker-compose@web.service"))),
            ("/system.slice/docker-.scope".into(), owner(None, Some(Runtime::Systemd), None, Some("docker-.scope"))),
        ];
        for (path, want) in table {
            assert_eq!(parse_cgroup_path(&path), want, "{path}");
            // The same without the leading slash.
            assert_eq!(parse_cgroup_path(path.trim_start_matches('/')), want, "{path}");
        }
    }

    #[test]
    fn uppercase_ids_are_lowercased_and_short_ids_accepted_only_with_a_prefix() {
        let up = CID.to_ascii_uppercase();
        assert_eq!(parse_cgroup_path(&format!("/system.slice/docker-{up}.scope")).container_id.as_deref(), Some(CID));
        assert_eq!(parse_cgroup_path("/system.slice/docker-8f2c7d5b4a3e.scope").container_id.as_deref(), Some("8f2c7d5b4a3e"));
        assert_eq!(parse_cgroup_path("/docker/8f2c7d5b4a3e").container_id, None);
    }

    /// /proc/PID/cgroup of a cgroup v1 host (kubelet, cgroupfs driver), a
    /// hybrid one, and a pure v2 one.
    #[test]
    fn proc_cgroup_v1_hybrid_and_v2() {
        let v1 = format!(
            "12:pids:/kubepods/burstable/pod{UID}/{CID}\n\
             11:memory:/kubepods/burstable/pod{UID}/{CID}\n\
             3:cpu,cpuacct:/kubepods/burstable/pod{UID}/{CID}\n\
             1:name=systemd:/kubepods/burstable/pod{UID}/{CID}\n"
        );
        assert_eq!(owner_from_proc_cgroup(&v1), owner(Some(CID), None, Some(UID), None));
        // Hybrid: the v2 hierarchy holds nothing (root), systemd's v1 one does.
        let hybrid = format!(
            "5:memory:/system.slice/docker-{CID}.scope\n1:name=systemd:/system.slice/docker-{CID}.scope\n0::/\n"
        );
        assert_eq!(owner_from_proc_cgroup(&hybrid), owner(Some(CID), Some(Runtime::Docker), None, None));
        let v2 = "0::/system.slice/sshd.service\n";
        assert_eq!(owner_from_proc_cgroup(v2), owner(None, Some(Runtime::Systemd), None, Some("sshd.service")));
        assert_eq!(owner_from_proc_cgroup("0::/\n"), CgroupOwner::default());
        assert_eq!(owner_from_proc_cgroup("garbage"), CgroupOwner::default());
    }

    #[test]
    fn runtime_names_round_trip_through_cri_schemes() {
        for r in [Runtime::Containerd, Runtime::CriO, Runtime::Docker, Runtime::Podman] {
            assert_eq!(Runtime::from_scheme(r.name()), Some(r));
        }
        assert_eq!(Runtime::from_scheme("systemd"), None);
    }
}
