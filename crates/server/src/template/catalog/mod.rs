//! Template catalogs: many templates in one YAML or JSON file
//! (`{"version": 1, "templates": [...]}`, each entry what
//! `POST /api/v1/templates` takes), read with errors that name the entry,
//! the field and the line; compared with the store's templates
//! (`plan`: what an import would create, update or leave alone); written
//! back out for export (`export`); and described by a JSON Schema derived
//! from the API's own OpenAPI document (`schema`).

mod export;
mod locate;
mod plan;
mod schema;
#[cfg(test)]
mod tests;

pub use export::{ExportFormat, export};
pub use plan::{ImportAction, ImportItem, ImportSummary, Planned, plan};
pub use schema::json_schema;

use super::TemplateInput;
use serde::Deserialize;

/// The catalog format this version reads and writes.
pub const CATALOG_VERSION: u32 = 1;
/// Most templates in one catalog: far above any real catalog, low enough
/// that one import is one bounded transaction.
pub const MAX_CATALOG_TEMPLATES: usize = 500;
/// Most bytes of a catalog sent to the server (4 MiB: ~20 KB per template
/// at the template limit).
pub const CATALOG_BODY_LIMIT: usize = 4 << 20;

/// Write-only secrets inside an object field, as (field, the key that
/// names whose secret it is, the secret's key): a registry password, which
/// no API answer shows. Exports leave the secret out; an entry without it
/// keeps the stored one while the name stays the same, as `PUT` does.
pub(crate) const WRITE_ONLY: [(&str, &str, &str); 1] = [("registry_auth", "username", "password")];

/// How the catalog is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogFormat {
    Json,
    Yaml,
}

impl CatalogFormat {
    /// The format a `Content-Type` names: JSON or YAML (with or without
    /// parameters such as `charset`), nothing else.
    pub fn from_content_type(value: &str) -> Option<Self> {
        let essence = value.split(';').next().unwrap_or("").trim();
        let essence = essence.to_ascii_lowercase();
        match essence.as_str() {
            "application/json" => Some(CatalogFormat::Json),
            "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" => {
                Some(CatalogFormat::Yaml)
            }
            _ => None,
        }
    }
}

/// One thing wrong with a catalog, located as precisely as the text allows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct CatalogProblem {
    /// The entry at fault (its index in `templates`), when it is one entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// That entry's `name`, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The field at fault, from the catalog's root: `templates[3].ports[0].port`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// 1-based line (and column) in the catalog text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u64>,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl CatalogProblem {
    /// A problem with the catalog as a whole.
    pub fn new(message: impl Into<String>) -> Self {
        Self::whole(message)
    }

    fn whole(message: impl Into<String>) -> Self {
        CatalogProblem {
            index: None,
            name: None,
            field: None,
            line: None,
            column: None,
            message: message.into(),
        }
    }

    /// One line for people: `templates[3] ("firefox"), line 42: ports[0].port: …`.
    pub fn describe(&self) -> String {
        let mut text = String::new();
        if let Some(index) = self.index {
            text.push_str(&format!("templates[{index}]"));
            if let Some(name) = &self.name {
                text.push_str(&format!(" ({name:?})"));
            }
        }
        if let Some(line) = self.line {
            if !text.is_empty() {
                text.push_str(", ");
            }
            text.push_str(&format!("line {line}"));
            if let Some(column) = self.column {
                text.push_str(&format!(" column {column}"));
            }
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        if let Some(field) = &self.field {
            text.push_str(field);
            text.push_str(": ");
        }
        text.push_str(&self.message);
        text
    }
}

/// A catalog entry as read, before validation.
#[derive(Debug)]
pub struct CatalogEntry {
    pub index: usize,
    pub input: TemplateInput,
    /// Whether the entry has a `secret_env` key: without one, an import
    /// keeps the existing template's secret values (exports never carry
    /// them, so a round trip must not erase them).
    pub has_secret_env: bool,
}

/// A catalog read from its text, kept with the text so that later
/// problems (validation, duplicate names) can be located in it.
pub struct ParsedCatalog<'a> {
    pub entries: Vec<CatalogEntry>,
    /// The entries' names, kept apart from the entries (which planning
    /// consumes) to name entries in problems.
    names: Vec<String>,
    text: &'a str,
    format: CatalogFormat,
    /// Read when the first problem needs a line.
    positions: std::sync::OnceLock<locate::Positions>,
}

impl ParsedCatalog<'_> {
    /// A problem with field `field` (relative to entry `index`), located in
    /// the text where it can be.
    pub fn problem(&self, index: usize, field: &str, message: impl Into<String>) -> CatalogProblem {
        let name = self.names.get(index).filter(|n| !n.is_empty()).cloned();
        let full = locate::join(&format!("templates[{index}]"), field);
        let positions = self
            .positions
            .get_or_init(|| locate::Positions::read(self.text, self.format));
        let at = locate::position(positions, &full);
        CatalogProblem {
            index: Some(index),
            name,
            field: Some(full),
            line: at.map(|(line, _)| line),
            column: at.map(|(_, column)| column),
            message: message.into(),
        }
    }
}

