//! Administrative merge and unmerge of golden residents (`Patient/$merge`, `Patient/$unmerge`).
//!
//! Merging golden resident A into B (the same person recorded twice) moves, in one
//! transaction: every institution Patient of A to B (their `refer` links), every `_resident`
//! row from A to B, A's resident keys (ID numbers) to B; A becomes inactive with a
//! `replaced-by` link and B gets a `replaces` link. A Provenance records it (activity `merge`,
//! the reason, who, and the versions of A and B before the merge and the Patients moved), and
//! is what `$unmerge` reverses: the moved Patients, the rows of every resource that refers to
//! them and A's keys go back to A, and A and B get their identifiers back.

use crate::clock;
use crate::error::ApiError;
use crate::fhir::bundle::{obj, s};
use crate::fhir::json::Json;
use crate::services::access::Guard;
use crate::services::audit::Draft;
use crate::services::record::{self, Record};
use crate::services::residents::mpi;
use crate::store::record::{match_keys, search as store_search};
use crate::store::residents as store_residents;
use crate::store::{Store, Tx};

const LIFECYCLE: &str = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle";

fn reference(r: impl Into<String>) -> Json {
    obj(vec![("reference", s(r))])
}

/// The live golden resident `id` and its JSON, or 404 / 422.
fn golden(conn: &mut Tx<'_>, id: &str, role: &str) -> Result<(Record, Json), ApiError> {
    let rec = record::read_in(conn, "Patient", id)?;
    let tree = Json::parse(rec.content.as_bytes()).map_err(ApiError::internal)?;
    if !mpi::is_golden(&tree) {
        return Err(ApiError::Unprocessable(format!(
            "{role} Patient/{id} is not a golden resident"
        )));
    }
    Ok((rec, tree))
}

