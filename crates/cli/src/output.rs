//! `--output table|json|yaml`: tables for people, JSON and YAML (the API's
//! own objects, unchanged) for scripts. Every print goes through `print`,
//! so a reader that has gone (`| head`) ends the command quietly.

use clap::{Args, ValueEnum};
use serde_json::Value;
use std::io::Write;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Table,
    Json,
    Yaml,
}

#[derive(Args, Debug, Clone, Copy)]
pub struct OutputArg {
    /// `table` for people; `json` or `yaml` (the API's objects) for scripts.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: Format,
}

/// A table column: its header and where its value is in each object
/// (`a.b` reads field `b` of field `a`).
pub struct Column {
    pub header: &'static str,
    pub path: &'static str,
}

pub const fn col(header: &'static str, path: &'static str) -> Column {
    Column { header, path }
}

/// Prints `value` (an object or a list of them) in `format`; tables show
/// `columns`.
pub fn show(format: Format, value: &Value, columns: &[Column]) -> anyhow::Result<()> {
    let text = match format {
        Format::Json => format!("{}\n", serde_json::to_string_pretty(value)?),
        Format::Yaml => serde_saphyr::to_string(value)?,
        Format::Table => match value {
            Value::Array(rows) => table(rows, columns),
            one => table(std::slice::from_ref(one), columns),
        },
    };
    print(&text)
}

/// Rows under their headers, each column as wide as its widest cell.
pub fn table(rows: &[Value], columns: &[Column]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| columns.iter().map(|c| cell(row, c.path)).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.header.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |values: Vec<&str>| {
        let padded: Vec<String> = values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(columns.iter().map(|c| c.header).collect());
    for row in &cells {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// One cell: strings as they are, `-` for nothing, lists joined by commas,
/// objects as `k=v` pairs.
fn cell(row: &Value, path: &str) -> String {
    let value = path.split('.').fold(row, |v, key| &v[key]);
    text(value)
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.replace(['\n', '\t'], " "),
        Value::Array(items) if items.is_empty() => "-".into(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
        Value::Object(map) if map.is_empty() => "-".into(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", text(v)))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

/// Writes to standard output; a reader that has gone wanted no more.
pub fn print(text: &str) -> anyhow::Result<()> {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(err.into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_and_fill_gaps() {
        let rows = [
            json!({"id": "a1", "phase": "Running", "r": {"cpu": "1"}}),
            json!({"id": "b22", "phase": null, "r": {"cpu": "500m"}}),
        ];
        let columns = [col("ID", "id"), col("PHASE", "phase"), col("CPU", "r.cpu")];
        assert_eq!(
            table(&rows, &columns),
            "ID   PHASE    CPU\na1   Running  1\nb22  -        500m\n"
        );
    }

    #[test]
    fn lists_and_maps_fit_in_a_cell() {
        assert_eq!(text(&json!(["a", "b"])), "a,b");
        assert_eq!(text(&json!({"gpu": "yes"})), "gpu=yes");
        assert_eq!(text(&json!(3)), "3");
        assert_eq!(text(&json!("two\nlines")), "two lines");
    }
}
