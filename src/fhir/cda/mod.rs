//! CDA R2 shared documents (WS/T 500 electronic medical records, WS/T 483 health records):
//! the header a document is filed by, read with quick-xml without building a tree and without
//! reading the body (`component`). Pure: bytes in, a [`Header`] or a named [`CdaError`] out.
//! A document type definition is refused before anything in it is read, and so are entity
//! references other than XML's five and character references (no external entities, no
//! expansion bombs).

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

/// An identifier: `root` (an OID) and `extension`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ii {
    pub root: String,
    pub extension: Option<String>,
}

/// What a document says about itself and its patient.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    /// `ClinicalDocument/id`: the document's own identifier.
    pub id: Ii,
    /// `ClinicalDocument/code`: code and code system (WS/T 500 `C00NN`, WS/T 483 `B00NN`).
    pub code: String,
    pub code_system: String,
    pub templates: Vec<String>,
    pub title: Option<String>,
    /// `effectiveTime/@value` as written (`YYYYMMDDhhmmss[+zzzz]`).
    pub effective: Option<String>,
    /// `recordTarget/patientRole`: every identifier in it (ID number under
    /// `2.16.156.10011.1.3`, health card, the institution's record numbers).
    pub patient_ids: Vec<Ii>,
    pub patient_name: Option<String>,
    /// `administrativeGenderCode/@code` (GB/T 2261.1: 1 male, 2 female).
    pub gender: Option<String>,
    pub birth: Option<String>,
    /// The institution of the author, and the custodian.
    pub author_org: Option<Ii>,
    pub custodian: Option<Ii>,
    pub authenticator: Option<Ii>,
    pub authenticator_name: Option<String>,
    /// `relatedDocument/@typeCode` (RPLC: this document replaces) and its parent's id.
    pub related: Option<(String, Ii)>,
}

/// What is wrong with a document, and where (an element path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdaError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for CdaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

fn err(path: &[String], message: impl Into<String>) -> CdaError {
    CdaError {
        path: path.join("/"),
        message: message.into(),
    }
}

const MAX_DEPTH: usize = 64;
/// CDA's namespace.
const HL7_V3: &[u8] = b"urn:hl7-org:v3";

/// Read the header of the CDA document `bytes`.
pub fn header(bytes: &[u8]) -> Result<Header, CdaError> {
    let mut reader = Reader::from_reader(bytes);
    reader.config_mut().trim_text(false);
    let mut path: Vec<String> = Vec::new();
    let mut h = Header::default();
    let mut text = String::new();
    let mut seen_id = false;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| err(&path, format!("malformed XML: {e}")))?;
        match event {
            Event::DocType(_) => {
                return Err(err(&path, "document type definitions are not allowed"));
            }
            Event::Start(e) => {
                if path.len() >= MAX_DEPTH {
                    return Err(err(&path, "nested too deeply"));
                }
                let name = local(&e);
                if path.is_empty() {
                    check_root(&e, &name)?;
                }
                path.push(name);
                // The body is not the header's business.
                if at(&path, &["ClinicalDocument", "component"]) {
                    break;
                }
                text.clear();
                element(&path, &e, &mut h, &mut seen_id)?;
            }
            Event::Empty(e) => {
                let name = local(&e);
                if path.is_empty() {
                    check_root(&e, &name)?;
                }
                path.push(name);
                element(&path, &e, &mut h, &mut seen_id)?;
                path.pop();
            }
            Event::Text(t) => {
                let s = t
                    .decode()
                    .map_err(|e| err(&path, format!("bad text: {e}")))?;
                text.push_str(&s);
            }
            Event::CData(t) => text.push_str(&String::from_utf8_lossy(&t)),
            Event::GeneralRef(r) => {
                let name = String::from_utf8_lossy(&r).into_owned();
                text.push(predefined(&name).ok_or_else(|| {
                    err(&path, format!("entity reference &{name}; is not allowed"))
                })?);
            }
            Event::End(_) => {
                let value = text.trim();
                if !value.is_empty() {
                    ended(&path, value, &mut h);
                }
                text.clear();
                path.pop();
            }
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    let root = ["ClinicalDocument".to_owned()];
    if !seen_id {
        return Err(err(&root, "id is missing (the document's identifier)"));
    }
    if h.code.is_empty() {
        return Err(err(&root, "code is missing (the document type)"));
    }
    if h.patient_ids.is_empty() {
        return Err(err(
            &root,
            "recordTarget/patientRole has no id (whose document is it?)",
        ));
    }
    Ok(h)
}

