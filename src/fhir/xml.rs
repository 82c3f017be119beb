//! FHIR XML ↔ JSON, driven by the R4B element tables ([`super::definitions`]).
//!
//! The rules are those of the FHIR XML and JSON formats: elements in definition order, repeating
//! elements as repeated tags (JSON arrays), primitives as `value` attributes with their `id` and
//! extensions in JSON's `_name` shadow members, `Element.id` and `Extension.url` as attributes,
//! choice elements named by their type (`valueQuantity`), resources nested one level inside
//! `contained`, `Bundle.entry.resource` and `Parameters.parameter.resource`, and the narrative
//! `div` carried verbatim as XHTML. Documents with a DTD or entity declarations are refused.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use super::definitions::{DEFINITIONS, ElementDef, JsonType, Kind, json_type};
use super::json::Json;

pub const FHIR_NS: &str = "http://hl7.org/fhir";

/// What is wrong, and where (a FHIRPath-like location).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlError {
    pub path: String,
    pub message: String,
}

fn err(path: &str, message: impl Into<String>) -> XmlError {
    XmlError {
        path: path.to_owned(),
        message: message.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// XML → JSON

/// A parsed XML element: local name, attributes, children, and for XHTML `div` its source text.
struct Node {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<Node>,
    raw: Option<String>,
}

const MAX_DEPTH: usize = 128;

fn parse_dom(input: &[u8]) -> Result<Node, XmlError> {
    let text = std::str::from_utf8(input).map_err(|_| err("", "document is not UTF-8"))?;
    let mut reader = Reader::from_str(text);
    let config = reader.config_mut();
    config.trim_text(false);
    config.expand_empty_elements = false;
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    loop {
        let start_pos = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let event = reader
            .read_event()
            .map_err(|e| err("", format!("malformed XML: {e}")))?;
        match event {
            Event::DocType(_) => {
                return Err(err("", "DTDs and entity declarations are not allowed"));
            }
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Start(e) if local_name(&e) == "div" && !stack.is_empty() => {
                // The narrative: keep its exact source text.
                reader
                    .read_to_end(e.name())
                    .map_err(|e| err("", format!("malformed XHTML: {e}")))?;
                push_div(&mut stack, text, start_pos, &reader)?;
            }
            Event::Empty(e) if local_name(&e) == "div" && !stack.is_empty() => {
                push_div(&mut stack, text, start_pos, &reader)?;
            }
            Event::Start(e) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(err("", "document nested too deeply"));
                }
                stack.push(start_node(&e)?);
            }
            Event::Empty(e) => {
                let node = start_node(&e)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => root = Some(node),
                }
            }
            Event::End(_) => {
                let node = stack.pop().ok_or_else(|| err("", "unbalanced end tag"))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => root = Some(node),
                }
            }
            Event::Text(t) => {
                let s = t.decode().map_err(|e| err("", format!("bad text: {e}")))?;
                if !s.trim().is_empty() {
                    let at = stack.last().map(|n| n.name.as_str()).unwrap_or("");
                    return Err(err(at, "text content is not allowed here"));
                }
            }
            Event::CData(_) | Event::GeneralRef(_) => {
                let at = stack.last().map(|n| n.name.as_str()).unwrap_or("");
                return Err(err(at, "text content is not allowed here"));
            }
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(err("", "unexpected end of document"));
    }
    root.ok_or_else(|| err("", "the document has no root element"))
}

fn push_div(
    stack: &mut [Node],
    text: &str,
    start: usize,
    reader: &Reader<&[u8]>,
) -> Result<(), XmlError> {
    let end = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
    let raw = text
        .get(start..end)
        .ok_or_else(|| err("", "malformed XHTML"))?;
    if raw.contains("<!ENTITY") || raw.contains("<!DOCTYPE") {
        return Err(err("", "DTDs and entity declarations are not allowed"));
    }
    if let Some(parent) = stack.last_mut() {
        parent.children.push(Node {
            name: "div".to_owned(),
            attrs: Vec::new(),
            children: Vec::new(),
            raw: Some(raw.to_owned()),
        });
    }
    Ok(())
}

