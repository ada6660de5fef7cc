//! Figures (samples per contestant per round), medians and spreads, ratios
//! to HAProxy and nginx from the same rounds, goals met or missed, failed
//! requests (a contestant with any in a figure has no result there), and,
//! with a baseline build, new/old ratios of every figure; the Markdown
//! tables and the JSON file.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::tools::Failed;

/// How a figure is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Requests (or handshakes, packets) per second.
    PerSec,
    /// Nanoseconds.
    Nanos,
    /// Microseconds.
    Micros,
    /// Milliseconds.
    Millis,
    /// Bytes.
    Bytes,
    /// A plain count (smoke: 1 = answered).
    Count,
}

impl Unit {
    fn fmt(self, v: f64) -> String {
        match self {
            Unit::PerSec if v >= 1e6 => format!("{:.2}M", v / 1e6),
            Unit::PerSec if v >= 1e3 => format!("{:.1}k", v / 1e3),
            Unit::PerSec => format!("{v:.0}"),
            Unit::Nanos => format!("{v:.0} ns"),
            Unit::Micros => format!("{v:.1} µs"),
            Unit::Millis => format!("{v:.2} ms"),
            Unit::Bytes => format!("{v:.0} B"),
            Unit::Count => format!("{v:.0}"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Unit::PerSec => "per_second",
            Unit::Nanos => "nanoseconds",
            Unit::Micros => "microseconds",
            Unit::Millis => "milliseconds",
            Unit::Bytes => "bytes",
            Unit::Count => "count",
        }
    }
}

/// A target shown as a ratio (never asserted).
#[derive(Debug, Clone)]
pub struct Goal {
    /// Whose figure is judged (`portier`, `portier-xdp`).
    pub subject: &'static str,
    /// Against whom (`haproxy`, `nginx`, `nftables`).
    pub against: &'static str,
    /// subject / against must be ≥ factor (higher is better) or ≤ factor.
    pub factor: f64,
    pub higher_is_better: bool,
}

impl Goal {
    pub fn text(&self) -> String {
        let op = if self.higher_is_better { "≥" } else { "≤" };
        format!("{op} {}× {}", self.factor, self.against)
    }
}

/// A new/old ratio below this is flagged (the acceptance bar).
pub const BASELINE_MIN: f64 = 0.97;

/// One row of the report.
#[derive(Debug, Clone)]
pub struct Figure {
    /// Stable id (JSON `id`); most are literals, per-fixture ones are built.
    pub id: Cow<'static, str>,
    pub title: String,
    pub unit: Unit,
    pub goal: Option<Goal>,
    /// Throughput-like (true) or cost-like: CPU, latency, memory (false).
    pub higher_is_better: bool,
    /// The load that produced the figure (rows of the failed-requests
    /// table; figures read from the same runs share it).
    pub load: Option<String>,
    /// contestant → one value per round (None: that round failed).
    pub samples: BTreeMap<String, Vec<Option<f64>>>,
    /// contestant → why a value is missing (first reason kept).
    pub notes: BTreeMap<String, String>,
    /// contestant → failed requests per round (None: not counted, the load
    /// did not run or its output could not be read).
    pub failed: BTreeMap<String, Vec<Option<u64>>>,
    /// contestant → the causes of the first round with failures.
    pub failure_notes: BTreeMap<String, String>,
}

impl Figure {
    pub fn new(
        id: impl Into<Cow<'static, str>>,
        title: impl Into<String>,
        unit: Unit,
        goal: Option<Goal>,
    ) -> Figure {
        Figure {
            id: id.into(),
            title: title.into(),
            unit,
            goal,
            higher_is_better: matches!(unit, Unit::PerSec | Unit::Count),
            load: None,
            samples: BTreeMap::new(),
            notes: BTreeMap::new(),
            failed: BTreeMap::new(),
            failure_notes: BTreeMap::new(),
        }
    }

