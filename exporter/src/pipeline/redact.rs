//! Path redaction: file paths can hold personal data (`/home/alice/...`,
//! `/var/mail/bob`, a customer's name in an upload directory). With
//! `--paths.redact` the path of every anomaly is redacted once, right after it
//! is resolved and before any output sees it, so the `path_prefix` label, the
//! OTLP log records (body and attributes) and `badfd trace` (table, JSON,
//! summary) all show the same redacted path and never the clear one.
//!
//! What is redacted:
//! - with `--paths.redact-under DIR` (repeatable): everything below DIR, for
//!   paths under DIR only; a component of DIR may be `*` (any one name):
//!   `/home`, `/root`, `/var/lib/kubelet/pods/*/volumes`. Other paths stay clear.
//! - without it: everything after the first `--paths.redact-keep` components
//!   (default 1) of every path: `/home/alice/x` -> `/home/<...>`.
//!
//! How (`--paths.redact`):
//! - `hash`: each redacted component becomes `#` and 13 letters of a keyed
//!   hash (HMAC-SHA256), so one name is always one hash (failures of one file
//!   still group, `/home/#x/.config` and `/home/#x/.cache` share the user)
//!   without the name being guessable from a list of names. The key is random
//!   per start unless `--paths.redact-key-file` gives one (the same hashes
//!   across restarts and nodes).
//! - `drop`: the redacted components are cut off and one `<redacted>` marks
//!   where: `/home/<redacted>`.
//!
//! A relative path, as the process passed it, is shown in clear only when the
//! absolute path it resolved to was not redacted and it has no `..` (so each of
//! its names is one of the clear names); otherwise each of its names is
//! redacted. A path that could not be resolved is redacted whole: badfd cannot
//! tell where it is.

use std::path::PathBuf;

use ring::hmac;
use serde::{Deserialize, Serialize};

use super::{
    event::{KernelDir, OpenEvent},
    resolve::{normalize, ResolvedPath},
};

/// What `drop` leaves where the redacted components were.
pub const DROPPED: &str = "<redacted>";

/// Letters of the keyed hash kept per component (26^13: 61 bits).
const HASH_LETTERS: usize = 13;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedactMode {
    /// Paths in clear.
    #[default]
    None,
    /// Each redacted component becomes a keyed hash (`/home/#k2x7...`).
    Hash,
    /// The redacted components are cut off (`/home/<redacted>`).
    Drop,
}

/// Validated redaction settings (printed by `--config.check`; the key itself never is).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RedactSettings {
    pub mode: RedactMode,
    pub under: Vec<String>,
    pub keep: usize,
    pub key_file: Option<PathBuf>,
}

impl RedactSettings {
    /// Whether the settings can be applied; an error names the config key
    /// that is wrong (`paths_redact_under`, `paths_redact_keep`).
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        for dir in &self.under {
            parse_pattern(dir).map_err(|m| ("paths_redact_under", m))?;
        }
        if self.keep > 32 {
            return Err(("paths_redact_keep", format!("{} is more than 32", self.keep)));
        }
        Ok(())
    }
}

/// One `--paths.redact-under` directory: its names, `None` for `*`.
type Pattern = Vec<Option<Vec<u8>>>;

fn parse_pattern(dir: &str) -> Result<Pattern, String> {
    if !dir.starts_with('/') {
        return Err(format!("{dir:?}: not an absolute directory (e.g. /home, /var/lib/kubelet/pods/*/volumes)"));
    }
    let mut pattern = Vec::new();
    for name in dir.split('/').filter(|c| !c.is_empty() && *c != ".") {
        match name {
            "*" => pattern.push(None),
            ".." => return Err(format!("{dir:?}: `..` is not allowed")),
            n if n.contains('*') => return Err(format!("{dir:?}: `*` must stand alone for one whole name, as in /home/*/.ssh")),
            n => pattern.push(Some(n.as_bytes().to_vec())),
        }
    }
    Ok(pattern)
}

