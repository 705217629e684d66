//! The little XML this platform writes and reads: domain, volume and pool
//! descriptions it renders, and the parts of libvirt's answers it needs
//! (the VNC port, its own metadata).
//!
//! Hand-written because no XML crate is in the dependency tree yet and we
//! need very little of one; the rule that keeps it safe is that every
//! value that comes from a user (names, labels, paths) goes through
//! [`Writer`], which escapes it, never through `format!`. The reader is a
//! tokenizer, not a validating parser: libvirt's output is well-formed, and
//! comments, CDATA and processing instructions are skipped so that text
//! inside them (another application's metadata) is never taken for
//! elements.

use std::collections::BTreeMap;

/// Builds an XML document; element and attribute names are our own
/// constants, every value is escaped.
#[derive(Debug, Default)]
pub struct Writer {
    out: String,
    open: Vec<&'static str>,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }

    /// `<name a="v" …>`; closed by [`Writer::close`].
    pub fn open(&mut self, name: &'static str, attrs: &[(&str, &str)]) -> &mut Self {
        self.start_tag(name, attrs);
        self.out.push('>');
        self.open.push(name);
        self
    }

    /// `<name a="v" …/>`.
    pub fn empty(&mut self, name: &'static str, attrs: &[(&str, &str)]) -> &mut Self {
        self.start_tag(name, attrs);
        self.out.push_str("/>");
        self
    }

    /// `<name a="v" …>text</name>`.
    pub fn text(&mut self, name: &'static str, attrs: &[(&str, &str)], text: &str) -> &mut Self {
        self.start_tag(name, attrs);
        self.out.push('>');
        escape_into(&mut self.out, text, false);
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
        self
    }

    /// Closes the innermost open element.
    pub fn close(&mut self) -> &mut Self {
        if let Some(name) = self.open.pop() {
            self.out.push_str("</");
            self.out.push_str(name);
            self.out.push('>');
        }
        self
    }

    /// The document, with every element still open closed.
    pub fn finish(mut self) -> String {
        while !self.open.is_empty() {
            self.close();
        }
        self.out
    }

    fn start_tag(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.out.push('<');
        self.out.push_str(name);
        for (key, value) in attrs {
            self.out.push(' ');
            self.out.push_str(key);
            self.out.push_str("=\"");
            escape_into(&mut self.out, value, true);
            self.out.push('"');
        }
    }
}

/// Escapes markup characters; in attributes also whitespace that XML would
/// otherwise normalise to spaces. Control characters XML 1.0 cannot carry
/// at all become U+FFFD, so a label can never make a document libvirt
/// refuses.
fn escape_into(out: &mut String, text: &str, attribute: bool) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' if attribute => out.push_str(&format!("&#{};", u32::from(c))),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

/// What the tokenizer sees.
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
    pub at: usize,
    pub what: &'static str,
}

/// The document's tags and text, in order.
pub fn events(xml: &str) -> Result<Vec<Event>, XmlError> {
    let mut events = Vec::new();
    let mut rest = xml;
    let offset = |rest: &str| xml.len() - rest.len();
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            events.push(Event::Text(unescape(rest)));
            break;
        };
        if lt > 0 {
            events.push(Event::Text(unescape(&rest[..lt])));
        }
        rest = &rest[lt..];
        let skip = |rest: &str, end: &str, what| {
            rest.find(end).map(|i| i + end.len()).ok_or(XmlError {
                at: offset(rest),
                what,
            })
        };
        if rest.starts_with("<!--") {
            rest = &rest[skip(rest, "-->", "unterminated comment")?..];
        } else if rest.starts_with("<![CDATA[") {
            let end = skip(rest, "]]>", "unterminated CDATA")?;
            events.push(Event::Text(rest[9..end - 3].to_owned()));
            rest = &rest[end..];
        } else if rest.starts_with("<?") {
            rest = &rest[skip(rest, "?>", "unterminated processing instruction")?..];
        } else if rest.starts_with("<!") {
            rest = &rest[skip(rest, ">", "unterminated declaration")?..];
        } else if let Some(body) = rest.strip_prefix("</") {
            let end = skip(rest, ">", "unterminated end tag")?;
            let name = body[..end - 3].trim().to_owned();
            events.push(Event::End { name });
            rest = &rest[end..];
        } else {
            let (event, used) = start_tag(rest).ok_or(XmlError {
                at: offset(rest),
                what: "malformed start tag",
            })?;
            events.push(event);
            rest = &rest[used..];
        }
    }
    Ok(events)
}

/// A start tag at the beginning of `text` and how many bytes it takes.
fn start_tag(text: &str) -> Option<(Event, usize)> {
    let bytes = text.as_bytes();
    let mut i = 1;
    let name_end = |i: usize| {
        text[i..]
            .find(|c: char| c.is_whitespace() || c == '>' || c == '/' || c == '=')
            .map(|n| i + n)
    };
    let end = name_end(i)?;
    let name = text[i..end].to_owned();
    if name.is_empty() {
        return None;
    }
    i = end;
    let mut attrs = BTreeMap::new();
    loop {
        while bytes.get(i)?.is_ascii_whitespace() {
            i += 1;
        }
        match bytes.get(i)? {
            b'>' => {
                let event = Event::Start {
                    name,
                    attrs,
                    empty: false,
                };
                return Some((event, i + 1));
            }
            b'/' if bytes.get(i + 1) == Some(&b'>') => {
                let event = Event::Start {
                    name,
                    attrs,
                    empty: true,
                };
                return Some((event, i + 2));
            }
            _ => {}
        }
        let key_end = name_end(i)?;
        let key = text[i..key_end].to_owned();
        i = key_end;
        while bytes.get(i)?.is_ascii_whitespace() {
            i += 1;
        }
        if bytes.get(i)? != &b'=' || key.is_empty() {
            return None;
        }
        i += 1;
        while bytes.get(i)?.is_ascii_whitespace() {
            i += 1;
        }
        let quote = *bytes.get(i)?;
        if quote != b'"' && quote != b'\'' {
            return None;
        }
        let value_end = i + 1 + text[i + 1..].find(quote as char)?;
        attrs.insert(key, unescape(&text[i + 1..value_end]));
        i = value_end + 1;
    }
}

/// Resolves the five predefined entities and character references; an
/// unknown entity is kept as written.
pub fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = rest.find(';').filter(|&s| s <= 12) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .map(|hex| u32::from_str_radix(hex, 16))
                .or_else(|| entity.strip_prefix('#').map(str::parse))
                .and_then(Result::ok)
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
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
                   <![CDATA[<graphics port='2'/>]]><g:x xmlns:g='u' p='&#65;&#x42;&unknown;'/></d>";
        let events = events(xml).expect("parses");
        let names: Vec<_> = events.iter().filter_map(Event::local_name).collect();
        assert_eq!(names, ["d", "x", "d"]);
        let Event::Start { attrs, .. } = &events[0] else {
            panic!()
        };
        assert_eq!(attrs["b"], "x'y");
        assert_eq!(events[1], Event::Text("<graphics port='2'/>".into()));
        let Event::Start { attrs, .. } = &events[2] else {
            panic!()
        };
        assert_eq!(attrs["p"], "AB&unknown;");
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
        ] {
            assert!(events(broken).is_err(), "{broken}");
        }
    }
}
