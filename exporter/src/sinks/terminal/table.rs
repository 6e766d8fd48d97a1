//! The live table: one fixed-width line per anomaly.
//!
//! ```text
//! TIME             PID COMM            LATENCY RESULT                           FILE
//! 23:14:52.123    4242 cat              12.3µs ENOENT No such file or directory …/deep/name.conf
//! ```
//!
//! Column widths depend only on the terminal width, never on the rows, so the
//! columns line up from the first line on.

use chrono::TimeZone;

use super::text;
use crate::pipeline::Anomaly;

const TIME_WIDTH: usize = 12;
/// pid_max is at most 4194304: seven digits.
const PID_WIDTH: usize = 7;
/// The kernel's comm is at most 15 bytes.
const COMM_WIDTH: usize = 15;
const LATENCY_WIDTH: usize = 7;
/// `ENOENT No such file or directory` fits; longer meanings are cut.
const RESULT_WIDE: usize = 32;
/// The longest errno name (`ENOTRECOVERABLE`).
const RESULT_NARROW: usize = 15;
/// FILE keeps at least this many columns; the table may wrap on a terminal
/// narrower than the other columns plus this.
const FILE_MIN: usize = 16;
/// Below this much room for FILE, RESULT drops the errno's meaning.
const FILE_COMFORTABLE: usize = 30;

/// Everything the rendering depends on besides the anomaly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableStyle {
    /// Terminal width in columns; `None` (not a terminal) or `wide` never
    /// elides paths.
    pub width: Option<usize>,
    /// `--wide`: full paths even on a terminal.
    pub wide: bool,
    /// ANSI colours.
    pub color: bool,
}

/// Column widths for a style.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    result: usize,
    /// None: the path is printed whole.
    file: Option<usize>,
}

const FIXED: usize = TIME_WIDTH + 1 + PID_WIDTH + 1 + COMM_WIDTH + 1 + LATENCY_WIDTH + 1;

impl TableStyle {
    fn layout(&self) -> Layout {
        match self.width {
            Some(width) if !self.wide => {
                let room = width.saturating_sub(FIXED + 1);
                let result = room.saturating_sub(FILE_COMFORTABLE).clamp(RESULT_NARROW, RESULT_WIDE);
                Layout { result, file: Some(room.saturating_sub(result).max(FILE_MIN)) }
            }
            _ => Layout { result: RESULT_WIDE, file: None },
        }
    }
}

mod ansi {
    pub const RESET: &str = "\x1b[0m";
    pub const BOLD: &str = "\x1b[1m";
    pub const RED: &str = "\x1b[31m";
    pub const YELLOW: &str = "\x1b[33m";
    pub const DIM: &str = "\x1b[2m";
}

fn paint(s: &str, code: &str, color: bool) -> String {
    if color && !s.is_empty() {
        format!("{code}{s}{}", ansi::RESET)
    } else {
        s.to_string()
    }
}

/// The header line (no trailing newline).
pub fn header(style: &TableStyle) -> String {
    let layout = style.layout();
    let line = format!(
        "{} {} {} {} {} FILE",
        text::pad_right("TIME", TIME_WIDTH),
        text::pad_left("PID", PID_WIDTH),
        text::pad_right("COMM", COMM_WIDTH),
        text::pad_left("LATENCY", LATENCY_WIDTH),
        text::pad_right("RESULT", layout.result),
    );
    paint(&line, ansi::BOLD, style.color)
}

/// One row (no trailing newline). `tz` gives the clock time shown: the
/// local zone live, a fixed one in tests.
pub fn row<Tz: TimeZone>(a: &Anomaly, tz: &Tz, style: &TableStyle) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let layout = style.layout();
    let e = &a.event;
    let time = tz.timestamp_nanos(a.wall_ns.min(i64::MAX as u64) as i64).format("%H:%M:%S%.3f").to_string();
    let comm = text::truncate_end(&text::escape_for_terminal(e.comm_bytes()), COMM_WIDTH);
    let latency = text::pad_left(&e.latency_ns().map(text::human_latency).unwrap_or_else(|| "-".into()), LATENCY_WIDTH);
    let latency = if e.slow() { paint(&latency, ansi::YELLOW, style.color) } else { latency };

    let probe = a.found_later == Some(true);
    let result = match e.errno() {
        // A search path's probe (shown with --all-failures only): marked, dim.
        Some(errno) if probe => {
            let name = crate::errno::name(errno);
            let word = if layout.result >= name.len() + 19 { "probe, found later" } else { "probe" };
            let cut = text::pad_right(&text::truncate_end(&format!("{name} {word}"), layout.result), layout.result);
            paint(&cut, ansi::DIM, style.color)
        }
        Some(errno) => {
            let name = crate::errno::name(errno);
            let full = format!("{name} {}", crate::errno::meaning(errno));
            let cut = text::pad_right(&text::truncate_end(&full, layout.result), layout.result);
            // Colour the name only; the meaning stays plain.
            match cut.strip_prefix(name) {
                Some(rest) => format!("{}{rest}", paint(name, ansi::RED, style.color)),
                None => paint(&cut, ansi::RED, style.color),
            }
        }
        None => {
            let word = if e.slow() { "slow" } else { "ok" };
            let padded = text::pad_right(word, layout.result);
            if e.slow() { paint(&padded, ansi::YELLOW, style.color) } else { padded }
        }
    };

    let mut path = text::escape_for_terminal(&a.resolved.path);
    if e.path_truncated() {
        path.push('…');
    }
    if e.path_unreadable() {
        path = "(path unreadable)".to_string();
    }
    // A failed exec says so after its path (the table has no syscall column).
    let exec = match e.syscall.is_exec() {
        true => format!(" [{}]", e.syscall.name()),
        false => String::new(),
    };
    let file = match layout.file {
        Some(width) => text::elide_front(&path, width.saturating_sub(exec.len()).max(1)),
        None => path,
    };
    let file = if probe { paint(&file, ansi::DIM, style.color) } else { paint_path(&file, style.color) };

    format!(
        "{} {} {} {} {} {}",
        text::pad_right(&time, TIME_WIDTH),
        text::pad_left(&e.pid.to_string(), PID_WIDTH),
        text::pad_right(&comm, COMM_WIDTH),
        latency,
        result,
        file,
    ) + &paint(&exec, ansi::DIM, style.color)
}

