//! Least privilege: once the probe is loaded and attached, badfd keeps only the
//! capabilities it still needs and drops every other one from every set
//! (effective, permitted, inheritable, bounding, ambient), for good.
//!
//! What is still needed is decided by experiment, not by a table of kernel
//! versions: with only the capabilities the user asked to keep, badfd reads and
//! writes its maps the way it will at run time (counters lookup, config
//! update, in-flight count). Kernels before 6.5 with `kernel.unprivileged_bpf_disabled`
//! set (the distribution default) refuse every bpf() command without CAP_BPF
//! (CAP_SYS_ADMIN before 5.8), so there CAP_BPF is kept; from 6.5 on, commands
//! on a map fd badfd already holds need no capability, so none is kept.
//! CAP_PERFMON is never needed after attach: the perf events and links already
//! exist, and reading the ring buffer is a plain mmap of a held fd.
//!
//! **Threads**: Linux keeps capabilities per thread, and capset(2) changes only
//! the calling thread. [`drop_capabilities`] must therefore run while the
//! process has exactly one thread: before the tokio runtime is built, before
//! any reader or exporter thread starts. It checks `/proc/self/task` and
//! refuses (changing nothing) otherwise. Threads started afterwards inherit the
//! reduced sets.

use std::{collections::BTreeSet, fmt, str::FromStr};

use caps::{CapSet, Capability, CapsHashSet};

use crate::Probe;

/// One value of `--capabilities.keep`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepCapability {
    /// Keep every capability: no drop at all.
    All,
    One(Capability),
}

impl FromStr for KeepCapability {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("all") {
            return Ok(KeepCapability::All);
        }
        Capability::from_str(&caps::to_canonical(s))
            .map(KeepCapability::One)
            .map_err(|_| format!("unknown capability {s:?} (expected a name such as CAP_SYS_PTRACE, or `all`)"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("capabilities can only be dropped while badfd has one thread (capabilities are per thread), but it has {0}; drop them before starting the runtime")]
    OtherThreadsRunning(usize),
    #[error("reading the BPF maps fails even with CAP_BPF/CAP_SYS_ADMIN: {0}")]
    MapAccess(String),
    #[error("changing the {set} capability set failed: {reason}")]
    Capset { set: &'static str, reason: String },
    #[error("prctl(PR_SET_NO_NEW_PRIVS) failed: {0}")]
    NoNewPrivs(std::io::Error),
    #[error("after the drop the {set} set is {actual}, expected {expected}")]
    Mismatch {
        set: &'static str,
        actual: String,
        expected: String,
    },
}

/// What the process holds after [`drop_capabilities`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retained {
    /// Effective = permitted after the drop.
    pub kept: CapabilityList,
    /// The capability this kernel wants for bpf() on held map fds, if any.
    pub needed_for_maps: Option<Capability>,
    /// The bounding set after the drop: `kept`, unless badfd lacked
    /// CAP_SETPCAP to reduce it (e.g. a container started with only
    /// CAP_BPF+CAP_PERFMON, whose bounding set is already that small).
    pub bounding: CapabilityList,
    /// Asked for with `--capabilities.keep` but not held, so not kept.
    pub not_held: CapabilityList,
    /// `--capabilities.keep=all`: nothing was dropped.
    pub dropped_nothing: bool,
}

/// A set of capabilities in kernel order; prints as `CAP_A,CAP_B` or `none`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CapabilityList(pub BTreeSet<u8>);

impl CapabilityList {
    fn of(set: &CapsHashSet) -> CapabilityList {
        CapabilityList(set.iter().map(|c| c.index()).collect())
    }

    /// The capability bit mask, as /proc/<pid>/status prints it in hex.
    pub fn mask(&self) -> u64 {
        self.0.iter().fold(0, |m, &i| m | 1u64 << i)
    }

    pub fn contains(&self, cap: Capability) -> bool {
        self.0.contains(&cap.index())
    }
}

/// Parses what Display prints (`CAP_A,CAP_B` or `none`).
impl FromStr for CapabilityList {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "none" {
            return Ok(CapabilityList::default());
        }
        s.split(',')
            .map(|name| Capability::from_str(name).map(|c| c.index()).map_err(|e| e.to_string()))
            .collect::<Result<BTreeSet<u8>, String>>()
            .map(CapabilityList)
    }
}

impl fmt::Display for CapabilityList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        let names: Vec<String> = self
            .0
            .iter()
            .map(|&i| {
                caps::all()
                    .into_iter()
                    .find(|c| c.index() == i)
                    .map_or(format!("cap_{i}"), |c| c.to_string())
            })
            .collect();
        f.write_str(&names.join(","))
    }
}

