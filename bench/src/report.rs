//! Latency samples, the result table and the files the run writes.

use std::fmt::Write as _;
use std::time::Duration;

/// Latencies of repeated operations.
#[derive(Clone, Debug, Default)]
pub struct Samples(pub Vec<Duration>);

impl Samples {
    /// Adds one sample.
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    /// The `p`-th percentile (nearest rank), in milliseconds.
    pub fn pct_ms(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let mut v = self.0.clone();
        v.sort();
        let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
        v[rank.min(v.len()) - 1].as_secs_f64() * 1e3
    }

    /// p50 in ms.
    pub fn p50(&self) -> f64 {
        self.pct_ms(50.0)
    }

    /// Mean in ms.
    pub fn mean_ms(&self) -> f64 {
        self.0.iter().map(Duration::as_secs_f64).sum::<f64>() * 1e3 / self.0.len().max(1) as f64
    }

    /// Total in seconds.
    pub fn total_s(&self) -> f64 {
        self.0.iter().map(Duration::as_secs_f64).sum()
    }

    /// `p50 / p95 / p99 ms`.
    pub fn summary(&self) -> String {
        format!(
            "p50 {} / p95 {} / p99 {} ms",
            fmt_ms(self.p50()),
            fmt_ms(self.pct_ms(95.0)),
            fmt_ms(self.pct_ms(99.0))
        )
    }
}

/// A millisecond value with sensible precision.
pub fn fmt_ms(ms: f64) -> String {
    if ms < 1.0 {
        format!("{ms:.3}")
    } else if ms < 10.0 {
        format!("{ms:.2}")
    } else {
        format!("{ms:.1}")
    }
}

/// Thousands separators for counts and rates.
pub fn fmt_int(x: f64) -> String {
    let s = format!("{:.0}", x);
    let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

/// Whether a target was met.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Met.
    Met,
    /// Missed.
    Missed,
    /// Informational row, no target.
    Info,
}

/// One row of the result table.
#[derive(Clone, Debug)]
pub struct Row {
    /// Issue item, e.g. `1a`.
    pub item: String,
    /// What was measured.
    pub what: String,
    /// The library's (or the measured subject's) value.
    pub value: String,
    /// The baseline's value.
    pub baseline: String,
    /// value/baseline in the target's sense, e.g. `0.93×`.
    pub ratio: String,
    /// The target.
    pub target: String,
    /// Met or not.
    pub verdict: Verdict,
    /// `--only` section reproducing the row.
    pub section: &'static str,
}

/// Everything the run reports.
#[derive(Default)]
pub struct Report {
    /// Main table rows.
    pub rows: Vec<Row>,
    /// Extra markdown sections (details), in order.
    pub details: Vec<(String, String)>,
    /// `ef_search,recall,p50_ms,p95_ms` lines for the plot.
    pub recall_csv: Vec<String>,
}

impl Report {
    /// Adds a row and echoes it to stderr.
    #[allow(clippy::too_many_arguments)]
    pub fn row(
        &mut self,
        section: &'static str,
        item: &str,
        what: impl Into<String>,
        value: impl Into<String>,
        baseline: impl Into<String>,
        ratio: impl Into<String>,
        target: impl Into<String>,
        verdict: Verdict,
    ) {
        let row = Row {
            item: item.into(),
            what: what.into(),
            value: value.into(),
            baseline: baseline.into(),
            ratio: ratio.into(),
            target: target.into(),
            verdict,
            section,
        };
        crate::progress(&format!(
            "RESULT {} {}: {} | baseline {} | {} | {} {}",
            row.item,
            row.what,
            row.value,
            row.baseline,
            row.ratio,
            row.target,
            verdict_str(row.verdict)
        ));
        self.rows.push(row);
    }

    /// Adds an informational row.
    pub fn info(
        &mut self,
        section: &'static str,
        item: &str,
        what: impl Into<String>,
        value: impl Into<String>,
        baseline: impl Into<String>,
    ) {
        self.row(section, item, what, value, baseline, "", "", Verdict::Info);
    }

    /// Adds a details section.
    pub fn detail(&mut self, title: impl Into<String>, body: impl Into<String>) {
        self.details.push((title.into(), body.into()));
    }

    /// The whole report as markdown.
    pub fn markdown(&self, header: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{header}");
        let _ = writeln!(
            s,
            "| # | measurement | library / subject | baseline | ratio | target | met | `--only` |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
        for r in &self.rows {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | `{}` |",
                r.item,
                r.what,
                r.value,
                r.baseline,
                r.ratio,
                r.target,
                verdict_str(r.verdict),
                r.section
            );
        }
        for (title, body) in &self.details {
            let _ = writeln!(s, "\n### {title}\n\n{body}");
        }
        s
    }
}

fn verdict_str(v: Verdict) -> &'static str {
    match v {
        Verdict::Met => "**yes**",
        Verdict::Missed => "**NO**",
        Verdict::Info => "",
    }
}

/// Met when `ok`.
pub fn verdict(ok: bool) -> Verdict {
    if ok { Verdict::Met } else { Verdict::Missed }
}

/// Median of per-round values (the middle one; the mean of the two middle
/// ones for an even count).
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// `median (min–max)` of per-round values, formatted by `f`.
pub fn spread(v: &[f64], f: impl Fn(f64) -> String) -> String {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{} ({}–{})", f(median(v)), f(min), f(max))
}

/// `median× (min–max)` of per-round ratios.
pub fn spread_x(v: &[f64]) -> String {
    spread(v, |x| format!("{x:.2}")).replacen(' ', "× ", 1)
}

/// Splits samples taken in order into `rounds` contiguous rounds.
pub fn rounds_of(samples: &Samples, rounds: usize) -> Vec<Samples> {
    let n = samples.0.len();
    let rounds = rounds.clamp(1, n.max(1));
    (0..rounds)
        .map(|r| Samples(samples.0[r * n / rounds..(r + 1) * n / rounds].to_vec()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(spread_x(&[0.9, 0.8, 0.85]), "0.85× (0.80–0.90)");
        assert_eq!(
            spread(&[2.0, 1.0, 3.0], |x| format!("{x:.1}")),
            "2.0 (1.0–3.0)"
        );
    }

    #[test]
    fn rounds_split_in_order() {
        let s = Samples((1..=7).map(Duration::from_millis).collect());
        let r = rounds_of(&s, 3);
        assert_eq!(r.iter().map(|x| x.0.len()).collect::<Vec<_>>(), [2, 2, 3]);
        assert_eq!(r[2].0[0], Duration::from_millis(5));
    }
}