/// The `other` references of a Patient's links of `kind`.
fn links(tree: &Json, kind: &str) -> Vec<String> {
    match tree.get("link") {
        Some(Json::Array(l)) => l
            .iter()
            .filter(|l| l.get_str("type") == Some(kind))
            .filter_map(mpi::link_target)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

fn set_links(tree: &mut Json, links: Vec<Json>) {
    tree.set_at("link", Json::Array(links), usize::MAX);
}

/// Write a new version of golden resident `Patient/id` (its content changed by `f`; the stored
/// `meta` keeps its golden tag, the write stamps the rest).
fn rewrite(
    conn: &mut Tx<'_>,
    id: &str,
    mut tree: Json,
    f: impl FnOnce(&mut Json),
) -> Result<(), ApiError> {
    f(&mut tree);
    record::update_in(conn, &Guard::platform(), "Patient", id, tree, None, false)?;
    Ok(())
}

/// Move an institution Patient to another golden resident (a new version with its new link).
fn move_source(conn: &mut Tx<'_>, source: &str, to: &str) -> Result<(), ApiError> {
    let rec = record::read_in(conn, "Patient", source)?;
    let tree = Json::parse(rec.content.as_bytes()).map_err(ApiError::internal)?;
    mpi::relink(conn, source, to);
    record::update_in(
        conn,
        &Guard::platform(),
        "Patient",
        source,
        tree,
        None,
        false,
    )?;
    Ok(())
}

/// `Patient/$merge`: golden resident `from` into `to`. Returns the Provenance.
pub fn merge(
    store: &Store,
    from: String,
    to: String,
    reason: String,
    who: String,
    draft: Draft,
) -> Result<Record, ApiError> {
    store.write(move |conn| {
        record::audited(conn, &draft, |conn| {
            mpi::begin(conn);
            if from == to {
                return Err(ApiError::Unprocessable(
                    "a golden resident cannot be merged into itself".to_owned(),
                ));
            }
            let (a_rec, a) = golden(conn, &from, "source-patient")?;
            let (b_rec, _) = golden(conn, &to, "target-patient")?;
            if a.get("active")
                .is_some_and(|v| matches!(v, Json::Bool(false)))
            {
                return Err(ApiError::Unprocessable(format!(
                    "Patient/{from} was already merged"
                )));
            }
            let sources: Vec<String> = links(&a, "seealso")
                .into_iter()
                .filter_map(|r| r.strip_prefix("Patient/").map(str::to_owned))
                .collect();
            store_residents::repoint(conn, &from, &to, None)?;
            store_residents::move_keys(conn, &from, &to)?;
            for src in &sources {
                move_source(conn, src, &to)?;
            }
            // B gets the moved Patients' links (and A's ID number if it has none).
            record::finish_links(conn)?;
            let (_, b_now) = golden(conn, &to, "target-patient")?;
            let a_number = mpi::person_number(&a);
            rewrite(conn, &to, b_now, |b| {
                let mut l = mpi::take_links(b);
                l.push(mpi::link(&format!("Patient/{from}"), "replaces"));
                set_links(b, l);
                if mpi::person_number(b).is_none()
                    && let (Some(Json::Array(ids)), Some(_)) = (a.get("identifier"), &a_number)
                {
                    b.set_at("identifier", Json::Array(ids.clone()), 2);
                }
            })?;
            rewrite(conn, &from, a.clone(), |a| {
                a.set_at("active", Json::Bool(false), 3);
                a.remove("identifier");
                set_links(a, vec![mpi::link(&format!("Patient/{to}"), "replaced-by")]);
            })?;
            let mut entity = vec![
                obj(vec![
                    ("role", s("revision")),
                    (
                        "what",
                        reference(format!("Patient/{from}/_history/{}", a_rec.version_id)),
                    ),
                ]),
                obj(vec![
                    ("role", s("revision")),
                    (
                        "what",
                        reference(format!("Patient/{to}/_history/{}", b_rec.version_id)),
                    ),
                ]),
            ];
            entity.extend(moved_entities(&sources));
            provenance(conn, "merge", &to, &from, &reason, &who, entity)
        })
    })
}

/// Provenance entities naming the institution Patients a merge or unmerge moved.
fn moved_entities(moved: &[String]) -> Vec<Json> {
    moved
        .iter()
        .map(|src| {
            obj(vec![
                ("role", s("source")),
                ("what", reference(format!("Patient/{src}"))),
            ])
        })
        .collect()
}

fn provenance(
    conn: &mut Tx<'_>,
    activity: &str,
    to: &str,
    from: &str,
    reason: &str,
    who: &str,
    entity: Vec<Json>,
) -> Result<Record, ApiError> {
    let p = obj(vec![
        ("resourceType", s("Provenance")),
        (
            "target",
            Json::Array(vec![
                reference(format!("Patient/{to}")),
                reference(format!("Patient/{from}")),
            ]),
        ),
        ("recorded", s(clock::instant(clock::now_millis()))),
        ("reason", Json::Array(vec![obj(vec![("text", s(reason))])])),
        (
            "activity",
            obj(vec![(
                "coding",
                Json::Array(vec![obj(vec![
                    ("system", s(LIFECYCLE)),
                    ("code", s(activity)),
                ])]),
            )]),
        ),
        (
            "agent",
            Json::Array(vec![obj(vec![("who", obj(vec![("display", s(who))]))])]),
        ),
        ("entity", Json::Array(entity)),
    ]);
    Ok(record::create_in(conn, &Guard::platform(), "Provenance", p, None)?.0)
}

/// `Patient/$unmerge`: undo the latest merge of golden resident `from` into `to`.
pub fn unmerge(
    store: &Store,
    from: String,
    to: String,
    reason: String,
    who: String,
    draft: Draft,
) -> Result<Record, ApiError> {
    store.write(move |conn| {
        record::audited(conn, &draft, |conn| {
            mpi::begin(conn);
            let merge = latest_merge(conn, &from, &to)?.ok_or_else(|| {
                ApiError::Unprocessable(format!("Patient/{from} is not merged into Patient/{to}"))
            })?;
            let (mut a_before, mut b_before, mut moved) = (None, None, Vec::new());
            if let Some(Json::Array(entities)) = merge.get("entity") {
                for e in entities {
                    let Some(what) = e.get("what").and_then(|w| w.get_str("reference")) else {
                        continue;
                    };
                    match (
                        e.get_str("role"),
                        what.split('/').collect::<Vec<_>>().as_slice(),
                    ) {
                        (Some("revision"), ["Patient", id, "_history", v]) if *id == from => {
                            a_before = v.parse::<i64>().ok();
                        }
                        (Some("revision"), ["Patient", id, "_history", v]) if *id == to => {
                            b_before = v.parse::<i64>().ok();
                        }
                        (Some("source"), ["Patient", id]) => moved.push((*id).to_owned()),
                        _ => {}
                    }
                }
            }
            let (Some(a_v), Some(b_v)) = (a_before, b_before) else {
                return Err(ApiError::internal("a merge record without its versions"));
            };
            let a_old = Json::parse(
                record::vread_in(conn, "Patient", &from, a_v)?
                    .content
                    .as_bytes(),
            )
            .map_err(ApiError::internal)?;
            let b_old = Json::parse(
                record::vread_in(conn, "Patient", &to, b_v)?
                    .content
                    .as_bytes(),
            )
            .map_err(ApiError::internal)?;
            // The resident rows of every resource of the moved Patients (and of A itself) go back.
            let mut members: Vec<(String, String)> = Vec::new();
            for p in moved.iter().chain(std::iter::once(&from)) {
                members.extend(store_residents::referrers(conn, p)?);
            }
            store_residents::repoint(conn, &to, &from, Some(&members))?;
            for src in &moved {
                move_source(conn, src, &from)?;
            }
            if let Some(n) = mpi::person_number(&a_old) {
                match_keys::take_over(conn, "Patient", &format!("resident|{n}"), &to, &from)?;
            }
            record::finish_links(conn)?;
            rewrite(conn, &from, a_old, |_| {})?;
            let (_, b_now) = golden(conn, &to, "target-patient")?;
            let gone: Vec<String> = moved
                .iter()
                .map(|m| format!("Patient/{m}"))
                .chain(std::iter::once(format!("Patient/{from}")))
                .collect();
            rewrite(conn, &to, b_now, |b| {
                let kept: Vec<Json> = mpi::take_links(b)
                    .into_iter()
                    .filter(|l| mpi::link_target(l).is_none_or(|r| !gone.iter().any(|g| g == r)))
                    .collect();
                set_links(b, kept);
                match b_old.get("identifier") {
                    Some(ids) => b.set_at("identifier", ids.clone(), 2),
                    None => {
                        b.remove("identifier");
                    }
                }
            })?;
            let entity = moved_entities(&moved);
            provenance(conn, "unmerge", &to, &from, &reason, &who, entity)
        })
    })
}

/// The latest merge or unmerge Provenance naming `from` and `to`, when it is a merge.
fn latest_merge(conn: &mut Tx<'_>, from: &str, to: &str) -> Result<Option<Json>, ApiError> {
    let pairs = [
        ("target".to_owned(), format!("Patient/{from}")),
        ("_sort".to_owned(), "-recorded".to_owned()),
    ];
    let query = crate::fhir::search::parse("Provenance", &pairs, "", false)
        .map_err(|i| ApiError::Invalid(vec![i]))?;
    let sort = crate::fhir::search::parse_sort("Provenance", &pairs)
        .map_err(|i| ApiError::Invalid(vec![i]))?;
    for (_, content) in store_search::run(conn, "Provenance", &query, &sort, None, 100)? {
        let p = Json::parse(content.as_bytes()).map_err(ApiError::internal)?;
        let targets: Vec<&str> = match p.get("target") {
            Some(Json::Array(t)) => t.iter().filter_map(|r| r.get_str("reference")).collect(),
            _ => Vec::new(),
        };
        if !targets.contains(&format!("Patient/{to}").as_str()) {
            continue;
        }
        let activity = p
            .get("activity")
            .and_then(|a| a.get("coding"))
            .and_then(|c| match c {
                Json::Array(c) => c.first().and_then(|c| c.get_str("code")).map(str::to_owned),
                _ => None,
            });
        return Ok(match activity.as_deref() {
            Some("merge") => Some(p),
            _ => None,
        });
    }
    Ok(None)
}