fn check_root(e: &BytesStart<'_>, name: &str) -> Result<(), CdaError> {
    if name != "ClinicalDocument" {
        return Err(err(
            &[],
            format!("the root element is {name}, not ClinicalDocument"),
        ));
    }
    // The declaration of the root's own prefix (or of the default namespace).
    let own = match prefix(e) {
        [] => b"xmlns".to_vec(),
        p => [&b"xmlns:"[..], p].concat(),
    };
    let ns = e
        .attributes()
        .flatten()
        .find(|a| a.key.as_ref() == own.as_slice());
    match ns {
        Some(a) if a.value.as_ref() == HL7_V3 => Ok(()),
        _ => Err(err(
            &["ClinicalDocument".to_owned()],
            "not in the HL7 v3 namespace urn:hl7-org:v3",
        )),
    }
}

fn prefix<'a>(e: &'a BytesStart<'_>) -> &'a [u8] {
    e.name().prefix().map_or(&[][..], |p| p.into_inner())
}

fn local(e: &BytesStart<'_>) -> String {
    String::from_utf8_lossy(e.local_name().as_ref()).into_owned()
}

/// XML's predefined entities and character references; nothing else.
fn predefined(name: &str) -> Option<char> {
    match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        _ => {
            let code = name.strip_prefix('#')?;
            let n = match code.strip_prefix('x') {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => code.parse().ok()?,
            };
            char::from_u32(n)
        }
    }
}

fn at(path: &[String], want: &[&str]) -> bool {
    path.len() == want.len() && path.iter().zip(want).all(|(a, b)| a == b)
}

/// `path` ends with `want` below `ClinicalDocument/<first>`.
fn under(path: &[String], first: &str) -> bool {
    path.len() > 2 && path[0] == "ClinicalDocument" && path[1] == first
}

fn attr(path: &[String], e: &BytesStart<'_>, key: &str) -> Result<Option<String>, CdaError> {
    for a in e.attributes() {
        let a = a.map_err(|x| err(path, format!("bad attribute: {x}")))?;
        if a.key.local_name().as_ref() == key.as_bytes() {
            let v = a
                .unescape_value()
                .map_err(|x| err(path, format!("attribute {key}: {x}")))?;
            return Ok(Some(v.into_owned()));
        }
    }
    Ok(None)
}

fn ii(path: &[String], e: &BytesStart<'_>) -> Result<Ii, CdaError> {
    let root = attr(path, e, "root")?
        .filter(|r| !r.is_empty())
        .ok_or_else(|| err(path, "root is missing"))?;
    Ok(Ii {
        root,
        extension: attr(path, e, "extension")?.filter(|x| !x.is_empty()),
    })
}

/// An element of the header began: what its attributes say.
fn element(
    path: &[String],
    e: &BytesStart<'_>,
    h: &mut Header,
    seen_id: &mut bool,
) -> Result<(), CdaError> {
    let name = path.last().map(String::as_str).unwrap_or("");
    if path.len() == 2 {
        match name {
            "id" => {
                h.id = ii(path, e)?;
                *seen_id = true;
            }
            "code" => {
                h.code = attr(path, e, "code")?
                    .filter(|c| !c.is_empty())
                    .ok_or_else(|| err(path, "code is missing"))?;
                h.code_system = attr(path, e, "codeSystem")?.unwrap_or_default();
            }
            "templateId" => h.templates.push(ii(path, e)?.root),
            "effectiveTime" => h.effective = attr(path, e, "value")?,
            "relatedDocument" => {
                let kind = attr(path, e, "typeCode")?.unwrap_or_default();
                h.related = Some((kind, Ii::default()));
            }
            _ => {}
        }
        return Ok(());
    }
    if under(path, "recordTarget") {
        match name {
            "id" => h.patient_ids.push(ii(path, e)?),
            "administrativeGenderCode" => h.gender = attr(path, e, "code")?,
            "birthTime" => h.birth = attr(path, e, "value")?,
            _ => {}
        }
    } else if under(path, "author") && name == "id" && parent(path) == "representedOrganization" {
        h.author_org.get_or_insert(ii(path, e)?);
    } else if under(path, "custodian") && name == "id" {
        h.custodian.get_or_insert(ii(path, e)?);
    } else if under(path, "legalAuthenticator") && name == "id" && parent(path) == "assignedEntity"
    {
        h.authenticator.get_or_insert(ii(path, e)?);
    } else if under(path, "relatedDocument") && name == "id" && parent(path) == "parentDocument" {
        let kind = h.related.take().map(|r| r.0).unwrap_or_default();
        h.related = Some((kind, ii(path, e)?));
    }
    Ok(())
}

