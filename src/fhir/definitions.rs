//! The R4B element tables, loaded from `fhir-profiles/r4b-elements.json`.
//!
//! The file is derived from the official StructureDefinitions of the `hl7.fhir.r4b.core` package
//! by `scripts/extract-profiles.py` and embedded in the binary. It gives, for every resource,
//! complex and primitive type, its elements in definition order with cardinality, types, content
//! references and XML representation. The XML converter walks these tables.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::Deserialize;

static RAW: &str = include_str!("../../fhir-profiles/r4b-elements.json");

/// The definitions, parsed once on first use.
pub static DEFINITIONS: LazyLock<Definitions> = LazyLock::new(Definitions::load);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Resource,
    Complex,
    Primitive,
}

/// How an element's JSON value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonType {
    Bool,
    Number,
    String,
}

/// One child element of a type or backbone element.
#[derive(Debug, Clone)]
pub struct ElementDef {
    /// Element name without any `[x]` suffix, e.g. `value` for `value[x]`.
    pub name: String,
    /// Whether this is a choice element (`value[x]`).
    pub choice: bool,
    /// Whether the element repeats (JSON array).
    pub many: bool,
    /// Type codes (several for choice elements).
    pub types: Vec<String>,
    /// For backbone elements and content references: the path whose children apply.
    pub children_of: Option<String>,
    /// Written as an XML attribute (`Element.id`, `Extension.url`).
    pub xml_attr: bool,
    /// Part of the summary view (`_summary=true`).
    pub summary: bool,
    /// Mandatory (minimum cardinality above zero).
    pub required: bool,
}

pub struct Definitions {
    kinds: HashMap<String, Kind>,
    children: HashMap<String, Vec<ElementDef>>,
}

#[derive(Deserialize)]
struct RawFile {
    types: HashMap<String, RawType>,
}

#[derive(Deserialize)]
struct RawType {
    kind: String,
    elements: Vec<RawElement>,
}

#[derive(Deserialize)]
struct RawElement {
    p: String,
    m: u8,
    #[serde(default)]
    t: Vec<String>,
    r: Option<String>,
    x: Option<String>,
    z: Option<u8>,
    s: Option<u8>,
    n: Option<u8>,
}

impl Definitions {
    #[expect(
        clippy::expect_used,
        reason = "the embedded table is part of the binary"
    )]
    fn load() -> Definitions {
        let raw: RawFile = serde_json::from_str(RAW).expect("embedded r4b-elements.json is valid");
        let mut kinds = HashMap::new();
        let mut children: HashMap<String, Vec<ElementDef>> = HashMap::new();
        for (name, t) in raw.types {
            let kind = match t.kind.as_str() {
                "resource" => Kind::Resource,
                "primitive-type" => Kind::Primitive,
                _ => Kind::Complex,
            };
            kinds.insert(name.clone(), kind);
            if kind == Kind::Primitive {
                continue;
            }
            for e in t.elements {
                if e.z == Some(1) {
                    continue;
                }
                let Some((parent, last)) = e.p.rsplit_once('.') else {
                    continue;
                };
                let (base, choice) = match last.strip_suffix("[x]") {
                    Some(b) => (b.to_owned(), true),
                    None => (last.to_owned(), false),
                };
                let backbone = e.t.iter().any(|t| t == "BackboneElement" || t == "Element");
                let children_of = match e.r {
                    Some(r) => Some(r),
                    None if backbone => Some(e.p.clone()),
                    None => None,
                };
                children
                    .entry(parent.to_owned())
                    .or_default()
                    .push(ElementDef {
                        name: base,
                        choice,
                        many: e.m == 1,
                        types: e.t,
                        children_of,
                        xml_attr: e.x.as_deref() == Some("xmlAttr"),
                        summary: e.s == Some(1),
                        required: e.n == Some(1),
                    });
            }
        }
        Definitions { kinds, children }
    }

    pub fn kind(&self, type_name: &str) -> Option<Kind> {
        self.kinds.get(type_name).copied()
    }

    /// Child elements, in definition order, of a type (`HumanName`) or backbone path
    /// (`Patient.contact`).
    pub fn children(&self, context: &str) -> &[ElementDef] {
        self.children.get(context).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Every resource type.
    pub fn resource_types(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .kinds
            .iter()
            .filter(|(_, k)| **k == Kind::Resource)
            .map(|(n, _)| n.as_str())
            .collect();
        v.sort_unstable();
        v
    }

    /// Every resource type with its kind, for listings.
    pub fn is_resource(&self, name: &str) -> bool {
        self.kind(name) == Some(Kind::Resource)
    }
}

impl ElementDef {
    /// The context whose children apply to a complex value of this element of type `ty`.
    pub fn context_for<'a>(&'a self, ty: &'a str) -> &'a str {
        self.children_of.as_deref().unwrap_or(ty)
    }

    /// Whether JSON member `key` (or its `_key` shadow) holds this element.
    pub fn holds(&self, key: &str) -> bool {
        let key = key.strip_prefix('_').unwrap_or(key);
        if self.choice {
            self.types.iter().any(|t| self.choice_name(t) == key)
        } else {
            self.name == key
        }
    }

    /// JSON member name for a choice element of type `ty`: `value` + `Quantity`.
    pub fn choice_name(&self, ty: &str) -> String {
        let mut s = self.name.clone();
        let mut cs = ty.chars();
        if let Some(f) = cs.next() {
            s.extend(f.to_uppercase());
            s.push_str(cs.as_str());
        }
        s
    }
}

/// The JSON representation of a primitive type.
pub fn json_type(primitive: &str) -> JsonType {
    match primitive {
        "boolean" => JsonType::Bool,
        "integer" | "positiveInt" | "unsignedInt" | "decimal" | "integer64" => JsonType::Number,
        _ => JsonType::String,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patient_children_in_order() {
        let names: Vec<_> = DEFINITIONS
            .children("Patient")
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(&names[..4], &["id", "meta", "implicitRules", "language"]);
        assert!(names.contains(&"deceased"));
        let contact = DEFINITIONS
            .children("Patient")
            .iter()
            .find(|e| e.name == "contact")
            .unwrap();
        assert_eq!(contact.children_of.as_deref(), Some("Patient.contact"));
        assert!(DEFINITIONS.children("Patient.contact")[0].xml_attr);
    }

    #[test]
    fn content_reference_and_choice() {
        let item = DEFINITIONS
            .children("Questionnaire.item")
            .iter()
            .find(|e| e.name == "item")
            .unwrap();
        assert_eq!(item.children_of.as_deref(), Some("Questionnaire.item"));
        let v = DEFINITIONS
            .children("Observation")
            .iter()
            .find(|e| e.name == "value")
            .unwrap();
        assert!(v.choice);
        assert_eq!(v.choice_name("dateTime"), "valueDateTime");
        assert_eq!(DEFINITIONS.kind("decimal"), Some(Kind::Primitive));
        assert!(DEFINITIONS.is_resource("Bundle"));
    }
}
