//! What the running kernel offers, asked of the kernel itself: helpers a
//! program type may call, how often a program was skipped, the release, the
//! page size and the memlock limit.

use std::os::fd::AsRawFd;

/// One BPF instruction: code, dst_reg:4 | src_reg:4, off, imm.
#[repr(C)]
struct Insn(u8, u8, i16, i32);

/// Whether the kernel accepts `insns` as a tracepoint program (it is loaded
/// and closed at once): how to ask which helpers tracepoint programs may call.
fn tracepoint_program_loads(insns: &[Insn]) -> bool {
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_TYPE_TRACEPOINT: u32 = 5;
    // The first fields of union bpf_attr for BPF_PROG_LOAD; the rest zero.
    #[repr(C)]
    struct ProgLoad {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
        _rest: [u64; 12],
    }
    let license = c"GPL";
    let attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_TRACEPOINT,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        _rest: [0; 12],
    };
    // SAFETY: a valid bpf_attr prefix of the size given; the kernel copies it.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, &attr as *const ProgLoad, std::mem::size_of::<ProgLoad>()) };
    if fd < 0 {
        return false;
    }
    // SAFETY: our own new descriptor.
    unsafe { libc::close(fd as i32) };
    true
}

/// Whether this kernel lets a tracepoint program call
/// `bpf_get_current_ancestor_cgroup_id` (older kernels allow it only to other
/// program types).
pub fn ancestor_cgroup_helper_available() -> bool {
    const BPF_FUNC_GET_CURRENT_ANCESTOR_CGROUP_ID: i32 = 123;
    tracepoint_program_loads(&[
        Insn(0xb7, 1, 0, 0),                                       // r1 = 0 (the root's level)
        Insn(0x85, 0, 0, BPF_FUNC_GET_CURRENT_ANCESTOR_CGROUP_ID), // call
        Insn(0xb7, 0, 0, 0),                                       // r0 = 0
        Insn(0x95, 0, 0, 0),                                       // exit
    ])
}

/// Whether this kernel lets a tracepoint program call `bpf_task_pt_regs`
/// (Linux 5.15), on the current task.
pub fn task_pt_regs_helper_available() -> bool {
    const BPF_FUNC_GET_CURRENT_TASK_BTF: i32 = 158;
    const BPF_FUNC_TASK_PT_REGS: i32 = 175;
    tracepoint_program_loads(&[
        Insn(0x85, 0, 0, BPF_FUNC_GET_CURRENT_TASK_BTF), // call
        Insn(0xbf, 0x01, 0, 0),                          // r1 = r0
        Insn(0x85, 0, 0, BPF_FUNC_TASK_PT_REGS),         // call
        Insn(0xb7, 0, 0, 0),                             // r0 = 0
        Insn(0x95, 0, 0, 0),                             // exit
    ])
}

/// `recursion_misses` of a loaded program, from BPF_OBJ_GET_INFO_BY_FD; 0
/// where the kernel does not report it.
pub(super) fn recursion_misses(fd: std::os::fd::BorrowedFd<'_>) -> u64 {
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    // Offset of `recursion_misses` in the UAPI `struct bpf_prog_info`.
    const RECURSION_MISSES_OFFSET: usize = 208;
    #[repr(C)]
    struct InfoByFd {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let mut info = [0u8; RECURSION_MISSES_OFFSET + 8];
    let attr = InfoByFd { bpf_fd: fd.as_raw_fd() as u32, info_len: info.len() as u32, info: info.as_mut_ptr() as u64 };
    // SAFETY: attr and the info buffer are valid for the sizes given.
    let rc = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_OBJ_GET_INFO_BY_FD, &attr as *const InfoByFd, std::mem::size_of::<InfoByFd>())
    };
    if rc != 0 {
        return 0;
    }
    u64::from_ne_bytes(info[RECURSION_MISSES_OFFSET..].try_into().unwrap())
}


/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> String {
    // SAFETY: uname fills the zeroed struct; release is NUL-terminated.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut uts) } != 0 {
        return "unknown".into();
    }
    let release = unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) };
    release.to_string_lossy().into_owned()
}


/// Ring buffer sizes must be a power-of-two multiple of the page size.
pub fn ringbuf_size(requested: u32) -> u32 {
    let page = page_size();
    requested.max(page).checked_next_power_of_two().unwrap_or(1 << 31)
}

fn page_size() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as u32 } else { 4096 }
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; newer ones to the
/// memory cgroup, where failing to raise it is harmless.
pub fn raise_memlock_limit() {
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: plain syscall with a valid pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "could not raise RLIMIT_MEMLOCK; fine on kernels >= 5.11, which account BPF memory to the cgroup"
        );
    }
}

