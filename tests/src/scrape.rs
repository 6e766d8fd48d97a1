//! Expositions parsed into samples, to assert on.

/// One sample of an exposition.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed exposition (OpenMetrics or classic text).
#[derive(Clone, Debug)]
pub struct Scrape {
    pub samples: Vec<Sample>,
}

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let mut samples = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let (name, rest) = match line.find(['{', ' ']) {
                Some(i) => line.split_at(i),
                None => panic!("sample line without value: {line:?}"),
            };
            let mut labels = std::collections::BTreeMap::new();
            let mut rest = rest;
            if let Some(r) = rest.strip_prefix('{') {
                let bytes = r.as_bytes();
                let mut i = 0;
                loop {
                    match bytes[i] {
                        b'}' => {
                            rest = &r[i + 1..];
                            break;
                        }
                        b',' => {
                            i += 1;
                            continue;
                        }
                        _ => {}
                    }
                    let eq = i + r[i..].find('=').expect("label =");
                    let key = r[i..eq].to_string();
                    assert_eq!(bytes[eq + 1], b'"', "label value opens with a quote in {line:?}");
                    let start = eq + 2;
                    let mut value = String::new();
                    let mut escaped = false;
                    let mut end = None;
                    for (k, c) in r[start..].char_indices() {
                        match (escaped, c) {
                            (true, 'n') => { value.push('\n'); escaped = false; }
                            (true, c) => { value.push(c); escaped = false; }
                            (false, '\\') => escaped = true,
                            (false, '"') => { end = Some(start + k + 1); break; }
                            (false, c) => value.push(c),
                        }
                    }
                    labels.insert(key, value);
                    i = end.unwrap_or_else(|| panic!("unterminated label value in {line:?}"));
                }
            }
            let value = rest.split_whitespace().next().expect("value");
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            samples.push(Sample { name: name.to_string(), labels, value });
        }
        Scrape { samples }
    }

    /// Samples named `name` whose labels include all of `labels`.
    pub fn matching<'a>(&'a self, name: &'a str, labels: &'a [(&'a str, &'a str)]) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples
            .iter()
            .filter(move |s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
    }

    /// Sum of the matching samples (0 when none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        // `+ 0.0`: an empty f64 sum is -0.0.
        self.matching(name, labels).map(|s| s.value).sum::<f64>() + 0.0
    }

    /// The value of the one matching sample; panics if there is not exactly one.
    pub fn one(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<&Sample> = self.matching(name, labels).collect();
        assert_eq!(found.len(), 1, "expected one {name}{labels:?}, found {found:?}");
        found[0].value
    }

    /// Anomalies the pipeline received: every event but the found notices.
    pub fn anomalies_received(&self) -> f64 {
        self.one("badfd_events_received_total", &[]) - self.one("badfd_found_later_notices_total", &[])
    }

    /// Anomalies whose OTLP record ended in `outcome`.
    pub fn otlp_anomalies(&self, outcome: &str) -> f64 {
        self.one("badfd_otlp_records_total", &[("kind", "anomaly"), ("outcome", outcome)])
    }

    /// Anomalies whose OTLP record has an outcome, whichever.
    pub fn otlp_anomalies_accounted(&self) -> f64 {
        ["exported", "suppressed", "dropped_queue_full", "dropped_export_failed", "dropped_shutdown"]
            .iter()
            .map(|o| self.otlp_anomalies(o))
            .sum()
    }
}

