//! Writing the search index: the rows of one resource, replaced in the resource's transaction.

use diesel::prelude::*;
use diesel::result::QueryResult;

use crate::fhir::index::{Entry, Second, key};
use crate::store::schema::{
    search_composite, search_date, search_number, search_quantity, search_reference, search_string,
    search_text, search_token, search_uri,
};
use crate::store::{DbConn, Tx};

/// The index rows of one resource held back by [`crate::store::defer_writes`]: (type, id, rows).
pub(in crate::store) type HeldIndex = (String, String, Vec<Entry>);

/// Insert the rows held back by [`crate::store::defer_writes`].
pub(in crate::store) fn flush(conn: &mut DbConn, held: &[HeldIndex]) -> QueryResult<()> {
    let batch: Vec<(&str, &str, &[Entry])> = held
        .iter()
        .map(|(t, id, e)| (t.as_str(), id.as_str(), e.as_slice()))
        .collect();
    insert(conn, &batch)
}

/// The index table of each kind of row, in [`Entry`] order.
const TABLES: usize = 9;

fn table_of(e: &Entry) -> usize {
    match e {
        Entry::Token { .. } => 0,
        Entry::String { .. } => 1,
        Entry::Date { .. } => 2,
        Entry::Reference { .. } => 3,
        Entry::Number { .. } => 4,
        Entry::Quantity { .. } => 5,
        Entry::Uri { .. } => 6,
        Entry::Text { .. } => 7,
        Entry::Composite { .. } => 8,
    }
}

/// Delete one resource's rows from one index table (see [`table_of`]).
fn clear_table(conn: &mut DbConn, t: &str, id: &str, table: usize) -> QueryResult<()> {
    macro_rules! clear_table {
        ($table:ident) => {{
            let q = diesel::delete(
                $table::table
                    .filter($table::res_type.eq(t))
                    .filter($table::res_id.eq(id)),
            );
            native!(conn, c => q.execute(c))?;
        }};
    }
    match table {
        0 => clear_table!(search_token),
        1 => clear_table!(search_string),
        2 => clear_table!(search_date),
        3 => clear_table!(search_reference),
        4 => clear_table!(search_number),
        5 => clear_table!(search_quantity),
        6 => clear_table!(search_uri),
        7 => {
            // search_text is keyed (res_type, param, res_id) with no per-resource index: one
            // delete per parameter, each an equality on the whole key, so that every plan
            // (PostgreSQL's generic plans too, made while the table was still empty) is one key
            // seek. `param = ANY($2)` was planned as a scan of the type's rows during bulk loads.
            for param in ["_text", "_content"] {
                let q = diesel::delete(
                    search_text::table
                        .filter(search_text::res_type.eq(t))
                        .filter(search_text::param.eq(param))
                        .filter(search_text::res_id.eq(id)),
                );
                native!(conn, c => q.execute(c))?;
            }
        }
        _ => clear_table!(search_composite),
    }
    Ok(())
}

/// Delete every index row of one resource (including rows held back).
pub fn clear(tx: &mut Tx<'_>, t: &str, id: &str) -> QueryResult<()> {
    if let Some(held) = tx.held.as_mut() {
        held.index.retain(|(pt, pid, _)| !(pt == t && pid == id));
    }
    let conn = tx.conn();
    for table in 0..TABLES {
        clear_table(conn, t, id, table)?;
    }
    Ok(())
}

/// Change a stored resource's index rows from `before` (what they are) to `after`: only the
/// tables where a row goes away are rewritten; elsewhere the new rows are added.
pub fn update(
    conn: &mut Tx<'_>,
    t: &str,
    id: &str,
    before: &[Entry],
    after: &[Entry],
) -> QueryResult<()> {
    let mut rewrite = [false; TABLES];
    for e in before.iter().filter(|e| !after.contains(e)) {
        rewrite[table_of(e)] = true;
    }
    for (table, _) in rewrite.iter().enumerate().filter(|(_, r)| **r) {
        clear_table(conn, t, id, table)?;
    }
    let rows: Vec<Entry> = after
        .iter()
        .filter(|e| rewrite[table_of(e)] || !before.contains(e))
        .cloned()
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    add(conn, t, id, &rows)
}

/// Replace the index rows of one resource (`is_new`: nothing to delete first).
pub fn replace(
    conn: &mut Tx<'_>,
    t: &str,
    id: &str,
    entries: &[Entry],
    is_new: bool,
) -> QueryResult<()> {
    if !is_new {
        clear(conn, t, id)?;
    }
    add(conn, t, id, entries)
}

/// Add index rows to a resource written earlier in this transaction (held back like the rest
/// while the transaction holds rows back).
pub fn add(tx: &mut Tx<'_>, t: &str, id: &str, entries: &[Entry]) -> QueryResult<()> {
    if let Some(held) = tx.held.as_mut() {
        held.index
            .push((t.to_owned(), id.to_owned(), entries.to_vec()));
        return Ok(());
    }
    insert(tx, &[(t, id, entries)])
}

