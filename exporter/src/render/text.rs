//! Small text pieces shared by the table, the JSON lines and the summary:
//! escaping untrusted bytes for a terminal, eliding paths at the front,
//! latencies in human units, open flags by name.

use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// Makes untrusted bytes (a path, a comm) safe to print on a terminal, one
/// line, without losing information: invalid UTF-8 and control characters
/// (newline, ESC, C1 controls...) become `\xNN` / `\n` / `\t` / `\r`, and a
/// backslash becomes `\\`, so every escape can be read back unambiguously.
/// A file named with an escape sequence cannot recolour or rewrite the terminal.
pub fn escape_for_terminal(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Terminal columns `s` takes (wide characters count two).
pub fn display_width(s: &str) -> usize {
    UnicodeWidthStr::width(s)
}

/// Shortens `path` to at most `max` columns by cutting its FRONT, so that the
/// file name stays visible: `/very/long/deep/name.conf` -> `…/deep/name.conf`.
/// The kept part starts at a `/` where one fits; a name too long on its own
/// keeps its end.
pub fn elide_front(path: &str, max: usize) -> String {
    if display_width(path) <= max {
        return path.to_string();
    }
    if max == 0 {
        return String::new();
    }
    // The longest suffix that fits in max - 1 columns (one for the ellipsis).
    let budget = max - 1;
    let mut used = 0;
    let mut start = path.len();
    for (i, c) in path.char_indices().rev() {
        let w = c.width().unwrap_or(0);
        if used + w > budget {
            break;
        }
        used += w;
        start = i;
    }
    let suffix = &path[start..];
    // Start at a component boundary (`…/deep/name.conf`, not `…ep/deep/name.conf`)
    // when a whole directory is still kept after it; otherwise keep what fits.
    let suffix = match suffix.find('/') {
        Some(slash) if slash > 0 && suffix[slash + 1..].contains('/') => &suffix[slash..],
        _ => suffix,
    };
    format!("…{suffix}")
}

/// Cuts `s` at its END to at most `max` columns, marking the cut with `…`.
pub fn truncate_end(s: &str, max: usize) -> String {
    if display_width(s) <= max {
        return s.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > max {
            break;
        }
        used += w;
        out.push(c);
    }
    if max > 0 {
        out.push('…');
    }
    out
}

/// Pads `s` with spaces on the right to `width` columns.
pub fn pad_right(s: &str, width: usize) -> String {
    let w = display_width(s);
    let mut out = s.to_string();
    out.extend(std::iter::repeat_n(' ', width.saturating_sub(w)));
    out
}

/// Pads `s` with spaces on the left to `width` columns.
pub fn pad_left(s: &str, width: usize) -> String {
    let w = display_width(s);
    let mut out: String = std::iter::repeat_n(' ', width.saturating_sub(w)).collect();
    out.push_str(s);
    out
}

/// A latency in human units with three significant digits: `850ns`,
/// `1.23µs`, `12.3ms`, `456ms`, `2.50s`, `3600s`.
pub fn human_latency(ns: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1_000, "µs"), (1_000_000, "ms"), (1_000_000_000, "s")];
    let Some(i) = UNITS.iter().rposition(|&(scale, _)| ns >= scale) else {
        return format!("{ns}ns");
    };
    let (scale, unit) = UNITS[i];
    let v = ns as f64 / scale as f64;
    match UNITS.get(i + 1) {
        // Rounds up to 1000 of this unit: say 1.00 of the next one.
        Some((_, next)) if v >= 999.5 => format!("1.00{next}"),
        _ if v < 9.995 => format!("{v:.2}{unit}"),
        _ if v < 99.95 => format!("{v:.1}{unit}"),
        _ => format!("{v:.0}{unit}"),
    }
}

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
        ("O_TMPFILE", 0o20_000_000 | 0o200_000),
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
    fn escapes_everything_a_terminal_would_interpret() {
        assert_eq!(escape_for_terminal(b"/etc/passwd"), "/etc/passwd");
        assert_eq!(escape_for_terminal(b"/t/bad\xff\nname\"\\\x01"), "/t/bad\\xff\\nname\"\\\\\\x01");
        assert_eq!(escape_for_terminal(b"\x1b[31mred"), "\\x1b[31mred");
        // C1 control U+009B (CSI) in UTF-8, and a wide character kept.
        assert_eq!(escape_for_terminal("a\u{9b}b日".as_bytes()), "a\\xc2\\x9bb日");
    }

    #[test]
    fn elides_at_the_front_on_a_component_boundary() {
        let p = "/srv/app/config/deep/name.conf";
        assert_eq!(elide_front(p, 100), p);
        assert_eq!(elide_front(p, p.len()), p);
        assert_eq!(elide_front(p, 20), "…/deep/name.conf");
        assert_eq!(display_width(&elide_front(p, 20)), 16);
        assert_eq!(elide_front(p, 10), "…name.conf");
        assert_eq!(elide_front(p, 5), "…conf");
        assert_eq!(elide_front("/a/日本語/x", 6), "…語/x");
        assert_eq!(elide_front("/aaaa/bbbb/cccc/x", 12), "…/cccc/x");
        assert_eq!(display_width(&elide_front("/a/日本語日本語/x", 7)), 7);
        for max in 1..p.len() {
            assert!(display_width(&elide_front(p, max)) <= max, "{max}");
        }
    }

    #[test]
    fn truncates_and_pads_by_columns() {
        assert_eq!(truncate_end("No such file or directory", 10), "No such f…");
        assert_eq!(truncate_end("short", 10), "short");
        assert_eq!(pad_right("µs", 4), "µs  ");
        assert_eq!(pad_left("12", 4), "  12");
    }

    #[test]
    fn latencies_read_in_human_units() {
        assert_eq!(human_latency(0), "0ns");
        assert_eq!(human_latency(850), "850ns");
        assert_eq!(human_latency(1_234), "1.23µs");
        assert_eq!(human_latency(12_345), "12.3µs");
        assert_eq!(human_latency(123_456), "123µs");
        assert_eq!(human_latency(999_999), "1.00ms");
        assert_eq!(human_latency(12_300_000), "12.3ms");
        assert_eq!(human_latency(2_500_000_000), "2.50s");
        assert_eq!(human_latency(3_600_000_000_000), "3600s");
    }

    #[test]
    fn names_open_flags() {
        assert_eq!(open_flags_names(0), "O_RDONLY");
        // One of the four flags whose bits differ between x86_64 and arm64.
        assert_eq!(open_flags_names(libc::O_DIRECT as u64), "O_RDONLY|O_DIRECT");
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
    }
}
