//! Label values from anomalies, and the budget that keeps their number bounded.
//!
//! - [`path_prefix`]: the `path_prefix` label: the first N components of the
//!   resolved path with volatile segments (pids, numeric ids, hex, uuids,
//!   temp-file suffixes) templated, so that one program's failures land in one
//!   series, and odd bytes replaced deterministically.
//! - [`label_value`]: any raw bytes (a `comm`, a path) made into a label value
//!   that can never break the exposition.
//! - [`Interner`]: one shared string per distinct label value, so the event loop
//!   does not allocate per event once values are known.
//! - [`Budgeted`]: at most N label sets per metric; the least recently used is
//!   folded into `other`; idle label sets expire after a TTL.

use std::{
    collections::{HashMap, HashSet},
    hash::Hash,
    sync::Arc,
    time::Duration,
};

use lru::LruCache;

/// The label value that folded label sets are counted under.
pub const OTHER: &str = "other";

/// Longest label value badfd emits, in bytes; longer ones are cut (at a
/// character boundary) and end in `...`.
pub const MAX_LABEL_BYTES: usize = 256;

/// Appends `bytes` to `out` as a label value: valid UTF-8 is kept, except that
/// control characters and `%` become `%XX`; every byte of invalid UTF-8 becomes
/// `%XX` too. Deterministic, so one odd path is always one series; the
/// exposition escapes `"`, `\` and newlines itself, but no control byte is left
/// for it to trip on.
pub fn push_label_value(out: &mut String, bytes: &[u8]) {
    let mut rest = bytes;
    while !rest.is_empty() {
        let (valid, bad) = match std::str::from_utf8(rest) {
            Ok(s) => (s, &[][..]),
            Err(e) => {
                let (v, b) = rest.split_at(e.valid_up_to());
                // SAFETY: from_utf8 said this prefix is valid.
                (unsafe { std::str::from_utf8_unchecked(v) }, b)
            }
        };
        for c in valid.chars() {
            if c.is_control() || c == '%' {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    push_percent(out, b);
                }
            } else {
                out.push(c);
            }
        }
        match bad.first() {
            Some(&b) => {
                push_percent(out, b);
                rest = &bad[1..];
            }
            None => rest = bad,
        }
    }
}

fn push_percent(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[(b >> 4) as usize] as char);
    out.push(HEX[(b & 15) as usize] as char);
}

/// [`push_label_value`] into a new string, cut at [`MAX_LABEL_BYTES`].
pub fn label_value(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    push_label_value(&mut s, bytes);
    cut(&mut s);
    s
}

fn cut(s: &mut String) {
    if s.len() > MAX_LABEL_BYTES {
        let mut end = MAX_LABEL_BYTES - 3;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
}

/// Writes the `path_prefix` label of `path` into `out` (cleared first): its first
/// `depth` components, each templated. An absolute path gives `/a/b/c`; a path
/// that could not be resolved stays relative (`a/b`), so it is told apart.
pub fn path_prefix_into(out: &mut String, path: &[u8], depth: usize) {
    out.clear();
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

/// One shared copy of each distinct string. `collect` drops the strings no one
/// else holds any more (label sets that were folded or expired).
#[derive(Debug, Default)]
pub struct Interner {
    strings: HashSet<Arc<str>>,
}

impl Interner {
    pub fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.strings.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.strings.insert(a.clone());
        a
    }

    pub fn len(&self) -> usize {
        self.strings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.strings.is_empty()
    }

    pub fn collect(&mut self) {
        self.strings.retain(|a| Arc::strong_count(a) > 1);
    }
}

/// Interns `comm` values by their raw 16 kernel bytes, so the common case is a
/// hash lookup of a fixed array.
#[derive(Debug, Default)]
pub struct CommInterner {
    comms: HashMap<[u8; exporter_common::TASK_COMM_LEN], Arc<str>>,
}

impl CommInterner {
    pub fn intern(&mut self, raw: &[u8; exporter_common::TASK_COMM_LEN]) -> Arc<str> {
        if let Some(a) = self.comms.get(raw) {
            return a.clone();
        }
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        let a: Arc<str> = Arc::from(label_value(&raw[..end]));
        self.comms.insert(*raw, a.clone());
        a
    }

    pub fn collect(&mut self) {
        self.comms.retain(|_, a| Arc::strong_count(a) > 1);
    }

    pub fn len(&self) -> usize {
        self.comms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.comms.is_empty()
    }
}

/// The container labels of a series, with `badfd serve --metrics.container-labels`:
/// named as kube-state-metrics and cAdvisor name them, so that series join
/// with theirs (`kube_pod_container_info` has the same `container_id`,
/// `<runtime>://<id>`). Empty where not known: a host process has none, and
/// outside a cluster only `container_id` is known.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ContainerLabels {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub container_id: String,
}