fn local_name(e: &BytesStart<'_>) -> String {
    String::from_utf8_lossy(e.local_name().as_ref()).into_owned()
}

fn start_node(e: &BytesStart<'_>) -> Result<Node, XmlError> {
    let name = local_name(e);
    let mut attrs = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|x| err(&name, format!("bad attribute: {x}")))?;
        let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
        let value = a
            .unescape_value()
            .map_err(|x| err(&name, format!("bad attribute value: {x}")))?
            .into_owned();
        attrs.push((key, value));
    }
    Ok(Node {
        name,
        attrs,
        children: Vec::new(),
        raw: None,
    })
}

/// Convert a FHIR XML resource to its JSON form.
pub fn xml_to_json(input: &[u8]) -> Result<Json, XmlError> {
    let root = parse_dom(input)?;
    let ns = root
        .attrs
        .iter()
        .find(|(k, _)| k == "xmlns")
        .map(|(_, v)| v);
    if ns.map(String::as_str) != Some(FHIR_NS) {
        return Err(err(
            &root.name,
            format!("the root element must be in the FHIR namespace {FHIR_NS}"),
        ));
    }
    resource_from_xml(&root, &root.name)
}

fn resource_from_xml(node: &Node, path: &str) -> Result<Json, XmlError> {
    if !DEFINITIONS.is_resource(&node.name) {
        return Err(err(path, format!("'{}' is not a resource type", node.name)));
    }
    let mut members = vec![("resourceType".to_owned(), Json::String(node.name.clone()))];
    members.extend(object_members(node, &node.name, &node.name)?);
    Ok(Json::Object(members))
}

/// One value collected for a JSON member: the value and, for primitives, its `_name` shadow.
type Slot = (Option<Json>, Option<Json>);

fn object_members(node: &Node, ctx: &str, path: &str) -> Result<Vec<(String, Json)>, XmlError> {
    let defs = DEFINITIONS.children(ctx);
    let mut members: Vec<(String, Json)> = Vec::new();
    for (k, v) in &node.attrs {
        if k == "xmlns" || k.starts_with("xmlns:") {
            continue;
        }
        if defs.iter().any(|d| d.xml_attr && d.name == *k) {
            members.push((k.clone(), Json::String(v.clone())));
        } else {
            return Err(err(path, format!("unknown attribute '{k}'")));
        }
    }
    // Member name → (definition, collected values), in order of first appearance.
    let mut slots: Vec<(String, &ElementDef, bool, Vec<Slot>)> = Vec::new();
    for child in &node.children {
        let child_path = format!("{path}.{}", child.name);
        let (def, ty) = resolve(defs, &child.name)
            .ok_or_else(|| err(&child_path, format!("unknown element '{}'", child.name)))?;
        let slot = value_from_xml(child, def, ty, &child_path)?;
        match slots.iter_mut().find(|(n, ..)| *n == child.name) {
            Some(s) => s.3.push(slot),
            None => {
                let primitive = DEFINITIONS.kind(ty) == Some(Kind::Primitive);
                slots.push((child.name.clone(), def, primitive, vec![slot]));
            }
        }
    }
    for (name, def, primitive, values) in slots {
        if !def.many && values.len() > 1 {
            return Err(err(
                &format!("{path}.{name}"),
                "element repeats but allows at most one",
            ));
        }
        if primitive {
            let any_value = values.iter().any(|(v, _)| v.is_some());
            let any_ext = values.iter().any(|(_, e)| e.is_some());
            if def.many {
                if any_value {
                    let arr = values.iter().map(|(v, _)| v.clone().unwrap_or(Json::Null));
                    members.push((name.clone(), Json::Array(arr.collect())));
                }
                if any_ext {
                    let arr = values.into_iter().map(|(_, e)| e.unwrap_or(Json::Null));
                    members.push((format!("_{name}"), Json::Array(arr.collect())));
                }
            } else if let Some((v, e)) = values.into_iter().next() {
                if let Some(v) = v {
                    members.push((name.clone(), v));
                }
                if let Some(e) = e {
                    members.push((format!("_{name}"), e));
                }
            }
        } else {
            let mut items = values.into_iter().filter_map(|(v, _)| v);
            if def.many {
                members.push((name, Json::Array(items.collect())));
            } else if let Some(v) = items.next() {
                members.push((name, v));
            }
        }
    }
    Ok(members)
}

