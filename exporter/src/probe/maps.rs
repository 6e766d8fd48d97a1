//! The loaded programs' maps, as userspace reads and writes them: the live
//! config, the exact counters, in-flight opens, the followed processes and
//! the cgroup filter.

use std::path::Path;

use aya::{
    maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray},
    Ebpf,
};
use exporter_common::{
    Config, Counters, Inflight, Syscall, AT_FDCWD, CONFIG_UNTIMED, INFLIGHT_SLOT_MASK, MAP_CGROUP_FILTER, MAP_CONFIG,
    MAP_COUNTERS, MAP_INFLIGHT, MAP_TRACKED,
};

use super::{CgroupFilterMode, Probe, ProbeError};

/// The map `name` of `ebpf` as the map type `M`.
fn map<'a, M>(ebpf: &'a Ebpf, name: &'static str) -> Result<M, ProbeError>
where
    M: TryFrom<&'a Map, Error = MapError>,
{
    let map = ebpf.map(name).ok_or(ProbeError::MapMissing(name))?;
    M::try_from(map).map_err(|e| ProbeError::Map(name, e))
}

/// As `map`, writable.
fn map_mut<'a, M>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<M, ProbeError>
where
    M: TryFrom<&'a mut Map, Error = MapError>,
{
    let map = ebpf.map_mut(name).ok_or(ProbeError::MapMissing(name))?;
    M::try_from(map).map_err(|e| ProbeError::Map(name, e))
}

/// The error of an operation on the map `name`.
fn failed(name: &'static str) -> impl Fn(MapError) -> ProbeError {
    move |e| ProbeError::Map(name, e)
}

impl Probe {
    /// Whether the kernel sends the directory of relative paths (`Resolution::Kernel`).
    pub fn kernel_dir_resolution(&self) -> bool {
        self.config.offsets.valid != 0
    }

    /// Turns the kernel's directory walk off (relative paths are then resolved
    /// from /proc, while the process lives) or back on, without reattaching.
    /// Turning it on does nothing where the offsets were not found at load.
    pub fn set_kernel_dir_resolution(&mut self, on: bool) -> Result<(), ProbeError> {
        let mut config = self.config;
        // Only `valid` changes: the kernel may read the config while it is
        // written, and must never see a valid flag with offsets half replaced.
        config.offsets = self.kernel_offsets;
        if !on {
            config.offsets.valid = 0;
        }
        self.write_config(config)
    }

    /// Why the kernel does not resolve relative paths' directories, if it does not.
    pub fn kernel_dir_unavailable_reason(&self) -> Option<&str> {
        self.kernel_dir_unavailable.as_deref()
    }

    pub fn config(&self) -> Config {
        self.config
    }

    /// Replaces the live config; the kernel uses it from its next exit on.
    /// The per-process fairness limit is kept as loaded (`set_source_rate`
    /// changes it), so a reload of other settings does not reset a flag.
    pub fn set_config(&mut self, config: Config) -> Result<(), ProbeError> {
        self.write_config(self.completed_config(config))
    }

    /// `config` with what belongs to the load, not to callers, as loaded: the
    /// fork offset, kernel struct offsets, the timing mode and the
    /// per-process fairness limit.
    pub fn completed_config(&self, mut config: Config) -> Config {
        config.fork_child_pid_offset = self.config.fork_child_pid_offset;
        config.offsets = self.config.offsets;
        config.task = self.config.task;
        config.io_uring = self.config.io_uring;
        config.filename = self.config.filename;
        config.flags = (config.flags & !CONFIG_UNTIMED) | (self.config.flags & CONFIG_UNTIMED);
        config.source_interval_ns = self.config.source_interval_ns;
        config.source_burst_ns = self.config.source_burst_ns;
        config
    }

    /// Makes `config` (complete: see `completed_config`) the live config and
    /// `cgroup_ids` the cgroup filter's ids at once, as far as the kernel can
    /// tell: no moment streams what neither the old nor the new setting
    /// streams, and a failure puts the old setting back (`cgroup_filter`).
    pub fn switch_config(&mut self, config: Config, cgroup_ids: &[u64]) -> Result<(), super::cgroup_filter::SwitchError> {
        super::cgroup_filter::switch(self, config, cgroup_ids)
    }

    /// Per-process fairness from now on: once the ring buffer is half full,
    /// each process streams at most `rate` anomalies per second (after a burst
    /// of one second's worth); the rest are counted as `source_throttled`.
    /// 0 turns the limit off.
    pub fn set_source_rate(&mut self, rate: u32) -> Result<(), ProbeError> {
        let mut config = self.config;
        (config.source_interval_ns, config.source_burst_ns) = exporter_common::source_limit(rate);
        self.write_config(config)
    }

    pub(super) fn write_config(&mut self, config: Config) -> Result<(), ProbeError> {
        let mut array: Array<&mut MapData, Config> = map_mut(&mut self.ebpf, MAP_CONFIG)?;
        array.set(0, config, 0).map_err(failed(MAP_CONFIG))?;
        self.config = config;
        Ok(())
    }