impl ContainerLabels {
    /// What a folded label set carries: `other` everywhere.
    pub fn other() -> ContainerLabels {
        ContainerLabels { namespace: OTHER.into(), pod: OTHER.into(), container: OTHER.into(), container_id: OTHER.into() }
    }

    /// As (name, value) pairs, in exposition order.
    pub fn pairs(&self) -> [(&'static str, &str); 4] {
        [("namespace", &self.namespace), ("pod", &self.pod), ("container", &self.container), ("container_id", &self.container_id)]
    }
}

/// A value a label set holds, which can be folded into another.
pub trait Fold: Default {
    fn fold_into(self, target: &mut Self);
}

impl Fold for u64 {
    fn fold_into(self, target: &mut u64) {
        *target += self;
    }
}

/// The label-set budget of one metric: at most `max` named label sets are kept,
/// the least recently used one folded into its `other` label set when a new one
/// arrives; label sets idle longer than `ttl` are dropped.
///
/// `fold` maps a key to its `other` key (e.g. keeps `errno`, sets `comm` and
/// `path_prefix` to `other`). `other` label sets count towards the budget as
/// well, so the series count stays at or below `max` as long as the number of
/// distinct `other` keys (bounded by the errno count) is below it.
#[derive(Debug)]
pub struct Budgeted<K: Hash + Eq, V> {
    series: LruCache<K, Entry<V>>,
    others: HashMap<K, Entry<V>>,
    fold: fn(&K) -> K,
    max: usize,
    ttl: Duration,
    /// Label sets folded into `other` so far.
    pub folded: u64,
    /// Label sets dropped after the TTL so far.
    pub expired: u64,
}

#[derive(Debug)]
struct Entry<V> {
    value: V,
    /// Seconds on the caller's clock (`now` arguments).
    last_seen: u64,
}

impl<K: Hash + Eq + Clone, V: Fold> Budgeted<K, V> {
    pub fn new(max: usize, ttl: Duration, fold: fn(&K) -> K) -> Self {
        Budgeted {
            series: LruCache::unbounded(),
            others: HashMap::new(),
            fold,
            max: max.max(1),
            ttl,
            folded: 0,
            expired: 0,
        }
    }

    /// The value of `key`'s label set, created (and the budget enforced) if new.
    /// `now` is a monotonic time in seconds.
    pub fn get_mut(&mut self, key: &K, now: u64) -> &mut V {
        // Two lookups instead of one so that the borrow of a hit does not outlive
        // the miss path (a known borrow checker limit).
        if self.series.contains(key) {
            let e = self.series.get_mut(key).expect("present");
            e.last_seen = now;
            return &mut e.value;
        }
        if self.others.contains_key(key) {
            let e = self.others.get_mut(key).expect("present");
            e.last_seen = now;
            return &mut e.value;
        }
        while self.series.len() + self.others.len() >= self.max {
            let Some((old_key, old)) = self.series.pop_lru() else { break };
            let other = self.others.entry((self.fold)(&old_key)).or_insert_with(|| Entry { value: V::default(), last_seen: now });
            old.value.fold_into(&mut other.value);
            other.last_seen = now;
            self.folded += 1;
        }
        self.series.push(key.clone(), Entry { value: V::default(), last_seen: now });
        &mut self.series.get_mut(key).expect("just pushed").value
    }

