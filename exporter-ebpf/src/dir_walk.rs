//! The directory of a relative path, walked in the kernel: the cwd for AT_FDCWD,
//! else the dirfd's file; dentries up to the mount's root, then across to the
//! mount point in the parent mount, until the mount namespace's root mount.
//! Struct offsets come from userspace (kernel BTF), in `Config::offsets`.

use aya_ebpf::helpers::{
    bpf_probe_read_kernel,
    generated::{bpf_get_current_task, bpf_probe_read_kernel_str as probe_read_kernel_str_raw},
};
use crate::maps::{CONFIG, DIR_SCRATCH};
use exporter_common::{
    DirBuffer, KernelOffsets, AT_FDCWD, DIR_BAD_FD, DIR_MAX, DIR_MAX_COMPONENTS, DIR_NAME_MAX, DIR_READ_FAILED,
    DIR_RESOLVED, DIR_TRUNCATED, DIR_UNREACHABLE,
};

#[inline(always)]
pub fn read_u64(addr: u64) -> Option<u64> {
    unsafe { bpf_probe_read_kernel(addr as *const u64) }.ok()
}

#[inline(always)]
pub fn read_u32(addr: u64) -> Option<u32> {
    unsafe { bpf_probe_read_kernel(addr as *const u32) }.ok()
}
/// The `struct path` (address) the relative path is resolved against.
#[inline(always)]
fn base_path(o: &KernelOffsets, dirfd: i32) -> Result<u64, u8> {
    let task = unsafe { bpf_get_current_task() };
    if dirfd == AT_FDCWD {
        let fs = read_u64(task + o.task_fs as u64).ok_or(DIR_READ_FAILED)?;
        if fs == 0 {
            return Err(DIR_READ_FAILED);
        }
        return Ok(fs + o.fs_pwd as u64);
    }
    if dirfd < 0 {
        return Err(DIR_BAD_FD);
    }
    let files = read_u64(task + o.task_files as u64).ok_or(DIR_READ_FAILED)?;
    let fdt = read_u64(files + o.files_fdt as u64).ok_or(DIR_READ_FAILED)?;
    let max_fds = read_u32(fdt + o.fdtable_max_fds as u64).ok_or(DIR_READ_FAILED)?;
    if dirfd as u32 >= max_fds {
        return Err(DIR_BAD_FD);
    }
    let fd_array = read_u64(fdt + o.fdtable_fd as u64).ok_or(DIR_READ_FAILED)?;
    let file = read_u64(fd_array + 8 * dirfd as u64).ok_or(DIR_READ_FAILED)?;
    if file == 0 {
        return Err(DIR_BAD_FD);
    }
    Ok(file + o.file_f_path as u64)
}

/// The directory `dirfd` (or the cwd) of the current task, walked into the
/// end of `DIR_SCRATCH`: returns `DIR_*` in the low byte and, for
/// `DIR_RESOLVED`, where the directory starts (it is
/// `DIR_SCRATCH.bytes[start..DIR_MAX]`) in the bits above. A global function:
/// the verifier checks the walk's 64 iterations once, whatever its caller.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn badfd_dir_walk(dirfd: i64) -> i64 {
    let (Some(config), Some(buf)) = (CONFIG.get(0), DIR_SCRATCH.get_ptr_mut(0)) else {
        return DIR_READ_FAILED as i64;
    };
    // SAFETY: per-CPU scratch, see `counters`.
    let buf = unsafe { &mut *buf };
    let (status, start) = kernel_dir(&config.offsets, dirfd as i32, buf);
    (status as u64 | (start as u64) << 8) as i64
}

