//! Repository functions for resources, their versions and the token index.

pub mod index;
pub mod match_keys;
pub mod search;

use diesel::prelude::*;
use diesel::result::QueryResult;

use crate::protect::{Protection, reveal};
use crate::store::DbConn;
use crate::store::Tx;
use crate::store::schema::{resource_versions, resources};

/// The current version of a resource.
#[derive(Debug, Clone, Queryable)]
pub struct Current {
    pub version_id: i64,
    pub last_updated: i64,
    pub deleted: bool,
    pub content: String,
    /// The golden resident the resource belongs to.
    pub resident: Option<String>,
}

/// One stored version, as history and vread return it.
#[derive(Debug, Clone, Queryable)]
pub struct Version {
    pub seq: i64,
    pub res_type: String,
    pub res_id: String,
    pub version_id: i64,
    pub last_updated: i64,
    pub deleted: bool,
    pub method: String,
    pub content: String,
}

/// A version to be written.
#[derive(Debug, Clone)]
pub struct NewVersion<'a> {
    pub res_type: &'a str,
    pub res_id: &'a str,
    pub version_id: i64,
    pub last_updated: i64,
    pub deleted: bool,
    pub method: &'a str,
    pub content: &'a str,
    /// The golden resident the resource belongs to (kept on the current row only).
    pub resident: Option<&'a str>,
    /// The institution that holds the resource (current row only): the writer's, or for an
    /// administrator's or the platform's write the one stored before.
    pub custodian: Option<&'a str>,
}

/// The current row of a resource, locked for the writing transaction (on PostgreSQL), as a
/// write needs it to decide: version, tombstone, whose record it is and who holds it.
#[derive(Debug, Clone, Queryable)]
pub struct Locked {
    pub version_id: i64,
    pub deleted: bool,
    pub resident: Option<String>,
    pub custodian: Option<String>,
}

/// A new resource id: a UUIDv7, so ids sort by creation time (index locality).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

pub fn find_current(tx: &mut Tx<'_>, t: &str, id: &str) -> QueryResult<Option<Current>> {
    let (protection, conn) = (tx.protection(), tx.conn());
    let q = resources::table
        .filter(resources::res_type.eq(t))
        .filter(resources::res_id.eq(id))
        .select((
            resources::version_id,
            resources::last_updated,
            resources::deleted,
            resources::content,
            resources::resident,
        ));
    // Run on the concrete connection: the backend's prepared-statement cache then applies to
    // the hottest query of the server.
    let found: Option<Current> = native!(conn, c => q.first(c).optional())?;
    found
        .map(|mut cur| {
            cur.content = reveal(protection, cur.content)?;
            Ok(cur)
        })
        .transpose()
}

/// Open the sealed values of each row's JSON (the second member).
fn reveal_rows<K>(p: &Protection, rows: Vec<(K, String)>) -> QueryResult<Vec<(K, String)>> {
    rows.into_iter()
        .map(|(k, c)| Ok((k, reveal(p, c)?)))
        .collect()
}

fn reveal_versions(p: &Protection, rows: Vec<Version>) -> QueryResult<Vec<Version>> {
    rows.into_iter()
        .map(|mut v| {
            v.content = reveal(p, v.content)?;
            Ok(v)
        })
        .collect()
}

/// The live resources of type `t` among `ids`, in id order: (id, JSON).
pub fn find_live(tx: &mut Tx<'_>, t: &str, ids: &[String]) -> QueryResult<Vec<(String, String)>> {
    let (protection, conn) = (tx.protection(), tx.conn());
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let q = resources::table
            .filter(resources::res_type.eq(t))
            .filter(resources::res_id.eq_any(chunk))
            .filter(resources::deleted.eq(false))
            .order(resources::res_id)
            .select((resources::res_id, resources::content));
        out.extend(reveal_rows(
            protection,
            native!(conn, c => q.load::<(String, String)>(c))?,
        )?);
    }
    Ok(out)
}

/// The golden residents of resources of type `t`: (id, resident) for each id that exists.
pub fn residents_of(
    conn: &mut DbConn,
    t: &str,
    ids: &[&str],
) -> QueryResult<Vec<(String, Option<String>)>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let q = resources::table
            .filter(resources::res_type.eq(t))
            .filter(resources::res_id.eq_any(chunk))
            .select((resources::res_id, resources::resident));
        out.extend(native!(conn, c => q.load::<(String, Option<String>)>(c))?);
    }
    Ok(out)
}

