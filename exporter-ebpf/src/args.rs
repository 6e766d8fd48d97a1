//! An open's arguments as the program passed them, whichever hook saw them.

use aya_ebpf::helpers::bpf_probe_read_kernel;
use exporter_common::{Inflight, Syscall};

/// `struct open_how` from include/uapi/linux/openat2.h.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct OpenHow {
    pub flags: u64,
    pub mode: u64,
    pub resolve: u64,
}

impl OpenHow {
    pub const UNREADABLE: OpenHow = OpenHow { flags: 0, mode: 0, resolve: 0 };
}

/// creat(path, mode) == open(path, O_CREAT|O_WRONLY|O_TRUNC, mode); only
/// x86_64 of the supported architectures has creat.
#[cfg(bpf_target_arch = "x86_64")]
pub const CREAT_FLAGS: u64 = 0o100 | 0o1 | 0o1000;

#[derive(Clone, Copy)]
pub struct OpenArgs {
    pub syscall: Syscall,
    pub dirfd: i32,
    pub path_ptr: u64,
    pub open_flags: u64,
    pub mode: u32,
}

impl OpenArgs {
    #[inline(always)]
    pub fn into_inflight(self, start_ns: u64, tid: u32) -> Inflight {
        Inflight {
            start_ns,
            path_ptr: self.path_ptr,
            open_flags: self.open_flags,
            mode: self.mode,
            dirfd: self.dirfd,
            tid,
            syscall: self.syscall as u8,
            flags: 0,
            _pad: [0; 2],
        }
    }
}

/// do_sys_openat2's own arguments, for a caller that is not one of the
/// syscalls `arch::user_args` knows (`how` is a kernel pointer here).
#[inline(always)]
pub fn function_args(dirfd: u64, path_ptr: u64, how: u64) -> OpenArgs {
    let how = unsafe { bpf_probe_read_kernel(how as *const OpenHow) }.unwrap_or(OpenHow::UNREADABLE);
    OpenArgs { syscall: Syscall::Openat, dirfd: dirfd as i32, path_ptr, open_flags: how.flags, mode: how.mode as u32 }
}
