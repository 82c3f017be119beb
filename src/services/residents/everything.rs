//! The longitudinal record (`Patient/[id]/$everything`): every live resource of a resident from
//! every institution, found through the `resident` column (one index range), with the
//! Organizations, Practitioners, PractitionerRoles and Locations they refer to.

use crate::services::access::AccessFilter;
use std::collections::HashSet;

use crate::clock;
use crate::error::ApiError;
use crate::fhir::json::Json;
use crate::services::residents::mpi;
use crate::store::record::{self as repo, search as store_search};
use crate::store::{Store, Tx};

/// What `$everything` was asked for.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Only these types (`_type`); all when empty.
    pub types: Vec<String>,
    /// Changed at or after (`_since`, ms).
    pub since: Option<i64>,
    /// Care between (`start`, `end`, ms; open ends are `i64::MIN` / `i64::MAX`).
    pub care: Option<(i64, i64)>,
    /// Resume after this (type, id) (the `next` link's cursor).
    pub after: Option<(String, String)>,
    pub count: i64,
    /// The types the caller's token may read: nothing else is returned.
    pub readable: crate::services::access::Readable,
}

/// One page: the resident's resources (type, id, JSON), the registry resources they refer to,
/// and where the next page starts.
#[derive(Debug, Clone)]
pub struct Page {
    pub golden: String,
    pub found: Vec<(String, String, String)>,
    pub included: Vec<(String, String, String)>,
    pub next: Option<(String, String)>,
}

/// Types a page includes when its resources refer to them.
const REFERENCED: &[&str] = &[
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "Location",
];

/// The golden resident of `Patient/id` (itself when it is one): 404 or 410 like a read.
pub fn golden_of(conn: &mut Tx<'_>, id: &str) -> Result<String, ApiError> {
    let rec = crate::services::record::read_in(conn, "Patient", id)?;
    let tree = Json::parse(rec.content.as_bytes()).map_err(ApiError::internal)?;
    mpi::golden_for(conn, id, &tree)
}

/// `Patient/[id]/$everything`, one page.
pub fn everything(
    store: &Store,
    id: &str,
    req: &Request,
    access: &AccessFilter,
) -> Result<Page, ApiError> {
    store.read(|conn| {
        let golden = golden_of(conn, id)?;
        let want = usize::try_from(req.count).unwrap_or(usize::MAX);
        let mut found = store_search::resident_members(
            conn,
            &golden,
            &req.types,
            req.since,
            req.care,
            req.after.as_ref().map(|(t, i)| (t.as_str(), i.as_str())),
            req.count.saturating_add(1),
        )?;
        let next = if found.len() > want {
            found.truncate(want);
            found.last().map(|(t, id, _)| (t.clone(), id.clone()))
        } else {
            None
        };
        // What the token's scopes and consent hide of this resident by type (the page may then
        // be short).
        found.retain(|(t, _, _)| req.readable.allows(t));
        access.retain_visible(conn, &mut found)?;
        let mut seen: HashSet<(String, String)> = found
            .iter()
            .map(|(t, id, _)| (t.clone(), id.clone()))
            .collect();
        // The registry resources the page refers to: one lookup per type.
        let mut wanted: Vec<(String, String)> = Vec::new();
        let mut refs = Vec::new();
        for (_, _, content) in &found {
            refs.clear();
            if !references_in(content, &mut refs) {
                refs.clear();
                let Ok(tree) = Json::parse(content.as_bytes()) else {
                    continue;
                };
                references(&tree, &mut refs);
            }
            for r in refs.drain(..) {
                if seen.insert(r.clone()) {
                    wanted.push(r);
                }
            }
        }
        let mut included = Vec::new();
        for t in REFERENCED.iter().filter(|t| req.readable.allows(t)) {
            let ids: Vec<String> = wanted
                .iter()
                .filter(|(wt, _)| wt == t)
                .map(|(_, id)| id.clone())
                .collect();
            if !ids.is_empty() {
                for (id, content) in repo::find_live(conn, t, &ids)? {
                    included.push(((*t).to_owned(), id, content));
                }
            }
        }
        Ok(Page {
            golden,
            found,
            included,
            next,
        })
    })
}