    /// Name the load behind this figure (a row of the failed-requests table).
    pub fn with_load(mut self, load: impl Into<String>) -> Figure {
        self.load = Some(load.into());
        self
    }

    /// Record round `round`'s failed requests (`None`: not counted).
    pub fn record_failed(&mut self, who: &str, round: usize, failed: Option<&Failed>) {
        let v = self.failed.entry(who.to_string()).or_default();
        if v.len() <= round {
            v.resize(round + 1, None);
        }
        if let Some(f) = failed {
            v[round] = Some(f.total());
            if f.total() > 0 {
                self.failure_notes
                    .entry(who.to_string())
                    .or_insert_with(|| format!("round {round}: {}", f.describe()));
            }
        }
    }

    /// Record a load's value and its failed requests in one go.
    pub fn record_run(
        &mut self,
        who: &str,
        round: usize,
        value: Result<f64, String>,
        failed: Option<&Failed>,
    ) {
        self.record(who, round, value);
        self.record_failed(who, round, failed);
    }

    /// Failed requests over all rounds (None: never counted).
    pub fn failed_total(&self, who: &str) -> Option<u64> {
        let v = self.failed.get(who)?;
        v.iter()
            .any(Option::is_some)
            .then(|| v.iter().flatten().sum())
    }

    /// Rounds that had failed requests.
    pub fn failed_rounds(&self, who: &str) -> usize {
        self.failed
            .get(who)
            .map_or(0, |v| v.iter().filter(|n| n.is_some_and(|n| n > 0)).count())
    }

    /// No failed request in any round (a run with failures is not a result,
    /// and neither is a figure with such a run).
    pub fn is_result(&self, who: &str) -> bool {
        self.failed_total(who).unwrap_or(0) == 0
    }

    /// Record round `round`'s value (or the reason it is missing).
    pub fn record(&mut self, who: &str, round: usize, value: Result<f64, String>) {
        let v = self.samples.entry(who.to_string()).or_default();
        if v.len() <= round {
            v.resize(round + 1, None);
        }
        match value {
            Ok(x) if x.is_finite() => v[round] = Some(x),
            Ok(x) => {
                self.notes
                    .entry(who.to_string())
                    .or_insert(format!("not finite: {x}"));
            }
            Err(why) => {
                self.notes.entry(who.to_string()).or_insert(why);
            }
        }
    }

    /// The measured values of `who`; none when any round had failures.
    pub fn values(&self, who: &str) -> Vec<f64> {
        if !self.is_result(who) {
            return Vec::new();
        }
        self.samples
            .get(who)
            .map(|v| v.iter().flatten().copied().collect())
            .unwrap_or_default()
    }

    pub fn median(&self, who: &str) -> Option<f64> {
        median(&self.values(who))
    }

    /// Median over rounds of subject/against where both were measured in
    /// the same round; none when either had failed requests.
    pub fn ratio(&self, subject: &str, against: &str) -> Option<f64> {
        median(&self.round_ratios(subject, against))
    }

    /// subject/against of every round where both were measured (none when
    /// either had failed requests).
    pub fn round_ratios(&self, subject: &str, against: &str) -> Vec<f64> {
        if !self.is_result(subject) || !self.is_result(against) {
            return Vec::new();
        }
        let (Some(a), Some(b)) = (self.samples.get(subject), self.samples.get(against)) else {
            return Vec::new();
        };
        a.iter()
            .zip(b)
            .filter_map(|(x, y)| Some((*x)? / (*y)?))
            .filter(|r| r.is_finite())
            .collect()
    }

