//! `streamspace templates`: list, show and apply templates; import a
//! template catalog from a file or URL (with a dry-run preview), export the
//! server's templates as one, and print the catalog's JSON Schema
//! (docs/CATALOG.md).

use crate::catalog_source::{Format, read_source};
use crate::control_plane::ControlPlaneArgs;
use crate::failure::Failure;
use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use streamspace_agent::explain_tls_error;
use streamspace_server::template::catalog::json_schema;

#[derive(Subcommand, Debug)]
pub enum TemplatesCommand {
    /// List the templates you may launch (admins: all).
    #[command(alias = "list")]
    Ls(crate::template_apply::ListArgs),
    /// Show one template, by name or id.
    Get(crate::template_apply::GetArgs),
    /// Create or replace templates from a file (`-f`): one template, or a
    /// catalog (then the same as `import`).
    Apply(crate::template_apply::ApplyArgs),
    /// Import a catalog file (or http(s) URL, or `-` for stdin): create and
    /// update templates by name, all or nothing.
    Import(ImportArgs),
    /// Export the server's templates as a catalog (without secret values).
    Export(ExportArgs),
    /// Print the catalog's JSON Schema (catalog/schema.json is this output).
    Schema,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// A catalog file, an http(s):// URL, or `-` for standard input.
    source: String,
    /// Only show what would change; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// The catalog's format; by default from the file name's extension
    /// (.json, .yaml, .yml), else from its first character.
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// `table` for people, `json` for scripts (the server's summary).
    #[arg(long, value_enum, default_value = "table")]
    output: Output,
    #[command(flatten)]
    server: ControlPlaneArgs,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[arg(long, value_enum, default_value = "yaml")]
    format: Format,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
    #[command(flatten)]
    server: ControlPlaneArgs,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    Table,
    Json,
}

pub async fn run(command: TemplatesCommand) -> anyhow::Result<()> {
    match command {
        TemplatesCommand::Ls(args) => crate::template_apply::list(args).await,
        TemplatesCommand::Get(args) => crate::template_apply::get(args).await,
        TemplatesCommand::Apply(args) => crate::template_apply::apply(args).await,
        TemplatesCommand::Import(args) => import(args).await,
        TemplatesCommand::Export(args) => export(args).await,
        TemplatesCommand::Schema => {
            let openapi: Value = serde_json::from_str(&streamspace_server::api::openapi_json()?)?;
            let schema = json_schema(&openapi).map_err(anyhow::Error::msg)?;
            print(&format!("{}\n", serde_json::to_string_pretty(&schema)?))
        }
    }
}

async fn import(args: ImportArgs) -> anyhow::Result<()> {
    let (server, token) = args.server.resolve()?;
    let client = args.server.ca.client_tls()?.http_client()?;
    let (text, hint) = read_source(&client, &args.source).await?;
    let format = args
        .format
        .or(hint)
        .unwrap_or_else(|| match text.trim_start().starts_with('{') {
            true => Format::Json,
            false => Format::Yaml,
        });
    let mut url = server.join("/api/v1/templates/import")?;
    if args.dry_run {
        url.set_query(Some("dry_run=true"));
    }
    let response = client
        .post(url)
        .bearer_auth(&token)
        .header(http::header::CONTENT_TYPE, format.content_type())
        .body(text)
        .send()
        .await
        .with_context(|| format!("cannot reach the control plane at {server}"))
        .map_err(explain_tls_error)?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        return Err(Failure::new(Failure::code_for(status), refusal(status, &body)).into());
    }
    match args.output {
        Output::Json => print(&format!("{}\n", serde_json::to_string_pretty(&body)?)),
        Output::Table => print(&summary_table(&body)),
    }
}

