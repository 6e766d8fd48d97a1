//! badfd's own log, on stderr, as exporter-toolkit writes it: `logfmt`
//! (`time=… level=info source=… msg="…" key=value`) or `json` (one object
//! per line), never with terminal colours: journald, `kubectl logs` and log
//! shippers read it as it is. Control characters in a message or value (a
//! hostile file name, say) are escaped, so no ESC byte reaches a terminal.

use std::fmt::Write as _;

use tracing::{
    field::{Field, Visit},
    Event, Level, Subscriber,
};
use tracing_subscriber::{
    fmt::{format::Writer, FmtContext, FormatEvent, FormatFields},
    registry::LookupSpan,
};

/// `--log.format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// key=value pairs, one line per record.
    #[default]
    Logfmt,
    /// One JSON object per line.
    Json,
}

/// `--log.level`: a record of this level or above is logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

static INSTALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Installs the global subscriber: `filter` in tracing's directive syntax
/// (`info`, `badfd=debug,aya=warn`), records from the `log` crate (aya's)
/// included.
pub fn init(filter: &str, format: LogFormat) -> Result<(), tracing_subscriber::filter::ParseError> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(filter)?)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .event_format(Format(format))
        .init();
    INSTALLED.store(true, std::sync::atomic::Ordering::Release);
    Ok(())
}

/// Whether [`init`] has installed the subscriber.
pub fn installed() -> bool {
    INSTALLED.load(std::sync::atomic::Ordering::Acquire)
}

/// `text` with each control character but none other escaped (`\u{1b}`):
/// for the one line of a fatal error, which may quote a hostile name.
pub fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c.is_control() {
            true => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            false => out.push(c),
        }
    }
    out
}

/// A field's value: text, or a number or boolean (bare in JSON).
enum Value {
    Text(String),
    Literal(String),
}

/// The fields of one record: the message apart, and `log.target` (the real
/// target of a record from the `log` crate) instead of the bridge's own.
#[derive(Default)]
struct Fields {
    message: String,
    log_target: Option<String>,
    rest: Vec<(&'static str, Value)>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: Value) {
        let text = || match &value {
            Value::Text(t) | Value::Literal(t) => t.clone(),
        };
        match field.name() {
            "message" => self.message = text(),
            "log.target" => self.log_target = Some(text()),
            // The rest of the log bridge's fields (module, file, line).
            name if name.starts_with("log.") => {}
            name => self.rest.push((name, value)),
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Value::Text(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::Text(value.to_string()));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::Text(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::Literal(value.to_string()));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::Literal(value.to_string()));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Literal(value.to_string()));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        match value.is_finite() {
            true => self.put(field, Value::Literal(value.to_string())),
            false => self.put(field, Value::Text(value.to_string())),
        }
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    }
}

/// A logfmt value: bare when it is one plain word, else quoted with `"`,
/// `\` and every control character escaped.
fn logfmt_value(out: &mut String, value: &str) {
    let plain = !value.is_empty() && value.chars().all(|c| !(c.is_control() || c.is_whitespace() || c == '"' || c == '=' || c == '\\'));
    if plain {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// One record as a line (without the newline).
fn render(format: LogFormat, time: &str, level: &Level, source: &str, fields: &Fields) -> String {
    let mut out = String::with_capacity(128);
    match format {
        LogFormat::Logfmt => {
            let _ = write!(out, "time={time} level={} source=", level_name(level));
            logfmt_value(&mut out, source);
            out.push_str(" msg=");
            logfmt_value(&mut out, &fields.message);
            for (key, value) in &fields.rest {
                let _ = write!(out, " {key}=");
                match value {
                    Value::Text(t) | Value::Literal(t) => logfmt_value(&mut out, t),
                }
            }
        }
        LogFormat::Json => {
            let string = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
            let _ = write!(
                out,
                "{{\"time\":{},\"level\":\"{}\",\"source\":{},\"msg\":{}",
                string(time),
                level_name(level),
                string(source),
                string(&fields.message)
            );
            for (key, value) in &fields.rest {
                let value = match value {
                    Value::Text(t) => string(t),
                    Value::Literal(l) => l.clone(),
                };
                let _ = write!(out, ",{}:{value}", string(key));
            }
            out.push('}');
        }
    }
    out
}

struct Format(LogFormat);

impl<S, N> FormatEvent<S, N> for Format
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let metadata = event.metadata();
        let source = fields.log_target.clone().unwrap_or_else(|| metadata.target().to_string());
        writeln!(writer, "{}", render(self.0, &time, metadata.level(), &source, &fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(message: &str, rest: Vec<(&'static str, Value)>) -> Fields {
        Fields { message: message.into(), log_target: None, rest }
    }

    #[test]
    fn logfmt_quotes_and_escapes() {
        let f = fields(
            "reload failed: slow_threshold: \"soon\"",
            vec![("address", Value::Text("[::]:19435".into())), ("path", Value::Text("/tmp/a\x1b[31mb c".into())), ("n", Value::Literal("3".into()))],
        );
        let line = render(LogFormat::Logfmt, "2026-01-02T03:04:05.678Z", &Level::WARN, "badfd::cmd::serve", &f);
        assert_eq!(
            line,
            "time=2026-01-02T03:04:05.678Z level=warn source=badfd::cmd::serve msg=\"reload failed: slow_threshold: \\\"soon\\\"\" \
             address=[::]:19435 path=\"/tmp/a\\u{1b}[31mb c\" n=3"
        );
        assert!(!line.contains('\x1b'));
        let mut empty = String::new();
        logfmt_value(&mut empty, "");
        assert_eq!(empty, "\"\"");
        assert_eq!(escape_controls("config file /tmp/a\x1b[31m.toml: No such file"), "config file /tmp/a\\u{1b}[31m.toml: No such file");
    }

    #[test]
    fn json_is_one_object() {
        let f = fields("attached", vec![("mode", Value::Text("tracepoint".into())), ("n", Value::Literal("3".into())), ("ok", Value::Literal("true".into())), ("odd", Value::Text("a\nb\x1b".into()))]);
        let line = render(LogFormat::Json, "2026-01-02T03:04:05.678Z", &Level::INFO, "badfd", &f);
        assert!(!line.contains('\n') && !line.contains('\x1b'), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"time": "2026-01-02T03:04:05.678Z", "level": "info", "source": "badfd", "msg": "attached", "mode": "tracepoint", "n": 3, "ok": true, "odd": "a\nb\u{1b}"})
        );
    }
}
