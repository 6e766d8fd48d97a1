//! The classic Prometheus text format (0.0.4), from the OpenMetrics text.

use std::{borrow::Cow, fmt::Write as _};

/// Rewrites prometheus-client's OpenMetrics text as the classic text format
/// (0.0.4): counter families are named with their `_total` suffix, `info`
/// families become gauges named `..._info`, `unknown` becomes `untyped`,
/// `# UNIT`, `# EOF`, `_created` samples and exemplars go.
pub fn openmetrics_to_classic(text: &str) -> String {
    use std::collections::HashMap;
    // Family name -> type, from the TYPE lines (HELP comes before TYPE).
    let mut types: HashMap<&str, &str> = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((name, t)) = rest.split_once(' ') {
                types.insert(name, t);
            }
        }
    }
    let classic_name = |name: &str| -> Cow<'static, str> {
        match types.get(name).copied() {
            Some("counter") => format!("{name}_total").into(),
            Some("info") => format!("{name}_info").into(),
            _ => name.to_string().into(),
        }
    };
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let _ = writeln!(out, "# HELP {} {help}", classic_name(name));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, t) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let t = match t {
                "counter" => "counter",
                "gauge" | "info" | "stateset" => "gauge",
                "histogram" => "histogram",
                "summary" => "summary",
                _ => "untyped",
            };
            let _ = writeln!(out, "# TYPE {} {t}", classic_name(name));
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        if line[..name_end].ends_with("_created") {
            continue;
        }
        // Only a line with a `#` can carry an exemplar (memchr, not a parse).
        out.push_str(if line.as_bytes().contains(&b'#') { strip_exemplar(line) } else { line });
        out.push('\n');
    }
    out
}

/// A sample line without its ` # {...} value` exemplar (outside label values).
fn strip_exemplar(line: &str) -> &str {
    let bytes = line.as_bytes();
    let mut in_value = false;
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate() {
        if in_value {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_value = false,
                _ => {}
            }
        } else if b == b'"' {
            in_value = true;
        } else if b == b'#' && i > 0 && bytes[i - 1] == b' ' {
            return line[..i - 1].trim_end();
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_rendering_renames_counters_and_infos() {
        let om = "# HELP badfd_opens Opens.\n# TYPE badfd_opens counter\nbadfd_opens_total{syscall=\"open\"} 3\nbadfd_opens_created 1.7e9\n\
                  # HELP badfd_build The build.\n# TYPE badfd_build info\nbadfd_build_info{version=\"0.1.0\"} 1\n\
                  # HELP x_seconds Time.\n# TYPE x_seconds histogram\n# UNIT x_seconds seconds\nx_seconds_bucket{le=\"+Inf\",p=\"a # b\"} 2 # {trace_id=\"1\"} 0.5\n\
                  # HELP u What.\n# TYPE u unknown\nu 1\n# EOF\n";
        let classic = openmetrics_to_classic(om);
        assert_eq!(
            classic,
            "# HELP badfd_opens_total Opens.\n# TYPE badfd_opens_total counter\nbadfd_opens_total{syscall=\"open\"} 3\n\
             # HELP badfd_build_info The build.\n# TYPE badfd_build_info gauge\nbadfd_build_info{version=\"0.1.0\"} 1\n\
             # HELP x_seconds Time.\n# TYPE x_seconds histogram\nx_seconds_bucket{le=\"+Inf\",p=\"a # b\"} 2\n\
             # HELP u What.\n# TYPE u untyped\nu 1\n"
        );
    }
}
