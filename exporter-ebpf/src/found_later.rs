//! Found later: a failed open is a probe of a search path when the same
//! process opens a file of the same basename successfully soon after (the
//! dynamic loader, locale lookup, sys.path). A failure's basename goes into
//! its process's table; a successful open of a process with a recent failure
//! hashes its own basename and marks the failures it finds. Counted in the
//! bucket of the failure's epoch, so that userspace reads each epoch once it
//! is decided (the contract, "Found later").
//!
//! Both functions are global: the verifier checks each (and its 256-byte
//! basename loop) once per program.

use aya_ebpf::helpers::bpf_get_current_pid_tgid;
use exporter_common::{
    found_errno_slot, basename_hash_step, Config, Loss, Stream, BASENAME_HASH_MAX, BASENAME_HASH_START,
    FAILED_NAMES_PER_PROCESS, FAILED_NAMES_SLOT_MASK, FOUND_EPOCHS, PATH_MAX,
};

use crate::{
    counters::{bump, count_loss, counters},
    kernel_path,
    maps::{CONFIG, FAILED_NAMES, SCRATCH},
};

/// The epoch bucket of time `ns`.
#[inline(always)]
fn epoch_bucket(config: &Config, ns: u64) -> usize {
    // checked: a division by a zero the compiler cannot rule out would be a
    // panic path, which the verifier refuses.
    (ns.checked_div(config.found_later_epoch_ns).unwrap_or(0) % FOUND_EPOCHS as u64) as usize
}

/// What `badfd_note_failure` and `badfd_find_earlier` return, split: what
/// reading the path returned (0: not read) and the basename hash (0: none).
#[inline(always)]
pub fn split(noted: i64) -> (i64, u32) {
    ((noted as u64 & 0xffff_ffff) as u32 as i32 as i64, (noted as u64 >> 32) as u32)
}

/// Whether the classification is on.
#[inline(always)]
pub fn enabled(config: &Config) -> bool {
    config.found_later_window_ns != 0 && config.found_later_epoch_ns != 0
}

/// Counts a failure in its epoch's bucket (every failure, named or not).
/// Global: inlined into the exits, the two variable offsets into the
/// counters made 5.10's verifier lose the counters pointer ("R7 invalid mem
/// access 'inv'", bounds it derived on a dead branch); on its own it is
/// checked once with its own bounds.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn badfd_count_failure(errno: u64, now: u64) -> i64 {
    let (Some(config), Some(c)) = (CONFIG.get(0), counters()) else { return 0 };
    if !enabled(config) {
        return 0;
    }
    if let Some(bucket) = c.failures_by_epoch.get_mut(epoch_bucket(config, now)) {
        bump(bucket.get_mut(found_errno_slot(errno)));
    }
    0
}

/// Whether the current process failed an open within the window before `now`
/// (one inlined array load: the whole cost for every other process).
#[inline(always)]
pub fn has_recent_failure(config: &Config, tgid: u32, now: u64) -> bool {
    if !enabled(config) {
        return false;
    }
    let Some(table) = FAILED_NAMES.get(tgid & FAILED_NAMES_SLOT_MASK) else { return false };
    table.tgid == tgid && now.wrapping_sub(table.last_ns) <= config.found_later_window_ns
}

/// Reads the path at `path_ptr` (a user address, or with `in_kernel` a
/// kernel one: `kernel_path`) into `SCRATCH.path` and hashes its basename
/// (`exporter_common::basename_hash`), packed as `pack` says. Global, so that
/// its 256-byte loop is verified once for both callers.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn badfd_basename_hash(path_ptr: u64, in_kernel: u64) -> i64 {
    let Some(buf) = SCRATCH.get_ptr_mut(0) else { return 0 };
    // SAFETY: per-CPU scratch, see `counters`.
    let buf = unsafe { &mut *buf };
    let read = kernel_path::read_path(buf.path.as_mut_ptr(), path_ptr, in_kernel != 0);
    let read_bits = read as u64 & 0xffff_ffff;
    if read <= 1 {
        return read_bits as i64;
    }
    let len = (read as usize - 1) & (PATH_MAX - 1);
    let mut hash = BASENAME_HASH_START;
    let mut taken = 0usize;
    while taken < BASENAME_HASH_MAX {
        if taken >= len {
            break;
        }
        let byte = buf.path[(len - 1 - taken) & (PATH_MAX - 1)];
        if byte == b'/' {
            break;
        }
        hash = basename_hash_step(hash, byte);
        taken += 1;
    }
    if taken == 0 {
        return read_bits as i64;
    }
    pack(read_bits, hash)
}

/// `read` (low 32 bits) and a basename hash (high 32 bits) in one scalar, as
/// global functions return; a hash of 0 is taken as none (one name in 2^32
/// is then never found).
#[inline(always)]
fn pack(read_bits: u64, hash: u32) -> i64 {
    ((hash as u64) << 32 | read_bits) as i64
}

/// `(read, hash)` of a packed value; `hash` `None` where there is none.
#[inline(always)]
fn unpack(packed: i64) -> (i64, Option<u32>) {
    let (read, hash) = split(packed);
    (read, (hash != 0).then_some(hash))
}

/// Reads and hashes the path's basename: `(read, hash)`.
#[inline(always)]
fn read_basename_hash(path_ptr: u64, in_kernel: u64) -> (i64, Option<u32>) {
    unpack(badfd_basename_hash(path_ptr, in_kernel))
}

