//! Figures (samples per contestant per round), medians and spreads, ratios
//! to HAProxy and nginx from the same rounds, goals met or missed; the
//! Markdown table and the JSON file.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// How a figure is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Requests (or handshakes, packets) per second.
    PerSec,
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
            Unit::Micros => format!("{v:.1} µs"),
            Unit::Millis => format!("{v:.2} ms"),
            Unit::Bytes => format!("{v:.0} B"),
            Unit::Count => format!("{v:.0}"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Unit::PerSec => "per_second",
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

/// One row of the report.
#[derive(Debug, Clone)]
pub struct Figure {
    pub id: &'static str,
    pub title: String,
    pub unit: Unit,
    pub goal: Option<Goal>,
    /// contestant → one value per round (None: that round failed).
    pub samples: BTreeMap<String, Vec<Option<f64>>>,
    /// contestant → why a value is missing (first reason kept).
    pub notes: BTreeMap<String, String>,
}

impl Figure {
    pub fn new(
        id: &'static str,
        title: impl Into<String>,
        unit: Unit,
        goal: Option<Goal>,
    ) -> Figure {
        Figure {
            id,
            title: title.into(),
            unit,
            goal,
            samples: BTreeMap::new(),
            notes: BTreeMap::new(),
        }
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

    pub fn values(&self, who: &str) -> Vec<f64> {
        self.samples
            .get(who)
            .map(|v| v.iter().flatten().copied().collect())
            .unwrap_or_default()
    }

    pub fn median(&self, who: &str) -> Option<f64> {
        median(&self.values(who))
    }

    /// Median over rounds of subject/against where both were measured in
    /// the same round.
    pub fn ratio(&self, subject: &str, against: &str) -> Option<f64> {
        let (a, b) = (self.samples.get(subject)?, self.samples.get(against)?);
        let r: Vec<f64> = a
            .iter()
            .zip(b)
            .filter_map(|(x, y)| Some((*x)? / (*y)?))
            .filter(|r| r.is_finite())
            .collect();
        median(&r)
    }

    /// "28.7k [27.9k–29.1k]" or "n/a (reason)".
    pub fn cell(&self, who: &str) -> String {
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
    pub columns: Vec<&'static str>,
    pub figures: Vec<Figure>,
}

impl Report {
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# {}\n", self.title);
        for (k, v) in &self.context {
            let _ = writeln!(s, "- {k}: {v}");
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
                .filter(|r| sec.columns.contains(r))
                .collect();
            let subject = if sec.columns.contains(&"portier") {
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
        if !self.notes.is_empty() {
            let _ = writeln!(s, "\nNotes:\n");
            for n in &self.notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        s
    }

    pub fn json(&self) -> Value {
        let figures: Vec<Value> = self
            .sections
            .iter()
            .flat_map(|sec| sec.figures.iter())
            .map(|f| {
                let per: serde_json::Map<String, Value> = f
                    .samples
                    .iter()
                    .map(|(who, v)| {
                        (
                            who.clone(),
                            json!({
                                "runs": v,
                                "median": f.median(who),
                                "note": f.notes.get(who),
                            }),
                        )
                    })
                    .collect();
                json!({
                    "id": f.id,
                    "title": f.title,
                    "unit": f.unit.name(),
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
                })
            })
            .collect();
        json!({
            "title": self.title,
            "context": self.context.iter().cloned().collect::<BTreeMap<_, _>>(),
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
}