/// Relative references `Type/id` to the [`REFERENCED`] types in stored JSON text, found
/// without building its tree (parsing every resource of the page was the largest part of a
/// saturated `$everything`'s CPU): every string value of a member named `reference`. In valid
/// JSON the bytes `"reference"` followed by a colon can only be a member's name, as a quote
/// inside a string is escaped. Returns false, leaving the work to [`references`], when a
/// reference holds an escape.
fn references_in(text: &str, out: &mut Vec<(String, String)>) -> bool {
    const NAME: &str = "\"reference\"";
    let space = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r');
    for (at, _) in text.match_indices(NAME) {
        // A quote after an odd number of backslashes is inside a string.
        let backslashes = text[..at].bytes().rev().take_while(|b| *b == b'\\').count();
        if backslashes % 2 == 1 {
            continue;
        }
        let Some(value) = text[at + NAME.len()..]
            .trim_start_matches(space)
            .strip_prefix(':')
            .map(|v| v.trim_start_matches(space))
            .and_then(|v| v.strip_prefix('"'))
        else {
            continue;
        };
        let Some(end) = value.find('"') else {
            return false;
        };
        let r = &value[..end];
        if r.contains('\\') {
            return false;
        }
        out.extend(registry_reference(r));
    }
    true
}

/// `r` as (type, id) when it is a relative reference to one of the [`REFERENCED`] types.
fn registry_reference(r: &str) -> Option<(String, String)> {
    let (t, id) = r.split_once('/')?;
    (REFERENCED.contains(&t) && !id.contains('/')).then(|| (t.to_owned(), id.to_owned()))
}

/// Relative references `Type/id` to the [`REFERENCED`] types anywhere in `node`.
fn references(node: &Json, out: &mut Vec<(String, String)>) {
    match node {
        Json::Object(members) => {
            for (k, v) in members {
                if k == "reference"
                    && let Some(found) = v.as_str().and_then(registry_reference)
                {
                    out.push(found);
                } else {
                    references(v, out);
                }
            }
        }
        Json::Array(items) => items.iter().for_each(|i| references(i, out)),
        _ => {}
    }
}

/// Most resources of a resident `$summary` reads.
const SUMMARY_MAX: i64 = 5000;
/// Encounters listed in a summary.
const RECENT_ENCOUNTERS: usize = 10;

/// A summary section: LOINC code (none for the contributing institutions), title, and its
/// items newest first.
struct Section {
    code: Option<&'static str>,
    title: &'static str,
    items: Vec<Item>,
}

/// One line of a summary section and the resource it stands for.
struct Item {
    /// `Type/id`.
    reference: String,
    /// The narrative line.
    line: String,
    resource: Json,
    /// The care date (`YYYY-MM-DD…`), for ordering.
    date: String,
}

fn text_of(j: Option<&Json>) -> Option<String> {
    let j = j?;
    if let Some(t) = j.get_str("text") {
        return Some(t.to_owned());
    }
    match j.get("coding") {
        Some(Json::Array(c)) => c.iter().find_map(|c| {
            c.get_str("display")
                .or_else(|| c.get_str("code"))
                .map(str::to_owned)
        }),
        _ => None,
    }
}

fn coded(j: Option<&Json>, system_hint: &str) -> Option<String> {
    match j?.get("coding") {
        Some(Json::Array(c)) => c
            .iter()
            .find(|c| c.get_str("system").is_some_and(|s| s.contains(system_hint)))
            .or_else(|| c.first())
            .and_then(|c| c.get_str("code"))
            .map(str::to_owned),
        _ => None,
    }
}

fn has_category(r: &Json, code: &str) -> bool {
    match r.get("category") {
        Some(Json::Array(cats)) => cats.iter().any(|c| match c.get("coding") {
            Some(Json::Array(cs)) => cs.iter().any(|x| x.get_str("code") == Some(code)),
            _ => false,
        }),
        _ => false,
    }
}

/// The care date of a resource (for ordering and display): `YYYY-MM-DD…`.
fn care_date(r: &Json) -> String {
    for key in [
        "effectiveDateTime",
        "occurrenceDateTime",
        "authoredOn",
        "onsetDateTime",
        "recordedDate",
        "issued",
    ] {
        if let Some(d) = r.get_str(key) {
            return d.to_owned();
        }
    }
    for key in ["period", "effectivePeriod"] {
        if let Some(d) = r.get(key).and_then(|p| p.get_str("start")) {
            return d.to_owned();
        }
    }
    String::new()
}

