//! `streamspace templates ls|get|apply`: templates one at a time, the way
//! `kubectl apply` treats objects: `apply -f` creates the template if no
//! template has its name, else replaces it. A catalog file (with a
//! `templates:` list) is imported whole instead, all or nothing.

use crate::catalog_source::{Format, read_source};
use crate::client::{Client, checked, segment};
use crate::control_plane::ControlPlaneArgs;
use crate::failure::{Failure, NOT_FOUND, USAGE, exit_code};
use crate::output::{Column, OutputArg, col, show};
use anyhow::Context;
use clap::Args;
use reqwest::Method;
use serde_json::Value;

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    output: OutputArg,
    #[command(flatten)]
    server: ControlPlaneArgs,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// The template's name or id.
    template: String,
    #[command(flatten)]
    output: OutputArg,
    #[command(flatten)]
    server: ControlPlaneArgs,
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// A template (or catalog) file, an http(s):// URL, or `-` for standard
    /// input; JSON or YAML.
    #[arg(long = "filename", short = 'f')]
    source: String,
    #[command(flatten)]
    output: OutputArg,
    #[command(flatten)]
    server: ControlPlaneArgs,
}

const COLUMNS: &[Column] = &[
    col("NAME", "name"),
    col("DISPLAY NAME", "display_name"),
    col("IMAGE", "image"),
    col("PLATFORMS", "platforms"),
    col("CPU", "resources.cpu"),
    col("MEMORY", "resources.memory"),
    col("ID", "id"),
];

pub async fn list(args: ListArgs) -> anyhow::Result<()> {
    let templates = args.server.client()?.get("/api/v1/templates").await?;
    show(args.output.output, &templates, COLUMNS)
}

pub async fn get(args: GetArgs) -> anyhow::Result<()> {
    let path = format!("/api/v1/templates/{}", segment(&args.template));
    let template = args.server.client()?.get(&path).await?;
    show(args.output.output, &template, COLUMNS)
}

pub async fn apply(args: ApplyArgs) -> anyhow::Result<()> {
    let client = args.server.client()?;
    let http = client.tls.http_client()?;
    let (text, hint) = read_source(&http, &args.source).await?;
    let format = hint.unwrap_or(match text.trim_start().starts_with('{') {
        true => Format::Json,
        false => Format::Yaml,
    });
    let document: Value = match format {
        Format::Json => serde_json::from_str(&text).map_err(|e| invalid(&args.source, e))?,
        Format::Yaml => serde_saphyr::from_str(&text).map_err(|e| invalid(&args.source, e))?,
    };
    if document.get("templates").is_some() {
        return import_catalog(&client, text, format, &args).await;
    }
    let Some(name) = document["name"].as_str().filter(|n| !n.is_empty()) else {
        return Err(
            Failure::new(USAGE, format!("{}: a template needs a `name`", args.source)).into(),
        );
    };
    let path = format!("/api/v1/templates/{}", segment(name));
    let (template, action) = match client.call(Method::PUT, &path, Some(&document)).await {
        Ok(template) => (template, "replaced"),
        Err(err) if exit_code(&err) == NOT_FOUND => {
            let created = client
                .call(Method::POST, "/api/v1/templates", Some(&document))
                .await?;
            (created, "created")
        }
        Err(err) => return Err(err),
    };
    eprintln!("Template {name} {action}.");
    show(args.output.output, &template, COLUMNS)
}

fn invalid(source: &str, err: impl std::fmt::Display) -> Failure {
    Failure::new(USAGE, format!("{source} is not valid JSON or YAML: {err}"))
}

/// A catalog goes to the import endpoint, which checks it all first.
async fn import_catalog(
    client: &Client,
    text: String,
    format: Format,
    args: &ApplyArgs,
) -> anyhow::Result<()> {
    let content_type = match format {
        Format::Json => "application/json",
        Format::Yaml => "application/yaml",
    };
    let request = client
        .request(Method::POST, "/api/v1/templates/import")?
        .header(http::header::CONTENT_TYPE, content_type)
        .body(text);
    let response = checked(client.send(request).await?).await?;
    let summary: Value = response
        .json()
        .await
        .context("the import's answer was cut off")?;
    let rows = summary["templates"].clone();
    eprintln!(
        "Catalog applied: {} created, {} updated, {} unchanged.",
        summary["created"], summary["updated"], summary["unchanged"]
    );
    let columns = [
        col("NAME", "name"),
        col("ACTION", "action"),
        col("CHANGED", "changed"),
    ];
    match args.output.output {
        crate::output::Format::Table => show(args.output.output, &rows, &columns),
        other => show(other, &summary, &columns),
    }
}