    /// The kernel counters, summed over CPUs.
    pub fn counters(&self) -> Result<Counters, ProbeError> {
        let array: PerCpuArray<&MapData, Counters> = map(&self.ebpf, MAP_COUNTERS)?;
        let per_cpu = array.get(&0, 0).map_err(failed(MAP_COUNTERS))?;
        let mut total = Counters::ZERO;
        for cpu in per_cpu.iter() {
            total.accumulate(cpu);
        }
        Ok(total)
    }

    /// Opens in progress right now (see `Counters::inflight`).
    pub fn inflight_len(&self) -> Result<usize, ProbeError> {
        Ok(self.counters()?.inflight() as usize)
    }

    /// Follows `pid` and, through the fork tracepoint, every process it starts.
    pub fn track_pid(&mut self, pid: u32) -> Result<(), ProbeError> {
        let mut hash: HashMap<&mut MapData, u32, u8> = map_mut(&mut self.ebpf, MAP_TRACKED)?;
        hash.insert(pid, 1, 0).map_err(failed(MAP_TRACKED))
    }

    /// How the kernel uses the cgroup filter map, from its next exit on: off,
    /// stream only listed cgroups (and below), or none of them.
    pub fn set_cgroup_filter_mode(&mut self, mode: CgroupFilterMode) -> Result<(), ProbeError> {
        let mut config = self.config;
        config.cgroup_filter = mode.to_kernel();
        self.set_config(config)
    }

    /// Adds a cgroup (v2 id, the inode number of its directory) and its subtree
    /// to the cgroup filter.
    pub fn add_cgroup(&mut self, cgroup_id: u64) -> Result<(), ProbeError> {
        let mut hash: HashMap<&mut MapData, u64, u8> = map_mut(&mut self.ebpf, MAP_CGROUP_FILTER)?;
        hash.insert(cgroup_id, 1, 0).map_err(failed(MAP_CGROUP_FILTER))
    }

    /// Adds the cgroup v2 directory `dir` (e.g. `/sys/fs/cgroup/system.slice/docker-<id>.scope`);
    /// returns its id.
    pub fn add_cgroup_path(&mut self, dir: &Path) -> Result<u64, ProbeError> {
        let id = crate::pipeline::containers::cgroup_id_of_dir(dir)?;
        self.add_cgroup(id)?;
        Ok(id)
    }

    /// Removes a cgroup from the filter; `false` if it was not in it.
    pub fn remove_cgroup(&mut self, cgroup_id: u64) -> Result<bool, ProbeError> {
        let mut hash: HashMap<&mut MapData, u64, u8> = map_mut(&mut self.ebpf, MAP_CGROUP_FILTER)?;
        match hash.remove(&cgroup_id) {
            Ok(()) => Ok(true),
            Err(MapError::KeyNotFound) => Ok(false),
            // aya reports a delete of a missing key as the syscall's ENOENT.
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(ProbeError::Map(MAP_CGROUP_FILTER, e)),
        }
    }

    /// Removes the cgroup v2 directory `dir` from the filter; `false` if it was not in it.
    pub fn remove_cgroup_path(&mut self, dir: &Path) -> Result<bool, ProbeError> {
        let id = crate::pipeline::containers::cgroup_id_of_dir(dir)?;
        self.remove_cgroup(id)
    }

    /// The cgroup ids in the filter.
    pub fn cgroups(&self) -> Result<Vec<u64>, ProbeError> {
        let hash: HashMap<&MapData, u64, u8> = map(&self.ebpf, MAP_CGROUP_FILTER)?;
        hash.keys().map(|k| k.map_err(failed(MAP_CGROUP_FILTER))).collect()
    }

    /// Tests only: writes an in-flight entry for `tid` as its syscall entry
    /// would, as if its exit were then missed (the kernel cannot be made to
    /// miss one on demand), to check that the thread's exit reaps it.
    #[doc(hidden)]
    pub fn plant_inflight_entry(&mut self, tid: u32, start_ns: u64) -> Result<(), ProbeError> {
        let mut array: Array<&mut MapData, Inflight> = map_mut(&mut self.ebpf, MAP_INFLIGHT)?;
        let entry = Inflight {
            start_ns,
            path_ptr: 0,
            open_flags: 0,
            mode: 0,
            dirfd: AT_FDCWD,
            tid,
            syscall: Syscall::Openat as u8,
            flags: 0,
            _pad: [0; 2],
        };
        array.set(tid & INFLIGHT_SLOT_MASK, entry, 0).map_err(failed(MAP_INFLIGHT))
    }

    /// Whether `tid` has an entry in flight now.
    pub fn has_inflight_entry(&self, tid: u32) -> Result<bool, ProbeError> {
        let array: Array<&MapData, Inflight> = map(&self.ebpf, MAP_INFLIGHT)?;
        let entry = array.get(&(tid & INFLIGHT_SLOT_MASK), 0).map_err(failed(MAP_INFLIGHT))?;
        Ok(entry.tid == tid)
    }
}
