//! The kernel's own copy of an open's path (`struct filename`), for opens
//! whose path would otherwise be read after the kernel freed it: from the
//! process's memory, which another of its threads may have rewritten since
//! the kernel read it, or (io_uring on 7.x) from nowhere. The copy goes into
//! a `KERNEL_PATHS` slot named for its open's key, and the open's entry
//! points at the slot (`INFLIGHT_PATH_IN_KERNEL`) until its end.
//!
//! - fentry mode, an open syscall that failed: copied at the end of its path
//!   walk (`fexit_do_filp_open`), still inside the syscall.
//! - io_uring on kernels whose `struct filename` keeps no user pointer:
//!   copied when the request is issued (`io_uring`).

use aya_ebpf::helpers::{
    bpf_get_current_pid_tgid,
    generated::{bpf_probe_read_kernel_str, bpf_probe_read_user_str},
};
use exporter_common::{is_restart_code, Inflight, Syscall, FIELD_ABSENT, INFLIGHT_PATH_IN_KERNEL, INFLIGHT_SLOT_MASK, PATH_MAX};

use crate::{
    dir_walk::read_u64,
    maps::{frozen, CONFIG, INFLIGHT, KERNEL_PATHS, KERNEL_PATH_NEXT, KERNEL_PATH_SLOTS_LOADED},
};

/// Reads an open's path at `src` into `dst` (`PATH_MAX` bytes): a kernel
/// address with `in_kernel` (an entry's `INFLIGHT_PATH_IN_KERNEL`), else the
/// process's memory. Returns what the string helper returned (the bytes read
/// with the NUL, or a negative error).
#[inline(always)]
pub fn read_path(dst: *mut u8, src: u64, in_kernel: bool) -> i64 {
    let (dst, src) = (dst.cast(), src as *const _);
    // SAFETY: `dst` has room for PATH_MAX bytes; the helpers fault safely.
    unsafe {
        if in_kernel {
            bpf_probe_read_kernel_str(dst, PATH_MAX as u32, src)
        } else {
            bpf_probe_read_user_str(dst, PATH_MAX as u32, src)
        }
    }
}

/// Copies the kernel string at `name` into a `KERNEL_PATHS` slot owned by
/// `owner`; the slot's index, or `None` where it could not be copied.
#[inline(always)]
pub fn copy(name: u64, owner: u64) -> Option<u64> {
    let next = KERNEL_PATH_NEXT.get_ptr_mut(0)?;
    // Round-robin over all CPUs without an atomic: two opens that take the
    // same slot at once are told apart by its owner, and the one that lost
    // it has its path unread (counted).
    // SAFETY: a valid array slot.
    let index = unsafe {
        let index = *next;
        *next = index.wrapping_add(1);
        (index as u32) & (frozen(&KERNEL_PATH_SLOTS_LOADED) - 1)
    };
    let slot = KERNEL_PATHS.get_ptr_mut(index)?;
    // SAFETY: a valid array slot.
    let slot = unsafe { &mut *slot };
    slot.owner = owner;
    let copied = unsafe { bpf_probe_read_kernel_str(slot.bytes.as_mut_ptr().cast(), PATH_MAX as u32, name as *const _) };
    (copied > 0).then_some(index as u64)
}

/// The path of an entry as it is read at its end: where it is a
/// `KERNEL_PATHS` slot, the slot's address if the slot still belongs to
/// `owner`, else none.
#[inline(always)]
pub fn resolve(entry: &mut Inflight, owner: u64) {
    if entry.flags & INFLIGHT_PATH_IN_KERNEL == 0 {
        return;
    }
    let slot = KERNEL_PATHS.get_ptr_mut(entry.path_ptr as u32 & (frozen(&KERNEL_PATH_SLOTS_LOADED) - 1));
    // SAFETY: a valid array slot, read only.
    match slot.filter(|slot| unsafe { (**slot).owner } == owner) {
        Some(slot) => {
            // The slot's address as a plain number (read back through a
            // helper): the path is read with a kernel-string helper, and
            // the verifier would refuse a map pointer where a path address
            // goes (the found-later functions take a scalar address).
            let address = unsafe { (*slot).bytes.as_ptr() } as u64;
            entry.path_ptr = read_u64(&address as *const u64 as u64).unwrap_or(0);
        }
        None => {
            entry.path_ptr = 0;
            entry.flags &= !INFLIGHT_PATH_IN_KERNEL;
        }
    }
}

/// The end of an open's path walk (`do_filp_open`) with the error `ret`, the
/// walk of `filename`: the current thread's open syscall (or io_uring open)
/// takes the kernel's copy of its path. Not an exec's walks (the program, its
/// interpreter: the exec reports the path it was given), not a walk that the
/// kernel restarts (the restart is recognized by the entry's user pointer),
/// and not a walk of another name (a kernel-internal open inside the syscall:
/// its user pointer differs, where the kernel keeps one).
#[inline(always)]
pub fn take_for_failed_walk(filename: u64, ret: i64) {
    if is_restart_code(ret) || filename == 0 {
        return;
    }
    let Some(config) = CONFIG.get(0) else { return };
    let f = &config.filename;
    if f.valid == 0 {
        return;
    }
    let tid = bpf_get_current_pid_tgid() as u32;
    let Some(slot) = INFLIGHT.get_ptr_mut(tid & INFLIGHT_SLOT_MASK) else { return };
    // SAFETY: a valid array slot; see `open::enter`.
    let entry = unsafe { &mut *slot };
    if entry.tid != tid || entry.flags & INFLIGHT_PATH_IN_KERNEL != 0 {
        return;
    }
    if Syscall::from_u8(entry.syscall).is_none_or(|s| s.is_exec()) {
        return;
    }
    if f.uptr != FIELD_ABSENT && read_u64(filename + f.uptr as u64) != Some(entry.path_ptr) {
        return;
    }
    let Some(name) = read_u64(filename + f.name as u64) else { return };
    if let Some(index) = copy(name, tid as u64) {
        entry.path_ptr = index;
        entry.flags |= INFLIGHT_PATH_IN_KERNEL;
    }
}
