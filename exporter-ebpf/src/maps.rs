//! Every map and load-time constant of the kernel side. Userspace finds the
//! maps by these names (`exporter_common::MAP_*`).

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use exporter_common::{
    Config, Counters, DirBuffer, EventBuffer, FailedNames, Inflight, CGROUP_FILTER_CAPACITY, DEFAULT_RINGBUF_BYTES,
    FAILED_NAMES_SLOTS, INFLIGHT_SLOTS, PATH_MAX, SOURCES_CAPACITY, TRACKED_CAPACITY, KERNEL_PATH_SLOTS,
    URING_REQS_CAPACITY,
};

#[map]
pub static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

#[map]
pub static COUNTERS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RINGBUF_BYTES, 0);

/// Opens in progress, one slot per `tid & INFLIGHT_SLOT_MASK` (see the contract
/// for why an array): a blocked open and its thread may move to another CPU, so
/// this cannot be per-CPU.
#[map]
pub static INFLIGHT: Array<Inflight> = Array::with_max_entries(INFLIGHT_SLOTS, 0);

/// Processes followed by `badfd trace -- command`: filled on fork from the command down.
#[map]
pub static TRACKED: HashMap<u32, u8> = HashMap::with_max_entries(TRACKED_CAPACITY, 0);

/// Cgroup ids (cgroup v2) watched or ignored with their subtrees, as
/// `Config::cgroup_filter` says.
#[map]
pub static CGROUP_FILTER: HashMap<u64, u8> = HashMap::with_max_entries(CGROUP_FILTER_CAPACITY, 0);

/// Fairness state (`fairness`): the theoretical arrival time (GCRA) of each
/// streaming process's, cgroup's and uid's next event, in CLOCK_MONOTONIC ns.
/// Touched only for anomalies while the ring buffer is half full.
#[map]
pub static SOURCES: LruHashMap<u32, u64> = LruHashMap::with_max_entries(SOURCES_CAPACITY, 0);

#[map]
pub static SOURCE_CGROUPS: LruHashMap<u64, u64> = LruHashMap::with_max_entries(SOURCES_CAPACITY, 0);

#[map]
pub static SOURCE_UIDS: LruHashMap<u32, u64> = LruHashMap::with_max_entries(SOURCES_CAPACITY, 0);

/// Per-CPU time (CLOCK_MONOTONIC ns) of the last reader wakeup this CPU asked
/// for; see `WAKEUP_MIN_INTERVAL_NS`.
#[map]
pub static LAST_WAKEUP: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU space an event is assembled in (too large for the 512-byte stack).
#[map]
pub static SCRATCH: PerCpuArray<EventBuffer> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU space the directory of a relative path is assembled in, backwards.
#[map]
pub static DIR_SCRATCH: PerCpuArray<DirBuffer> = PerCpuArray::with_max_entries(1, 0);

/// The open being streamed, handed over to `stream::badfd_emit` (a function
/// the verifier checks once, whose arguments can only be scalars).
#[repr(C)]
pub struct Pending {
    pub entry: Inflight,
    /// What `kernel_path::read_path` returned when the path was already read
    /// into `SCRATCH` for this open (`found_later`); 0 when it was not.
    pub path_read: i64,
}

#[map]
pub static PENDING: PerCpuArray<Pending> = PerCpuArray::with_max_entries(1, 0);

/// Recent failed basenames of each process, one table per
/// `tgid & FAILED_NAMES_SLOT_MASK` (an array, so that a successful open of a
/// process without recent failures costs one inlined load; see the contract).
#[map]
pub static FAILED_NAMES: Array<FailedNames> = Array::with_max_entries(FAILED_NAMES_SLOTS, 0);

/// io_uring opens in tracepoint mode, from their submission to their
/// completion, by request (`struct io_kiocb *`): the completion event says
/// neither the opcode nor the arguments.
#[map]
pub static URING_REQS: HashMap<u64, Inflight> = HashMap::with_max_entries(URING_REQS_CAPACITY, 0);

/// The kernel's copy of an open's path, for an open whose path is read after
/// the kernel freed its own (`exporter_common::KERNEL_PATH_SLOTS` says which;
/// userspace sizes the map to one slot where none are).
#[repr(C)]
pub struct KernelPath {
    /// The open's key (its thread in fentry mode, its request in tracepoint
    /// mode): a slot reused by a later open no longer names it.
    pub owner: u64,
    pub bytes: [u8; PATH_MAX],
}

#[map]
pub static KERNEL_PATHS: Array<KernelPath> = Array::with_max_entries(KERNEL_PATH_SLOTS, 0);

/// The next `KERNEL_PATHS` slot to take (round-robin, all CPUs).
#[map]
pub static KERNEL_PATH_NEXT: Array<u64> = Array::with_max_entries(1, 0);

/// Set (to 1) by userspace at load where tracing programs may call
/// `bpf_task_pt_regs` (Linux 5.15): a timed exit that finds no entry of its
/// own then reads the failed open's arguments from the saved registers to
/// stream it. Frozen, like `CGROUP_ANCESTORS`.
#[unsafe(no_mangle)]
pub static TASK_PT_REGS: u8 = 0;

/// Slots in `KERNEL_PATHS` (a power of two), set by userspace at load with the
/// map's size; frozen.
#[unsafe(no_mangle)]
pub static KERNEL_PATH_SLOTS_LOADED: u32 = 1;

/// Set (to 1) by userspace at load where tracing programs may call
/// `bpf_get_current_ancestor_cgroup_id` (not on older kernels, 5.10 among
/// them). A frozen read-only global: the verifier sees its value and drops the
/// ancestor walk as dead code where it is 0, so the program loads everywhere
/// (the filter then matches a task's own cgroup only).
#[unsafe(no_mangle)]
pub static CGROUP_ANCESTORS: u8 = 0;

/// The ring buffer's size in bytes, set by userspace at load (frozen like
/// `CGROUP_ANCESTORS`: the verifier sees a constant, so the fairness check
/// costs no helper call to ask the map).
#[unsafe(no_mangle)]
pub static RINGBUF_BYTES: u32 = DEFAULT_RINGBUF_BYTES;

/// A frozen load-time constant, read so that the compiler cannot fold it.
#[inline(always)]
pub fn frozen<T: Copy>(global: &T) -> T {
    // SAFETY: a plain value in the object's read-only data.
    unsafe { core::ptr::read_volatile(global) }
}