/// Find the definition for an XML child name: a plain element or a typed choice element.
fn resolve<'a>(defs: &'a [ElementDef], name: &str) -> Option<(&'a ElementDef, &'a str)> {
    for d in defs {
        if d.xml_attr {
            continue;
        }
        if !d.choice && d.name == name {
            let ty = d
                .types
                .first()
                .map(String::as_str)
                .unwrap_or("BackboneElement");
            return Some((d, ty));
        }
        if d.choice
            && let Some(rest) = name.strip_prefix(d.name.as_str())
        {
            for t in &d.types {
                if d.choice_name(t).len() == name.len() && rest.eq_ignore_ascii_case(t) {
                    let mut cs = t.chars();
                    let cap_ok = cs.next().is_some_and(|c| {
                        rest.starts_with(c.to_ascii_uppercase()) && rest[1..] == *cs.as_str()
                    });
                    if cap_ok {
                        return Some((d, t.as_str()));
                    }
                }
            }
        }
    }
    None
}

fn value_from_xml(node: &Node, def: &ElementDef, ty: &str, path: &str) -> Result<Slot, XmlError> {
    if ty == "xhtml" {
        let raw = node
            .raw
            .clone()
            .ok_or_else(|| err(path, "expected XHTML"))?;
        return Ok((Some(Json::String(raw)), None));
    }
    if node.raw.is_some() {
        return Err(err(path, "unexpected XHTML content"));
    }
    match DEFINITIONS.kind(ty) {
        Some(Kind::Primitive) => {
            let mut value = None;
            let mut shadow: Vec<(String, Json)> = Vec::new();
            for (k, v) in &node.attrs {
                match k.as_str() {
                    "value" => value = Some(primitive_json(ty, v, path)?),
                    "id" => shadow.push(("id".to_owned(), Json::String(v.clone()))),
                    x if x == "xmlns" || x.starts_with("xmlns:") => {}
                    other => return Err(err(path, format!("unknown attribute '{other}'"))),
                }
            }
            let mut exts = Vec::new();
            for c in &node.children {
                if c.name != "extension" {
                    return Err(err(
                        &format!("{path}.{}", c.name),
                        "a primitive element may only contain extensions",
                    ));
                }
                let members = object_members(c, "Extension", &format!("{path}.extension"))?;
                exts.push(Json::Object(members));
            }
            if !exts.is_empty() {
                shadow.push(("extension".to_owned(), Json::Array(exts)));
            }
            if value.is_none() && shadow.is_empty() {
                return Err(err(
                    path,
                    "a primitive element needs a value or an extension",
                ));
            }
            let shadow = (!shadow.is_empty()).then_some(Json::Object(shadow));
            Ok((value, shadow))
        }
        Some(Kind::Resource) | None if ty == "Resource" || DEFINITIONS.is_resource(ty) => {
            let [inner] = node.children.as_slice() else {
                return Err(err(
                    path,
                    "expected exactly one resource inside this element",
                ));
            };
            Ok((Some(resource_from_xml(inner, path)?), None))
        }
        _ => {
            let members = object_members(node, def.context_for(ty), path)?;
            Ok((Some(Json::Object(members)), None))
        }
    }
}

fn primitive_json(ty: &str, v: &str, path: &str) -> Result<Json, XmlError> {
    match json_type(ty) {
        JsonType::Bool => match v {
            "true" => Ok(Json::Bool(true)),
            "false" => Ok(Json::Bool(false)),
            _ => Err(err(path, format!("'{v}' is not a boolean"))),
        },
        JsonType::Number => match Json::parse(v.as_bytes()) {
            Ok(n @ Json::Number(_)) => Ok(n),
            _ => Err(err(path, format!("'{v}' is not a number"))),
        },
        JsonType::String => Ok(Json::String(v.to_owned())),
    }
}

