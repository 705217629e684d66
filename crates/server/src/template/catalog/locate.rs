//! Where things are in a catalog's text: the line of a field named by its
//! path (`templates[3].ports[0].port`), for problems found after parsing
//! (validation, duplicate names), and a lenient outline of the entries
//! (their names, whether they have `secret_env`).
//!
//! Positions come from serde-saphyr's spans. JSON is read as YAML for
//! this (JSON is YAML's flow style), which is best effort: a JSON text YAML
//! cannot read (tabs in odd places) just gets no line.

use super::CatalogFormat;
use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;
use std::fmt;

/// Limits for YAML readers: serde-saphyr's defaults bound events, nesting
/// and anchors; what aliases may replay, and what anchors may record, is
/// cut to a tenth of its default (100,000 events: shared defaults merged
/// into hundreds of entries fit many times over), so an alias bomb is
/// refused quickly by each of the (up to three) readers of one catalog.
pub fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.with_snippet = false;
    options.alias_limits.max_total_replayed_events = 100_000;
    let mut budget = options.budget.unwrap_or_default();
    budget.max_recorded_anchor_events = 100_000;
    options.budget = Some(budget);
    options
}

/// `prefix.field`, or the one of them that is not empty.
pub fn join(prefix: &str, field: &str) -> String {
    match (prefix.is_empty(), field.is_empty()) {
        (true, _) => field.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) if field.starts_with('[') => format!("{prefix}{field}"),
        (false, false) => format!("{prefix}.{field}"),
    }
}

/// The entry a path is in: 3 for `templates[3].ports[0]`.
pub fn entry_index(path: &str) -> Option<usize> {
    let rest = path.strip_prefix("templates[")?;
    rest.split(']').next()?.parse().ok()
}

/// An entry as the outline sees it: anything goes except its shape.
#[derive(Deserialize)]
pub struct OutlineEntry {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub secret_env: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Outline {
    #[serde(default)]
    templates: Vec<OutlineEntry>,
}

/// The entries' names and keys, read leniently (unknown keys ignored);
/// `None` when even that fails.
pub fn outline(text: &str, format: CatalogFormat) -> Option<Vec<OutlineEntry>> {
    let outline: Outline = match format {
        CatalogFormat::Json => serde_json::from_str(text).ok()?,
        CatalogFormat::Yaml => serde_saphyr::from_str_with_options(text, yaml_options()).ok()?,
    };
    Some(outline.templates)
}

/// The catalog's text as a tree of nodes with their positions, read once
/// for all the problems of one import (reading it per problem made an
/// import with hundreds of problems quadratic).
pub struct Positions(Option<Spanned<Node>>);

impl Positions {
    pub fn read(text: &str, _format: CatalogFormat) -> Self {
        Positions(serde_saphyr::from_str_with_options(text, yaml_options()).ok())
    }
}

/// The 1-based line and column of the field `path` names, or of the
/// nearest enclosing one that is written out (a field left to its default
/// has no line of its own).
pub fn position(positions: &Positions, path: &str) -> Option<(u64, u64)> {
    let mut at = positions.0.as_ref()?;
    for segment in segments(path) {
        let next = match (&at.value, segment) {
            (Node::Map(entries), Segment::Key(key)) => {
                entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
            }
            (Node::Seq(items), Segment::Index(i)) => items.get(i),
            _ => None,
        };
        match next {
            Some(node) => at = node,
            None => break,
        }
    }
    let location = at.referenced;
    (location.line() > 0).then(|| (location.line(), location.column()))
}

#[derive(Debug, PartialEq)]
enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// `templates[3].env.HOME` → `templates`, 3, `env`, `HOME`.
fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut pieces = part.split('[');
        if let Some(key) = pieces.next().filter(|k| !k.is_empty()) {
            out.push(Segment::Key(key));
        }
        for index in pieces {
            match index.trim_end_matches(']').parse() {
                Ok(i) => out.push(Segment::Index(i)),
                Err(_) => return out,
            }
        }
    }
    out
}

/// A YAML (or JSON) document as a tree of spans: only its shape and where
/// each node is, not its values.
#[derive(Debug)]
enum Node {
    Map(Vec<(String, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
    Leaf,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Key>()? {
            entries.push((key.0, map.next_value()?));
        }
        Ok(Node::Map(entries))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_str<E>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

/// A mapping key as text (YAML keys may be numbers or booleans).
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a scalar key")
    }
    fn visit_str<E>(self, v: &str) -> Result<Key, E> {
        Ok(Key(v.to_owned()))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Key, E> {
        Ok(Key(v.to_string()))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Key, E> {
        Ok(Key(v.to_string()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Key, E> {
        Ok(Key(v.to_string()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Key, E> {
        Ok(Key(v.to_string()))
    }
    fn visit_unit<E>(self) -> Result<Key, E> {
        Ok(Key(String::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_keys_and_indexes() {
        assert_eq!(
            segments("templates[3].ports[0].port"),
            [
                Segment::Key("templates"),
                Segment::Index(3),
                Segment::Key("ports"),
                Segment::Index(0),
                Segment::Key("port"),
            ]
        );
        assert_eq!(entry_index("templates[12].name"), Some(12));
        assert_eq!(entry_index("version"), None);
        assert_eq!(join("templates[1]", "ports[0]"), "templates[1].ports[0]");
        assert_eq!(join("templates", "[1]"), "templates[1]");
    }

    #[test]
    fn fields_are_found_in_yaml_and_json() {
        let yaml = "version: 1\ntemplates:\n  - name: a\n    image: x\n  - name: b\n    ports:\n      - name: web\n        port: 70000\n";
        let yaml = Positions::read(yaml, CatalogFormat::Yaml);
        let at = |path| position(&yaml, path).map(|(l, _)| l);
        assert_eq!(at("templates[1].ports[0].port"), Some(8));
        assert_eq!(at("templates[0].image"), Some(4));
        // A field left out: the line of the entry that lacks it.
        assert_eq!(at("templates[0].home_path"), Some(3));
        let json = "{\n \"version\": 1,\n \"templates\": [\n  {\"name\": \"a\",\n   \"image\": \"x\"}\n ]\n}";
        let json = Positions::read(json, CatalogFormat::Json);
        let at = |path| position(&json, path).map(|(l, _)| l);
        assert_eq!(at("templates[0].image"), Some(5));
    }
}
