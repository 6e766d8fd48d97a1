//! `--paths.redact*`: the redaction flags `serve` and `trace` share (`serve`
//! also reads them from its config file), resolved into the plain
//! [`RedactSettings`] the pipeline's redaction stage takes.

use std::path::PathBuf;

use clap::{builder::PossibleValue, ValueEnum};

use crate::pipeline::redact::{RedactMode, RedactSettings};

/// The redaction flags.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct RedactArgs {
    /// Redact personal parts of file paths in every output (labels, OTLP log
    /// records, trace): `none`, `hash` (each redacted name becomes a keyed hash)
    /// or `drop` (the redacted part is cut off). [default: none]
    #[arg(long = "paths.redact", env = "BADFD_PATHS_REDACT", value_enum, value_name = "MODE")]
    pub mode: Option<RedactMode>,
    /// Redact only below this directory (repeatable; comma-separated in the
    /// environment); `*` stands for any one name: /home, /root,
    /// /var/lib/kubelet/pods/*/volumes. Without it every path is redacted after
    /// --paths.redact-keep components.
    #[arg(long = "paths.redact-under", env = "BADFD_PATHS_REDACT_UNDER", value_delimiter = ',', value_name = "DIR")]
    pub under: Vec<String>,
    /// Components kept in clear at the start of every path when no
    /// --paths.redact-under is given. [default: 1]
    #[arg(long = "paths.redact-keep", env = "BADFD_PATHS_REDACT_KEEP", value_name = "N")]
    pub keep: Option<usize>,
    /// File holding the secret key of `hash` (at least 16 bytes), so that hashes
    /// agree across restarts and nodes. [default: a random key per start]
    #[arg(long = "paths.redact-key-file", env = "BADFD_PATHS_REDACT_KEY_FILE", value_name = "FILE")]
    pub key_file: Option<PathBuf>,
}

/// The modes as `--paths.redact` offers them (the library type knows no clap).
impl ValueEnum for RedactMode {
    fn value_variants<'a>() -> &'a [Self] {
        &[RedactMode::None, RedactMode::Hash, RedactMode::Drop]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            RedactMode::None => PossibleValue::new("none").help("Paths in clear"),
            RedactMode::Hash => PossibleValue::new("hash").help("Each redacted component becomes a keyed hash (`/home/#k2x7...`)"),
            RedactMode::Drop => PossibleValue::new("drop").help("The redacted components are cut off (`/home/<redacted>`)"),
        })
    }
}

/// The config file's redaction keys (`paths_redact`, `paths_redact_under`, ...).
#[derive(Clone, Debug, Default)]
pub struct RedactFile {
    pub mode: Option<RedactMode>,
    pub under: Option<Vec<String>>,
    pub keep: Option<usize>,
    pub key_file: Option<PathBuf>,
}

impl RedactArgs {
    /// Flags over the file's values (`under` from flags replaces the file's
    /// list) over defaults; an error names the file key that is wrong.
    pub fn resolve(&self, file: RedactFile) -> Result<RedactSettings, (&'static str, String)> {
        let settings = RedactSettings {
            mode: self.mode.or(file.mode).unwrap_or_default(),
            under: if self.under.is_empty() { file.under.unwrap_or_default() } else { self.under.clone() },
            keep: self.keep.or(file.keep).unwrap_or(1),
            key_file: self.key_file.clone().or(file.key_file),
        };
        settings.check()?;
        Ok(settings)
    }

    /// The flags alone (`trace` has no file); an error names the flag.
    pub fn settings(&self) -> anyhow::Result<RedactSettings> {
        self.resolve(RedactFile::default())
            .map_err(|(key, message)| anyhow::anyhow!("--{}: {message}", key.replacen('_', ".", 1).replace('_', "-")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_patterns_are_one_clear_line() {
        for (bad, says) in [("home", "absolute"), ("/home/a*", "stand alone"), ("/home/../root", "`..`")] {
            let args = RedactArgs { under: vec![bad.into()], ..Default::default() };
            let (key, message) = args.resolve(RedactFile::default()).unwrap_err();
            assert_eq!(key, "paths_redact_under");
            assert!(message.contains(says), "{message}");
        }
        let args = RedactArgs { keep: Some(40), ..Default::default() };
        assert_eq!(args.resolve(RedactFile::default()).unwrap_err().0, "paths_redact_keep");
        // Flags replace the file's list.
        let args = RedactArgs { under: vec!["/root".into()], ..Default::default() };
        let file = RedactFile { mode: Some(RedactMode::Hash), under: Some(vec!["/home".into()]), ..Default::default() };
        let s = args.resolve(file).unwrap();
        assert_eq!((s.mode, s.under, s.keep), (RedactMode::Hash, vec!["/root".to_string()], 1));
        // trace names the flag.
        let e = RedactArgs { under: vec!["home".into()], ..Default::default() }.settings().unwrap_err().to_string();
        assert!(e.starts_with("--paths.redact-under: \"home\""), "{e}");
    }
}
