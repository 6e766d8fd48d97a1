//! The `path_prefix` label: the first N components of the resolved path with
//! volatile segments (pids, numeric ids, hex, uuids, temp-file suffixes)
//! templated, so that one program's failures land in one series.

use super::value::{cut, push_label_value};

/// Writes the `path_prefix` label of `path` into `out` (cleared first): its first
/// `depth` components, each templated. An absolute path gives `/a/b/c`; a path
/// that could not be resolved stays relative (`a/b`), so it is told apart.
pub fn path_prefix_into(out: &mut String, path: &[u8], depth: usize) {
    out.clear();
    if path.is_empty() {
        // open(""), or a path the kernel could not read (the pipeline labels
        // that one UNREADABLE_PREFIX): no directory to name.
        out.push_str(EMPTY_PREFIX);
        return;
    }
    let absolute = path.first() == Some(&b'/');
    for (taken, component) in path.split(|&b| b == b'/').filter(|c| !c.is_empty()).take(depth).enumerate() {
        if absolute || taken > 0 {
            out.push('/');
        }
        template_component(out, component);
    }
    if out.is_empty() {
        out.push_str(if absolute { "/" } else { "." });
    }
    cut(out);
}

/// The part of `path` that [`path_prefix_into`] reads: up to the end of its
/// `depth`-th component. Paths with the same raw prefix have the same label, so
/// the pipeline caches labels by it instead of templating every event.
pub fn raw_prefix(path: &[u8], depth: usize) -> &[u8] {
    if depth == 0 {
        // No component is read, only whether the path is absolute.
        return &path[..path.len().min(1)];
    }
    let mut taken = 0;
    let mut i = 0;
    while i < path.len() {
        if path[i] == b'/' {
            i += 1;
            continue;
        }
        let end = path[i..].iter().position(|&b| b == b'/').map_or(path.len(), |n| i + n);
        taken += 1;
        if taken == depth {
            return &path[..end];
        }
        i = end;
    }
    path
}

/// The `path_prefix` of an empty path.
pub const EMPTY_PREFIX: &str = "(empty)";
/// The `path_prefix` of a path the kernel could not read from the process.
pub const UNREADABLE_PREFIX: &str = "(unreadable)";

/// [`path_prefix_into`] into a new string.
pub fn path_prefix(path: &[u8], depth: usize) -> String {
    let mut s = String::new();
    path_prefix_into(&mut s, path, depth);
    s
}

