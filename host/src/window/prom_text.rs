//! Reads the samples back out of the Prometheus text format that [`crate::metrics`] writes,
//! so that the operator page shows exactly the numbers `/metrics` serves (one source of
//! truth) without a second set of counters.
//!
//! Only what the host's own encoder writes needs to be read: `# TYPE` lines, and sample
//! lines `name{label="value",…} number` with the format's three escapes in label values
//! (`\\`, `\"`, `\n`). A line that does not parse is skipped: the text comes from this
//! process, and one odd line must not hide the rest.

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    /// In the order written.
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// What a text holds: every sample, and the declared type of each family.
#[derive(Debug, Default)]
pub struct Scrape {
    pub samples: Vec<Sample>,
    /// `(family name, type)` from the `# TYPE` lines.
    pub types: Vec<(String, String)>,
}

impl Scrape {
    /// The declared type of the family `name` (`gauge`, `counter`, …).
    pub fn type_of(&self, name: &str) -> Option<&str> {
        self.types
            .iter()
            .find(|(family, _)| family == name)
            .map(|(_, kind)| kind.as_str())
    }

    /// The sum of the samples named `name` whose labels pass `keep`.
    pub fn sum(&self, name: &str, keep: impl Fn(&Sample) -> bool) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name && keep(s))
            .map(|s| s.value)
            .filter(|v| v.is_finite())
            // Not `sum()`: an empty f64 sum is -0.0.
            .fold(0.0, |total, v| total + v)
    }
}

/// Parses a whole text.
pub fn parse(text: &str) -> Scrape {
    let mut scrape = Scrape::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (words.next(), words.next()) {
                scrape.types.push((name.to_owned(), kind.to_owned()));
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            if let Some(sample) = sample(line) {
                scrape.samples.push(sample);
            }
        }
    }
    scrape
}

/// One sample line, or `None` when it is not one.
fn sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = label_set(inner)?;
        labels = parsed;
        rest = after;
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// The labels after `{`, and the text after the closing `}`.
fn label_set(mut text: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start_matches(',');
        if let Some(after) = text.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = text.find('=')?;
        let key = text[..eq].trim().to_owned();
        let (value, after) = quoted(text[eq + 1..].strip_prefix('"')?)?;
        labels.push((key, value));
        text = after;
    }
}

/// A label value up to its closing quote, unescaped, and the text after the quote.
fn quoted(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((index, c)) = chars.next() {
        match c {
            '"' => return Some((value, &text[index + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                other => value.push(other),
            },
            other => value.push(other),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_types_samples_and_escaped_labels() {
        let text = "# HELP x_total Help\n# TYPE x counter\n\
                    x_total{a=\"1\",b=\"q\\\"uo\\\\te\\nnl\"} 3\n\
                    plain 2.5\n\
                    h_bucket{le=\"+Inf\"} 4\n\
                    broken{a=\"1 7\n\
                    g{} -1e3\n";
        let scrape = parse(text);
        assert_eq!(scrape.type_of("x"), Some("counter"));
        assert_eq!(scrape.samples.len(), 4, "{:?}", scrape.samples);
        let x = &scrape.samples[0];
        assert_eq!(x.name, "x_total");
        assert_eq!(x.label("a"), Some("1"));
        assert_eq!(x.label("b"), Some("q\"uo\\te\nnl"));
        assert_eq!(x.value, 3.0);
        assert_eq!(scrape.samples[1].value, 2.5);
        assert_eq!(scrape.samples[3].value, -1000.0);
        assert_eq!(scrape.sum("x_total", |s| s.label("a") == Some("1")), 3.0);
        assert_eq!(scrape.sum("x_total", |s| s.label("a") == Some("2")), 0.0);
    }

    #[test]
    fn reads_the_hosts_own_metrics() {
        let metrics = crate::metrics::Metrics::new();
        let _serving = metrics.http.in_flight();
        let scrape = parse(&metrics.encode(crate::metrics::Format::Prometheus));
        assert_eq!(scrape.type_of("brewblox_reloads_total"), Some("counter"));
        assert_eq!(scrape.sum("http_requests_in_flight", |_| true), 1.0);
    }
}