/// `Patient/[id]/$summary`: a document Bundle (Composition first) of the resident's active
/// problems, current medications, allergies, latest vital signs and results with their dates,
/// recent encounters with their institutions, immunizations, and the contributing institutions.
pub fn summary(
    store: &Store,
    id: &str,
    base: &str,
    access: &AccessFilter,
    readable: &crate::services::access::Readable,
) -> Result<Json, ApiError> {
    store.read(|conn| {
        let golden = golden_of(conn, id)?;
        let mut members =
            store_search::resident_members(conn, &golden, &[], None, None, None, SUMMARY_MAX)?;
        members.retain(|(t, _, _)| readable.allows(t));
        access.retain_visible(conn, &mut members)?;
        let mut sections = [
            Section {
                code: Some("11450-4"),
                title: "Active problems (现患疾病)",
                items: Vec::new(),
            },
            Section {
                code: Some("10160-0"),
                title: "Medications (用药)",
                items: Vec::new(),
            },
            Section {
                code: Some("48765-2"),
                title: "Allergies (过敏)",
                items: Vec::new(),
            },
            Section {
                code: Some("8716-3"),
                title: "Vital signs, latest (生命体征)",
                items: Vec::new(),
            },
            Section {
                code: Some("30954-2"),
                title: "Results, latest (检查检验结果)",
                items: Vec::new(),
            },
            Section {
                code: Some("46240-8"),
                title: "Recent encounters (近期就诊)",
                items: Vec::new(),
            },
            Section {
                code: Some("11369-6"),
                title: "Immunizations (预防接种)",
                items: Vec::new(),
            },
        ];
        let mut patient: Option<String> = None;
        let mut latest: std::collections::HashMap<(usize, String), usize> =
            std::collections::HashMap::new();
        let mut orgs: Vec<String> = Vec::new();
        for (t, rid, content) in members {
            let Ok(r) = Json::parse(content.as_bytes()) else {
                continue;
            };
            let date = care_date(&r);
            let mut refs = Vec::new();
            references(&r, &mut refs);
            for (rt, oid) in refs {
                if rt == "Organization" && !orgs.contains(&oid) {
                    orgs.push(oid);
                }
            }
            let (slot, line) = match t.as_str() {
                "Patient" if rid == golden => {
                    patient = Some(content.clone());
                    continue;
                }
                "Condition"
                    if coded(r.get("clinicalStatus"), "condition-clinical").as_deref()
                        == Some("active") =>
                {
                    let code = coded(r.get("code"), "").unwrap_or_default();
                    let name = text_of(r.get("code")).unwrap_or_default();
                    (0, format!("{name} ({code}), since {}", day(&date)))
                }
                "MedicationRequest" | "MedicationStatement"
                    if matches!(
                        r.get_str("status"),
                        Some("active" | "completed" | "intended")
                    ) =>
                {
                    let name = text_of(r.get("medicationCodeableConcept")).unwrap_or_default();
                    (1, format!("{name}, prescribed {}", day(&date)))
                }
                "AllergyIntolerance" => {
                    let name = text_of(r.get("code")).unwrap_or_default();
                    (2, format!("{name}, recorded {}", day(&date)))
                }
                "Observation" => {
                    let slot = if has_category(&r, "vital-signs") {
                        3
                    } else {
                        4
                    };
                    let name = text_of(r.get("code")).unwrap_or_default();
                    let value = r
                        .get("valueQuantity")
                        .map(|q| {
                            let v = match q.get("value") {
                                Some(Json::Number(n)) => n.clone(),
                                _ => String::new(),
                            };
                            format!("{v} {}", q.get_str("unit").unwrap_or_default())
                        })
                        .or_else(|| {
                            let Some(Json::Array(c)) = r.get("component") else {
                                return None;
                            };
                            Some(
                                c.iter()
                                    .filter_map(|c| {
                                        match c.get("valueQuantity").and_then(|q| q.get("value")) {
                                            Some(Json::Number(n)) => Some(n.clone()),
                                            _ => None,
                                        }
                                    })
                                    .collect::<Vec<_>>()
                                    .join("/"),
                            )
                        })
                        .unwrap_or_default();
                    (slot, format!("{name}: {value} on {}", day(&date)))
                }
                "DiagnosticReport" => {
                    let name = text_of(r.get("code")).unwrap_or_default();
                    (4, format!("{name} report on {}", day(&date)))
                }
                "Encounter" => {
                    let kind = r
                        .get("class")
                        .and_then(|c| c.get_str("display").or_else(|| c.get_str("code")))
                        .unwrap_or_default()
                        .to_owned();
                    let at = r
                        .get("serviceProvider")
                        .and_then(|p| p.get_str("reference"))
                        .unwrap_or("an unknown institution")
                        .to_owned();
                    (5, format!("{} {kind} at {at}", day(&date)))
                }
                "Immunization" => {
                    let name = text_of(r.get("vaccineCode")).unwrap_or_default();
                    (6, format!("{name} on {}", day(&date)))
                }
                _ => continue,
            };
            // Vital signs and results: the latest per code.
            if slot == 3 || (slot == 4 && t == "Observation") {
                let code = coded(r.get("code"), "loinc").unwrap_or_default();
                let items = &mut sections[slot].items;
                match latest.get(&(slot, code.clone())) {
                    Some(&i) if items[i].date >= date => continue,
                    Some(&i) => {
                        items[i] = Item {
                            reference: format!("{t}/{rid}"),
                            line,
                            resource: Json::Raw(content),
                            date,
                        };
                        continue;
                    }
                    None => {
                        latest.insert((slot, code), items.len());
                    }
                }
            }
            sections[slot].items.push(Item {
                reference: format!("{t}/{rid}"),
                line,
                resource: Json::Raw(content),
                date,
            });
        }
        let patient = patient
            .ok_or_else(|| ApiError::NotFound(format!("Patient/{id} has no resident record")))?;
        for s in &mut sections {
            s.items.sort_by(|a, b| b.date.cmp(&a.date));
        }
        sections[5].items.truncate(RECENT_ENCOUNTERS);
        // The contributing institutions, with their names.
        let mut institutions = Section {
            code: None,
            title: "Contributing institutions (数据来源机构)",
            items: Vec::new(),
        };
        for o in &orgs {
            if let Some(c) = repo::find_current(conn, "Organization", o)?
                && !c.deleted
            {
                let name = Json::parse(c.content.as_bytes())
                    .ok()
                    .and_then(|j| j.get_str("name").map(str::to_owned))
                    .unwrap_or_else(|| o.clone());
                institutions.items.push(Item {
                    reference: format!("Organization/{o}"),
                    line: format!("Organization/{o}: {name}"),
                    resource: Json::Raw(c.content),
                    date: String::new(),
                });
            }
        }
        Ok(document(
            &golden,
            base,
            patient,
            sections.into_iter().chain([institutions]),
        ))
    })
}

