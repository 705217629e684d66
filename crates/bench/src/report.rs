//! Results: one row per measured figure, printed as a table as soon as a
//! benchmark ends and written to JSON (after every benchmark, so a crash
//! late in `all` keeps what was measured).

use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// One figure of ours, with the peers measured in the same run.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub metric: String,
    pub unit: String,
    pub ours: f64,
    /// `(name, value)` of each peer, in the same unit.
    pub peers: Vec<(String, f64)>,
    /// The goal, in words, and whether it was met (`None` in quick mode,
    /// where no target is judged).
    pub target: Option<String>,
    pub met: Option<bool>,
}

impl Row {
    pub fn new(metric: &str, unit: &str, ours: f64) -> Self {
        Self {
            metric: metric.into(),
            unit: unit.into(),
            ours,
            peers: Vec::new(),
            target: None,
            met: None,
        }
    }

    pub fn peer(mut self, name: &str, value: f64) -> Self {
        self.peers.push((name.into(), value));
        self
    }

    /// A target; `met` is only judged on full runs.
    pub fn target(mut self, text: &str, met: bool, judged: bool) -> Self {
        self.target = Some(text.into());
        self.met = judged.then_some(met);
        self
    }
}

/// Everything one benchmark measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub name: String,
    pub rows: Vec<Row>,
    /// Raw summaries and counters, for the JSON only.
    pub details: Value,
    pub notes: Vec<String>,
}

impl BenchResult {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            rows: Vec::new(),
            details: Value::Object(Default::default()),
            notes: Vec::new(),
        }
    }

    /// A benchmark that "ran" but measured nothing is broken: every figure
    /// must be a finite number and the first (the headline) above zero.
    pub fn check(&self) -> anyhow::Result<()> {
        let first = self
            .rows
            .first()
            .ok_or_else(|| anyhow::anyhow!("{} produced no figures", self.name))?;
        anyhow::ensure!(
            first.ours > 0.0,
            "{}: {} is {}",
            self.name,
            first.metric,
            first.ours
        );
        for row in &self.rows {
            let all = std::iter::once(row.ours).chain(row.peers.iter().map(|(_, v)| *v));
            anyhow::ensure!(
                all.clone().all(f64::is_finite),
                "{}: {} is not a number",
                self.name,
                row.metric
            );
        }
        Ok(())
    }

    pub fn row(&mut self, row: Row) {
        self.rows.push(row);
    }

    pub fn detail(&mut self, key: &str, value: impl Serialize) {
        if let Value::Object(map) = &mut self.details {
            map.insert(
                key.into(),
                serde_json::to_value(value).unwrap_or(Value::Null),
            );
        }
    }

    pub fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        eprintln!("  note: {note}");
        self.notes.push(note);
    }
}

/// The whole run: machine, mode, results so far.
#[derive(Debug, Serialize)]
pub struct Report {
    pub machine: Value,
    pub quick: bool,
    pub command: String,
    pub results: Vec<BenchResult>,
    pub failures: Vec<(String, String)>,
    #[serde(skip)]
    json: Option<PathBuf>,
}

impl Report {
    pub fn new(machine: Value, quick: bool, json: Option<&Path>) -> Self {
        Self {
            machine,
            quick,
            command: std::env::args().collect::<Vec<_>>().join(" "),
            results: Vec::new(),
            failures: Vec::new(),
            json: json.map(Path::to_owned),
        }
    }

    pub fn add(&mut self, result: BenchResult) -> anyhow::Result<()> {
        println!("{}", table(std::slice::from_ref(&result)));
        self.results.push(result);
        self.save()
    }

    pub fn fail(&mut self, name: &str, error: &anyhow::Error) -> anyhow::Result<()> {
        eprintln!("benchmark {name} FAILED: {error:#}");
        self.failures.push((name.into(), format!("{error:#}")));
        self.save()
    }

    fn save(&self) -> anyhow::Result<()> {
        if let Some(path) = &self.json {
            std::fs::write(path, serde_json::to_string_pretty(self)?)?;
        }
        Ok(())
    }

    pub fn print_summary(&self) {
        if self.results.len() > 1 {
            println!("\n== summary ==\n{}", table(&self.results));
        }
        for (name, error) in &self.failures {
            println!("FAILED {name}: {error}");
        }
    }
}

/// A plain-text table: benchmark, metric, ours, peers, target, met.
pub fn table(results: &[BenchResult]) -> String {
    let mut lines = vec![[
        "benchmark".to_owned(),
        "metric".to_owned(),
        "ours".to_owned(),
        "peers (same run)".to_owned(),
        "target".to_owned(),
        "met".to_owned(),
    ]];
    for result in results {
        for row in &result.rows {
            let peers: Vec<String> = row
                .peers
                .iter()
                .map(|(name, v)| format!("{name} {}", number(*v)))
                .collect();
            lines.push([
                result.name.clone(),
                row.metric.clone(),
                format!("{} {}", number(row.ours), row.unit),
                peers.join(", "),
                row.target.clone().unwrap_or_default(),
                match row.met {
                    Some(true) => "yes".into(),
                    Some(false) => "NO".into(),
                    None => "-".into(),
                },
            ]);
        }
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    lines
        .iter()
        .map(|l| {
            l.iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect::<Vec<_>>()
                .join(" | ")
                .trim_end()
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Three significant figures, without exponent noise.
pub fn number(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}