/// The server's refusal, with every catalog problem on its own line.
fn refusal(status: reqwest::StatusCode, body: &Value) -> String {
    let mut text = format!(
        "{status}: {}",
        body["error"].as_str().unwrap_or("request refused")
    );
    let problems = body["problems"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if problems.len() > 1 {
        text.push_str(&format!(
            "\n{} problems, nothing was imported:",
            problems.len()
        ));
        for problem in problems {
            text.push_str(&format!("\n  {}", describe(problem)));
        }
    }
    text
}

/// A problem as the server's `describe` writes it.
fn describe(problem: &Value) -> String {
    let mut head = Vec::new();
    if let Some(index) = problem["index"].as_u64() {
        head.push(match problem["name"].as_str() {
            Some(name) => format!("templates[{index}] ({name:?})"),
            None => format!("templates[{index}]"),
        });
    }
    if let Some(line) = problem["line"].as_u64() {
        head.push(format!("line {line}"));
    }
    let field = problem["field"]
        .as_str()
        .map(|f| format!("{f}: "))
        .unwrap_or_default();
    let message = problem["message"].as_str().unwrap_or_default();
    match head.is_empty() {
        true => format!("{field}{message}"),
        false => format!("{}: {field}{message}", head.join(", ")),
    }
}

/// The summary as a table: one template per line, then the counts.
fn summary_table(body: &Value) -> String {
    let rows: Vec<(&str, &str, String)> = body["templates"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|t| {
            let changed: Vec<&str> = t["changed"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            (
                t["action"].as_str().unwrap_or("?"),
                t["name"].as_str().unwrap_or("?"),
                changed.join(", "),
            )
        })
        .collect();
    let width = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(4);
    let mut out = format!("{:<10} {:<width$} CHANGED\n", "ACTION", "NAME");
    for (action, name, changed) in &rows {
        out.push_str(format!("{action:<10} {name:<width$} {changed}").trim_end());
        out.push('\n');
    }
    let dry_run = body["dry_run"].as_bool().unwrap_or(false);
    let (create, update) = match dry_run {
        true => ("to create", "to update"),
        false => ("created", "updated"),
    };
    out.push_str(&format!(
        "{} templates: {} {create}, {} {update}, {} unchanged{}\n",
        rows.len(),
        body["created"],
        body["updated"],
        body["unchanged"],
        if dry_run {
            " (dry run: nothing was written)"
        } else {
            ""
        }
    ));
    out
}

async fn export(args: ExportArgs) -> anyhow::Result<()> {
    let (server, token) = args.server.resolve()?;
    let client = args.server.ca.client_tls()?.http_client()?;
    let mut url = server.join("/api/v1/templates/export")?;
    let format = match args.format {
        Format::Yaml => "yaml",
        Format::Json => "json",
    };
    url.set_query(Some(&format!("format={format}")));
    let response = client
        .get(url)
        .bearer_auth(&token)
        .send()
        .await
        .with_context(|| format!("cannot reach the control plane at {server}"))
        .map_err(explain_tls_error)?;
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        let body: Value = serde_json::from_str(&text).unwrap_or_default();
        return Err(Failure::new(Failure::code_for(status), refusal(status, &body)).into());
    }
    match args.output {
        Some(path) => {
            std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
        }
        None => print(&text),
    }
}

/// Writes to standard output; a reader that has gone (`| head`) wanted no
/// more.
fn print(text: &str) -> anyhow::Result<()> {
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
    fn the_table_lists_every_template_and_the_counts() {
        let table = summary_table(&json!({
            "dry_run": true, "created": 1, "updated": 1, "unchanged": 0,
            "templates": [
                {"index": 0, "name": "firefox", "action": "create", "changed": []},
                {"index": 1, "name": "code-server", "action": "update", "changed": ["env", "image"]}
            ]
        }));
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "ACTION     NAME        CHANGED");
        assert_eq!(lines[1], "create     firefox");
        assert_eq!(lines[2], "update     code-server env, image");
        assert_eq!(
            lines[3],
            "2 templates: 1 to create, 1 to update, 0 unchanged (dry run: nothing was written)"
        );
    }

    #[test]
    fn problems_are_listed_with_entry_line_and_field() {
        let problem = json!({
            "index": 3, "name": "gimp", "field": "templates[3].ports[0].port",
            "line": 42, "message": "70000 is not a port"
        });
        assert_eq!(
            describe(&problem),
            "templates[3] (\"gimp\"), line 42: templates[3].ports[0].port: 70000 is not a port"
        );
    }
}