// ---------------------------------------------------------------------------------------------
// JSON → XML

/// Convert a JSON resource to FHIR XML.
pub fn json_to_xml(resource: &Json, pretty: bool) -> Result<Vec<u8>, XmlError> {
    let mut w = Writer {
        out: String::with_capacity(1024),
        pretty,
    };
    w.resource(resource, 0, true, "")?;
    if pretty {
        w.out.push('\n');
    }
    Ok(w.out.into_bytes())
}

struct Writer {
    out: String,
    pretty: bool,
}

impl Writer {
    fn indent(&mut self, level: usize) {
        if self.pretty {
            if !self.out.is_empty() {
                self.out.push('\n');
            }
            for _ in 0..level {
                self.out.push_str("  ");
            }
        }
    }

    fn resource(&mut self, r: &Json, level: usize, root: bool, at: &str) -> Result<(), XmlError> {
        if let Json::Raw(text) = r {
            let parsed = Json::parse(text.as_bytes())
                .map_err(|e| err(at, format!("stored resource is not JSON: {e}")))?;
            return self.resource(&parsed, level, root, at);
        }
        let Json::Object(members) = r else {
            return Err(err(at, "a resource must be a JSON object"));
        };
        let name = r
            .get("resourceType")
            .and_then(Json::as_str)
            .ok_or_else(|| err(at, "resourceType is missing"))?;
        if !DEFINITIONS.is_resource(name) {
            return Err(err(at, format!("'{name}' is not a resource type")));
        }
        let path = if at.is_empty() {
            name.to_owned()
        } else {
            at.to_owned()
        };
        self.indent(level);
        self.out.push('<');
        self.out.push_str(name);
        if root {
            self.out.push_str(" xmlns=\"");
            self.out.push_str(FHIR_NS);
            self.out.push('"');
        }
        self.out.push('>');
        let used = self.children(members, name, level + 1, &path)?;
        check_all_used(members, &used, &path, true)?;
        self.indent(level);
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
        Ok(())
    }