/// Applies the redaction to anomalies; built once from [`RedactSettings`].
pub struct Redactor {
    mode: RedactMode,
    /// Empty: keep `keep` components of every path.
    patterns: Vec<Pattern>,
    keep: usize,
    key: hmac::Key,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor").field("mode", &self.mode).field("patterns", &self.patterns.len()).field("keep", &self.keep).finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RedactError {
    #[error("redaction key file {path} (--paths.redact-key-file, paths_redact_key_file): {error}")]
    KeyRead { path: PathBuf, error: std::io::Error },
    #[error("redaction key file {path} (--paths.redact-key-file, paths_redact_key_file): the key has {len} bytes; at least 16 are needed (e.g. `head -c 32 /dev/urandom > {path}`)")]
    KeyShort { path: PathBuf, len: usize },
}

impl Redactor {
    /// Paths in clear.
    pub fn off() -> Redactor {
        Redactor { mode: RedactMode::None, patterns: Vec::new(), keep: 0, key: hmac::Key::new(hmac::HMAC_SHA256, &[]) }
    }

    pub fn new(settings: &RedactSettings) -> Result<Redactor, RedactError> {
        let key = match &settings.key_file {
            Some(path) => {
                let mut bytes = std::fs::read(path).map_err(|error| RedactError::KeyRead { path: path.clone(), error })?;
                // A key written by `echo` ends in a newline that is not part of it.
                while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    bytes.pop();
                }
                if bytes.len() < 16 {
                    return Err(RedactError::KeyShort { path: path.clone(), len: bytes.len() });
                }
                bytes
            }
            None => rand::random::<[u8; 32]>().to_vec(),
        };
        Ok(Redactor {
            mode: settings.mode,
            patterns: settings.under.iter().map(|d| parse_pattern(d).expect("validated by RedactSettings::check")).collect(),
            keep: settings.keep,
            key: hmac::Key::new(hmac::HMAC_SHA256, &key),
        })
    }

    pub fn is_off(&self) -> bool {
        self.mode == RedactMode::None
    }

    /// Redacts the anomaly's paths in place: the resolved path, the path as
    /// opened, and the directory the kernel resolved it against.
    pub fn apply(&self, event: &mut OpenEvent, resolved: &mut ResolvedPath) {
        if self.is_off() {
            return;
        }
        let absolute = resolved.path.first() == Some(&b'/');
        let redacted = if absolute { self.redact_absolute(&resolved.path) } else { Some(self.redact_all(&resolved.path)) };
        let was_redacted = redacted.is_some();
        if let Some(r) = redacted {
            resolved.path = r;
        }
        if event.path.first() == Some(&b'/') {
            // Resolved as given: the same file, and `..` must not hide a
            // redacted directory (`/tmp/../home/alice`).
            if absolute && (was_redacted || normalize(&event.path) != event.path) {
                event.path = resolved.path.clone();
            } else if !absolute {
                event.path = self.redact_all(&event.path);
            }
        } else if was_redacted || !absolute || event.path.split(|&b| b == b'/').any(|c| c == b"..") {
            event.path = self.redact_all(&event.path);
        }
        if let KernelDir::Resolved(dir) = &mut event.kernel_dir {
            if let Some(r) = self.redact_absolute(dir) {
                *dir = r;
            }
        }
    }

    /// The redacted form of a normalized absolute path, or `None` when nothing
    /// in it is to be redacted.
    pub fn redact_absolute(&self, path: &[u8]) -> Option<Vec<u8>> {
        let names: Vec<&[u8]> = path.split(|&b| b == b'/').filter(|c| !c.is_empty()).collect();
        let clear = if self.patterns.is_empty() {
            self.keep
        } else {
            self.patterns
                .iter()
                .filter(|p| p.len() <= names.len() && p.iter().zip(&names).all(|(want, name)| want.as_deref().is_none_or(|w| w == *name)))
                .map(Vec::len)
                .min()?
        };
        if names.len() <= clear {
            return None;
        }
        let mut out = Vec::with_capacity(path.len());
        for name in &names[..clear] {
            out.push(b'/');
            out.extend_from_slice(name);
        }
        self.push_redacted(&mut out, &names[clear..]);
        Some(out)
    }

    /// Every name of `path` redacted (`.` and `..` kept, as they name nothing).
    fn redact_all(&self, path: &[u8]) -> Vec<u8> {
        let absolute = path.first() == Some(&b'/');
        let names: Vec<&[u8]> = path.split(|&b| b == b'/').filter(|c| !c.is_empty()).collect();
        let mut out = Vec::with_capacity(path.len());
        if absolute {
            self.push_redacted(&mut out, &names);
        } else {
            self.push_redacted(&mut out, &names);
            if out.first() == Some(&b'/') {
                out.remove(0);
            }
        }
        if out.is_empty() {
            out.push(if absolute { b'/' } else { b'.' });
        }
        out
    }

    fn push_redacted(&self, out: &mut Vec<u8>, names: &[&[u8]]) {
        match self.mode {
            RedactMode::None => {
                for name in names {
                    out.push(b'/');
                    out.extend_from_slice(name);
                }
            }
            RedactMode::Drop => {
                if !names.is_empty() {
                    out.push(b'/');
                    out.extend_from_slice(DROPPED.as_bytes());
                }
            }
            RedactMode::Hash => {
                for name in names {
                    out.push(b'/');
                    if *name == b"." || *name == b".." {
                        out.extend_from_slice(name);
                    } else {
                        self.push_hash(out, name);
                    }
                }
            }
        }
    }

    /// `#` and lowercase letters only: no digits, so the `path_prefix`
    /// templating (which replaces digit runs and hex ids) keeps it whole.
    fn push_hash(&self, out: &mut Vec<u8>, name: &[u8]) {
        let tag = hmac::sign(&self.key, name);
        let mut value = u64::from_be_bytes(tag.as_ref()[..8].try_into().expect("HMAC-SHA256 has 32 bytes"));
        out.push(b'#');
        for _ in 0..HASH_LETTERS {
            out.push(b'a' + (value % 26) as u8);
            value /= 26;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::resolve::Resolution;

    fn redactor(mode: RedactMode, under: &[&str], keep: usize) -> Redactor {
        let settings = RedactSettings { mode, under: under.iter().map(|s| s.to_string()).collect(), keep, key_file: None };
        Redactor::new(&settings).unwrap()
    }

    fn apply(r: &Redactor, opened: &[u8], resolved: &[u8]) -> (String, String) {
        let mut event = OpenEvent { path: opened.to_vec(), ..Default::default() };
        let how = if resolved.first() == Some(&b'/') { Resolution::Proc } else { Resolution::Unresolved };
        let mut resolved = ResolvedPath { path: resolved.to_vec(), how };
        r.apply(&mut event, &mut resolved);
        (String::from_utf8(event.path).unwrap(), String::from_utf8(resolved.path).unwrap())
    }

    #[test]
    fn drop_keeps_what_is_above_the_directories_named() {
        let r = redactor(RedactMode::Drop, &["/home", "/var/lib/kubelet/pods/*/volumes"], 1);
        assert_eq!(r.redact_absolute(b"/home/alice/.ssh/id_rsa").unwrap(), b"/home/<redacted>");
        assert_eq!(r.redact_absolute(b"/home"), None, "nothing below");
        assert_eq!(r.redact_absolute(b"/etc/passwd"), None, "not under a pattern");
        assert_eq!(r.redact_absolute(b"/homer/x"), None, "whole names only");
        assert_eq!(
            r.redact_absolute(b"/var/lib/kubelet/pods/0a1b/volumes/secret/token").unwrap(),
            b"/var/lib/kubelet/pods/0a1b/volumes/<redacted>"
        );
        assert_eq!(r.redact_absolute(b"/var/lib/kubelet/pods/0a1b/etc-hosts"), None);
        // The opened path follows its resolved path.
        assert_eq!(apply(&r, b"/home/alice/notes", b"/home/alice/notes"), ("/home/<redacted>".into(), "/home/<redacted>".into()));
        assert_eq!(apply(&r, b"notes", b"/home/alice/notes"), ("<redacted>".into(), "/home/<redacted>".into()));
        assert_eq!(apply(&r, b"lib/x.so", b"/usr/lib/x.so"), ("lib/x.so".into(), "/usr/lib/x.so".into()));
        // `..` hides nothing: /tmp/../home/alice is /home/alice.
        assert_eq!(apply(&r, b"/tmp/../home/alice/x", b"/home/alice/x").0, "/home/<redacted>");
        assert_eq!(apply(&r, b"/home/alice/../../etc/passwd", b"/etc/passwd").0, "/etc/passwd");
        assert_eq!(apply(&r, b"../alice/x", b"/etc/x").0, "<redacted>", "`..` could climb out of a redacted directory");
        // Unresolved: where it is cannot be told, so all of it goes.
        assert_eq!(apply(&r, b"alice/x", b"alice/x"), ("<redacted>".into(), "<redacted>".into()));
    }

    #[test]
    fn hash_is_keyed_stable_and_per_name() {
        let r = redactor(RedactMode::Hash, &[], 1);
        let a = String::from_utf8(r.redact_absolute(b"/home/alice/.config").unwrap()).unwrap();
        let b = String::from_utf8(r.redact_absolute(b"/home/alice/.cache").unwrap()).unwrap();
        let parts: Vec<&str> = a.split('/').collect();
        assert_eq!(parts[1], "home");
        assert!(parts[2].starts_with('#') && parts[2].len() == 1 + HASH_LETTERS, "{a}");
        assert!(parts[2][1..].bytes().all(|b| b.is_ascii_lowercase()), "{a}");
        // Label templating leaves it whole.
        assert_eq!(crate::pipeline::labels::path_prefix(a.as_bytes(), 2), format!("/home/{}", parts[2]));
        assert!(!a.contains("alice") && !a.contains("config"), "{a}");
        assert_eq!(a.split('/').nth(2), b.split('/').nth(2), "one name, one hash");
        assert_ne!(a, b);
        assert_eq!(r.redact_absolute(b"/home/alice/.config").unwrap(), a.as_bytes(), "deterministic");
        // Another key, other hashes; the same key file, the same hashes.
        assert_ne!(redactor(RedactMode::Hash, &[], 1).redact_absolute(b"/home/alice").unwrap(), r.redact_absolute(b"/home/alice").unwrap());
        let dir = std::env::temp_dir().join(format!("badfd-redact-key-{}", std::process::id()));
        std::fs::write(&dir, "0123456789abcdef0123\n").unwrap();
        let keyed = |_| {
            let s = RedactSettings { mode: RedactMode::Hash, keep: 1, key_file: Some(dir.clone()), ..Default::default() };
            Redactor::new(&s).unwrap().redact_absolute(b"/home/alice").unwrap()
        };
        assert_eq!(keyed(1), keyed(2));
        std::fs::write(&dir, "short\n").unwrap();
        let s = RedactSettings { mode: RedactMode::Hash, key_file: Some(dir.clone()), ..Default::default() };
        let e = Redactor::new(&s).unwrap_err().to_string();
        assert!(e.contains("at least 16") && !e.contains('\n'), "{e}");
        std::fs::remove_file(&dir).unwrap();
        // keep: the first N names stay.
        assert_eq!(redactor(RedactMode::Drop, &[], 2).redact_absolute(b"/srv/app/user/x").unwrap(), b"/srv/app/<redacted>");
        assert_eq!(redactor(RedactMode::Drop, &[], 0).redact_absolute(b"/srv/app").unwrap(), b"/<redacted>");
    }

    #[test]
    fn off_changes_nothing() {
        let r = Redactor::off();
        assert_eq!(apply(&r, b"x/../alice", b"alice"), ("x/../alice".into(), "alice".into()));
    }
}