/// The position of the newest version of any resource of type `t` (`None`: none was ever
/// written): changes whenever one of them is created, updated or deleted.
///
/// On PostgreSQL an unnamed statement, planned for the type it is given: a cached statement
/// gets a generic plan after five runs, which walks the primary key backwards filtering on the
/// type (a type is a tenth of the rows, on average), and for a type with no versions at all
/// (Consent, in a region that has none) that read every version: 260 ms at 290,000 versions,
/// once a second, with requests waiting behind it. The custom plan reads `(res_type, seq)`.
pub fn latest_version_seq(conn: &mut DbConn, t: &str) -> QueryResult<Option<i64>> {
    match conn {
        DbConn::Postgres(c) => {
            #[derive(QueryableByName)]
            struct Newest {
                #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
                seq: Option<i64>,
            }
            diesel::sql_query("SELECT max(seq) AS seq FROM resource_versions WHERE res_type = $1")
                .bind::<diesel::sql_types::Text, _>(t)
                .get_result::<Newest>(c)
                .map(|n| n.seq)
        }
        DbConn::Sqlite(c) => resource_versions::table
            .filter(resource_versions::res_type.eq(t))
            .select(diesel::dsl::max(resource_versions::seq))
            .first(c),
    }
}

/// Every live resource of type `t` that belongs to a resident: (resident, JSON).
pub fn live_of_type_with_resident(tx: &mut Tx<'_>, t: &str) -> QueryResult<Vec<(String, String)>> {
    let (protection, conn) = (tx.protection(), tx.conn());
    let rows: Vec<(Option<String>, String)> = resources::table
        .filter(resources::res_type.eq(t))
        .filter(resources::deleted.eq(false))
        .filter(resources::resident.is_not_null())
        .select((resources::resident, resources::content))
        .load(conn)?;
    reveal_rows(
        protection,
        rows.into_iter()
            .filter_map(|(r, c)| Some((r?, c)))
            .collect(),
    )
}

/// The live resources of type `t` of one resident (their JSON).
pub fn live_of_resident(tx: &mut Tx<'_>, t: &str, resident: &str) -> QueryResult<Vec<String>> {
    let (protection, conn) = (tx.protection(), tx.conn());
    let rows: Vec<(Option<String>, String)> = resources::table
        .filter(resources::res_type.eq(t))
        .filter(resources::deleted.eq(false))
        .filter(resources::resident.eq(resident))
        .select((resources::resident, resources::content))
        .load(conn)?;
    Ok(reveal_rows(
        protection,
        rows.into_iter()
            .filter_map(|(r, c)| Some((r?, c)))
            .collect(),
    )?
    .into_iter()
    .map(|(_, c)| c)
    .collect())
}

/// The live Patients (institution and golden) of these residents: (resident, JSON).
pub fn patients_of(tx: &mut Tx<'_>, residents: &[String]) -> QueryResult<Vec<(String, String)>> {
    let (protection, conn) = (tx.protection(), tx.conn());
    let mut out = Vec::new();
    for chunk in residents.chunks(500) {
        let rows: Vec<(Option<String>, String)> = resources::table
            .filter(resources::res_type.eq("Patient"))
            .filter(resources::deleted.eq(false))
            .filter(resources::resident.eq_any(chunk))
            .select((resources::resident, resources::content))
            .load(conn)?;
        out.extend(rows.into_iter().filter_map(|(r, c)| Some((r?, c))));
    }
    reveal_rows(protection, out)
}

/// When each of the Patients `ids` was first stored (ms): its first version's time.
pub fn first_stored(conn: &mut DbConn, t: &str, ids: &[String]) -> QueryResult<Vec<(String, i64)>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(500) {
        let rows: Vec<(String, i64)> = resource_versions::table
            .filter(resource_versions::res_type.eq(t))
            .filter(resource_versions::res_id.eq_any(chunk))
            .filter(resource_versions::version_id.eq(1))
            .select((resource_versions::res_id, resource_versions::last_updated))
            .load(conn)?;
        out.extend(rows);
    }
    Ok(out)
}

/// The current version number and deletion flag, locked for update on PostgreSQL (SQLite
/// writers are already serialised).
pub fn lock_current(conn: &mut DbConn, t: &str, id: &str) -> QueryResult<Option<Locked>> {
    let q = resources::table
        .filter(resources::res_type.eq(t))
        .filter(resources::res_id.eq(id))
        .select((
            resources::version_id,
            resources::deleted,
            resources::resident,
            resources::custodian,
        ));
    match conn {
        DbConn::Postgres(c) => q.for_update().first(c).optional(),
        DbConn::Sqlite(c) => q.first(c).optional(),
    }
}