/// One path component, with its volatile parts replaced by placeholders:
/// - all digits: `<n>` (pids under /proc, numeric ids, dates);
/// - a uuid anywhere: `<uuid>`;
/// - a run of 8 or more hex digits with digits and letters: `<hex>`;
/// - a run of 4 or more digits inside a name: `<n>` (`build-1234` -> `build-<n>`);
/// - a temp-file suffix: `.tmp123`/`.tmpAb3x` -> `.tmp<x>`, and a mkstemp-style
///   tail of 6 random alphanumerics after `.`, `-` or `_` (`foo.a8Zk3Q`) -> `<x>`.
fn template_component(out: &mut String, component: &[u8]) {
    if component.iter().all(u8::is_ascii_digit) {
        out.push_str("<n>");
        return;
    }
    let mut templated: Vec<u8> = Vec::with_capacity(component.len());
    let mut i = 0;
    while i < component.len() {
        if let Some(len) = uuid_at(&component[i..]) {
            templated.extend_from_slice(b"<uuid>");
            i += len;
            continue;
        }
        let hex_run = component[i..].iter().take_while(|b| b.is_ascii_hexdigit()).count();
        // Only at a run start (not mid-word) to leave ordinary words alone.
        let at_boundary = i == 0 || !component[i - 1].is_ascii_alphanumeric();
        let run_end = i + hex_run;
        let ends_at_boundary = run_end == component.len() || !component[run_end].is_ascii_alphanumeric();
        if hex_run >= 8
            && at_boundary
            && ends_at_boundary
            && component[i..run_end].iter().any(u8::is_ascii_digit)
            && component[i..run_end].iter().any(u8::is_ascii_alphabetic)
        {
            templated.extend_from_slice(b"<hex>");
            i = run_end;
            continue;
        }
        let digit_run = component[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digit_run >= 4 && (i == 0 || !component[i - 1].is_ascii_digit()) {
            templated.extend_from_slice(b"<n>");
            i += digit_run;
            continue;
        }
        if digit_run > 0 {
            templated.extend_from_slice(&component[i..i + digit_run]);
            i += digit_run;
            continue;
        }
        templated.push(component[i]);
        i += 1;
    }
    template_temp_suffix(&mut templated);
    push_label_value(out, &templated);
}

/// Length of a uuid (8-4-4-4-12 hex digits) at the start of `s`.
fn uuid_at(s: &[u8]) -> Option<usize> {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    let mut i = 0;
    for (g, len) in GROUPS.iter().enumerate() {
        if s.len() < i + len || !s[i..i + len].iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        i += len;
        if g < 4 {
            if s.get(i) != Some(&b'-') {
                return None;
            }
            i += 1;
        }
    }
    Some(i)
}

fn template_temp_suffix(name: &mut Vec<u8>) {
    // `.tmp` followed by alphanumerics (and placeholders) to the end.
    if let Some(pos) = find_last(name, b".tmp") {
        let tail = &name[pos + 4..];
        if !tail.is_empty() && tail.iter().all(|b| b.is_ascii_alphanumeric() || b"<>".contains(b)) {
            name.truncate(pos + 4);
            name.extend_from_slice(b"<x>");
            return;
        }
    }
    // mkstemp/mktemp: a tail of 6 to 12 random alphanumerics after a separator
    // (`tmp.a8Zk3Q`, `tmp.xDfbKwpnHF`), with a digit and a letter, or both
    // cases, so that `file.backup` or `.config` stay as they are.
    let tail_len = name.iter().rev().take_while(|b| b.is_ascii_alphanumeric()).count();
    if (6..=12).contains(&tail_len) && name.len() > tail_len {
        let (head, tail) = name.split_at(name.len() - tail_len);
        let separated = matches!(head.last(), Some(b'.' | b'-' | b'_'));
        let has = |f: fn(&u8) -> bool| tail.iter().any(f);
        let random = (has(u8::is_ascii_digit) && has(u8::is_ascii_alphabetic))
            || (has(u8::is_ascii_uppercase) && has(u8::is_ascii_lowercase));
        if separated && random {
            let keep = name.len() - tail_len;
            name.truncate(keep);
            name.extend_from_slice(b"<x>");
        }
    }
}

fn find_last(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_template_volatile_segments() {
        let p = |s: &[u8]| path_prefix(s, 3);
        assert_eq!(p(b"/etc/ssl/certs/ca.pem"), "/etc/ssl/certs");
        assert_eq!(p(b"/etc/passwd"), "/etc/passwd");
        assert_eq!(p(b"/proc/12345/fd/3"), "/proc/<n>/fd");
        assert_eq!(p(b"/proc/1/task/1/stat"), "/proc/<n>/task");
        assert_eq!(path_prefix(b"/proc/77/task/78/stat", 4), "/proc/<n>/task/<n>");
        assert_eq!(p(b"/var/lib/0c3a9f81d2e4"), "/var/lib/<hex>");
        assert_eq!(p(b"/var/lib/deadbeefcafe"), "/var/lib/deadbeefcafe", "all-letter hex is a word");
        assert_eq!(
            p(b"/run/containerd/123e4567-e89b-12d3-a456-426614174000.sock"),
            "/run/containerd/<uuid>.sock"
        );
        assert_eq!(p(b"/tmp/build-20261121/x"), "/tmp/build-<n>/x");
        assert_eq!(p(b"/usr/lib64/libc.so.6"), "/usr/lib64/libc.so.6");
        assert_eq!(p(b"/usr/lib/python3.11/os.py"), "/usr/lib/python3.11");
        assert_eq!(p(b"/tmp/out.tmp123"), "/tmp/out.tmp<x>");
        assert_eq!(p(b"/tmp/cfg.tmpAb3x9"), "/tmp/cfg.tmp<x>");
        assert_eq!(p(b"/tmp/tmp.a8Zk3Q"), "/tmp/tmp.<x>");
        assert_eq!(p(b"/tmp/tmp.xDfbKwpnHF/stage"), "/tmp/tmp.<x>/stage", "mktemp -d");
        assert_eq!(p(b"/etc/ld.so.cache"), "/etc/ld.so.cache");
        assert_eq!(p(b"/usr/share/locale/en_US.UTF-8"), "/usr/share/locale");
        assert_eq!(p(b"/tmp/sess_X9f2k1/y"), "/tmp/sess_<x>/y");
        assert_eq!(p(b"/home/u/file.backup"), "/home/u/file.backup");
        assert_eq!(p(b"/"), "/");
        assert_eq!(p(b"relative/dir/name/more"), "relative/dir/name", "unresolved stays relative");
        assert_eq!(p(b"missing"), "missing");
    }

    #[test]
    fn raw_prefix_is_all_the_label_depends_on() {
        let paths: [&[u8]; 9] = [
            b"/etc/ssl/certs/ca.pem", b"/etc/passwd", b"//proc//123/fd/4", b"/", b"", b"relative/dir/name/more",
            b"/tmp/bad\xff\nname/x/y", b"/a/b/c/", b"missing",
        ];
        for path in paths {
            for depth in 0..5 {
                let raw = raw_prefix(path, depth);
                assert!(path.starts_with(raw));
                assert_eq!(path_prefix(raw, depth), path_prefix(path, depth), "{:?} at depth {depth}", String::from_utf8_lossy(path));
            }
        }
        assert_eq!(raw_prefix(b"/etc/ssl/certs/ca.pem", 3), b"/etc/ssl/certs");
        assert_eq!(raw_prefix(b"//proc//123/fd/4", 2), b"//proc//123");
    }
}