    /// "28.7k [27.9k–29.1k]", "FAILED 12 (…)" or "n/a (reason)".
    pub fn cell(&self, who: &str) -> String {
        if let Some(n) = self.failed_total(who).filter(|n| *n > 0) {
            return format!(
                "**FAILED {n}** ({} of {} rounds; {})",
                self.failed_rounds(who),
                self.failed.get(who).map_or(0, Vec::len),
                short(self.failure_notes.get(who).map_or("", String::as_str))
            );
        }
        let v = self.values(who);
        match median(&v) {
            Some(m) if v.len() > 1 => {
                let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                format!(
                    "{} [{}–{}]",
                    self.unit.fmt(m),
                    self.unit.fmt(lo),
                    self.unit.fmt(hi)
                )
            }
            Some(m) => self.unit.fmt(m),
            None => match self.notes.get(who) {
                Some(why) => format!("n/a ({})", short(why)),
                None => "n/a".into(),
            },
        }
    }

    /// "met (1.31×)", "missed (0.92×)" or "n/a".
    pub fn verdict(&self) -> String {
        let Some(g) = &self.goal else {
            return String::new();
        };
        match self.ratio(g.subject, g.against) {
            Some(r) => {
                let met = if g.higher_is_better {
                    r >= g.factor
                } else {
                    r <= g.factor
                };
                format!("{} ({r:.2}×)", if met { "**met**" } else { "**missed**" })
            }
            None => format!(
                "n/a (no {} figure)",
                if self.median(g.subject).is_none() {
                    g.subject
                } else {
                    g.against
                }
            ),
        }
    }

    /// `new` against `old` oriented so that higher is better: new/old for
    /// throughput figures, old/new for cost figures (CPU, latency, memory);
    /// median of the per-round ratios. Why there is none otherwise (failed
    /// requests on either side, a side not measured).
    pub fn versus(&self, new: &str, old: &str) -> Result<f64, String> {
        median(&self.versus_rounds(new, old)?).ok_or_else(|| "no ratio".into())
    }

    /// The per-round ratios behind [`Figure::versus`] (same orientation).
    pub fn versus_rounds(&self, new: &str, old: &str) -> Result<Vec<f64>, String> {
        for who in [new, old] {
            if let Some(n) = self.failed_total(who).filter(|n| *n > 0) {
                return Err(format!("{who} FAILED {n}"));
            }
        }
        let r = if self.higher_is_better {
            self.round_ratios(new, old)
        } else {
            self.round_ratios(old, new)
        };
        if !r.is_empty() {
            return Ok(r);
        }
        let who = if self.median(new).is_none() { new } else { old };
        Err(match self.notes.get(who) {
            Some(why) => format!("no {who} figure: {}", short(why)),
            None => format!("no {who} figure"),
        })
    }

    /// The failed-requests cell: "0", "12 in 1 of 3 rounds (…)", "n/a (…)".
    pub fn failed_cell(&self, who: &str) -> String {
        match self.failed_total(who) {
            Some(0) => "0".into(),
            Some(n) => format!(
                "**{n}** in {} of {} rounds ({})",
                self.failed_rounds(who),
                self.failed.get(who).map_or(0, Vec::len),
                short(self.failure_notes.get(who).map_or("", String::as_str))
            ),
            None => match self.notes.get(who) {
                Some(why) => format!("n/a ({})", short(why)),
                None => "n/a".into(),
            },
        }
    }
}

fn short(why: &str) -> String {
    let one = why.lines().next().unwrap_or("").replace('|', "/");
    if one.chars().count() > 90 {
        format!("{}…", one.chars().take(90).collect::<String>())
    } else {
        one
    }
}

pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

/// A whole run: context, the main table (fixed contestant columns) and any
/// other sections (XDP) with their own columns.
pub struct Report {
    pub title: String,
    pub context: Vec<(String, String)>,
    pub sections: Vec<Section>,
    /// Things not measured and why (printed under the tables).
    pub notes: Vec<String>,
}

pub struct Section {
    pub title: String,
    pub columns: Vec<String>,
    pub figures: Vec<Figure>,
    /// (current build, baseline build) column names when a baseline ran.
    pub baseline: Option<(String, String)>,
}

/// One figure of the baseline comparison.
pub struct Versus<'a> {
    pub figure: &'a Figure,
    pub new: &'a str,
    pub old: &'a str,
    pub ratio: Result<f64, String>,
    /// The per-round ratios (their spread shows the noise).
    pub rounds: Vec<f64>,
}