pub fn find_version(tx: &mut Tx<'_>, t: &str, id: &str, vid: i64) -> QueryResult<Option<Version>> {
    let (protection, conn) = (tx.protection(), tx.conn());
    resource_versions::table
        .filter(resource_versions::res_type.eq(t))
        .filter(resource_versions::res_id.eq(id))
        .filter(resource_versions::version_id.eq(vid))
        .select(resource_versions::all_columns)
        .first::<Version>(conn)
        .optional()?
        .map(|mut v| {
            v.content = reveal(protection, v.content)?;
            Ok(v)
        })
        .transpose()
}

/// A new resource's first version held back by [`defer`].
pub(in crate::store) struct HeldVersion {
    res_type: String,
    res_id: String,
    version_id: i64,
    last_updated: i64,
    method: String,
    content: String,
    resident: Option<String>,
    custodian: Option<String>,
}

/// Insert every held-back new resource (current rows and versions) and stop holding back.
pub(in crate::store) fn flush(conn: &mut DbConn, held: &[HeldVersion]) -> QueryResult<()> {
    for chunk in held.chunks(5000) {
        let current: Vec<_> = chunk
            .iter()
            .map(|v| {
                (
                    resources::res_type.eq(&v.res_type),
                    resources::res_id.eq(&v.res_id),
                    resources::version_id.eq(v.version_id),
                    resources::last_updated.eq(v.last_updated),
                    resources::deleted.eq(false),
                    resources::content.eq(&v.content),
                    resources::resident.eq(v.resident.as_deref()),
                    resources::custodian.eq(v.custodian.as_deref()),
                )
            })
            .collect();
        match conn {
            DbConn::Postgres(c) => copy_rows!(c, resources, current),
            DbConn::Sqlite(c) => diesel::insert_into(resources::table)
                .values(&current)
                .execute(c)?,
        };
        let versions: Vec<_> = chunk
            .iter()
            .map(|v| {
                (
                    resource_versions::res_type.eq(&v.res_type),
                    resource_versions::res_id.eq(&v.res_id),
                    resource_versions::version_id.eq(v.version_id),
                    resource_versions::last_updated.eq(v.last_updated),
                    resource_versions::deleted.eq(false),
                    resource_versions::method.eq(&v.method),
                    resource_versions::content.eq(&v.content),
                )
            })
            .collect();
        match conn {
            DbConn::Postgres(c) => copy_rows!(c, resource_versions, versions),
            DbConn::Sqlite(c) => diesel::insert_into(resource_versions::table)
                .values(&versions)
                .execute(c)?,
        };
    }
    Ok(())
}

/// Write a version: the history row, and the current row (inserted for a new resource,
/// replaced otherwise). A concurrent insert of the same new id fails with a unique violation.
pub fn write_version(tx: &mut Tx<'_>, v: &NewVersion<'_>, is_new: bool) -> QueryResult<()> {
    if is_new && !v.deleted {
        let held = match tx.held.as_mut() {
            Some(held) => {
                held.versions.push(HeldVersion {
                    res_type: v.res_type.to_owned(),
                    res_id: v.res_id.to_owned(),
                    version_id: v.version_id,
                    last_updated: v.last_updated,
                    method: v.method.to_owned(),
                    content: v.content.to_owned(),
                    resident: v.resident.map(str::to_owned),
                    custodian: v.custodian.map(str::to_owned),
                });
                true
            }
            None => false,
        };
        if held {
            return Ok(());
        }
    }
    let conn = tx.conn();
    if is_new {
        let q = diesel::insert_into(resources::table).values((
            resources::res_type.eq(v.res_type),
            resources::res_id.eq(v.res_id),
            resources::version_id.eq(v.version_id),
            resources::last_updated.eq(v.last_updated),
            resources::deleted.eq(v.deleted),
            resources::content.eq(v.content),
            resources::resident.eq(v.resident),
            resources::custodian.eq(v.custodian),
        ));
        native!(conn, c => q.execute(c))?;
    } else {
        let q = diesel::update(
            resources::table
                .filter(resources::res_type.eq(v.res_type))
                .filter(resources::res_id.eq(v.res_id)),
        )
        .set((
            resources::version_id.eq(v.version_id),
            resources::last_updated.eq(v.last_updated),
            resources::deleted.eq(v.deleted),
            resources::content.eq(v.content),
            resources::resident.eq(v.resident),
            resources::custodian.eq(v.custodian),
        ));
        native!(conn, c => q.execute(c))?;
    }
    let q = diesel::insert_into(resource_versions::table).values((
        resource_versions::res_type.eq(v.res_type),
        resource_versions::res_id.eq(v.res_id),
        resource_versions::version_id.eq(v.version_id),
        resource_versions::last_updated.eq(v.last_updated),
        resource_versions::deleted.eq(v.deleted),
        resource_versions::method.eq(v.method),
        resource_versions::content.eq(v.content),
    ));
    native!(conn, c => q.execute(c))?;
    Ok(())
}

