//! WebDAV XML (RFC 4918) in and out: request bodies read into a small tree of namespaced
//! elements with quick-xml, and multistatus answers written with escaping.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;
use std::fmt::Write;

/// `DAV:`
pub const DAV: &str = "DAV:";
/// CalDAV (RFC 4791).
pub const CALDAV: &str = "urn:ietf:params:xml:ns:caldav";
/// Calendar Server extensions (getctag).
pub const CS: &str = "http://calendarserver.org/ns/";
/// Apple's iCal extensions (calendar-color).
pub const ICAL: &str = "http://apple.com/ns/ical/";

/// Most elements nested in a request body: deeper is no WebDAV request.
const MAX_DEPTH: usize = 32;

/// A property or element name: namespace and local name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name {
    /// The namespace URI (empty when none).
    pub ns: String,
    /// The local name.
    pub local: String,
}

impl Name {
    /// A name in a namespace.
    pub fn new(ns: &str, local: &str) -> Name {
        Name {
            ns: ns.into(),
            local: local.into(),
        }
    }

    /// True for `ns` and `local`.
    pub fn is(&self, ns: &str, local: &str) -> bool {
        self.ns == ns && self.local == local
    }
}

/// An element of a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// Its name.
    pub name: Name,
    /// Attributes by local name (WebDAV's are unqualified).
    pub attributes: Vec<(String, String)>,
    /// Child elements, in order.
    pub children: Vec<Element>,
    /// Its text, entities resolved, whitespace kept (readers trim).
    pub text: String,
}

impl Element {
    /// The first child of a name.
    pub fn child(&self, ns: &str, local: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name.is(ns, local))
    }

    /// Every child of a name.
    pub fn all<'a>(&'a self, ns: &'a str, local: &'a str) -> impl Iterator<Item = &'a Element> {
        self.children.iter().filter(move |c| c.name.is(ns, local))
    }

    /// An attribute's value.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a body is no usable XML.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum XmlError {
    /// Not well-formed.
    #[error("malformed XML: {0}")]
    Malformed(String),
    /// Nested beyond [`MAX_DEPTH`].
    #[error("XML nested deeper than {MAX_DEPTH} elements")]
    TooDeep,
    /// No root element.
    #[error("no XML element in the body")]
    Empty,
}

/// Reads a body into its root element.
pub fn parse(body: &str) -> Result<Element, XmlError> {
    let mut reader = NsReader::from_str(body);
    // Not trimmed here: quick-xml cuts text at each entity, and trimming the pieces would eat
    // the spaces around one ("a &amp; b" read as "a&b"); readers trim what they read.
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Element> = Vec::new();
    loop {
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| XmlError::Malformed(e.to_string()))?;
        let ns = match ns {
            ResolveResult::Bound(ns) => ns.0.to_string(),
            ResolveResult::Unbound => String::new(),
            ResolveResult::Unknown(prefix) => {
                return Err(XmlError::Malformed(format!("unknown prefix {prefix:?}")));
            }
        };
        match event {
            Event::Start(start) | Event::Empty(start) if stack.len() >= MAX_DEPTH => {
                let _ = start;
                return Err(XmlError::TooDeep);
            }
            Event::Start(start) => stack.push(element(ns, &start)?),
            Event::Empty(start) => {
                let done = element(ns, &start)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => return Ok(done),
                }
            }
            Event::End(_) => {
                let done = stack.pop().ok_or(XmlError::Empty)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => return Ok(done),
                }
            }
            Event::Text(text) => {
                if let Some(current) = stack.last_mut() {
                    current.text.push_str(&text.xml10_content());
                }
            }
            Event::CData(data) => {
                if let Some(current) = stack.last_mut() {
                    current.text.push_str(&data.into_inner());
                }
            }
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => quick_xml::escape::resolve_predefined_entity(&reference)
                        .map(str::to_string)
                        .ok_or_else(|| {
                            XmlError::Malformed(format!("unknown entity &{};", &*reference))
                        })?,
                    Err(e) => return Err(XmlError::Malformed(e.to_string())),
                };
                if let Some(current) = stack.last_mut() {
                    current.text.push_str(&resolved);
                }
            }
            Event::Eof => {
                return Err(if stack.is_empty() {
                    XmlError::Empty
                } else {
                    XmlError::Malformed("the body ends inside an element".into())
                });
            }
            _ => {}
        }
    }
}

fn element(ns: String, start: &quick_xml::events::BytesStart<'_>) -> Result<Element, XmlError> {
    let mut attributes = Vec::new();
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|e| XmlError::Malformed(e.to_string()))?;
        let value = attribute
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| XmlError::Malformed(e.to_string()))?;
        let key = attribute.key.local_name();
        attributes.push((key.as_ref().to_string(), value.into_owned()));
    }
    Ok(Element {
        name: Name {
            ns,
            local: start.local_name().as_ref().to_string(),
        },
        attributes,
        children: Vec::new(),
        text: String::new(),
    })
}

