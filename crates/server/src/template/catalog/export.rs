//! A catalog of the store's templates, in the format imports read: each
//! entry is the template as `POST /api/v1/templates` takes it, without
//! `secret_env` and write-only passwords (secrets never leave the server
//! this way; importing the file back keeps them).

use super::{CATALOG_VERSION, WRITE_ONLY};
use crate::template::TemplateSpec;
use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    #[default]
    Yaml,
    Json,
}

impl ExportFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Yaml => "application/yaml",
            ExportFormat::Json => "application/json",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Yaml => "yaml",
            ExportFormat::Json => "json",
        }
    }
}

/// Fields written first, in this order; the rest follow alphabetically.
const LEADING: [&str; 6] = [
    "name",
    "display_name",
    "description",
    "category",
    "icon",
    "image",
];

/// Keys written in a chosen order (serde_json's maps sort them).
struct Ordered(Vec<(String, Value)>);

impl Serialize for Ordered {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct CatalogOut {
    version: u32,
    templates: Vec<Ordered>,
}

/// The catalog text of `templates`.
pub fn export(templates: &[TemplateSpec], format: ExportFormat) -> Result<String, String> {
    let catalog = CatalogOut {
        version: CATALOG_VERSION,
        templates: templates.iter().map(entry).collect(),
    };
    match format {
        ExportFormat::Json => serde_json::to_string_pretty(&catalog)
            .map(|mut text| {
                text.push('\n');
                text
            })
            .map_err(|e| e.to_string()),
        ExportFormat::Yaml => serde_saphyr::to_string(&catalog)
            .map(|text| {
                format!(
                    "# A StreamSpace template catalog (docs/CATALOG.md). secret_env values are\n\
                     # never exported: importing this file keeps the server's own.\n{text}"
                )
            })
            .map_err(|e| e.to_string()),
    }
}

/// One template as an import entry: its spec without `secret_env` and
/// without null fields (an absent field means the same).
fn entry(spec: &TemplateSpec) -> Ordered {
    let Ok(Value::Object(mut fields)) = serde_json::to_value(spec) else {
        return Ordered(Vec::new());
    };
    fields.remove("secret_env");
    // Stored with its default for every template, but a VM template may
    // not write it (a guest's kernel limits its own processes).
    if spec.vm.is_some() {
        fields.remove("pids_limit");
    }
    for (field, _, secret) in WRITE_ONLY {
        if let Some(Value::Object(object)) = fields.get_mut(field) {
            object.remove(secret);
        }
    }
    let mut ordered: Vec<(String, Value)> = LEADING
        .iter()
        .filter_map(|key| fields.remove(*key).map(|v| ((*key).to_owned(), v)))
        .collect();
    ordered.extend(fields);
    ordered.retain_mut(|(_, value)| {
        drop_nulls(value);
        !value.is_null()
    });
    Ordered(ordered)
}

fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}