/// Writes the directory into the end of `buf` and returns `(DIR_*, start)`:
/// for `DIR_RESOLVED` the directory is `buf.bytes[start..DIR_MAX]`.
#[inline(always)]
fn kernel_dir(o: &KernelOffsets, dirfd: i32, buf: &mut DirBuffer) -> (u8, usize) {
    let path = match base_path(o, dirfd) {
        Ok(p) => p,
        Err(status) => return (status, 0),
    };
    let (Some(mut mnt), Some(mut dentry)) =
        (read_u64(path + o.path_mnt as u64), read_u64(path + o.path_dentry as u64))
    else {
        return (DIR_READ_FAILED, 0);
    };
    // container_of(mnt, struct mount, mnt)
    let mut mount = mnt.wrapping_sub(o.mount_mnt as u64);
    let pos_slot: *mut u32 = &mut buf.pos;
    // SAFETY: a field of the per-CPU scratch value.
    unsafe { core::ptr::write_volatile(pos_slot, DIR_MAX as u32) };
    let mut reached_root = false;
    for _ in 0..DIR_MAX_COMPONENTS {
        let Some(mnt_root) = read_u64(mnt + o.vfsmount_root as u64) else {
            return (DIR_READ_FAILED, 0);
        };
        if dentry == mnt_root {
            let Some(parent) = read_u64(mount + o.mount_parent as u64) else {
                return (DIR_READ_FAILED, 0);
            };
            if parent == mount {
                // A mount that is its own parent: the root mount of a namespace,
                // or one lazily unmounted (no namespace any more).
                let Some(ns) = read_u64(mount + o.mount_ns as u64) else {
                    return (DIR_READ_FAILED, 0);
                };
                if ns == 0 {
                    return (DIR_UNREACHABLE, 0);
                }
                reached_root = true;
                break;
            }
            let Some(mountpoint) = read_u64(mount + o.mount_mountpoint as u64) else {
                return (DIR_READ_FAILED, 0);
            };
            dentry = mountpoint;
            mount = parent;
            mnt = parent + o.mount_mnt as u64;
            continue;
        }
        let Some(parent) = read_u64(dentry + o.dentry_parent as u64) else {
            return (DIR_READ_FAILED, 0);
        };
        if parent == dentry {
            // A filesystem root that is not its mount's root (a disconnected
            // dentry): no absolute path to give.
            return (DIR_UNREACHABLE, 0);
        }
        let name_at = dentry + o.dentry_name as u64;
        let (Some(len), Some(name)) = (read_u32(name_at + o.qstr_len as u64), read_u64(name_at + o.qstr_name as u64))
        else {
            return (DIR_READ_FAILED, 0);
        };
        let len = len as usize;
        if len > DIR_NAME_MAX {
            return (DIR_READ_FAILED, 0);
        }
        // SAFETY: as above.
        let pos = unsafe { core::ptr::read_volatile(pos_slot) } as usize & (2 * DIR_MAX - 1);
        // Keep one byte before the directory so that its start stays below DIR_MAX.
        if pos < len + 2 {
            return (DIR_TRUNCATED, 0);
        }
        let at = (pos - len - 1) & (DIR_MAX - 1);
        if let Some(b) = buf.bytes.get_mut(at) {
            *b = b'/';
        }
        let dst = buf.bytes.as_mut_ptr().wrapping_add(at + 1);
        // A constant size (NAME_MAX + 1): the 6.12 verifier loses the bound of
        // a variable one ("unbounded memory access"). The name is NUL-terminated;
        // its NUL lands on the '/' that starts what is already written, restored
        // below.
        // SAFETY: at < DIR_MAX, so dst + DIR_NAME_MAX + 1 is inside `buf.bytes`.
        let read = unsafe { probe_read_kernel_str_raw(dst.cast(), (DIR_NAME_MAX + 1) as u32, name as *const _) };
        if read != (len + 1) as i64 {
            return (DIR_READ_FAILED, 0);
        }
        // Unconditionally, with the mask in the index: kernels up to 6.1 do not
        // bound an offset by a dominating comparison. For the first name `pos`
        // is DIR_MAX, the index 0, which is never part of the directory (its
        // start stays at 1 or more).
        if let Some(b) = buf.bytes.get_mut(pos & (DIR_MAX - 1)) {
            *b = b'/';
        }
        // SAFETY: as above.
        unsafe { core::ptr::write_volatile(pos_slot, at as u32) };
        dentry = parent;
    }
    if !reached_root {
        return (DIR_TRUNCATED, 0);
    }
    // SAFETY: as above.
    let mut pos = unsafe { core::ptr::read_volatile(pos_slot) } as usize & (2 * DIR_MAX - 1);
    if pos >= DIR_MAX {
        // The root directory itself.
        pos = DIR_MAX - 1;
        buf.bytes[DIR_MAX - 1] = b'/';
    }
    (DIR_RESOLVED, pos)
}