/// Drops every capability but those still needed and those in `keep`
/// (`--capabilities.keep`), in all five sets, sets no_new_privs, and logs at
/// info what it kept.
///
/// Call it once, after `Probe::load`, while the process has a single thread
/// (see the module docs); it refuses otherwise.
pub fn drop_capabilities(keep: &[KeepCapability], probe: &mut Probe) -> Result<Retained, PrivilegeError> {
    if keep.contains(&KeepCapability::All) {
        let held = read(CapSet::Permitted)?;
        let retained = Retained {
            kept: CapabilityList::of(&held),
            needed_for_maps: None,
            bounding: CapabilityList::of(&read(CapSet::Bounding)?),
            not_held: CapabilityList::default(),
            dropped_nothing: true,
        };
        tracing::info!(kept = %retained.kept, "--capabilities.keep=all: keeping every capability");
        return Ok(retained);
    }
    let threads = thread_count();
    if threads != 1 {
        return Err(PrivilegeError::OtherThreadsRunning(threads));
    }

    let supported = caps::runtime::thread_all_supported();
    let permitted = read(CapSet::Permitted)?;
    let mut asked = CapsHashSet::new();
    for wanted in keep {
        if let KeepCapability::One(cap) = wanted {
            asked.insert(*cap);
        }
    }
    let not_held: CapsHashSet = asked.iter().filter(|c| !permitted.contains(c)).copied().collect();
    if !not_held.is_empty() {
        tracing::warn!(
            capabilities = %CapabilityList::of(&not_held),
            "--capabilities.keep names capabilities badfd does not hold; they cannot be kept"
        );
    }
    let mut kept: CapsHashSet = asked.intersection(&permitted).copied().collect();

    // The experiment: map access with only the kept capabilities effective.
    let needed_for_maps = match map_access_needs(&mut || use_maps(probe), &kept, &permitted, &supported) {
        Ok(needed) => needed,
        Err(error) => {
            set(CapSet::Effective, &permitted)?;
            return Err(error);
        }
    };
    kept.extend(needed_for_maps);

    // The bounding set needs CAP_SETPCAP in the effective set to shrink.
    set(CapSet::Effective, &permitted)?;
    let can_shrink_bounding = permitted.contains(&Capability::CAP_SETPCAP);
    if can_shrink_bounding {
        for cap in read(CapSet::Bounding)? {
            if !kept.contains(&cap) {
                caps::drop(None, CapSet::Bounding, cap).map_err(capset_error("bounding"))?;
            }
        }
    }
    // No exec may gain what was dropped (setuid binaries, file capabilities,
    // root's implicit full set).
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(PrivilegeError::NoNewPrivs(std::io::Error::last_os_error()));
    }
    caps::clear(None, CapSet::Ambient).map_err(capset_error("ambient"))?;
    set(CapSet::Inheritable, &CapsHashSet::new())?;
    // Effective first: it must stay a subset of permitted at every step.
    set(CapSet::Effective, &kept)?;
    set(CapSet::Permitted, &kept)?;

    let retained = Retained {
        kept: CapabilityList::of(&kept),
        needed_for_maps,
        bounding: CapabilityList::of(&read(CapSet::Bounding)?),
        not_held: CapabilityList::of(&not_held),
        dropped_nothing: false,
    };
    for (name, set) in [("effective", CapSet::Effective), ("permitted", CapSet::Permitted)] {
        let actual = CapabilityList::of(&read(set)?);
        if actual != retained.kept {
            return Err(PrivilegeError::Mismatch {
                set: name,
                actual: actual.to_string(),
                expected: retained.kept.to_string(),
            });
        }
    }
    let why = match needed_for_maps {
        Some(_) => {
            "this kernel refuses bpf() on map fds without it (kernel.unprivileged_bpf_disabled, kernels before 6.5)"
        }
        None => "this kernel allows bpf() on held map fds without capabilities",
    };
    tracing::info!(
        kept = %retained.kept,
        bounding = %retained.bounding,
        for_maps = %needed_for_maps.map_or("none".to_string(), |c| c.to_string()),
        why,
        "dropped capabilities"
    );
    if !can_shrink_bounding {
        tracing::info!(
            bounding = %retained.bounding,
            "no CAP_SETPCAP, so the bounding set stays as started; no_new_privs keeps exec from gaining any of it"
        );
    }
    Ok(retained)
}

/// Which capability, if any, reading and writing the maps needs: tried first
/// with only `kept` effective, then with CAP_BPF, then CAP_SYS_ADMIN (before
/// 5.8 the kernel has no CAP_BPF). Leaves the effective set changed.
fn map_access_needs(
    use_maps: &mut dyn FnMut() -> Result<(), String>,
    kept: &CapsHashSet,
    permitted: &CapsHashSet,
    supported: &CapsHashSet,
) -> Result<Option<Capability>, PrivilegeError> {
    set(CapSet::Effective, kept)?;
    let first_error = match use_maps() {
        Ok(()) => return Ok(None),
        Err(e) => e,
    };
    for cap in [Capability::CAP_BPF, Capability::CAP_SYS_ADMIN] {
        if !supported.contains(&cap) || !permitted.contains(&cap) {
            continue;
        }
        let mut with = kept.clone();
        with.insert(cap);
        set(CapSet::Effective, &with)?;
        if use_maps().is_ok() {
            tracing::debug!(without = %first_error, capability = %cap, "map access needs a capability on this kernel");
            return Ok(Some(cap));
        }
    }
    Err(PrivilegeError::MapAccess(first_error))
}

