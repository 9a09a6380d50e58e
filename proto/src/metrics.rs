//! Prometheus text exposition, written so a scraper accepts it: each metric family once,
//! its `# TYPE` line followed by all of its samples, label values escaped.
//! Names follow `tachyon_<component>_<noun>_<unit>`.

use std::fmt::{Display, Write};

/// Samples collected by family, rendered with [`MetricsText::render`].
#[derive(Debug, Default)]
pub struct MetricsText {
    families: Vec<Family>,
}

#[derive(Debug)]
struct Family {
    name: String,
    kind: &'static str,
    samples: String,
}

impl MetricsText {
    pub fn counter(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.sample(name, "counter", labels, value);
    }

    pub fn gauge(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.sample(name, "gauge", labels, value);
    }

    /// Adds one sample of the family `name` (created with `kind` on first use).
    pub fn sample(&mut self, name: &str, kind: &'static str, labels: &[(&str, &str)], value: impl Display) {
        let at = match self.families.iter().position(|f| f.name == name) {
            Some(at) => at,
            None => {
                self.families.push(Family { name: name.to_owned(), kind, samples: String::new() });
                self.families.len() - 1
            }
        };
        let samples = &mut self.families[at].samples;
        samples.push_str(name);
        if !labels.is_empty() {
            samples.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    samples.push(',');
                }
                let _ = write!(samples, "{key}=\"");
                for c in value.chars() {
                    match c {
                        '\\' => samples.push_str("\\\\"),
                        '"' => samples.push_str("\\\""),
                        '\n' => samples.push_str("\\n"),
                        c => samples.push(c),
                    }
                }
                samples.push('"');
            }
            samples.push('}');
        }
        let _ = writeln!(samples, " {value}");
    }

    /// Appends every family to `out`.
    pub fn render(&self, out: &mut String) {
        for f in &self.families {
            let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
            out.push_str(&f.samples);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_grouped_typed_once_and_escaped() {
        let mut m = MetricsText::default();
        m.counter("a_total", &[("p", "0")], 1);
        m.gauge("b", &[], 2.5);
        m.counter("a_total", &[("p", "1"), ("name", "x\"y\\z\n")], 3);
        let mut out = String::new();
        m.render(&mut out);
        assert_eq!(
            out,
            "# TYPE a_total counter\na_total{p=\"0\"} 1\na_total{p=\"1\",name=\"x\\\"y\\\\z\\n\"} 3\n# TYPE b gauge\nb 2.5\n"
        );
    }
}
