//! The little XML this platform writes and reads, through quick-xml:
//! domain, volume and pool descriptions it renders, and the parts of
//! libvirt's answers it needs (the VNC port, its own metadata, formats and
//! paths).
//!
//! The rule that keeps it safe is that every value that comes from a user
//! (names, labels, paths) goes through [`Writer`], never through `format!`:
//! quick-xml escapes it (in attributes also the whitespace XML would
//! normalise to spaces), and characters XML 1.0 cannot carry at all become
//! U+FFFD first, so a label can never make a document libvirt refuses.
//! [`events`] flattens quick-xml's reader into tags and text: comments,
//! processing instructions and declarations are skipped, so that text
//! inside them (another application's metadata) is never taken for
//! elements; CDATA and entity references become text.

use quick_xml::XmlVersion;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesEnd, BytesStart, BytesText, Event as XmlEvent};
use std::collections::BTreeMap;

/// Builds an XML document; element and attribute names are our own
/// constants, every value is escaped.
pub struct Writer {
    inner: quick_xml::Writer<Vec<u8>>,
    open: Vec<&'static str>,
}

impl Writer {
    pub fn new() -> Self {
        Writer {
            inner: quick_xml::Writer::new(Vec::new()),
            open: Vec::new(),
        }
    }

    /// `<name a="v" …>`; closed by [`Writer::close`].
    pub fn open(&mut self, name: &'static str, attrs: &[(&str, &str)]) -> &mut Self {
        self.write(XmlEvent::Start(start_tag(name, attrs)));
        self.open.push(name);
        self
    }

    /// `<name a="v" …/>`.
    pub fn empty(&mut self, name: &'static str, attrs: &[(&str, &str)]) -> &mut Self {
        self.write(XmlEvent::Empty(start_tag(name, attrs)));
        self
    }

    /// `<name a="v" …>text</name>`.
    pub fn text(&mut self, name: &'static str, attrs: &[(&str, &str)], text: &str) -> &mut Self {
        self.open(name, attrs);
        self.write(XmlEvent::Text(BytesText::new(&xml_chars(text))));
        self.close()
    }

    /// Closes the innermost open element.
    pub fn close(&mut self) -> &mut Self {
        if let Some(name) = self.open.pop() {
            self.write(XmlEvent::End(BytesEnd::new(name)));
        }
        self
    }

    /// The document, with every element still open closed.
    pub fn finish(mut self) -> String {
        while !self.open.is_empty() {
            self.close();
        }
        // Only `&str`s went in.
        String::from_utf8_lossy(&self.inner.into_inner()).into_owned()
    }

    fn write(&mut self, event: XmlEvent<'_>) {
        // Writing to a `Vec` cannot fail.
        let _ = self.inner.write_event(event);
    }
}

fn start_tag<'a>(name: &'a str, attrs: &[(&str, &str)]) -> BytesStart<'a> {
    let mut tag = BytesStart::new(name);
    for (key, value) in attrs {
        tag.push_attribute((*key, xml_chars(value).as_str()));
    }
    tag
}

/// `text` with the characters XML 1.0 cannot carry (control characters
/// but tab and line ends, U+FFFE, U+FFFF) replaced by U+FFFD.
fn xml_chars(text: &str) -> String {
    text.replace(
        |c: char| {
            (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{FFFE}' || c == '\u{FFFF}'
        },
        "\u{FFFD}",
    )
}

/// What the reader sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A start tag (`empty` for `<x/>`, which has no [`Event::End`]), with
    /// its name as written (prefix included) and its attributes unescaped.
    Start {
        name: String,
        attrs: BTreeMap<String, String>,
        empty: bool,
    },
    End {
        name: String,
    },
    /// Text between tags (CDATA and references resolved), trimmed; never
    /// empty.
    Text(String),
}