/// The directory part dim, the name plain: the eye goes to the name.
fn paint_path(path: &str, color: bool) -> String {
    match path.rfind('/') {
        Some(slash) if color && slash + 1 < path.len() => {
            format!("{}{}", paint(&path[..=slash], ansi::DIM, true), &path[slash + 1..])
        }
        _ => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::terminal::tests::anomaly;

    #[test]
    fn layout_gives_file_the_room_left() {
        let narrow = TableStyle { width: Some(80), wide: false, color: false };
        assert_eq!(narrow.layout(), Layout { result: RESULT_NARROW, file: Some(80 - FIXED - 1 - RESULT_NARROW) });
        let wide_term = TableStyle { width: Some(200), ..narrow };
        assert_eq!(wide_term.layout(), Layout { result: RESULT_WIDE, file: Some(200 - FIXED - 1 - RESULT_WIDE) });
        let tiny = TableStyle { width: Some(30), ..narrow };
        assert_eq!(tiny.layout().file, Some(FILE_MIN));
        assert_eq!(TableStyle { wide: true, ..narrow }.layout().file, None);
        assert_eq!(TableStyle { width: None, ..narrow }.layout().file, None);
    }

    #[test]
    fn every_row_fits_the_terminal() {
        let long = format!("/{}/name.conf", "d".repeat(300));
        for width in 70..160 {
            let style = TableStyle { width: Some(width), wide: false, color: false };
            let line = row(&anomaly(long.as_bytes(), -13, 1_500, false), &chrono::Utc, &style);
            let used = text::display_width(&line);
            assert!(used <= width.max(FIXED + 1 + RESULT_NARROW + 1 + FILE_MIN), "{width}: {used} {line}");
            assert!(line.ends_with("/name.conf") || line.ends_with("name.conf"), "{line}");
        }
    }

    #[test]
    fn colour_codes_only_when_asked() {
        let a = anomaly(b"/etc/x", -2, 1_000, false);
        let plain = row(&a, &chrono::Utc, &TableStyle { width: Some(120), wide: false, color: false });
        assert!(!plain.contains('\x1b'));
        let coloured = row(&a, &chrono::Utc, &TableStyle { width: Some(120), wide: false, color: true });
        assert!(coloured.contains("\x1b[31mENOENT\x1b[0m"), "{coloured:?}");
        assert!(coloured.contains("\x1b[2m/etc/\x1b[0mx"), "{coloured:?}");
    }

    #[test]
    fn a_failed_exec_says_so() {
        let mut a = anomaly(b"/opt/x/script", -2, 1_000, false);
        a.event.syscall = exporter_common::Syscall::Execve;
        let line = row(&a, &chrono::Utc, &TableStyle { width: None, wide: false, color: false });
        assert!(line.ends_with(" /opt/x/script [execve]"), "{line}");
        let long = format!("/{}/tool", "d".repeat(300));
        let mut a = anomaly(long.as_bytes(), -2, 1_000, false);
        a.event.syscall = exporter_common::Syscall::Execveat;
        let line = row(&a, &chrono::Utc, &TableStyle { width: Some(100), wide: false, color: false });
        assert!(text::display_width(&line) <= 100 && line.ends_with("/tool [execveat]"), "{line}");
    }

    #[test]
    fn a_probe_found_later_is_marked() {
        let mut a = anomaly(b"/usr/lib/locale/C.UTF-8/LC_CTYPE", -2, 1_000, false);
        a.found_later = Some(true);
        let wide = row(&a, &chrono::Utc, &TableStyle { width: None, wide: false, color: false });
        assert!(wide.contains(" ENOENT probe, found later "), "{wide}");
        let narrow = row(&a, &chrono::Utc, &TableStyle { width: Some(80), wide: false, color: false });
        assert!(narrow.contains(" ENOENT probe "), "{narrow}");
        let coloured = row(&a, &chrono::Utc, &TableStyle { width: None, wide: false, color: true });
        assert!(coloured.contains("\x1b[2mENOENT probe, found later"), "{coloured:?}");
        a.found_later = Some(false);
        let plain = row(&a, &chrono::Utc, &TableStyle { width: None, wide: false, color: false });
        assert!(plain.contains(" ENOENT No such file or directory "), "{plain}");
    }
}