fn day(date: &str) -> &str {
    date.get(..10).unwrap_or(date)
}

fn document(
    golden: &str,
    base: &str,
    patient: String,
    sections: impl IntoIterator<Item = Section>,
) -> Json {
    use crate::fhir::bundle::{obj, s};
    let div = |lines: &[String]| {
        let items: String = lines
            .iter()
            .map(|l| format!("<li>{}</li>", quick_xml::escape::escape(l.as_str())))
            .collect();
        let body = if lines.is_empty() {
            "<p>None recorded.</p>".to_owned()
        } else {
            format!("<ul>{items}</ul>")
        };
        obj(vec![
            ("status", s("generated")),
            (
                "div",
                s(format!(
                    "<div xmlns=\"http://www.w3.org/1999/xhtml\">{body}</div>"
                )),
            ),
        ])
    };
    let loinc = |code: &str, display: &str| {
        obj(vec![(
            "coding",
            Json::Array(vec![obj(vec![
                ("system", s("http://loinc.org")),
                ("code", s(code)),
                ("display", s(display)),
            ])]),
        )])
    };
    let mut entries = vec![];
    let mut json_sections = Vec::new();
    for sec in sections {
        let lines: Vec<String> = sec.items.iter().map(|i| i.line.clone()).collect();
        let mut members = vec![("title", s(sec.title))];
        if let Some(code) = sec.code {
            members.push(("code", loinc(code, sec.title)));
        }
        members.push(("text", div(&lines)));
        if !sec.items.is_empty() {
            members.push((
                "entry",
                Json::Array(
                    sec.items
                        .iter()
                        .map(|i| obj(vec![("reference", s(i.reference.clone()))]))
                        .collect(),
                ),
            ));
        } else {
            members.push((
                "emptyReason",
                obj(vec![(
                    "coding",
                    Json::Array(vec![obj(vec![
                        (
                            "system",
                            s("http://terminology.hl7.org/CodeSystem/list-empty-reason"),
                        ),
                        ("code", s("unavailable")),
                    ])]),
                )]),
            ));
        }
        json_sections.push(obj(members));
        entries.extend(sec.items.into_iter().map(|i| (i.reference, i.resource)));
    }
    let now = clock::instant(clock::now_millis());
    let composition_id = crate::services::record::new_id();
    let composition = obj(vec![
        ("resourceType", s("Composition")),
        ("id", s(composition_id.clone())),
        ("status", s("final")),
        ("type", loinc("60591-5", "Patient summary Document")),
        (
            "subject",
            obj(vec![("reference", s(format!("Patient/{golden}")))]),
        ),
        ("date", s(now.clone())),
        (
            "author",
            Json::Array(vec![obj(vec![(
                "display",
                s("Huimin regional health information platform"),
            )])]),
        ),
        ("title", s("Patient summary (居民健康摘要)")),
        ("section", Json::Array(json_sections)),
    ]);
    let entry =
        |full: String, resource: Json| obj(vec![("fullUrl", s(full)), ("resource", resource)]);
    let mut all = vec![
        entry(format!("{base}/Composition/{composition_id}"), composition),
        entry(format!("{base}/Patient/{golden}"), Json::Raw(patient)),
    ];
    all.extend(
        entries
            .into_iter()
            .map(|(r, j)| entry(format!("{base}/{r}"), j)),
    );
    obj(vec![
        ("resourceType", s("Bundle")),
        ("id", s(crate::services::record::new_id())),
        (
            "identifier",
            obj(vec![
                ("system", s("urn:ietf:rfc:3986")),
                (
                    "value",
                    s(format!("urn:uuid:{}", crate::services::record::new_id())),
                ),
            ]),
        ),
        ("type", s("document")),
        ("timestamp", s(now)),
        ("entry", Json::Array(all)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text scan finds what the tree walk finds.
    #[test]
    fn references_found_in_the_text_are_those_of_the_tree() {
        let docs = [
            r#"{"resourceType":"Observation","subject":{"reference":"Patient/p1"},"performer":[{"reference":"Organization/o1"},{"reference" : "Practitioner/d1"}]}"#,
            "{\"resourceType\":\"Encounter\",\n  \"serviceProvider\" :\t{ \"reference\"\r\n : \"Organization/o2\" },\"location\":[{\"location\":{\"reference\":\"Location/l1\"}}]}",
            r#"{"resourceType":"Observation","code":{"text":"the \"reference\": \"Organization/fake\""},"note":[{"text":"reference"}]}"#,
            r#"{"resourceType":"Observation","valueString":"\\","performer":[{"reference":"Organization/o3"}]}"#,
            r#"{"resourceType":"Observation","extension":[{"url":"x\"reference","valueString":"Organization/fake"}],"note":[{"text":"x\"reference\" :\"Organization/fake"}],"code":{"x\"reference":"Organization/fake"}}"#,
            r#"{"resourceType":"Observation","extension":[{"url":"u","valueString":"reference"}],"performer":[{"reference":"Organization/a/b"},{"reference":"Group/g1"},{"reference":"https://x.org/fhir/Organization/o4"}]}"#,
            r##"{"resourceType":"Procedure","contained":[{"resourceType":"PractitionerRole","id":"r","organization":{"reference":"Organization/o5"}}],"performer":[{"actor":{"reference":"#r"}}]}"##,
        ];
        for doc in docs {
            let mut scanned = Vec::new();
            assert!(references_in(doc, &mut scanned), "{doc}");
            let mut walked = Vec::new();
            references(&Json::parse(doc.as_bytes()).unwrap(), &mut walked);
            scanned.sort();
            walked.sort();
            assert_eq!(scanned, walked, "{doc}");
        }
        // An escape inside a reference is left to the parser.
        let escaped = r#"{"performer":[{"reference":"Organization\/o6"}]}"#;
        assert!(!references_in(escaped, &mut Vec::new()));
        let mut walked = Vec::new();
        references(&Json::parse(escaped.as_bytes()).unwrap(), &mut walked);
        assert_eq!(walked, vec![("Organization".to_owned(), "o6".to_owned())]);
    }
}