    /// Write the child elements of an object in definition order; returns the members used.
    fn children<'a>(
        &mut self,
        members: &'a [(String, Json)],
        ctx: &str,
        level: usize,
        path: &str,
    ) -> Result<Vec<&'a str>, XmlError> {
        let mut used: Vec<&str> = Vec::new();
        let get = |k: &str| members.iter().find(|(n, _)| n == k);
        for def in DEFINITIONS.children(ctx) {
            if def.xml_attr {
                if let Some((k, _)) = get(&def.name) {
                    used.push(k);
                }
                continue;
            }
            let candidates: Vec<(String, &str)> = if def.choice {
                def.types
                    .iter()
                    .map(|t| (def.choice_name(t), t.as_str()))
                    .collect()
            } else {
                let ty = def
                    .types
                    .first()
                    .map(String::as_str)
                    .unwrap_or("BackboneElement");
                vec![(def.name.clone(), ty)]
            };
            for (key, ty) in candidates {
                let value = get(&key);
                let shadow = get(&format!("_{key}"));
                if value.is_none() && shadow.is_none() {
                    continue;
                }
                let child_path = format!("{path}.{key}");
                if let Some((k, _)) = value {
                    used.push(k);
                }
                if let Some((k, _)) = shadow {
                    used.push(k);
                }
                let values = items(value.map(|(_, v)| v), def.many, &child_path)?;
                if DEFINITIONS.kind(ty) == Some(Kind::Primitive) {
                    let shadows = items(shadow.map(|(_, v)| v), def.many, &child_path)?;
                    let n = values.len().max(shadows.len());
                    for i in 0..n {
                        let v = values.get(i).copied().filter(|v| !matches!(v, Json::Null));
                        let s = shadows.get(i).copied().filter(|v| !matches!(v, Json::Null));
                        self.primitive(&key, ty, v, s, level, &child_path)?;
                    }
                } else if ty == "Resource" || DEFINITIONS.is_resource(ty) {
                    for v in values {
                        self.indent(level);
                        self.open(&key, &[]);
                        self.resource(v, level + 1, false, &child_path)?;
                        self.indent(level);
                        self.close(&key);
                    }
                } else {
                    let sub_ctx = def.context_for(ty);
                    for v in values {
                        self.complex(&key, v, sub_ctx, level, &child_path)?;
                    }
                }
            }
        }
        Ok(used)
    }

    fn complex(
        &mut self,
        key: &str,
        v: &Json,
        ctx: &str,
        level: usize,
        path: &str,
    ) -> Result<(), XmlError> {
        let Json::Object(members) = v else {
            return Err(err(path, "expected a JSON object"));
        };
        let mut attrs: Vec<(&str, &str)> = Vec::new();
        for def in DEFINITIONS.children(ctx).iter().filter(|d| d.xml_attr) {
            if let Some(val) = v.get(&def.name) {
                let s = val
                    .as_str()
                    .ok_or_else(|| err(&format!("{path}.{}", def.name), "expected a string"))?;
                attrs.push((def.name.as_str(), s));
            }
        }
        self.indent(level);
        self.open(key, &attrs);
        let used = self.children(members, ctx, level + 1, path)?;
        check_all_used(members, &used, path, false)?;
        self.indent(level);
        self.close(key);
        Ok(())
    }

    fn primitive(
        &mut self,
        key: &str,
        ty: &str,
        value: Option<&Json>,
        shadow: Option<&Json>,
        level: usize,
        path: &str,
    ) -> Result<(), XmlError> {
        self.indent(level);
        if ty == "xhtml" {
            let s = value
                .and_then(Json::as_str)
                .ok_or_else(|| err(path, "the narrative div must be a string"))?;
            self.out.push_str(s);
            return Ok(());
        }
        let text = match value {
            None => None,
            Some(Json::String(s)) => Some(s.as_str()),
            Some(Json::Number(n)) => Some(n.as_str()),
            Some(Json::Bool(true)) => Some("true"),
            Some(Json::Bool(false)) => Some("false"),
            Some(_) => return Err(err(path, "expected a primitive value")),
        };
        let mut attrs: Vec<(&str, &str)> = Vec::new();
        let mut exts: &[Json] = &[];
        if let Some(sh) = shadow {
            let Json::Object(m) = sh else {
                return Err(err(path, "the '_' shadow member must be an object"));
            };
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("id", Json::String(s)) => attrs.push(("id", s)),
                    ("extension", Json::Array(a)) => exts = a,
                    _ => return Err(err(&format!("{path}.{k}"), "unknown element")),
                }
            }
        }
        if let Some(t) = text {
            attrs.push(("value", t));
        }
        if exts.is_empty() {
            self.out.push('<');
            self.out.push_str(key);
            write_attrs(&mut self.out, &attrs);
            self.out.push_str("/>");
        } else {
            self.open(key, &attrs);
            for e in exts {
                self.complex(
                    "extension",
                    e,
                    "Extension",
                    level + 1,
                    &format!("{path}.extension"),
                )?;
            }
            self.indent(level);
            self.close(key);
        }
        Ok(())
    }

    fn open(&mut self, key: &str, attrs: &[(&str, &str)]) {
        self.out.push('<');
        self.out.push_str(key);
        write_attrs(&mut self.out, attrs);
        self.out.push('>');
    }

    fn close(&mut self, key: &str) {
        self.out.push_str("</");
        self.out.push_str(key);
        self.out.push('>');
    }
}

fn items<'a>(v: Option<&'a Json>, many: bool, path: &str) -> Result<Vec<&'a Json>, XmlError> {
    match (v, many) {
        (None, _) => Ok(Vec::new()),
        (Some(Json::Array(a)), true) => Ok(a.iter().collect()),
        (Some(_), true) => Err(err(path, "this element repeats and must be a JSON array")),
        (Some(Json::Array(_)), false) => Err(err(path, "this element does not repeat")),
        (Some(v), false) => Ok(vec![v]),
    }
}

fn check_all_used(
    members: &[(String, Json)],
    used: &[&str],
    path: &str,
    root: bool,
) -> Result<(), XmlError> {
    for (k, _) in members {
        if root && k == "resourceType" {
            continue;
        }
        if !used.contains(&k.as_str()) {
            return Err(err(
                &format!("{path}.{k}"),
                format!("unknown element '{k}'"),
            ));
        }
    }
    Ok(())
}