impl Versus<'_> {
    pub fn ok(&self) -> bool {
        self.ratio.as_ref().is_ok_and(|r| *r >= BASELINE_MIN)
    }

    fn orientation(&self) -> &'static str {
        if self.figure.higher_is_better {
            "new/old (higher is better)"
        } else {
            "old/new (lower is better)"
        }
    }

    fn verdict(&self) -> String {
        match &self.ratio {
            Ok(r) if *r >= BASELINE_MIN => format!("ok ({r:.2}×)"),
            Ok(r) => format!("**WORSE** ({r:.2}× < {BASELINE_MIN})"),
            Err(why) => format!("**no result** ({})", short(why)),
        }
    }
}

impl Report {
    /// Every figure of every section that ran a baseline, new against old.
    pub fn versus(&self) -> Vec<Versus<'_>> {
        self.sections
            .iter()
            .filter_map(|sec| sec.baseline.as_ref().map(|b| (sec, b)))
            .flat_map(|(sec, (new, old))| {
                sec.figures.iter().map(move |f| Versus {
                    figure: f,
                    new,
                    old,
                    ratio: f.versus(new, old),
                    rounds: f.versus_rounds(new, old).unwrap_or_default(),
                })
            })
            .collect()
    }

    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# {}\n", self.title);
        for (k, v) in &self.context {
            let _ = writeln!(s, "- {k}: {v}");
        }
        let versus = self.versus();
        if !versus.is_empty() {
            self.markdown_versus(&mut s, &versus);
        }
        for sec in &self.sections {
            let _ = writeln!(s, "\n## {}\n", sec.title);
            let mut head = String::from("| figure |");
            let mut rule = String::from("|---|");
            for c in &sec.columns {
                let _ = write!(head, " {c} |");
                rule.push_str("---|");
            }
            let ratios: Vec<&str> = ["haproxy", "nginx", "nftables"]
                .into_iter()
                .filter(|r| sec.columns.iter().any(|c| c == r))
                .collect();
            let subject = if sec.columns.iter().any(|c| c == "portier") {
                "portier"
            } else {
                "portier-xdp"
            };
            for r in &ratios {
                let _ = write!(head, " {subject} / {r} |");
                rule.push_str("---|");
            }
            head.push_str(" goal | result |");
            rule.push_str("---|---|");
            let _ = writeln!(s, "{head}\n{rule}");
            for f in &sec.figures {
                let mut row = format!("| {} |", f.title);
                for c in &sec.columns {
                    let _ = write!(row, " {} |", f.cell(c));
                }
                for r in &ratios {
                    match f.ratio(subject, r) {
                        Some(x) => {
                            let _ = write!(row, " {x:.2}× |");
                        }
                        None => row.push_str(" n/a |"),
                    }
                }
                let goal = f.goal.as_ref().map(Goal::text).unwrap_or_default();
                let _ = write!(row, " {goal} | {} |", f.verdict());
                let _ = writeln!(s, "{row}");
            }
        }
        self.markdown_failed(&mut s);
        if !self.notes.is_empty() {
            let _ = writeln!(s, "\nNotes:\n");
            for n in &self.notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        s
    }

    fn markdown_versus(&self, s: &mut String, versus: &[Versus<'_>]) {
        let pairs: Vec<String> = self
            .sections
            .iter()
            .filter_map(|sec| sec.baseline.as_ref())
            .map(|(n, o)| format!("{n} vs {o}"))
            .collect();
        let _ = writeln!(s, "\n## New vs baseline ({})\n", pairs.join(", "));
        let bad: Vec<&str> = versus
            .iter()
            .filter(|v| !v.ok())
            .map(|v| v.figure.id.as_ref())
            .collect();
        if bad.is_empty() {
            let _ = writeln!(
                s,
                "**All {} figures at least {BASELINE_MIN}× the baseline.**\n",
                versus.len()
            );
        } else {
            let _ = writeln!(
                s,
                "**{} of {} figures below {BASELINE_MIN}× the baseline or without a result: {}.**\n",
                bad.len(),
                versus.len(),
                bad.join(", ")
            );
        }
        let _ = writeln!(
            s,
            "Ratios are medians of per-round ratios (both builds measured in the same rounds; \
             their range in brackets shows the noise), oriented so that higher is better: new/old \
             for rates, old/new for CPU, latency and memory (lower is better). A figure with failed \
             requests on either side has no ratio.\n"
        );
        let _ = writeln!(
            s,
            "| figure | new | old (baseline) | ratio | orientation | ≥ {BASELINE_MIN}× |\n|---|---|---|---|---|---|"
        );
        for v in versus {
            let lo = v.rounds.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.rounds.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let ratio = match &v.ratio {
                Err(_) => "n/a".to_string(),
                Ok(r) if v.rounds.len() > 1 => format!("{r:.3}× [{lo:.2}–{hi:.2}]"),
                Ok(r) => format!("{r:.3}×"),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {ratio} | {} | {} |",
                v.figure.title,
                v.figure.cell(v.new),
                v.figure.cell(v.old),
                v.orientation(),
                v.verdict()
            );
        }
    }

    /// Failed requests of every load for every contestant (one row per
    /// load, read from its first figure).
    fn markdown_failed(&self, s: &mut String) {
        let mut columns: Vec<&str> = Vec::new();
        let mut rows: Vec<(&str, &Figure)> = Vec::new();
        for sec in &self.sections {
            for f in &sec.figures {
                let Some(load) = f.load.as_deref() else {
                    continue;
                };
                if rows.iter().any(|(l, _)| *l == load) {
                    continue;
                }
                rows.push((load, f));
                for c in &sec.columns {
                    if !columns.contains(&c.as_str()) {
                        columns.push(c);
                    }
                }
            }
        }
        if rows.is_empty() {
            return;
        }
        let _ = writeln!(s, "\n## Failed requests\n");
        let _ = writeln!(
            s,
            "Every request that did not succeed, per load and contestant, over all rounds: \
             non-2xx/3xx responses and socket errors (wrk), failed/errored/timed-out streams \
             (h2load), errors of the harness's own client. A contestant with any failed request \
             in a load has no figure from it (FAILED), no ratio and no goal verdict.\n"
        );
        let mut head = String::from("| load |");
        let mut rule = String::from("|---|");
        for c in &columns {
            let _ = write!(head, " {c} |");
            rule.push_str("---|");
        }
        let _ = writeln!(s, "{head}\n{rule}");
        for (load, f) in rows {
            let mut row = format!("| {load} |");
            for c in &columns {
                let _ = write!(row, " {} |", f.failed_cell(c));
            }
            let _ = writeln!(s, "{row}");
        }
    }

    pub fn json(&self) -> Value {
        let figures: Vec<Value> = self
            .sections
            .iter()
            .flat_map(|sec| sec.figures.iter().map(move |f| (sec, f)))
            .map(|(sec, f)| {
                let per: serde_json::Map<String, Value> = f
                    .samples
                    .keys()
                    .chain(f.failed.keys())
                    .map(|who| {
                        (
                            who.clone(),
                            json!({
                                "runs": f.samples.get(who).cloned().unwrap_or_default(),
                                "median": f.median(who),
                                "note": f.notes.get(who),
                                "failed_requests": f.failed.get(who),
                                "failed_total": f.failed_total(who),
                                "failures": f.failure_notes.get(who),
                                "result": f.is_result(who) && f.median(who).is_some(),
                            }),
                        )
                    })
                    .collect();
                json!({
                    "id": f.id,
                    "title": f.title,
                    "unit": f.unit.name(),
                    "higher_is_better": f.higher_is_better,
                    "load": f.load,
                    "contestants": per,
                    "missing": f.notes,
                    "goal": f.goal.as_ref().map(|g| json!({
                        "text": g.text(),
                        "subject": g.subject,
                        "against": g.against,
                        "factor": g.factor,
                        "higher_is_better": g.higher_is_better,
                        "ratio": f.ratio(g.subject, g.against),
                        "verdict": f.verdict(),
                    })),
                    "baseline": sec.baseline.as_ref().map(|(new, old)| {
                        let r = f.versus(new, old);
                        json!({
                            "new": new,
                            "old": old,
                            "ratio": r.as_ref().ok(),
                            "round_ratios": f.versus_rounds(new, old).ok(),
                            "orientation": if f.higher_is_better { "new/old" } else { "old/new" },
                            "ok": r.as_ref().is_ok_and(|r| *r >= BASELINE_MIN),
                            "why_none": r.as_ref().err(),
                        })
                    }),
                })
            })
            .collect();
        let versus = self.versus();
        let baseline = (!versus.is_empty()).then(|| {
            json!({
                "threshold": BASELINE_MIN,
                "figures": versus.len(),
                "all_ok": versus.iter().all(Versus::ok),
                "not_ok": versus
                    .iter()
                    .filter(|v| !v.ok())
                    .map(|v| v.figure.id.as_ref())
                    .collect::<Vec<_>>(),
            })
        });
        json!({
            "title": self.title,
            "context": self.context.iter().cloned().collect::<BTreeMap<_, _>>(),
            "baseline": baseline,
            "figures": figures,
            "notes": self.notes,
        })
    }

    /// Write `<dir>/<stem>.md` and `<dir>/<stem>.json`; their paths.
    pub fn write(&self, dir: &Path, stem: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir)?;
        let md = dir.join(format!("{stem}.md"));
        let js = dir.join(format!("{stem}.json"));
        std::fs::write(&md, self.markdown())?;
        std::fs::write(&js, serde_json::to_string_pretty(&self.json())? + "\n")?;
        Ok((md, js))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_pair_rounds_and_goals_judge_them() {
        let goal = Goal {
            subject: "portier",
            against: "haproxy",
            factor: 1.25,
            higher_is_better: true,
        };
        let mut f = Figure::new("x", "x", Unit::PerSec, Some(goal));
        for (r, (p, h)) in [(30.0, 20.0), (26.0, 20.0), (40.0, 30.0)]
            .into_iter()
            .enumerate()
        {
            f.record("portier", r, Ok(p));
            f.record("haproxy", r, Ok(h));
        }
        f.record("nginx", 0, Err("down".into()));
        assert_eq!(f.ratio("portier", "haproxy"), Some(1.3333333333333333));
        assert!(f.verdict().contains("met"));
        assert!(f.cell("nginx").starts_with("n/a (down"));
        assert_eq!(median(&[3.0, 1.0, 2.0, 10.0]), Some(2.5));
    }

    fn three_rounds(f: &mut Figure, who: &str, v: [f64; 3]) {
        for (r, x) in v.into_iter().enumerate() {
            f.record_run(who, r, Ok(x), Some(&Failed::none()));
        }
    }

    #[test]
    fn a_contestant_with_failed_requests_has_no_result() {
        let mut f = Figure::new("x", "x", Unit::PerSec, None).with_load("load x");
        three_rounds(&mut f, "portier", [30.0, 31.0, 32.0]);
        three_rounds(&mut f, "haproxy", [20.0, 20.0, 20.0]);
        // One round of nginx had 3 non-2xx responses among its requests.
        f.record_run("nginx", 0, Ok(25.0), Some(&Failed::none()));
        f.record_run("nginx", 1, Ok(26.0), Some(&Failed::of("non-2xx/3xx", 3)));
        f.record_run("nginx", 2, Ok(27.0), Some(&Failed::none()));
        assert_eq!(f.failed_total("nginx"), Some(3));
        assert!(!f.is_result("nginx"));
        assert_eq!(f.median("nginx"), None);
        assert_eq!(f.ratio("portier", "nginx"), None);
        assert!(f.cell("nginx").starts_with("**FAILED 3** (1 of 3 rounds"));
        assert!(f.failed_cell("nginx").contains("non-2xx/3xx 3"));
        assert_eq!(f.failed_cell("portier"), "0");
        assert_eq!(f.ratio("portier", "haproxy"), Some(1.55));
        // A load that never ran for a contestant: not counted, not zero.
        f.record_run("direct", 0, Err("no proxy".into()), None);
        assert_eq!(f.failed_total("direct"), None);
        assert_eq!(f.failed_cell("direct"), "n/a (no proxy)");
    }

    #[test]
    fn baseline_ratios_are_oriented_higher_is_better_and_flagged() {
        let mut rate = Figure::new("rate", "rate", Unit::PerSec, None).with_load("l");
        three_rounds(&mut rate, "portier", [96.0, 100.0, 104.0]);
        three_rounds(&mut rate, "portier@old", [100.0, 100.0, 100.0]);
        // CPU per request: the new build spends more, a loss of ~5%.
        let mut cpu = Figure::new("cpu", "cpu", Unit::Micros, None).with_load("l");
        three_rounds(&mut cpu, "portier", [21.0, 21.0, 21.0]);
        three_rounds(&mut cpu, "portier@old", [20.0, 20.0, 20.0]);
        assert!(!cpu.higher_is_better);
        assert_eq!(rate.versus("portier", "portier@old"), Ok(1.0));
        let r = cpu.versus("portier", "portier@old").expect("ratio");
        assert!((r - 20.0 / 21.0).abs() < 1e-9);
        // Failures on the old side: no ratio.
        let mut lat = Figure::new("lat", "lat", Unit::Millis, None).with_load("l2");
        three_rounds(&mut lat, "portier", [1.0, 1.0, 1.0]);
        lat.record_run("portier@old", 0, Ok(1.0), Some(&Failed::of("errored", 2)));
        assert_eq!(
            lat.versus("portier", "portier@old"),
            Err("portier@old FAILED 2".into())
        );
        let report = Report {
            title: "t".into(),
            context: vec![],
            sections: vec![Section {
                title: "s".into(),
                columns: vec!["portier".into(), "portier@old".into()],
                figures: vec![rate, cpu, lat],
                baseline: Some(("portier".into(), "portier@old".into())),
            }],
            notes: vec![],
        };
        let v = report.versus();
        assert_eq!(
            v.iter().map(Versus::ok).collect::<Vec<_>>(),
            [true, false, false]
        );
        let md = report.markdown();
        assert!(
            md.contains("2 of 3 figures below 0.97× the baseline or without a result: cpu, lat")
        );
        assert!(md.contains("**WORSE** (0.95× < 0.97)"));
        assert!(md.contains("| 1.000× [0.96–1.04] |"), "{md}");
        assert!(md.contains("old/new (lower is better)"));
        assert!(md.contains("## Failed requests"));
        assert!(md.contains("| l2 | 0 | **2** in 1 of 1 rounds (round 0: errored 2) |"));
        let js = report.json();
        assert_eq!(js["baseline"]["all_ok"], false);
        assert_eq!(js["baseline"]["not_ok"], json!(["cpu", "lat"]));
        assert_eq!(js["figures"][1]["baseline"]["orientation"], "old/new");
        assert_eq!(
            js["figures"][2]["contestants"]["portier@old"]["failed_total"],
            2
        );
        assert_eq!(
            js["figures"][2]["contestants"]["portier@old"]["result"],
            false
        );
    }
}
