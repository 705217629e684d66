//! What importing a catalog would do: each entry validated as
//! `POST /api/v1/templates` validates it, matched by name with the store's
//! templates, and compared field by field.

use super::{CatalogProblem, ParsedCatalog, WRITE_ONLY};
use crate::store::TemplateRecord;
use crate::template::TemplateSpec;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use streamspace_protocol::TemplateId;

/// What an import does to one template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImportAction {
    /// No template has this name yet.
    Create,
    /// The template exists and some fields differ (`changed`).
    Update,
    /// The template exists exactly as written.
    Unchanged,
}

/// One entry of an import's summary.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImportItem {
    /// The entry's index in the catalog's `templates`.
    pub index: usize,
    pub name: String,
    pub action: ImportAction,
    /// The fields an update changes (names only: `secret_env` values are
    /// never shown).
    pub changed: Vec<String>,
}

/// What an import did, or (with `dry_run`) would do.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImportSummary {
    /// True when nothing was written.
    pub dry_run: bool,
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    /// Every entry, in catalog order.
    pub templates: Vec<ImportItem>,
}

/// An entry validated and matched: what to write, and where.
#[derive(Debug)]
pub struct Planned {
    pub item: ImportItem,
    pub spec: TemplateSpec,
    /// The template it replaces (updates only).
    pub existing: Option<TemplateId>,
}

impl ImportSummary {
    pub fn of(planned: &[Planned], dry_run: bool) -> Self {
        let count = |action| planned.iter().filter(|p| p.item.action == action).count();
        ImportSummary {
            dry_run,
            created: count(ImportAction::Create),
            updated: count(ImportAction::Update),
            unchanged: count(ImportAction::Unchanged),
            templates: planned.iter().map(|p| p.item.clone()).collect(),
        }
    }
}

/// Validates every entry against `existing` (the store's templates): all
/// of them planned, or every problem found (one per entry).
pub fn plan(
    mut catalog: ParsedCatalog<'_>,
    existing: Vec<TemplateRecord>,
) -> Result<Vec<Planned>, Vec<CatalogProblem>> {
    let mut by_name: HashMap<String, TemplateRecord> = existing
        .into_iter()
        .map(|t| (t.spec.name.clone(), t))
        .collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut problems = Vec::new();
    let mut planned = Vec::new();
    let entries = std::mem::take(&mut catalog.entries);
    for entry in entries {
        let index = entry.index;
        if let Some(&first) = seen.get(&entry.input.name) {
            problems.push(catalog.problem(
                index,
                "name",
                format!("templates[{first}] has this name already: names must be unique"),
            ));
            continue;
        }
        seen.insert(entry.input.name.clone(), index);
        let current = by_name.remove(&entry.input.name);
        let mut input = entry.input;
        let kept = match (&current, entry.has_secret_env) {
            (Some(current), false) => current.spec.secret_env.values().clone(),
            _ => BTreeMap::new(),
        };
        let kept_secrets = !kept.is_empty();
        if kept_secrets {
            input.secret_env = kept;
        }
        let checked = input.validate().and_then(|mut spec| {
            // A registry password left out is kept only for the same username.
            spec.keep_registry_password(current.as_ref().map(|c| &c.spec))?;
            Ok(spec)
        });
        match checked {
            Ok(spec) => planned.push(compare(index, spec, current)),
            Err(err) => {
                let mut message = err.message;
                let about_secrets =
                    err.field.starts_with("secret_env") || message.contains("secret variable");
                if kept_secrets && about_secrets {
                    message.push_str(" (secret_env is kept from the existing template)");
                }
                problems.push(catalog.problem(index, &err.field, message));
            }
        }
    }
    if problems.is_empty() {
        Ok(planned)
    } else {
        Err(problems)
    }
}

fn compare(index: usize, spec: TemplateSpec, current: Option<TemplateRecord>) -> Planned {
    let (action, changed, existing, spec) = match current {
        None => (ImportAction::Create, Vec::new(), None, spec),
        Some(record) => {
            let spec = keep_write_only(spec, &record.spec);
            let changed = changed_fields(&record.spec, &spec);
            let action = if changed.is_empty() {
                ImportAction::Unchanged
            } else {
                ImportAction::Update
            };
            (action, changed, Some(record.id), spec)
        }
    };
    Planned {
        item: ImportItem {
            index,
            name: spec.name.clone(),
            action,
            changed,
        },
        spec,
        existing,
    }
}

/// `spec` with the stored write-only secrets its entry left out (see
/// [`WRITE_ONLY`]): exports cannot carry them, and a round trip must not
/// erase them. Works on the spec's JSON, so it needs no field by name.
fn keep_write_only(spec: TemplateSpec, stored: &TemplateSpec) -> TemplateSpec {
    let (Ok(Value::Object(mut new)), Ok(Value::Object(old))) =
        (serde_json::to_value(&spec), serde_json::to_value(stored))
    else {
        return spec;
    };
    let mut kept = false;
    for (field, owner, secret) in WRITE_ONLY {
        let (Some(Value::Object(entry)), Some(Value::Object(stored))) =
            (new.get_mut(field), old.get(field))
        else {
            continue;
        };
        if entry.get(secret).is_none()
            && entry.get(owner) == stored.get(owner)
            && let Some(value) = stored.get(secret)
        {
            entry.insert(secret.to_owned(), value.clone());
            kept = true;
        }
    }
    match kept {
        true => serde_json::from_value(Value::Object(new)).unwrap_or(spec),
        false => spec,
    }
}

/// The top-level fields whose values differ, in the spec's field order
/// where serde writes one.
pub fn changed_fields(old: &TemplateSpec, new: &TemplateSpec) -> Vec<String> {
    let fields = |spec: &TemplateSpec| -> BTreeMap<String, serde_json::Value> {
        match serde_json::to_value(spec) {
            Ok(serde_json::Value::Object(map)) => map.into_iter().collect(),
            _ => BTreeMap::new(),
        }
    };
    let (old, new) = (fields(old), fields(new));
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .cloned()
        .collect()
}