fn parent(path: &[String]) -> &str {
    path.len()
        .checked_sub(2)
        .and_then(|i| path.get(i))
        .map_or("", String::as_str)
}

/// An element with text ended.
fn ended(path: &[String], value: &str, h: &mut Header) {
    let name = path.last().map(String::as_str).unwrap_or("");
    if at(path, &["ClinicalDocument", "title"]) {
        h.title = Some(value.to_owned());
    } else if under(path, "recordTarget") && name == "name" && parent(path) == "patient" {
        h.patient_name = Some(value.to_owned());
    } else if under(path, "legalAuthenticator") && name == "name" {
        h.authenticator_name = Some(value.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A discharge summary (C0053) header, as WS/T 500.53 writes it, of a synthetic resident.
    const SAMPLE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <realmCode code="CN"/>
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_MT000040"/>
  <templateId root="2.16.156.10011.2.1.1.73"/>
  <id root="2.16.156.10011.1.1" extension="DOC-2026-0001"/>
  <code code="C0053" codeSystem="2.16.156.10011.2.4" codeSystemName="卫生信息共享文档编码体系"/>
  <title>出院小结 &amp; 随访</title>
  <effectiveTime value="20261105093000+0800"/>
  <confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>
  <recordTarget typeCode="RCT" contextControlCode="OP">
    <patientRole classCode="PAT">
      <id root="2.16.156.10011.1.12" extension="ZY0001"/>
      <patient classCode="PSN" determinerCode="INSTANCE">
        <id root="2.16.156.10011.1.3" extension="510104196003010011"/>
        <name>居民一</name>
        <administrativeGenderCode code="1" codeSystem="2.16.156.10011.2.3.3.4"/>
        <birthTime value="19600301"/>
      </patient>
    </patientRole>
  </recordTarget>
  <author typeCode="AUT" contextControlCode="OP">
    <time value="20261105093000"/>
    <assignedAuthor classCode="ASSIGNED">
      <id root="2.16.156.10011.1.7" extension="D001"/>
      <representedOrganization>
        <id root="2.16.156.10011.1.5" extension="12510100MB0000001X"/>
        <name>成都市第一人民医院</name>
      </representedOrganization>
    </assignedAuthor>
  </author>
  <custodian typeCode="CST">
    <assignedCustodian classCode="ASSIGNED">
      <representedCustodianOrganization classCode="ORG" determinerCode="INSTANCE">
        <id root="2.16.156.10011.1.5" extension="12510100MB0000001X"/>
      </representedCustodianOrganization>
    </assignedCustodian>
  </custodian>
  <legalAuthenticator>
    <time/>
    <signatureCode/>
    <assignedEntity>
      <id root="2.16.156.10011.1.4" extension="D002"/>
      <assignedPerson><name>医生二</name></assignedPerson>
    </assignedEntity>
  </legalAuthenticator>
  <relatedDocument typeCode="RPLC">
    <parentDocument><id root="2.16.156.10011.1.1" extension="DOC-2026-0000"/></parentDocument>
  </relatedDocument>
  <component><structuredBody><component><section>&unread;</section></component></structuredBody></component>
</ClinicalDocument>"#;

    #[test]
    fn reads_the_header_and_not_the_body() {
        let h = header(SAMPLE.as_bytes()).unwrap();
        assert_eq!(h.id.extension.as_deref(), Some("DOC-2026-0001"));
        assert_eq!(
            (h.code.as_str(), h.code_system.as_str()),
            ("C0053", "2.16.156.10011.2.4")
        );
        assert_eq!(h.templates, vec!["2.16.156.10011.2.1.1.73"]);
        assert_eq!(h.title.as_deref(), Some("出院小结 & 随访"));
        assert_eq!(h.effective.as_deref(), Some("20261105093000+0800"));
        let ids: Vec<&str> = h.patient_ids.iter().map(|i| i.root.as_str()).collect();
        assert_eq!(ids, ["2.16.156.10011.1.12", "2.16.156.10011.1.3"]);
        assert_eq!(h.patient_name.as_deref(), Some("居民一"));
        assert_eq!(h.gender.as_deref(), Some("1"));
        assert_eq!(h.birth.as_deref(), Some("19600301"));
        assert_eq!(
            h.author_org.unwrap().extension.as_deref(),
            Some("12510100MB0000001X")
        );
        assert_eq!(h.custodian.unwrap().root, "2.16.156.10011.1.5");
        assert_eq!(h.authenticator.unwrap().extension.as_deref(), Some("D002"));
        assert_eq!(h.authenticator_name.as_deref(), Some("医生二"));
        let (kind, parent) = h.related.unwrap();
        assert_eq!(kind, "RPLC");
        assert_eq!(parent.extension.as_deref(), Some("DOC-2026-0000"));
    }

    #[test]
    fn refuses_dtds_entities_and_strangers() {
        let dtd = format!(
            "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;\">]>{}",
            SAMPLE.split_once("?>").unwrap().1
        );
        assert!(
            header(dtd.as_bytes())
                .unwrap_err()
                .message
                .contains("document type")
        );
        let external = SAMPLE.replace("出院小结 &amp; 随访", "&xxe;");
        let e = header(external.as_bytes()).unwrap_err();
        assert_eq!(e.path, "ClinicalDocument/title");
        assert!(e.message.contains("&xxe;"), "{e}");
        let in_attribute = SAMPLE.replace("DOC-2026-0001", "&xxe;");
        let e = header(in_attribute.as_bytes()).unwrap_err();
        assert_eq!(e.path, "ClinicalDocument/id");
        let e = header(b"<Bundle xmlns=\"http://hl7.org/fhir\"/>").unwrap_err();
        assert!(e.message.contains("not ClinicalDocument"), "{e}");
        let prefixed = SAMPLE
            .replace(
                "<ClinicalDocument xmlns=",
                "<cda:ClinicalDocument xmlns:cda=",
            )
            .replace("</ClinicalDocument>", "</cda:ClinicalDocument>");
        assert_eq!(header(prefixed.as_bytes()).unwrap().code, "C0053");
        let e = header(SAMPLE.replace("urn:hl7-org:v3", "urn:x").as_bytes()).unwrap_err();
        assert!(e.message.contains("namespace"), "{e}");
    }

    #[test]
    fn names_what_the_header_lacks() {
        let no_id = SAMPLE.replace(
            r#"<id root="2.16.156.10011.1.1" extension="DOC-2026-0001"/>"#,
            "",
        );
        assert!(
            header(no_id.as_bytes())
                .unwrap_err()
                .message
                .starts_with("id is missing")
        );
        let no_code = SAMPLE.replace(r#"code="C0053" "#, "");
        let e = header(no_code.as_bytes()).unwrap_err();
        assert_eq!(e.to_string(), "ClinicalDocument/code: code is missing");
        let no_root = SAMPLE.replace(r#"<id root="2.16.156.10011.1.12" "#, r#"<id "#);
        let e = header(no_root.as_bytes()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "ClinicalDocument/recordTarget/patientRole/id: root is missing"
        );
        let e = header(b"<ClinicalDocument xmlns=\"urn:hl7-org:v3\"><id").unwrap_err();
        assert!(e.message.contains("malformed"), "{e}");
    }
}