/// Writes XML with the four namespaces declared once on the root, as `d:`, `c:`, `cs:` and
/// `ical:`.
pub struct Writer {
    out: String,
}

impl Writer {
    /// A document whose root element is `d:{root}`.
    pub fn new(root: &str) -> Writer {
        Self::new_in("d", root)
    }

    /// A document whose root element is `{prefix}:{root}`.
    pub fn new_in(prefix: &str, root: &str) -> Writer {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
        let _ = write!(
            out,
            "<{prefix}:{root} xmlns:d=\"{DAV}\" xmlns:c=\"{CALDAV}\" xmlns:cs=\"{CS}\" xmlns:ical=\"{ICAL}\">"
        );
        Writer { out }
    }

    /// Opens an element by prefixed name.
    pub fn open(&mut self, name: &str) -> &mut Self {
        self.push(&["<", name, ">"]);
        self
    }

    /// Closes an element by prefixed name.
    pub fn close(&mut self, name: &str) -> &mut Self {
        self.push(&["</", name, ">"]);
        self
    }

    /// An element with text (escaped).
    pub fn text(&mut self, name: &str, text: &str) -> &mut Self {
        let escaped = quick_xml::escape::escape(text);
        self.push(&["<", name, ">", &escaped, "</", name, ">"]);
        self
    }

    /// An empty element.
    pub fn empty(&mut self, name: &str) -> &mut Self {
        self.push(&["<", name, "/>"]);
        self
    }

    /// Room for `bytes` more of the document: a listing of many objects knows its size.
    pub fn reserve(&mut self, bytes: usize) {
        self.out.reserve(bytes);
    }

    /// Pieces written one after the other (a tenth of what `write!` costs them, which counts
    /// in a listing of 100,000 objects).
    fn push(&mut self, pieces: &[&str]) {
        for piece in pieces {
            self.out.push_str(piece);
        }
    }

    /// An empty element with attributes (values escaped).
    pub fn empty_with(&mut self, name: &str, attributes: &[(&str, &str)]) -> &mut Self {
        let _ = write!(self.out, "<{name}");
        for (key, value) in attributes {
            let _ = write!(self.out, " {key}=\"{}\"", quick_xml::escape::escape(*value));
        }
        self.out.push_str("/>");
        self
    }

    /// An empty element of any namespace (a property named in a request).
    pub fn foreign(&mut self, name: &Name) -> &mut Self {
        let _ = write!(
            self.out,
            "<x:{} xmlns:x=\"{}\"/>",
            name.local,
            quick_xml::escape::escape(name.ns.as_str())
        );
        self
    }

    /// An element of any namespace with text (escaped): a dead property a client wrote.
    pub fn foreign_text(&mut self, name: &Name, text: &str) -> &mut Self {
        let _ = write!(
            self.out,
            "<x:{local} xmlns:x=\"{}\">{}</x:{local}>",
            quick_xml::escape::escape(name.ns.as_str()),
            quick_xml::escape::escape(text),
            local = name.local
        );
        self
    }

    /// The document, root closed.
    pub fn finish(self, root: &str) -> String {
        self.finish_in("d", root)
    }

    /// The document, root `{prefix}:{root}` closed.
    pub fn finish_in(mut self, prefix: &str, root: &str) -> String {
        let _ = write!(self.out, "</{prefix}:{root}>");
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_propfind_body() {
        let body = r#"<?xml version="1.0"?>
<D:propfind xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">
  <D:prop><D:displayname/><C:calendar-home-set/><x:color xmlns:x="http://apple.com/ns/ical/"/></D:prop>
</D:propfind>"#;
        let root = parse(body).unwrap();
        assert!(root.name.is(DAV, "propfind"));
        let prop = root.child(DAV, "prop").unwrap();
        let names: Vec<&Name> = prop.children.iter().map(|c| &c.name).collect();
        assert_eq!(
            names,
            [
                &Name::new(DAV, "displayname"),
                &Name::new(CALDAV, "calendar-home-set"),
                &Name::new(ICAL, "color")
            ]
        );
    }

    #[test]
    fn entities_and_bad_input() {
        let root = parse("<a xmlns=\"DAV:\"><href>/x?a=1&amp;b=&#50;</href></a>").unwrap();
        assert_eq!(root.child(DAV, "href").unwrap().text, "/x?a=1&b=2");
        assert!(matches!(parse("<a><b></a>"), Err(XmlError::Malformed(_))));
        assert_eq!(parse(""), Err(XmlError::Empty));
        let deep = "<a>".repeat(40) + &"</a>".repeat(40);
        assert_eq!(parse(&deep), Err(XmlError::TooDeep));
        assert!(parse("<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>").is_err());
    }
}
