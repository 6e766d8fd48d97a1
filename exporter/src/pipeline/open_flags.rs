//! Open flags by name, for every output that shows them (the terminal's JSON,
//! the OTLP records): one table, so that they all say the same.

/// Open flags as the kernel defines them (include/uapi/asm-generic/fcntl.h,
/// which x86_64 uses; arm64 numbers four of them its own way); the values the
/// syscall received, before the kernel adds O_LARGEFILE itself.
mod open_flag {
    #[cfg(not(target_arch = "aarch64"))]
    const O_DIRECT: u64 = 0o40_000;
    #[cfg(not(target_arch = "aarch64"))]
    const O_LARGEFILE: u64 = 0o100_000;
    #[cfg(not(target_arch = "aarch64"))]
    const O_DIRECTORY: u64 = 0o200_000;
    #[cfg(not(target_arch = "aarch64"))]
    const O_NOFOLLOW: u64 = 0o400_000;
    // arch/arm64/include/uapi/asm/fcntl.h
    #[cfg(target_arch = "aarch64")]
    const O_DIRECTORY: u64 = 0o40_000;
    #[cfg(target_arch = "aarch64")]
    const O_NOFOLLOW: u64 = 0o100_000;
    #[cfg(target_arch = "aarch64")]
    const O_DIRECT: u64 = 0o200_000;
    #[cfg(target_arch = "aarch64")]
    const O_LARGEFILE: u64 = 0o400_000;

    pub const O_ACCMODE: u64 = 0o3;
    pub const O_WRONLY: u64 = 0o1;
    pub const O_RDWR: u64 = 0o2;
    /// Named in the order `open(2)` lists them; composite flags first so that
    /// their bits are consumed before their parts.
    pub const NAMED: [(&str, u64); 19] = [
        ("O_TMPFILE", 0o20_000_000 | O_DIRECTORY),
        ("O_SYNC", 0o4_000_000 | 0o10_000),
        ("O_CREAT", 0o100),
        ("O_EXCL", 0o200),
        ("O_NOCTTY", 0o400),
        ("O_TRUNC", 0o1000),
        ("O_APPEND", 0o2000),
        ("O_NONBLOCK", 0o4000),
        ("O_DSYNC", 0o10_000),
        ("O_ASYNC", 0o20_000),
        ("O_DIRECT", O_DIRECT),
        ("O_LARGEFILE", O_LARGEFILE),
        ("O_DIRECTORY", O_DIRECTORY),
        ("O_NOFOLLOW", O_NOFOLLOW),
        ("O_NOATIME", 0o1_000_000),
        ("O_CLOEXEC", 0o2_000_000),
        ("O_PATH", 0o10_000_000),
        // __O_SYNC and __O_TMPDIR alone never reach open from libc, but a raw
        // syscall can pass them; name them rather than print a number.
        ("__O_SYNC", 0o4_000_000),
        ("__O_TMPDIR", 0o20_000_000),
    ];
}

/// `O_RDONLY|O_CLOEXEC` for 0o2000000; bits no flag names are shown in hex.
pub fn open_flags_names(flags: u64) -> String {
    use open_flag::*;
    let mut names = vec![match flags & O_ACCMODE {
        0 => "O_RDONLY".to_string(),
        O_WRONLY => "O_WRONLY".to_string(),
        O_RDWR => "O_RDWR".to_string(),
        _ => "O_ACCMODE".to_string(),
    }];
    let mut rest = flags & !O_ACCMODE;
    for (name, bits) in NAMED {
        if rest & bits == bits {
            names.push(name.to_string());
            rest &= !bits;
        }
    }
    if rest != 0 {
        names.push(format!("{rest:#x}"));
    }
    names.join("|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_open_flags() {
        assert_eq!(open_flags_names(0), "O_RDONLY");
        assert_eq!(open_flags_names((libc::O_RDONLY | libc::O_CLOEXEC) as u64), "O_RDONLY|O_CLOEXEC");
        assert_eq!(
            open_flags_names((libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC) as u64),
            "O_WRONLY|O_CREAT|O_TRUNC"
        );
        assert_eq!(open_flags_names(libc::O_SYNC as u64 | libc::O_RDWR as u64), "O_RDWR|O_SYNC");
        assert_eq!(open_flags_names(libc::O_DSYNC as u64), "O_RDONLY|O_DSYNC");
        assert_eq!(open_flags_names((libc::O_TMPFILE | libc::O_RDWR) as u64), "O_RDWR|O_TMPFILE");
        assert_eq!(open_flags_names(libc::O_DIRECTORY as u64 | libc::O_NOFOLLOW as u64), "O_RDONLY|O_DIRECTORY|O_NOFOLLOW");
        assert_eq!(open_flags_names(libc::O_PATH as u64), "O_RDONLY|O_PATH");
        assert_eq!(open_flags_names(1 << 40), "O_RDONLY|0x10000000000");
        // What the OTLP records said before this table was theirs too.
        let f = (libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC) as u64;
        assert_eq!(open_flags_names(f), "O_WRONLY|O_CREAT|O_EXCL|O_CLOEXEC");
        assert_eq!(open_flags_names(libc::O_SYNC as u64), "O_RDONLY|O_SYNC");
        // Flags libc never passes alone are named, not printed as a number.
        assert_eq!(open_flags_names(libc::O_ASYNC as u64), "O_RDONLY|O_ASYNC");
        assert_eq!(open_flags_names(0o20_000_000), "O_RDONLY|__O_TMPDIR");
    }
}
