//! The resident index's tables: every resource's golden resident is the `resident` column of
//! its current row (indexed), and possible matches wait in `resident_reviews`.

pub mod awaiting;

use diesel::prelude::*;
use diesel::result::QueryResult;

use crate::fhir::index::key;
use crate::store::schema::{resident_reviews, resources};
use crate::store::{DbConn, Tx};

/// Record a possible match for review (kept once per pair).
pub fn add_review(
    conn: &mut DbConn,
    source_id: &str,
    golden_id: &str,
    score: f64,
    now: i64,
) -> QueryResult<()> {
    let q = diesel::insert_into(resident_reviews::table)
        .values((
            resident_reviews::source_id.eq(source_id),
            resident_reviews::golden_id.eq(golden_id),
            resident_reviews::score.eq(score),
            resident_reviews::created.eq(now),
        ))
        .on_conflict_do_nothing();
    native!(conn, c => q.execute(c))?;
    Ok(())
}

/// A possible match waiting for review.
#[derive(Debug, Clone, Queryable)]
pub struct Review {
    pub source_id: String,
    pub golden_id: String,
    pub score: f64,
    pub created: i64,
}

/// The review list, newest first.
pub fn reviews(conn: &mut DbConn, limit: i64) -> QueryResult<Vec<Review>> {
    let q = resident_reviews::table
        .order((
            resident_reviews::created.desc(),
            resident_reviews::source_id,
        ))
        .limit(limit);
    native!(conn, c => q.load::<Review>(c))
}

/// Move every resource of golden resident `from` to `to` (a merge), or only the given
/// resources (an unmerge). Returns the resources moved.
pub fn repoint(
    tx: &mut Tx<'_>,
    from: &str,
    to: &str,
    only: Option<&[(String, String)]>,
) -> QueryResult<usize> {
    let mut moved = 0;
    let conn = tx.conn();
    match only {
        None => {
            let q = diesel::update(resources::table.filter(resources::resident.eq(from)))
                .set(resources::resident.eq(to));
            moved += native!(conn, c => q.execute(c))?;
        }
        Some(members) => {
            for (t, id) in members {
                let q = diesel::update(
                    resources::table
                        .filter(resources::res_type.eq(t))
                        .filter(resources::res_id.eq(id))
                        .filter(resources::resident.eq(from)),
                )
                .set(resources::resident.eq(to));
                moved += native!(conn, c => q.execute(c))?;
            }
        }
    }
    crate::store::stats::repoint(tx, from, to, only)?;
    Ok(moved)
}

/// Golden residents (Patients tagged `tag_system|tag_code`) born within `birth` (the day's
/// inclusive ms bounds) or with one of `phones`, at most `limit`: (id, JSON). Each step is one
/// index lookup whatever the planner's statistics say (a search's `ORDER BY … LIMIT` may be
/// planned as a scan of every Patient while a bulk load outruns `ANALYZE`).
pub fn golden_candidates(
    tx: &mut Tx<'_>,
    birth: Option<(i64, i64)>,
    phones: &[String],
    tag: (&str, &str),
    limit: i64,
) -> QueryResult<Vec<(String, String)>> {
    let (protection, conn) = (tx.protection(), tx.conn());
    use crate::store::schema::{search_date as d, search_token as tok};
    let mut ids: Vec<String> = Vec::new();
    if let Some((low, high)) = birth {
        let q = d::table
            .filter(d::res_type.eq("Patient"))
            .filter(d::param.eq("birthdate"))
            .filter(d::low.ge(low))
            .filter(d::low.le(high))
            .filter(d::high.le(high))
            // The order makes the (res_type, param, low) index the plan whatever the
            // statistics say.
            .order(d::low)
            .select(d::res_id)
            .limit(limit * 4);
        ids.extend(native!(conn, c => q.load::<String>(c))?);
    }
    // One index probe per form of each phone (as written, and blind under each key):
    // `code = ANY(…)` may be planned generically on PostgreSQL as a scan of every phone row.
    for p in phones {
        for code in protection.search_codes("phone", None, key(p)) {
            let q = tok::table
                .filter(tok::res_type.eq("Patient"))
                .filter(tok::param.eq("phone"))
                .filter(tok::code.eq(code))
                .select(tok::res_id)
                .limit(limit * 4);
            ids.extend(native!(conn, c => q.load::<String>(c))?);
        }
    }
    ids.sort_unstable();
    ids.dedup();
    let golden = crate::store::record::search::tagged(conn, "Patient", tag.0, tag.1, &ids)?;
    if golden.is_empty() {
        return Ok(Vec::new());
    }
    let q = resources::table
        .filter(resources::res_type.eq("Patient"))
        .filter(resources::res_id.eq_any(&golden))
        .filter(resources::deleted.eq(false))
        .select((resources::res_id, resources::content))
        .limit(limit);
    native!(conn, c => q.load::<(String, String)>(c))?
        .into_iter()
        .map(|(id, c)| Ok((id, crate::protect::reveal(protection, c)?)))
        .collect()
}

/// Resources that refer to `Patient/patient` through any reference parameter: (type, id).
/// Every type and parameter that may refer to a Patient is probed in the target index (there
/// is no index on the target alone: every other lookup knows the referring parameter).
pub fn referrers(conn: &mut DbConn, patient: &str) -> QueryResult<Vec<(String, String)>> {
    use crate::store::schema::search_reference as x;
    let (types, params) = crate::fhir::search_params::REGISTRY.referring_to("Patient");
    let q = x::table
        .filter(x::res_type.eq_any(&types))
        .filter(x::param.eq_any(&params))
        .filter(x::target_id.eq(key(patient)))
        .filter(x::target_type.eq("Patient"))
        .select((x::res_type, x::res_id))
        .distinct();
    native!(conn, c => q.load::<(String, String)>(c))
}

/// The golden residents of the live Patients (golden or not) carrying any of the identifiers
/// `pairs` (system, code as the index holds it).
pub fn residents_by_identifier(
    conn: &mut DbConn,
    pairs: &[(&str, &str)],
) -> QueryResult<Vec<String>> {
    use crate::store::schema::search_token as tok;
    let mut ids: Vec<String> = Vec::new();
    for (system, code) in pairs {
        let q = tok::table
            .filter(tok::res_type.eq("Patient"))
            .filter(tok::param.eq("identifier"))
            .filter(tok::code.eq(*code))
            .filter(tok::system.eq(*system))
            .select(tok::res_id)
            .limit(100);
        ids.extend(native!(conn, c => q.load::<String>(c))?);
    }
    ids.sort_unstable();
    ids.dedup();
    let mut out = Vec::new();
    for chunk in ids.chunks(500) {
        let q = resources::table
            .filter(resources::res_type.eq("Patient"))
            .filter(resources::res_id.eq_any(chunk))
            .filter(resources::deleted.eq(false))
            .select((resources::res_id, resources::resident));
        // A golden resident is its own resident.
        out.extend(
            native!(conn, c => q.load::<(String, Option<String>)>(c))?
                .into_iter()
                .map(|(id, r)| r.unwrap_or(id)),
        );
    }
    Ok(out)
}

/// Move every resident key (`resident|<number>`) held by golden resident `from` to `to`.
pub fn move_keys(conn: &mut DbConn, from: &str, to: &str) -> QueryResult<usize> {
    use crate::store::schema::match_keys as k;
    let q = diesel::update(
        k::table
            .filter(k::res_type.eq("Patient"))
            .filter(k::res_id.eq(from))
            .filter(k::criteria.like("resident|%")),
    )
    .set(k::res_id.eq(to));
    native!(conn, c => q.execute(c))
}