/// A catalog file: what `POST /api/v1/templates/import` takes and
/// `GET /api/v1/templates/export` gives (docs/CATALOG.md).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Catalog)]
pub struct CatalogFile {
    /// The format's version: 1.
    #[schema(minimum = 1, maximum = 1)]
    pub version: u32,
    /// Templates as `POST /api/v1/templates` takes them, matched by `name`
    /// with the server's; at most 500.
    #[schema(max_items = 500)]
    pub templates: Vec<TemplateInput>,
}

/// Reads a catalog: the first problem of syntax, type or unknown field, at
/// its line and field, or the entries in order.
pub fn parse(text: &str, format: CatalogFormat) -> Result<ParsedCatalog<'_>, CatalogProblem> {
    let file = match format {
        CatalogFormat::Json => parse_json(text),
        CatalogFormat::Yaml => parse_yaml(text),
    }
    .map_err(|problem| with_entry_name(problem, text, format))?;
    if file.version != CATALOG_VERSION {
        let mut problem = CatalogProblem::whole(format!(
            "this server reads catalog version {CATALOG_VERSION}, not {}",
            file.version
        ));
        problem.field = Some("version".into());
        let positions = locate::Positions::read(text, format);
        problem.line = locate::position(&positions, "version").map(|(l, _)| l);
        return Err(problem);
    }
    if file.templates.len() > MAX_CATALOG_TEMPLATES {
        let mut problem = CatalogProblem::whole(format!(
            "{} templates: a catalog holds at most {MAX_CATALOG_TEMPLATES}; split it in several",
            file.templates.len()
        ));
        problem.field = Some("templates".into());
        return Err(problem);
    }
    let secrets = locate::outline(text, format)
        .map(|entries| {
            entries
                .into_iter()
                .map(|e| e.secret_env.is_some())
                .collect()
        })
        .unwrap_or_else(|| vec![true; file.templates.len()]);
    let names = file.templates.iter().map(|t| t.name.clone()).collect();
    let entries = file
        .templates
        .into_iter()
        .enumerate()
        .map(|(index, input)| CatalogEntry {
            index,
            input,
            has_secret_env: secrets.get(index).copied().unwrap_or(true),
        })
        .collect();
    Ok(ParsedCatalog {
        entries,
        names,
        text,
        format,
        positions: std::sync::OnceLock::new(),
    })
}

fn parse_json(text: &str) -> Result<CatalogFile, CatalogProblem> {
    let mut de = serde_json::Deserializer::from_str(text);
    let file: CatalogFile = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let message = strip_position(&inner.to_string());
        let message = if inner.is_syntax() || inner.is_eof() {
            format!("not valid JSON: {message}")
        } else {
            message
        };
        located(
            path,
            Some((inner.line() as u64, inner.column() as u64)),
            message,
        )
    })?;
    de.end().map_err(|err| {
        located(
            String::new(),
            Some((err.line() as u64, err.column() as u64)),
            "the text continues after the catalog: send one JSON object".into(),
        )
    })?;
    Ok(file)
}

fn parse_yaml(text: &str) -> Result<CatalogFile, CatalogProblem> {
    let mut path = None;
    let result =
        serde_saphyr::with_deserializer_from_str_with_options(text, locate::yaml_options(), |de| {
            serde_path_to_error::deserialize(de).map_err(|err| {
                path = Some(err.path().to_string());
                err.into_inner()
            })
        });
    result.map_err(|err| {
        let at = err.location().map(|l| (l.line(), l.column()));
        let message = yaml_message(&err);
        located(path.unwrap_or_default(), at, message)
    })
}

/// serde-saphyr's message without the location it prefixes or appends
/// (the problem carries it apart).
fn yaml_message(err: &serde_saphyr::Error) -> String {
    let text = err.without_snippet().to_string();
    let text = strip_position(text.lines().next().unwrap_or_default().trim());
    match text.split_once(": ") {
        Some((head, rest)) if head.starts_with("line ") || head.contains(" at line ") => {
            rest.to_owned()
        }
        _ => text,
    }
}

/// A problem from the parser: its path (`templates[3].ports[0].port`), with
/// the unknown field's own name appended when that is what is wrong.
fn located(path: String, at: Option<(u64, u64)>, message: String) -> CatalogProblem {
    let mut field = match path.as_str() {
        "" | "." | "?" => String::new(),
        other => other.to_owned(),
    };
    // serde_json names the struct holding an unknown field, serde-saphyr
    // the field itself.
    if let Some(unknown) = unknown_field(&message)
        && !field.ends_with(&format!(".{unknown}"))
        && field != unknown
    {
        field = locate::join(&field, unknown);
    }
    let index = locate::entry_index(&field);
    CatalogProblem {
        index,
        name: None,
        field: (!field.is_empty()).then_some(field),
        line: at.map(|(l, _)| l).filter(|&l| l > 0),
        column: at.map(|(_, c)| c).filter(|&c| c > 0),
        message,
    }
}

fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.split("unknown field `").nth(1)?;
    rest.split('`').next()
}

fn with_entry_name(
    mut problem: CatalogProblem,
    text: &str,
    format: CatalogFormat,
) -> CatalogProblem {
    if let Some(index) = problem.index {
        problem.name = locate::outline(text, format)
            .and_then(|entries| entries.into_iter().nth(index))
            .and_then(|entry| entry.name);
    }
    problem
}

/// serde_json appends " at line 1 column 40"; the problem carries that apart.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}