/// The golden resident stored for a resource (`None` when it has none, or when its row is
/// still held back in this transaction).
pub fn resident(conn: &mut DbConn, t: &str, id: &str) -> QueryResult<Option<String>> {
    let q = resources::table
        .filter(resources::res_type.eq(t))
        .filter(resources::res_id.eq(id))
        .select(resources::resident);
    Ok(native!(conn, c => q.first::<Option<String>>(c).optional())?.flatten())
}

/// The golden resident and custodian of a stored resource (a tombstone's included).
pub fn custody(
    conn: &mut DbConn,
    t: &str,
    id: &str,
) -> QueryResult<Option<(Option<String>, Option<String>)>> {
    let q = resources::table
        .filter(resources::res_type.eq(t))
        .filter(resources::res_id.eq(id))
        .select((resources::resident, resources::custodian));
    native!(conn, c => q.first(c).optional())
}

/// Set the golden resident of a resource written earlier in this transaction (its row may
/// still be held back).
pub fn set_resident(tx: &mut Tx<'_>, t: &str, id: &str, golden: &str) -> QueryResult<()> {
    let held = tx.held.as_mut().and_then(|held| {
        let row = held
            .versions
            .iter_mut()
            .find(|r| r.res_id == id && r.res_type == t)?;
        row.resident = Some(golden.to_owned());
        Some(())
    });
    if held.is_none() {
        let conn = tx.conn();
        let q = diesel::update(
            resources::table
                .filter(resources::res_type.eq(t))
                .filter(resources::res_id.eq(id)),
        )
        .set(resources::resident.eq(golden));
        native!(conn, c => q.execute(c))?;
    }
    crate::store::stats::set_resident(tx, t, id, golden)
}

/// What a history request covers.
#[derive(Debug, Clone, Copy)]
pub enum HistoryScope<'a> {
    System,
    Type(&'a str),
    Instance(&'a str, &'a str),
}