/// A failed open with `errno` of the current process, its path at `path_ptr`
/// (a kernel address with `in_kernel`): its basename goes into the process's
/// table. Returns what reading the path returned (the path is
/// then in `SCRATCH.path`, for `emit`), in the low 32 bits, and the hash in
/// the high 32 bits (0 where there is none).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn badfd_note_failure(path_ptr: u64, in_kernel: u64, errno: u64, now: u64) -> i64 {
    let (Some(config), Some(c)) = (CONFIG.get(0), counters()) else { return 0 };
    let (read, hash) = read_basename_hash(path_ptr, in_kernel);
    let read_bits = (read as u64) & 0xffff_ffff;
    let Some(hash) = hash else { return read_bits as i64 };
    let packed = pack(read_bits, hash);
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let Some(table) = FAILED_NAMES.get_ptr_mut(tgid & FAILED_NAMES_SLOT_MASK) else { return read_bits as i64 };
    // SAFETY: a valid array slot; threads of one process on two CPUs may race
    // on it, which can only make a failure look never found.
    let table = unsafe { &mut *table };
    let window = config.found_later_window_ns;
    if table.tgid != tgid {
        // Another process's table (same slot): its undecided failures can no
        // longer be found.
        let mut evicted = false;
        for name in table.names.iter_mut() {
            if name.count != 0 && now.wrapping_sub(name.last_ns) <= window {
                evicted = true;
            }
            name.count = 0;
        }
        if evicted {
            count_loss(c, Loss::FailedNameEvicted);
        }
        table.tgid = tgid;
        table.next = 0;
    }
    table.last_ns = now;
    let errno_slot = found_errno_slot(errno) as u8;
    let bucket = epoch_bucket(config, now) as u8;
    // The same name again (a search through several directories): one entry.
    let mut free = FAILED_NAMES_PER_PROCESS;
    for (i, name) in table.names.iter_mut().enumerate() {
        let live = name.count != 0 && now.wrapping_sub(name.last_ns) <= window;
        if live && name.hash == hash && name.errno_slot == errno_slot && name.epoch_bucket == bucket {
            name.count = name.count.saturating_add(1);
            name.last_ns = now;
            return packed;
        }
        if !live && free == FAILED_NAMES_PER_PROCESS {
            free = i;
        }
    }
    let at = if free < FAILED_NAMES_PER_PROCESS {
        free
    } else {
        // Full of undecided names: the oldest-taken entry gives way.
        count_loss(c, Loss::FailedNameEvicted);
        let at = table.next as usize % FAILED_NAMES_PER_PROCESS;
        table.next = table.next.wrapping_add(1);
        at
    };
    if let Some(name) = table.names.get_mut(at) {
        name.last_ns = now;
        name.hash = hash;
        name.count = 1;
        name.errno_slot = errno_slot;
        name.epoch_bucket = bucket;
    }
    packed
}

/// The failures of the current process with basename hash `hash` within the
/// window before `now`: found later, counted in their epoch's bucket. Returns
/// how many.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn badfd_find_name(hash: u64, now: u64) -> i64 {
    let (Some(config), Some(c)) = (CONFIG.get(0), counters()) else { return 0 };
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let Some(table) = FAILED_NAMES.get_ptr_mut(tgid & FAILED_NAMES_SLOT_MASK) else { return 0 };
    // SAFETY: as in `badfd_note_failure`.
    let table = unsafe { &mut *table };
    if table.tgid != tgid || hash == 0 {
        return 0;
    }
    let hash = hash as u32;
    let window = config.found_later_window_ns;
    let mut found = 0u64;
    for name in table.names.iter_mut() {
        if name.count == 0 || name.hash != hash || now.wrapping_sub(name.last_ns) > window {
            continue;
        }
        let count = name.count as u64;
        name.count = 0;
        found += count;
        if let Some(bucket) = c.found_by_epoch.get_mut(name.epoch_bucket as usize % FOUND_EPOCHS) {
            if let Some(slot) = bucket.get_mut(name.errno_slot as usize) {
                *slot += count;
            }
        }
    }
    if let Some(n) = c.stream.get_mut(Stream::FoundLater as usize) {
        *n += found;
    }
    found as i64
}

/// A successful open of a process with a recent failure: the failures of the
/// same basename within the window are found later. Returns as
/// `badfd_note_failure` does when it found any (the path is then in
/// `SCRATCH.path`), else 0.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn badfd_find_earlier(path_ptr: u64, now: u64) -> i64 {
    let (read, hash) = read_basename_hash(path_ptr, 0);
    let Some(hash) = hash else { return 0 };
    if badfd_find_name(hash as u64, now) == 0 {
        return 0;
    }
    pack(read as u64 & 0xffff_ffff, hash)
}

/// The basename hash of the current task's comm: after a successful exec, the
/// first 15 bytes of the executed file's basename (the exec's own path is gone
/// with the old program). 0 for an empty comm.
#[inline(always)]
pub fn comm_hash() -> u32 {
    let comm = aya_ebpf::helpers::bpf_get_current_comm().unwrap_or([0; 16]);
    let mut len = 0usize;
    while len < 15 {
        if comm[len] == 0 {
            break;
        }
        len += 1;
    }
    let mut hash = BASENAME_HASH_START;
    let mut i = 0usize;
    while i < 15 {
        if i >= len {
            break;
        }
        hash = basename_hash_step(hash, comm[(len - 1 - i) & 15]);
        i += 1;
    }
    if len == 0 { 0 } else { hash }
}
