//! Label values from raw bytes (a `comm`, a path): deterministic, bounded in
//! length, and never able to break the exposition.

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

pub(super) fn cut(s: &mut String) {
    if s.len() > MAX_LABEL_BYTES {
        let mut end = MAX_LABEL_BYTES - 3;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::labels::path_prefix;

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
}