/// The map operations badfd makes at run time: counters lookup (per-CPU
/// array), config update (array), in-flight count.
fn use_maps(probe: &mut Probe) -> Result<(), String> {
    probe.counters().map_err(|e| e.to_string())?;
    probe.set_config(probe.config()).map_err(|e| e.to_string())?;
    probe.inflight_len().map_err(|e| e.to_string())?;
    Ok(())
}

fn read(set: CapSet) -> Result<CapsHashSet, PrivilegeError> {
    caps::read(None, set).map_err(capset_error(set_name(set)))
}

fn set(set: CapSet, value: &CapsHashSet) -> Result<(), PrivilegeError> {
    caps::set(None, set, value).map_err(capset_error(set_name(set)))
}

fn set_name(set: CapSet) -> &'static str {
    match set {
        CapSet::Ambient => "ambient",
        CapSet::Bounding => "bounding",
        CapSet::Effective => "effective",
        CapSet::Inheritable => "inheritable",
        CapSet::Permitted => "permitted",
    }
}

fn capset_error(set: &'static str) -> impl Fn(caps::errors::CapsError) -> PrivilegeError {
    move |e| PrivilegeError::Capset {
        set,
        reason: e.to_string(),
    }
}

/// Threads of this process, from /proc/self/task.
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0)
}

/// Capability masks of a process's thread from its /proc status file:
/// (CapEff, CapPrm, CapBnd, CapInh, CapAmb).
pub fn status_masks(status: &str) -> Option<[u64; 5]> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    };
    Some([
        field("CapEff:")?,
        field("CapPrm:")?,
        field("CapBnd:")?,
        field("CapInh:")?,
        field("CapAmb:")?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_print_in_kernel_order_with_masks() {
        let mut set = CapsHashSet::new();
        set.insert(Capability::CAP_BPF);
        set.insert(Capability::CAP_SYS_PTRACE);
        let list = CapabilityList::of(&set);
        assert_eq!(list.to_string(), "CAP_SYS_PTRACE,CAP_BPF");
        assert_eq!(list.mask(), 1 << 19 | 1 << 39);
        assert_eq!(CapabilityList::default().to_string(), "none");
        assert_eq!("CAP_SYS_PTRACE,CAP_BPF".parse::<CapabilityList>(), Ok(list));
        assert_eq!("none".parse::<CapabilityList>(), Ok(CapabilityList::default()));
    }

    /// The decision, with stand-ins for the map calls that succeed only under
    /// given capabilities. Changes this test thread's effective set only (the
    /// other threads keep theirs) and restores it. Needs root, like every
    /// kernel test.
    #[test]
    fn keeps_the_capability_map_access_turns_out_to_need() {
        let permitted = read(CapSet::Permitted).unwrap();
        assert!(
            permitted.contains(&Capability::CAP_BPF),
            "run as root: this test switches CAP_BPF on and off"
        );
        let supported = caps::runtime::thread_all_supported();
        let mut kept = CapsHashSet::new();
        kept.insert(Capability::CAP_SYS_PTRACE);
        let effective_now = || read(CapSet::Effective).unwrap();

        // A kernel that allows map access without capabilities (>= 6.5).
        let mut seen = Vec::new();
        let needed = map_access_needs(
            &mut || {
                seen.push(effective_now());
                Ok(())
            },
            &kept,
            &permitted,
            &supported,
        );
        set(CapSet::Effective, &permitted).unwrap();
        assert_eq!(needed.unwrap(), None);
        assert_eq!(
            seen,
            vec![kept.clone()],
            "the first try runs with only the kept capabilities"
        );

        // A kernel that refuses bpf() without CAP_BPF (unprivileged_bpf_disabled, < 6.5).
        let needs_bpf = &mut || {
            if effective_now().contains(&Capability::CAP_BPF) {
                Ok(())
            } else {
                Err("EPERM".to_string())
            }
        };
        let needed = map_access_needs(needs_bpf, &kept, &permitted, &supported);
        set(CapSet::Effective, &permitted).unwrap();
        assert_eq!(needed.unwrap(), Some(Capability::CAP_BPF));

        // Failing for another reason: an error, not a capability kept in vain.
        let needed = map_access_needs(&mut || Err("ENOENT".to_string()), &kept, &permitted, &supported);
        set(CapSet::Effective, &permitted).unwrap();
        match needed {
            Err(PrivilegeError::MapAccess(e)) => assert_eq!(e, "ENOENT"),
            other => panic!("expected MapAccess, got {other:?}"),
        }
        assert_eq!(effective_now(), permitted);
    }

    #[test]
    fn reads_masks_from_proc_status() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapPrm:\t0000008000000000\nCapEff:\t0000008000000000\nCapBnd:\t000000c000000000\nCapAmb:\t0000000000000000\n";
        assert_eq!(status_masks(status), Some([1 << 39, 1 << 39, 3 << 38, 0, 0]));
        assert_eq!(status_masks("Name:\tx\n"), None);
    }
}