/// Insert the index rows of several resources: per table, one binary COPY on PostgreSQL,
/// cached single-row statements on SQLite.
fn insert(conn: &mut DbConn, batch: &[(&str, &str, &[Entry])]) -> QueryResult<()> {
    let mut tokens = Vec::new();
    let mut strings = Vec::new();
    let mut dates = Vec::new();
    let mut refs = Vec::new();
    let mut numbers = Vec::new();
    let mut quantities = Vec::new();
    let mut uris = Vec::new();
    let mut composites = Vec::new();
    let mut texts = Vec::new();
    for &(t, id, entries) in batch {
        for e in entries {
            match e {
                Entry::Token {
                    param,
                    system,
                    code,
                } => tokens.push((
                    search_token::res_type.eq(t),
                    search_token::param.eq(param),
                    search_token::code.eq(key(code)),
                    search_token::system.eq(key(system)),
                    search_token::res_id.eq(id),
                )),
                Entry::String {
                    param,
                    value,
                    exact,
                } => strings.push((
                    search_string::res_type.eq(t),
                    search_string::param.eq(param),
                    search_string::value.eq(key(value)),
                    search_string::exact.eq(exact),
                    search_string::res_id.eq(id),
                )),
                Entry::Date { param, low, high } => dates.push((
                    search_date::res_type.eq(t),
                    search_date::param.eq(param),
                    search_date::low.eq(*low),
                    search_date::high.eq(*high),
                    search_date::res_id.eq(id),
                )),
                Entry::Reference {
                    param,
                    target_type,
                    target_id,
                    url,
                } => refs.push((
                    search_reference::res_type.eq(t),
                    search_reference::param.eq(param),
                    search_reference::target_type.eq(target_type),
                    search_reference::target_id.eq(key(target_id)),
                    search_reference::url.eq(key(url)),
                    search_reference::res_id.eq(id),
                )),
                Entry::Number { param, value } => numbers.push((
                    search_number::res_type.eq(t),
                    search_number::param.eq(param),
                    search_number::value.eq(*value),
                    search_number::res_id.eq(id),
                )),
                Entry::Quantity {
                    param,
                    value,
                    system,
                    code,
                } => quantities.push((
                    search_quantity::res_type.eq(t),
                    search_quantity::param.eq(param),
                    search_quantity::value.eq(*value),
                    search_quantity::system.eq(key(system)),
                    search_quantity::code.eq(key(code)),
                    search_quantity::res_id.eq(id),
                )),
                Entry::Composite {
                    param,
                    system1,
                    code1,
                    second,
                } => {
                    let (mut system, mut code, mut value, mut low, mut high, mut text) =
                        (None, None, None, None, None, None);
                    match second {
                        Second::Token { system: s, code: c } => (system, code) = (Some(s), Some(c)),
                        Second::Quantity {
                            value: v,
                            system: s,
                            code: c,
                        } => {
                            (value, system, code) = (Some(*v), Some(s), Some(c));
                        }
                        Second::Number(v) => value = Some(*v),
                        Second::Date { low: l, high: h } => (low, high) = (Some(*l), Some(*h)),
                        Second::String(v) => text = Some(v),
                    }
                    composites.push((
                        search_composite::res_type.eq(t),
                        search_composite::param.eq(param),
                        search_composite::system1.eq(key(system1)),
                        search_composite::code1.eq(key(code1)),
                        search_composite::system.eq(system.map(|s| key(s))),
                        search_composite::code.eq(code.map(|c| key(c))),
                        search_composite::value.eq(value),
                        search_composite::low.eq(low),
                        search_composite::high.eq(high),
                        search_composite::text2.eq(text.map(|t| key(t))),
                        search_composite::res_id.eq(id),
                    ));
                }
                Entry::Text { param, content } => texts.push((
                    search_text::res_type.eq(t),
                    search_text::param.eq(param),
                    search_text::content.eq(content),
                    search_text::res_id.eq(id),
                )),
                Entry::Uri { param, uri } => uris.push((
                    search_uri::res_type.eq(t),
                    search_uri::param.eq(param),
                    search_uri::uri.eq(key(uri)),
                    search_uri::res_id.eq(id),
                )),
            }
        }
    }
    // Per table, on the concrete connection.
    macro_rules! insert_rows {
        ($table:ident, $rows:expr) => {
            if !$rows.is_empty() {
                match conn {
                    DbConn::Postgres(c) => {
                        copy_rows!(c, $table, $rows);
                    }
                    // One cached single-row statement per row: SQLite has no round trips to
                    // save, and a multi-row INSERT is parsed anew for every row count. OR
                    // IGNORE: no constraint can abort the statement half-way, so SQLite
                    // writes no statement journal of the index pages it changes (13 % of a
                    // bundle's time in `perf`). Rows are de-duplicated before, and never NULL.
                    DbConn::Sqlite(c) => {
                        for row in &$rows {
                            diesel::insert_or_ignore_into($table::table)
                                .values(row)
                                .execute(c)?;
                        }
                    }
                }
            }
        };
    }
    insert_rows!(search_token, tokens);
    insert_rows!(search_string, strings);
    insert_rows!(search_date, dates);
    insert_rows!(search_reference, refs);
    insert_rows!(search_number, numbers);
    insert_rows!(search_quantity, quantities);
    insert_rows!(search_uri, uris);
    insert_rows!(search_composite, composites);
    insert_rows!(search_text, texts);
    Ok(())
}
