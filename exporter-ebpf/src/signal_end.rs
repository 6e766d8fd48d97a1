//! How a signal ends an open that left with a restart code (-ERESTARTSYS and
//! kin). The exit programs run before the kernel handles the signal
//! (arch_do_signal_or_restart), so what happens next is decided here, from
//! what the kernel will decide it by: the pending signals and the handler of
//! the one it delivers first (kernel/signal.c get_signal, then
//! arch/x86/kernel/signal.c handle_signal).
//!
//! Global: the verifier checks it once per program.

use aya_ebpf::helpers::generated::bpf_get_current_task;

use crate::{dir_walk::read_u64, maps::CONFIG};

/// The kernel restarts the syscall (a handler with `SA_RESTART`, a code that
/// always restarts, or no handler runs): the open goes on.
pub const END_RESTART: i64 = 0;
/// The program gets EINTR (a handler without `SA_RESTART`).
pub const END_EINTR: i64 = 1;
/// The task is being killed: no result reaches the program.
pub const END_KILLED: i64 = 2;

const ERESTARTSYS: i64 = -512;
const ERESTARTNOINTR: i64 = -513;
const SIG_DFL: u64 = 0;
const SIG_IGN: u64 = 1;
const SA_RESTART: u64 = 0x1000_0000;

/// The bit of signal `sig` in a `sigset_t`.
const fn bit(sig: u64) -> u64 {
    1 << (sig - 1)
}

const SIGKILL: u64 = 9;
/// Signals whose default action does not kill: ignored (SIGCHLD, SIGCONT,
/// SIGURG, SIGWINCH) or stop (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU). No handler
/// runs for them, so the kernel restarts the syscall.
const DEFAULT_NOT_FATAL: u64 = bit(17) | bit(18) | bit(23) | bit(28) | bit(19) | bit(20) | bit(21) | bit(22);
/// The kernel delivers these first (SIGILL, SIGTRAP, SIGBUS, SIGFPE, SIGSEGV, SIGSYS).
const SYNCHRONOUS: u64 = bit(4) | bit(5) | bit(7) | bit(8) | bit(11) | bit(31);

/// The number of the lowest signal in a non-empty set (a binary search: BPF
/// has no instruction for it).
#[inline(always)]
fn lowest_signal(set: u64) -> u64 {
    let mut low = set & set.wrapping_neg();
    let mut sig = 1;
    for shift in [32u32, 16, 8, 4, 2, 1] {
        let mask = (1u64 << shift) - 1;
        if low & mask == 0 {
            sig += shift as u64;
            low >>= shift;
        }
    }
    sig
}

/// `END_*` for the current task's open that left with the restart code `ret`.
/// Without the task's offsets (no BTF), `END_RESTART`: the entry then stays,
/// and is reaped if the thread dies or found stale by its next open.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn badfd_signal_end(ret: i64) -> i64 {
    let Some(config) = CONFIG.get(0) else { return END_RESTART };
    let o = &config.task;
    if o.signals_valid == 0 {
        return END_RESTART;
    }
    let task = unsafe { bpf_get_current_task() };
    let own = read_u64(task + o.task_pending_signal as u64).unwrap_or(0);
    let shared = read_u64(task + o.task_signal as u64)
        .and_then(|signal| read_u64(signal + o.signal_shared_pending as u64))
        .unwrap_or(0);
    // A fatal signal puts SIGKILL in every thread's own set (complete_signal).
    if (own | shared) & bit(SIGKILL) != 0 {
        return END_KILLED;
    }
    let blocked = read_u64(task + o.task_blocked as u64).unwrap_or(0);
    // The thread's own signals first, then the process's; synchronous ones first.
    let own = own & !blocked;
    let deliverable = if own != 0 { own } else { shared & !blocked };
    if deliverable == 0 {
        // Woken for task work or the freezer: the syscall restarts.
        return END_RESTART;
    }
    let synchronous = deliverable & SYNCHRONOUS;
    let sig = lowest_signal(if synchronous != 0 { synchronous } else { deliverable });
    let Some(sighand) = read_u64(task + o.task_sighand as u64) else { return END_RESTART };
    let action = sighand + o.sighand_action as u64 + (sig - 1) * o.k_sigaction_size as u64;
    let handler = read_u64(action + o.sa_handler as u64).unwrap_or(SIG_DFL);
    match handler {
        SIG_DFL if DEFAULT_NOT_FATAL & bit(sig) != 0 => END_RESTART,
        SIG_DFL => END_KILLED,
        SIG_IGN => END_RESTART,
        _ => match ret {
            ERESTARTNOINTR => END_RESTART,
            ERESTARTSYS if read_u64(action + o.sa_flags as u64).unwrap_or(0) & SA_RESTART != 0 => END_RESTART,
            _ => END_EINTR,
        },
    }
}