/// Versions newest first: `since` (ms, inclusive) bounds `last_updated`; `before_seq`
/// continues a page.
pub fn history(
    tx: &mut Tx<'_>,
    scope: HistoryScope<'_>,
    since: Option<i64>,
    before_seq: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<Version>> {
    let (protection, conn) = (tx.protection(), tx.conn());
    let mut q = resource_versions::table
        .select(resource_versions::all_columns)
        .order(resource_versions::seq.desc())
        .limit(limit)
        .into_boxed::<<DbConn as diesel::Connection>::Backend>();
    match scope {
        HistoryScope::System => {}
        HistoryScope::Type(t) => q = q.filter(resource_versions::res_type.eq(t)),
        HistoryScope::Instance(t, id) => {
            q = q
                .filter(resource_versions::res_type.eq(t))
                .filter(resource_versions::res_id.eq(id));
        }
    }
    if let Some(s) = since {
        q = q.filter(resource_versions::last_updated.ge(s));
    }
    if let Some(b) = before_seq {
        q = q.filter(resource_versions::seq.lt(b));
    }
    reveal_versions(protection, q.load(conn)?)
}

/// Stored rows as they are (sealed values not opened), for re-keying.
pub mod raw {
    use super::*;
    use diesel::sql_types::{Integer, Text};

    /// The resource types that have rows.
    pub fn types(conn: &mut DbConn) -> QueryResult<Vec<String>> {
        resources::table
            .select(resources::res_type)
            .distinct()
            .load(conn)
    }

    /// Live resources of type `t` after `after` in id order: (id, version, stored JSON).
    pub fn page(
        conn: &mut DbConn,
        t: &str,
        after: &str,
        limit: i64,
    ) -> QueryResult<Vec<(String, i64, String)>> {
        resources::table
            .filter(resources::res_type.eq(t))
            .filter(resources::deleted.eq(false))
            .filter(resources::res_id.gt(after))
            .order(resources::res_id)
            .select((resources::res_id, resources::version_id, resources::content))
            .limit(limit)
            .load(conn)
    }

    /// Versions after position `after`: (position, type, stored JSON); deleted ones skipped.
    pub fn versions(
        conn: &mut DbConn,
        after: i64,
        limit: i64,
    ) -> QueryResult<Vec<(i64, String, String)>> {
        resource_versions::table
            .filter(resource_versions::seq.gt(after))
            .filter(resource_versions::deleted.eq(false))
            .order(resource_versions::seq)
            .select((
                resource_versions::seq,
                resource_versions::res_type,
                resource_versions::content,
            ))
            .limit(limit)
            .load(conn)
    }

    /// Replace the stored JSON of `t/id` if it is still at `version`; whether it was.
    pub fn set_current(
        conn: &mut DbConn,
        t: &str,
        id: &str,
        version: i64,
        content: &str,
    ) -> QueryResult<bool> {
        let n = diesel::update(
            resources::table
                .filter(resources::res_type.eq(t))
                .filter(resources::res_id.eq(id))
                .filter(resources::version_id.eq(version)),
        )
        .set(resources::content.eq(content))
        .execute(conn)?;
        Ok(n == 1)
    }

    pub fn set_version(conn: &mut DbConn, seq: i64, content: &str) -> QueryResult<()> {
        diesel::update(resource_versions::table.filter(resource_versions::seq.eq(seq)))
            .set(resource_versions::content.eq(content))
            .execute(conn)?;
        Ok(())
    }

    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = Integer)]
        n: i32,
    }

    /// How many stored rows (resources, versions, index rows, conditional-create keys) hold
    /// `needle`, one table at a time.
    pub fn rows_holding(conn: &mut DbConn, needle: &str) -> QueryResult<i64> {
        let find = match conn {
            DbConn::Postgres(_) => "strpos",
            DbConn::Sqlite(_) => "instr",
        };
        let mut total = 0;
        for (table, column) in [
            ("resources", "content"),
            ("resource_versions", "content"),
            ("search_token", "code"),
            ("search_text", "content"),
            ("match_keys", "criteria"),
        ] {
            let q = diesel::sql_query(format!(
                "SELECT CAST(COUNT(*) AS INTEGER) AS n FROM {table} WHERE {find}({column}, $1) > 0"
            ))
            .bind::<Text, _>(needle);
            let c: Count = native!(conn, c => q.get_result(c))?;
            total += i64::from(c.n);
        }
        Ok(total)
    }

    /// Re-point conditional-create and resident keys from `old` to `new`; rows changed.
    pub fn rename_key(conn: &mut DbConn, old: &str, new: &str) -> QueryResult<usize> {
        use crate::store::schema::match_keys as k;
        diesel::update(k::table.filter(k::criteria.eq(old)))
            .set(k::criteria.eq(new))
            .execute(conn)
    }

    /// Forget conditional-create keys holding `needle` (blind values of a key being retired:
    /// they only guard creates in flight); rows removed.
    pub fn drop_keys_holding(conn: &mut DbConn, needle: &str) -> QueryResult<usize> {
        let find = match conn {
            DbConn::Postgres(_) => "strpos",
            DbConn::Sqlite(_) => "instr",
        };
        let q = diesel::sql_query(format!(
            "DELETE FROM match_keys WHERE {find}(criteria, $1) > 0 AND criteria NOT LIKE 'resident|%'"
        ))
        .bind::<Text, _>(needle);
        native!(conn, c => q.execute(c))
    }
}

/// Note that some resource of type `t` carries a sensitive security label; whether the type
/// is new to the list.
pub fn note_sensitive(conn: &mut DbConn, t: &str) -> QueryResult<bool> {
    use crate::store::schema::sensitive_types as s;
    let q = diesel::insert_into(s::table)
        .values(s::res_type.eq(t))
        .on_conflict_do_nothing();
    Ok(native!(conn, c => q.execute(c))? == 1)
}

/// The types of which some resource carries a sensitive security label.
pub fn sensitive_types(conn: &mut DbConn) -> QueryResult<Vec<String>> {
    use crate::store::schema::sensitive_types as s;
    let q = s::table.select(s::res_type);
    native!(conn, c => q.load(c))
}