    /// Drops label sets not seen for longer than the TTL.
    pub fn expire(&mut self, now: u64) {
        let ttl = self.ttl.as_secs();
        while let Some((_, e)) = self.series.peek_lru() {
            if now.saturating_sub(e.last_seen) <= ttl {
                break;
            }
            self.series.pop_lru();
            self.expired += 1;
        }
        let before = self.others.len();
        self.others.retain(|_, e| now.saturating_sub(e.last_seen) <= ttl);
        self.expired += (before - self.others.len()) as u64;
    }

    /// Number of label sets (series) now.
    pub fn len(&self) -> usize {
        self.series.len() + self.others.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every label set and its value, `other` ones last.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.series.iter().map(|(k, e)| (k, &e.value)).chain(self.others.iter().map(|(k, e)| (k, &e.value)))
    }
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

    #[test]
    fn odd_bytes_are_replaced_deterministically() {
        let odd = b"/tmp/bad\xff\nname\"\\\x01/x";
        let got = path_prefix(odd, 3);
        assert_eq!(got, "/tmp/bad%FF%0Aname\"\\%01/x");
        assert_eq!(path_prefix(odd, 3), got);
        assert_eq!(label_value(b"50%"), "50%25", "% itself is escaped so the mapping is one to one");
        assert_eq!(label_value("caf\u{e9}".as_bytes()), "caf\u{e9}", "valid UTF-8 is kept");
        let long = vec![b'a'; 5000];
        let v = label_value(&long);
        assert_eq!(v.len(), MAX_LABEL_BYTES);
        assert!(v.ends_with("..."));
        assert!(!path_prefix(&[b"/".as_slice(), &long].concat(), 3).contains('\n'));
    }

    fn fold(k: &(u16, String)) -> (u16, String) {
        (k.0, OTHER.to_string())
    }

    #[test]
    fn folds_least_recently_used_into_other() {
        let mut b: Budgeted<(u16, String), u64> = Budgeted::new(3, Duration::from_secs(60), fold);
        *b.get_mut(&(2, "a".to_string()), 0) += 5;
        *b.get_mut(&(2, "b".to_string()), 0) += 1;
        *b.get_mut(&(2, "a".to_string()), 1) += 1; // a is now more recent than b
        *b.get_mut(&(2, "c".to_string()), 2) += 1;
        assert_eq!((b.len(), b.folded), (3, 0), "three label sets fit a budget of three");
        // A fourth: the least recently used (b) is folded into `other`, and since
        // `other` itself takes a place, the next least recently used (a) too.
        *b.get_mut(&(2, "d".to_string()), 3) += 1;
        assert_eq!(b.len(), 3);
        assert_eq!(b.folded, 2);
        let m: HashMap<_, _> = b.iter().map(|(k, v)| (k.1.clone(), *v)).collect();
        assert_eq!(m, HashMap::from([("c".into(), 1), ("d".into(), 1), ("other".into(), 7)]));
        for i in 0..1000 {
            *b.get_mut(&(2, format!("flood{i}")), 3) += 1;
        }
        assert!(b.len() <= 3, "{}", b.len());
        let total: u64 = b.iter().map(|(_, v)| *v).sum();
        assert_eq!(total, 6 + 1 + 1 + 1 + 1000, "folding loses no count");
    }

    #[test]
    fn idle_label_sets_expire() {
        let mut b: Budgeted<(u16, String), u64> = Budgeted::new(10, Duration::from_secs(60), fold);
        *b.get_mut(&(2, "old".to_string()), 0) += 1;
        *b.get_mut(&(2, "new".to_string()), 50) += 1;
        b.expire(100);
        assert_eq!(b.iter().map(|(k, _)| k.1.as_str()).collect::<Vec<_>>(), ["new"]);
        assert_eq!(b.expired, 1);
        b.expire(111);
        assert!(b.is_empty());
        assert_eq!(b.expired, 2);
    }

    #[test]
    fn interners_share_and_collect() {
        let mut i = Interner::default();
        let a = i.intern("/tmp");
        let b = i.intern("/tmp");
        assert!(Arc::ptr_eq(&a, &b));
        drop((a, b));
        i.collect();
        assert!(i.is_empty());
        let mut c = CommInterner::default();
        let comm = *b"work\nload\0\0\0\0\0\0\0";
        assert_eq!(&*c.intern(&comm), "work%0Aload");
    }
}