fn write_attrs(out: &mut String, attrs: &[(&str, &str)]) {
    for (k, v) in attrs {
        out.push(' ');
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                '\n' => out.push_str("&#10;"),
                '\r' => out.push_str("&#13;"),
                '\t' => out.push_str("&#9;"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(src: &str) -> (String, Json) {
        let j = Json::parse(src.as_bytes()).unwrap();
        let x = json_to_xml(&j, false).unwrap();
        let back = xml_to_json(&x).unwrap();
        (String::from_utf8(x).unwrap(), back)
    }

    #[test]
    fn patient_roundtrip() {
        let src = r#"{"resourceType":"Patient","id":"p1","meta":{"versionId":"2"},
          "text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>张 &amp; 伟</p></div>"},
          "extension":[{"url":"http://x/ext","valueString":"a\nb"}],
          "identifier":[{"system":"urn:oid:2.16.156.10011.1.3","value":"11010519491231002X"}],
          "active":true,"name":[{"family":"张","given":["伟",null],"_given":[null,{"extension":[{"url":"u","valueCode":"x"}]}]}],
          "gender":"male","_gender":{"id":"g1"},"birthDate":"1949-12-31","deceasedBoolean":false,
          "contact":[{"id":"c1","name":{"text":"李"}}]}"#;
        let (xml, back) = roundtrip(src);
        assert!(
            xml.starts_with(r#"<Patient xmlns="http://hl7.org/fhir"><id value="p1"/>"#),
            "{xml}"
        );
        assert!(xml.contains(r#"<gender id="g1" value="male"/>"#), "{xml}");
        assert!(xml.contains(r#"<contact id="c1">"#), "{xml}");
        assert!(xml.contains(r#"<valueString value="a&#10;b"/>"#), "{xml}");
        assert_eq!(back, Json::parse(src.as_bytes()).unwrap());
    }

    #[test]
    fn decimals_keep_precision_and_contained() {
        let src = r#"{"resourceType":"Observation","status":"final","code":{"text":"T"},
           "contained":[{"resourceType":"Patient","id":"x"}],
           "valueQuantity":{"value":36.60,"unit":"Cel"}}"#;
        let (xml, back) = roundtrip(src);
        assert!(xml.contains(r#"<value value="36.60"/>"#), "{xml}");
        assert!(xml.contains("<contained><Patient><id value=\"x\"/></Patient></contained>"));
        assert_eq!(back, Json::parse(src.as_bytes()).unwrap());
    }

    #[test]
    fn refuses_dtd_and_unknown() {
        let dtd = br#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]><Patient xmlns="http://hl7.org/fhir"><id value="&e;"/></Patient>"#;
        assert!(xml_to_json(dtd).unwrap_err().message.contains("DTD"));
        let unknown = br#"<Patient xmlns="http://hl7.org/fhir"><foo value="1"/></Patient>"#;
        assert_eq!(xml_to_json(unknown).unwrap_err().path, "Patient.foo");
        let nons = br#"<Patient><id value="1"/></Patient>"#;
        assert!(xml_to_json(nons).is_err());
        let bad_bool = br#"<Patient xmlns="http://hl7.org/fhir"><active value="yes"/></Patient>"#;
        assert_eq!(xml_to_json(bad_bool).unwrap_err().path, "Patient.active");
        let j = Json::parse(br#"{"resourceType":"Patient","foo":1}"#).unwrap();
        assert_eq!(json_to_xml(&j, false).unwrap_err().path, "Patient.foo");
    }

    #[test]
    fn pretty_output_parses_back() {
        let src = r#"{"resourceType":"Patient","name":[{"family":"Li"}]}"#;
        let j = Json::parse(src.as_bytes()).unwrap();
        let x = json_to_xml(&j, true).unwrap();
        assert!(String::from_utf8_lossy(&x).contains("\n  <name>"));
        assert_eq!(xml_to_json(&x).unwrap(), j);
    }
}