impl Event {
    /// The element's name without a namespace prefix.
    pub fn local_name(&self) -> Option<&str> {
        match self {
            Event::Start { name, .. } | Event::End { name } => {
                Some(name.rsplit(':').next().unwrap_or(name))
            }
            Event::Text(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed XML at byte {at}: {what}")]
pub struct XmlError {
    pub at: u64,
    pub what: String,
}

/// The document's tags and text, in order.
pub fn events(xml: &str) -> Result<Vec<Event>, XmlError> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut events = Vec::new();
    // Text comes in pieces (split at references and CDATA): joined here.
    let mut text = String::new();
    loop {
        let event = reader.read_event().map_err(|e| XmlError {
            at: reader.error_position(),
            what: e.to_string(),
        })?;
        let failed = |what: String| XmlError {
            at: reader.buffer_position(),
            what,
        };
        let tag = match event {
            XmlEvent::Start(tag) => start_event(&tag, false).map_err(failed)?,
            XmlEvent::Empty(tag) => start_event(&tag, true).map_err(failed)?,
            XmlEvent::End(tag) => Event::End {
                name: tag.name().as_ref().to_owned(),
            },
            XmlEvent::Text(piece) => {
                text.push_str(&piece.xml10_content());
                continue;
            }
            XmlEvent::CData(piece) => {
                text.push_str(&piece);
                continue;
            }
            XmlEvent::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(c)) => Some(c.to_string()),
                    Ok(None) => resolve_predefined_entity(&reference).map(str::to_owned),
                    Err(_) => None,
                };
                let resolved = resolved
                    .ok_or_else(|| failed(format!("unknown reference &{};", &*reference)))?;
                text.push_str(&resolved);
                continue;
            }
            XmlEvent::Eof => break,
            XmlEvent::Comment(_) | XmlEvent::Decl(_) | XmlEvent::PI(_) | XmlEvent::DocType(_) => {
                continue;
            }
        };
        flush_text(&mut events, &mut text);
        events.push(tag);
    }
    flush_text(&mut events, &mut text);
    Ok(events)
}

fn start_event(tag: &BytesStart<'_>, empty: bool) -> Result<Event, String> {
    let name = tag.name().as_ref().to_owned();
    if name.is_empty() {
        return Err("a tag without a name".into());
    }
    let mut attrs = BTreeMap::new();
    for attr in tag.attributes() {
        let attr = attr.map_err(|e| e.to_string())?;
        let value = attr
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|e| e.to_string())?;
        let key = attr.key.as_ref().to_owned();
        attrs.insert(key, value.into_owned());
    }
    Ok(Event::Start { name, attrs, empty })
}

fn flush_text(events: &mut Vec<Event>, text: &mut String) {
    let trimmed = text.trim();
    if !trimmed.is_empty() {
        events.push(Event::Text(trimmed.to_owned()));
    }
    text.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_read_back_as_written() {
        let hostile = "a&b<c>\"d\" 'e'\n\tf\u{1}";
        let mut w = Writer::new();
        w.open("root", &[("v", hostile)])
            .text("t", &[], hostile)
            .empty("e", &[("k", "</root><x>")]);
        let xml = w.finish();
        assert!(!xml.contains("<x>"), "{xml}");
        assert!(xml.ends_with("</root>"), "{xml}");
        let events = events(&xml).expect("parses");
        let Event::Start { attrs, .. } = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(attrs["v"], "a&b<c>\"d\" 'e'\n\tf\u{FFFD}");
        assert_eq!(
            events[2],
            Event::Text("a&b<c>\"d\" 'e'\n\tf\u{FFFD}".into())
        );
        let Event::Start { attrs, empty, .. } = &events[4] else {
            panic!("{events:?}")
        };
        assert!(empty);
        assert_eq!(attrs["k"], "</root><x>");
    }

    #[test]
    fn comments_cdata_and_declarations_hide_nothing() {
        let xml = "<?xml version='1.0'?><!DOCTYPE d><d a='1' b = \"x'y\"><!-- <graphics port='1'/> -->\
                   <![CDATA[<graphics port='2'/>]]><g:x xmlns:g='u' p='&#65;&#x42;&amp;'/>x &amp; y</d>";
        let events = events(xml).expect("parses");
        let names: Vec<_> = events.iter().filter_map(Event::local_name).collect();
        assert_eq!(names, ["d", "x", "d"]);
        assert_eq!(
            events[3],
            Event::Text("x & y".into()),
            "spaces around references kept"
        );
        let Event::Start { attrs, .. } = &events[0] else {
            panic!()
        };
        assert_eq!(attrs["b"], "x'y");
        assert_eq!(events[1], Event::Text("<graphics port='2'/>".into()));
        let Event::Start { attrs, .. } = &events[2] else {
            panic!()
        };
        assert_eq!(attrs["p"], "AB&");
    }

    #[test]
    fn broken_documents_are_errors_not_panics() {
        for broken in [
            "<a",
            "<a b>",
            "<a b='1>",
            "<!-- x",
            "<![CDATA[",
            "< >",
            "<a ='x'>",
            "<a p='&unknown;'/>",
            "<a>&unknown;</a>",
            "<a></b>",
        ] {
            assert!(events(broken).is_err(), "{broken}");
        }
    }
}
