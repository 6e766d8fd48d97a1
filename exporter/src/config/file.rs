//! The TOML config file of `badfd serve` (`--config.file`): the flags' keys in
//! snake_case, read at start and on every SIGHUP.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{redact::RedactFile, settings::SettingsError};
use crate::pipeline::redact::RedactMode;

/// The config file: the same keys as the flags, snake_case.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    pub slow_threshold: Option<String>,
    pub failures_only: Option<bool>,
    pub filter_pid: Option<u32>,
    pub filter_uid: Option<u32>,
    pub path_prefix_depth: Option<usize>,
    pub max_label_sets: Option<usize>,
    pub label_set_ttl: Option<String>,
    /// One address or a list (`listen_address = [":19435", "[::1]:9000"]`).
    #[serde(default, deserialize_with = "one_or_many")]
    pub listen_address: Option<Vec<String>>,
    pub filter_cgroup: Option<Vec<PathBuf>>,
    pub filter_cgroup_ignore: Option<Vec<PathBuf>>,
    pub container_labels: Option<bool>,
    pub kubernetes_pod_metadata: Option<bool>,
    pub web_config_file: Option<PathBuf>,
    pub paths_redact: Option<RedactMode>,
    pub paths_redact_under: Option<Vec<String>>,
    pub paths_redact_keep: Option<usize>,
    pub paths_redact_key_file: Option<PathBuf>,
    pub source_rate: Option<u32>,
    pub found_later_window: Option<String>,
}

impl FileSettings {
    /// The file at `path`; an error is one line naming the line and the key.
    pub fn read(path: &Path) -> Result<FileSettings, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|error| SettingsError::Read { path: path.into(), error })?;
        toml::from_str(&text).map_err(|e| SettingsError::Parse { path: path.into(), message: toml_error_line(&text, &e) })
    }

    /// Its redaction keys.
    pub fn redact(&self) -> RedactFile {
        RedactFile {
            mode: self.paths_redact,
            under: self.paths_redact_under.clone(),
            keep: self.paths_redact_keep,
            key_file: self.paths_redact_key_file.clone(),
        }
    }
}

/// A TOML error as one line that names the line and the key: `line 2:
/// failures_only: invalid type: string "yes", expected a boolean` (the
/// library's own rendering draws the line with a caret, over several lines).
fn toml_error_line(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim().replace('\n', " ");
    let Some(span) = error.span() else { return message };
    let start = span.start.min(text.len());
    let line_number = text[..start].matches('\n').count() + 1;
    let line = text.lines().nth(line_number - 1).unwrap_or("");
    let key = line.split_once('=').map(|(k, _)| k.trim()).filter(|k| !k.is_empty() && !k.starts_with('['));
    match key {
        Some(key) if !message.contains(&format!("`{key}`")) => format!("line {line_number}: {key}: {message}"),
        _ => format!("line {line_number}: {message}"),
    }
}

/// A string or a list of strings, as a list.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string or a list of strings")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Vec<String>, E> {
            Ok(vec![v.to_string()])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut all = Vec::new();
            while let Some(s) = seq.next_element::<String>()? {
                all.push(s);
            }
            Ok(all)
        }
    }
    d.deserialize_any(Visitor).map(Some)
}
