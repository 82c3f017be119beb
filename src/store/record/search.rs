//! Compiling a search ([`crate::fhir::search::Query`]) to SQL over the index tables.
//!
//! Every value reaches the database as a bound parameter; only table and column names, fixed
//! by this module, are written into the SQL text. Each clause becomes
//! `r.res_id IN (SELECT res_id FROM <index> WHERE res_type = ? AND param = ? AND (<OR of values>))`
//! (or `NOT IN` for `:not` and `:missing=true`), driven by the index on (res_type, param, value).
//! Results are ordered by id and paged by keyset (`res_id > last id`), so pages stay correct while
//! resources are written.

use diesel::prelude::*;
use diesel::result::QueryResult;
use diesel::sql_types::{BigInt, Bool, Double, Text};

use crate::clock;
use crate::fhir::index::key;
use crate::fhir::search::{Clause, Cond, Prefix, Query, SortBy, SortKey, Table};
use crate::protect::{Protection, reveal};
use crate::store::DbConn;
use crate::store::Tx;

/// A bound value.
#[derive(Debug, Clone, PartialEq)]
enum Bind {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// SQL text split at its bound values: `segments[i]` comes before `binds[i]`, and `text` is the
/// segment being written (the last one). Placeholders are written by diesel for the backend.
struct Sql<'p> {
    /// The keys whose blind forms token searches of protected values look for.
    protection: &'p Protection,
    segments: Vec<String>,
    text: String,
    binds: Vec<Bind>,
    /// Counter for the aliases of nested `resources` scans (chains, `_has`).
    aliases: usize,
    /// SQLite: per-candidate lookups name their index (`INDEXED BY`), because without
    /// statistics its planner may prefer a range scan of the value index instead.
    sqlite: bool,
}

impl Sql<'_> {
    fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }

    /// Append a placeholder bound to `b`.
    fn bind(&mut self, b: Bind) {
        self.segments.push(std::mem::take(&mut self.text));
        self.binds.push(b);
    }

    fn text(&mut self, s: &str) {
        self.bind(Bind::Text(s.to_owned()));
    }

    fn alias(&mut self) -> String {
        self.aliases += 1;
        format!("r{}", self.aliases)
    }

    /// `SELECT <alias>.res_id FROM resources <alias> WHERE` live resources of type `t` matching `c`.
    fn live_matching(&mut self, t: &str, c: &Clause) {
        let a = self.alias();
        self.push(&format!(
            "SELECT {a}.res_id FROM resources {a} WHERE {a}.res_type = "
        ));
        self.text(t);
        self.push(&format!(" AND {a}.deleted = "));
        self.bind(Bind::Bool(false));
        self.push(" AND ");
        clause_sql(self, t, c, &a, true);
    }
}

fn table_name(t: Table) -> &'static str {
    match t {
        Table::Token => "search_token",
        Table::String => "search_string",
        Table::Date => "search_date",
        Table::Reference => "search_reference",
        Table::Number => "search_number",
        Table::Quantity => "search_quantity",
        Table::Uri => "search_uri",
        Table::Composite => "search_composite",
        Table::Text => "search_text",
    }
}

/// The largest code point: appended to a prefix it bounds every string that starts with it
/// (byte order on SQLite's BINARY and PostgreSQL's "C" collation).
const MAX_CHAR: char = '\u{10FFFF}';

fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `ap`: within 10 % of the distance from now (at least a day) for dates.
fn approx_margin_ms(low: i64) -> i64 {
    let now = clock::now_millis();
    ((now - low).abs() / 10).max(86_400_000)
}

/// The condition on one index row of parameter `param`.
fn cond_sql(q: &mut Sql, param: &str, c: &Cond) {
    match c {
        Cond::Token { system, code } => {
            let mut first = true;
            if let Some(s) = system {
                q.push("x.system = ");
                q.text(key(s));
                first = false;
            }
            if let Some(code) = code {
                if !first {
                    q.push(" AND ");
                }
                // A protected identifier or phone is indexed in its blind form.
                let codes = q
                    .protection
                    .search_codes(param, system.as_deref(), key(code));
                if let [only] = codes.as_slice() {
                    q.push("x.code = ");
                    q.text(only);
                } else {
                    q.push("x.code IN (");
                    text_list(q, &codes);
                    q.push(")");
                }
                first = false;
            }
            if first {
                q.push("1 = 1");
            }
        }
        Cond::StringPrefix(p) => {
            let p = key(p);
            q.push("x.value >= ");
            q.text(p);
            q.push(" AND x.value < ");
            q.text(&format!("{p}{MAX_CHAR}"));
        }
        Cond::StringExact(v) => {
            q.push("x.exact = ");
            q.text(v);
        }
        Cond::Words(words) => {
            for (i, w) in words.iter().enumerate() {
                if i > 0 {
                    q.push(" AND ");
                }
                q.push("x.content LIKE ");
                q.text(&format!("%{}%", like_escape(w)));
                q.push(" ESCAPE '\\'");
            }
        }
        Cond::StringContains(v) => {
            q.push("x.value LIKE ");
            q.text(&format!("%{}%", like_escape(v)));
            q.push(" ESCAPE '\\'");
        }
        Cond::Date { prefix, low, high } => range_sql(q, "x.low", "x.high", *prefix, *low, *high),
        Cond::Number {
            prefix,
            value,
            low,
            high,
        } => number_sql(q, *prefix, *value, *low, *high),
        Cond::Quantity {
            prefix,
            value,
            low,
            high,
            system,
            code,
        } => {
            number_sql(q, *prefix, *value, *low, *high);
            if let Some(s) = system {
                q.push(" AND x.system = ");
                q.text(s);
            }
            if let Some(c) = code {
                q.push(" AND x.code = ");
                q.text(c);
            }
        }
        Cond::Reference {
            target_type,
            target_id,
        } => {
            q.push("x.target_id = ");
            q.text(key(target_id));
            if let Some(t) = target_type {
                q.push(" AND x.target_type = ");
                q.text(t);
            }
        }
        Cond::ReferenceUrl(u) => {
            // Only references that are more than `Type/id` keep their url (a partial index).
            q.push("x.url <> '' AND x.url = ");
            q.text(key(u));
        }
        Cond::TargetType(t) => {
            q.push("x.target_type = ");
            q.text(t);
        }
        Cond::Nothing => q.push("1 = 0"),
        Cond::Uri(u) => {
            q.push("x.uri = ");
            q.text(key(u));
        }
        Cond::Composite {
            system,
            code,
            second,
        } => {
            q.push("1 = 1");
            if let Some(s) = system {
                q.push(" AND x.system1 = ");
                q.text(key(s));
            }
            if let Some(c) = code {
                q.push(" AND x.code1 = ");
                q.text(key(c));
            }
            q.push(" AND (");
            match second.as_ref() {
                Cond::StringPrefix(p) => {
                    let p = key(p);
                    q.push("x.text2 >= ");
                    q.text(p);
                    q.push(" AND x.text2 < ");
                    q.text(&format!("{p}{MAX_CHAR}"));
                }
                other => cond_sql(q, "", other),
            }
            q.push(")");
        }
        Cond::UriBelow(u) => {
            let u = key(u);
            q.push("x.uri >= ");
            q.text(u);
            q.push(" AND x.uri < ");
            q.text(&format!("{u}{MAX_CHAR}"));
        }
    }
}

/// Period semantics: the stored range [lo, hi] against the searched range [low, high].
fn range_sql(q: &mut Sql, lo: &str, hi: &str, prefix: Prefix, low: i64, high: i64) {
    let cmp = |q: &mut Sql, col: &str, op: &str, v: i64| {
        q.push(col);
        q.push(op);
        q.bind(Bind::Int(v));
    };
    match prefix {
        Prefix::Eq => {
            // `lo <= high` follows from `hi <= high`; said, it bounds the scan of the index on
            // lo (otherwise every row from `low` on is read: every later birth date).
            cmp(q, lo, " >= ", low);
            q.push(" AND ");
            cmp(q, lo, " <= ", high);
            q.push(" AND ");
            cmp(q, hi, " <= ", high);
        }
        Prefix::Ne => {
            q.push("(");
            cmp(q, lo, " < ", low);
            q.push(" OR ");
            cmp(q, hi, " > ", high);
            q.push(")");
        }
        Prefix::Gt => cmp(q, hi, " > ", high),
        Prefix::Lt => cmp(q, lo, " < ", low),
        Prefix::Ge => cmp(q, hi, " >= ", low),
        Prefix::Le => cmp(q, lo, " <= ", high),
        Prefix::Sa => cmp(q, lo, " > ", high),
        Prefix::Eb => cmp(q, hi, " < ", low),
        Prefix::Ap => {
            let m = approx_margin_ms(low);
            cmp(q, lo, " <= ", high.saturating_add(m));
            q.push(" AND ");
            cmp(q, hi, " >= ", low.saturating_sub(m));
        }
    }
}

fn number_sql(q: &mut Sql, prefix: Prefix, value: f64, low: f64, high: f64) {
    let cmp = |q: &mut Sql, op: &str, v: f64| {
        q.push("x.value");
        q.push(op);
        q.bind(Bind::Float(v));
    };
    match prefix {
        Prefix::Eq => {
            cmp(q, " >= ", low);
            q.push(" AND ");
            cmp(q, " < ", high);
        }
        Prefix::Ne => {
            q.push("(");
            cmp(q, " < ", low);
            q.push(" OR ");
            cmp(q, " >= ", high);
            q.push(")");
        }
        Prefix::Gt | Prefix::Sa => cmp(q, " > ", value),
        Prefix::Lt | Prefix::Eb => cmp(q, " < ", value),
        Prefix::Ge => cmp(q, " >= ", value),
        Prefix::Le => cmp(q, " <= ", value),
        Prefix::Ap => {
            let m = (value * 0.1).abs();
            cmp(q, " >= ", value - m);
            q.push(" AND ");
            cmp(q, " <= ", value + m);
        }
    }
}

/// The rows of `param` in `table` belonging to resource alias `r`, left open for more
/// conditions and the closing parenthesis. The driving clause of a search selects ids with
/// `r.res_id [NOT] IN (SELECT x.res_id FROM <table> x WHERE x.res_type = ? AND x.param = ?`,
/// the others test each candidate with `[NOT] EXISTS (SELECT 1 FROM <table> x WHERE
/// x.res_type = ? AND x.res_id = r.res_id AND x.param = ?`, so only one index range is read
/// in full and the rest are point lookups.
fn index_subquery(
    q: &mut Sql,
    r: &str,
    table: Table,
    t: &str,
    param: &str,
    negate: bool,
    driver: bool,
) {
    let not = if negate { "NOT " } else { "" };
    if driver {
        q.push(&format!(
            "{r}.res_id {not}IN (SELECT x.res_id FROM {} x WHERE x.res_type = ",
            table_name(table)
        ));
        q.text(t);
    } else {
        let name = table_name(table);
        // Token rows are keyed (res_type, param, code, system, res_id): the candidate's row is
        // one seek there, as it is in search_text's key. The value indexes of the other tables
        // end in a range column, and the reference index's key ends in the target, not the
        // referring resource: a planner without statistics takes the four equalities of
        // `search_reference_target` over `search_reference_resource`'s two and reads every
        // reference to the target for each candidate (`Patient?organization=X` probed for
        // 500 candidates among 40,000 Patients of X: 5 s on SQLite; by the resource, 4 ms).
        let from = match table {
            Table::Token | Table::Text => format!("{name} x"),
            _ => lookup_from(q, name, &format!("{name}_resource")),
        };
        q.push(&format!(
            "{not}EXISTS (SELECT 1 FROM {from} WHERE x.res_type = "
        ));
        q.text(t);
        q.push(&format!(" AND x.res_id = {r}.res_id"));
    }
    q.push(" AND x.param = ");
    q.text(param);
}

/// Close a clause's subquery. On PostgreSQL a per-candidate `EXISTS` gets `OFFSET 0`, which
/// keeps it a correlated probe: flattened into a join, a cached generic plan (made without the
/// parameter values) may start from a common code's 300,000 rows instead of the candidates.
fn close_subquery(q: &mut Sql, driver: bool) {
    if driver || q.sqlite {
        q.push(")");
    } else {
        q.push(" OFFSET 0)");
    }
}

/// How selective a clause is expected to be (lower is narrower), or `None` when it cannot
/// drive a search (negations, `:missing`, `_lastUpdated` on the resource row itself).
fn selectivity(c: &Clause) -> Option<u8> {
    match c {
        Clause::Id(_) => Some(0),
        Clause::Index { negate: true, .. } | Clause::Missing { .. } | Clause::LastUpdated(_) => {
            None
        }
        Clause::Index { table, param, .. } => Some(match table {
            Table::Reference => 1,
            Table::Token if param == "identifier" => 1,
            // Tags, profiles and security labels mark whole classes of resources (every golden
            // resident): any other clause narrows better.
            Table::Token if matches!(param.as_str(), "_tag" | "_profile" | "_security") => 6,
            Table::Token | Table::Uri | Table::Composite => 2,
            Table::String => 3,
            Table::Number | Table::Quantity => 4,
            Table::Date => 5,
            Table::Text => 6,
        }),
        Clause::Chain { .. } => Some(3),
        Clause::Has { .. } => Some(4),
        Clause::Or(clauses) => clauses
            .iter()
            .map(selectivity)
            .try_fold(0, |acc, s| s.map(|s| acc.max(s))),
        Clause::All(clauses) => clauses.iter().filter_map(selectivity).min(),
        Clause::NotId(_)
        | Clause::Resident(_)
        | Clause::NotResidents(_)
        | Clause::Custodian(_)
        | Clause::ResidentsOrPatientsOf(..) => None,
    }
}

/// Bound text values separated by commas (the inside of an `IN (…)`).
fn text_list(q: &mut Sql, values: &[String]) {
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            q.push(", ");
        }
        q.text(v);
    }
}

/// `r.res_id IN (…)` or `NOT IN (…)`.
fn id_list(q: &mut Sql, r: &str, op: &str, ids: &[String]) {
    q.push(&format!("{r}.res_id {op} ("));
    text_list(q, ids);
    q.push(")");
}

/// Clauses joined by `sep` (` OR ` / ` AND `); `empty` when there are none.
fn joined(q: &mut Sql, t: &str, clauses: &[Clause], r: &str, driver: bool, sep: &str, empty: &str) {
    q.push("(");
    for (i, c) in clauses.iter().enumerate() {
        if i > 0 {
            q.push(sep);
        }
        clause_sql(q, t, c, r, driver);
    }
    if clauses.is_empty() {
        q.push(empty);
    }
    q.push(")");
}

fn clause_sql(q: &mut Sql, t: &str, c: &Clause, r: &str, driver: bool) {
    match c {
        Clause::Id(ids) => id_list(q, r, "IN", ids),
        Clause::LastUpdated(ranges) => {
            q.push("(");
            for (i, (prefix, low, high)) in ranges.iter().enumerate() {
                if i > 0 {
                    q.push(" OR ");
                }
                q.push("(");
                let col = format!("{r}.last_updated");
                range_sql(q, &col, &col, *prefix, *low, *high);
                q.push(")");
            }
            q.push(")");
        }
        Clause::Missing {
            table,
            param,
            missing,
        } => {
            index_subquery(q, r, *table, t, param, *missing, driver);
            close_subquery(q, driver);
        }
        Clause::Index {
            table,
            param,
            any,
            negate,
        } => {
            index_subquery(q, r, *table, t, param, *negate, driver);
            q.push(" AND (");
            for (i, cond) in any.iter().enumerate() {
                if i > 0 {
                    q.push(" OR ");
                }
                q.push("(");
                cond_sql(q, param, cond);
                q.push(")");
            }
            q.push(")");
            close_subquery(q, driver);
        }
        Clause::Chain { param, targets } => {
            index_subquery(q, r, Table::Reference, t, param, false, driver);
            q.push(" AND (");
            for (i, (target, inner)) in targets.iter().enumerate() {
                if i > 0 {
                    q.push(" OR ");
                }
                q.push("(x.target_type = ");
                q.text(target);
                q.push(" AND x.target_id IN (");
                q.live_matching(target, inner);
                q.push("))");
            }
            q.push(")");
            close_subquery(q, driver);
        }
        Clause::Or(clauses) => joined(q, t, clauses, r, driver, " OR ", "1 = 0"),
        Clause::All(clauses) => joined(q, t, clauses, r, driver, " AND ", "1 = 1"),
        Clause::NotId(ids) => id_list(q, r, "NOT IN", ids),
        Clause::Resident(Some(golden)) => {
            q.push(&format!("{r}.resident = "));
            q.text(golden);
        }
        Clause::Resident(None) => q.push("1 = 0"),
        Clause::Custodian(org) => {
            q.push(&format!("{r}.custodian = "));
            q.text(org);
        }
        Clause::NotResidents(residents) => {
            q.push(&format!("({r}.resident IS NOT NULL"));
            if !residents.is_empty() {
                q.push(&format!(" AND {r}.resident NOT IN ("));
                text_list(q, residents);
                q.push(")");
            }
            q.push(")");
        }
        Clause::ResidentsOrPatientsOf(residents, org) => {
            q.push("(1 = 0");
            if !residents.is_empty() {
                q.push(&format!(" OR {r}.resident IN ("));
                text_list(q, residents);
                q.push(")");
            }
            if let Some((org, except)) = org {
                q.push(" OR (");
                if !except.is_empty() {
                    q.push(&format!("{r}.resident NOT IN ("));
                    text_list(q, except);
                    q.push(") AND ");
                }
                q.push(&format!(
                    "EXISTS (SELECT 1 FROM resources p JOIN search_reference o \
                     ON o.res_type = 'Patient' AND o.res_id = p.res_id \
                     WHERE p.res_type = 'Patient' AND p.resident = {r}.resident \
                     AND o.param = 'organization' AND o.target_type = 'Organization' \
                     AND o.target_id = "
                ));
                q.text(org);
                q.push("))");
            }
            q.push(")");
        }
        Clause::Has {
            source_type,
            param,
            inner,
        } => {
            if driver {
                q.push(&format!(
                    "{r}.res_id IN (SELECT x.target_id FROM search_reference x WHERE x.res_type = "
                ));
                q.text(source_type);
            } else {
                let from = lookup_from(q, "search_reference", "search_reference_target");
                q.push(&format!("EXISTS (SELECT 1 FROM {from} WHERE x.res_type = "));
                q.text(source_type);
                q.push(&format!(" AND x.target_id = {r}.res_id"));
            }
            q.push(" AND x.param = ");
            q.text(param);
            q.push(" AND x.target_type = ");
            q.text(t);
            q.push(" AND x.res_id IN (");
            q.live_matching(source_type, inner);
            q.push(")");
            close_subquery(q, driver);
        }
    }
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    res_id: String,
    #[diesel(sql_type = Text)]
    content: String,
}

#[derive(QueryableByName)]
struct CountRow {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct TextValue {
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    v: Option<String>,
}

#[derive(QueryableByName)]
struct IntValue {
    #[diesel(sql_type = diesel::sql_types::Nullable<BigInt>)]
    v: Option<i64>,
}

#[derive(QueryableByName)]
struct FloatValue {
    #[diesel(sql_type = diesel::sql_types::Nullable<Double>)]
    v: Option<f64>,
}

/// A sort key's value in a paging cursor.
#[derive(Debug, Clone, PartialEq)]
pub enum SortValue {
    Null,
    Text(String),
    Int(i64),
    Float(f64),
}

/// Where the next page starts.
#[derive(Debug, Clone, PartialEq)]
pub enum After {
    /// After this id (default order).
    Id(String),
    /// After the row with these sort values and this id.
    Sorted(Vec<SortValue>, String),
}

/// The type of value a sort key produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    Text,
    Int,
    Float,
}

pub fn value_type(key: &SortKey) -> ValueType {
    match &key.by {
        SortBy::LastUpdated
        | SortBy::Index {
            table: Table::Date, ..
        } => ValueType::Int,
        SortBy::Index {
            table: Table::Number | Table::Quantity,
            ..
        } => ValueType::Float,
        SortBy::Id | SortBy::Index { .. } => ValueType::Text,
    }
}

fn sort_column(table: Table, desc: bool) -> &'static str {
    match table {
        Table::Token => "code",
        Table::String => "value",
        Table::Date if desc => "high",
        Table::Date => "low",
        Table::Reference => "target_id",
        Table::Number | Table::Quantity => "value",
        Table::Uri => "uri",
        Table::Composite => "code1",
        Table::Text => "content",
    }
}

/// The expression of one sort key over resource alias `r`.
fn sort_expr(q: &mut Sql, t: &str, key: &SortKey) {
    match &key.by {
        SortBy::Id => q.push("r.res_id"),
        SortBy::LastUpdated => q.push("r.last_updated"),
        SortBy::Index { table, params } => {
            let agg = if key.desc { "MAX" } else { "MIN" };
            let name = table_name(*table);
            let from = lookup_from(q, name, &format!("{name}_resource"));
            q.push(&format!(
                "(SELECT {agg}(x.{}) FROM {from} WHERE x.res_type = ",
                sort_column(*table, key.desc),
            ));
            q.text(t);
            q.push(" AND x.res_id = r.res_id AND x.param IN (");
            text_list(q, params);
            q.push("))");
        }
    }
}

fn new_sql<'p>(protection: &'p Protection, conn: &DbConn) -> Sql<'p> {
    Sql {
        protection,
        segments: Vec::new(),
        text: String::with_capacity(256),
        binds: Vec::new(),
        aliases: 0,
        sqlite: matches!(conn, DbConn::Sqlite(_)),
    }
}

/// `<table> x`, on SQLite pinned to the index named `<index>` (a per-resource lookup).
fn lookup_from(q: &Sql, table: &str, index: &str) -> String {
    if q.sqlite {
        format!("{table} x INDEXED BY {index}")
    } else {
        format!("{table} x")
    }
}

/// `FROM resources r WHERE` live resources of type `t` matching every clause.
fn from_where(q: &mut Sql, t: &str, query: &Query) {
    q.push(" FROM resources r WHERE r.res_type = ");
    q.text(t);
    q.push(" AND r.deleted = ");
    q.bind(Bind::Bool(false));
    let driver = query
        .clauses
        .iter()
        .enumerate()
        .filter_map(|(i, c)| Some((selectivity(c)?, i)))
        .min()
        .map(|(_, i)| i);
    for (i, c) in query.clauses.iter().enumerate() {
        q.push(" AND ");
        clause_sql(q, t, c, "r", Some(i) == driver);
    }
}

fn bind_value(q: &mut Sql, v: &SortValue) {
    match v {
        SortValue::Null => q.push("NULL"),
        SortValue::Text(s) => q.text(s),
        SortValue::Int(i) => q.bind(Bind::Int(*i)),
        SortValue::Float(f) => q.bind(Bind::Float(*f)),
    }
}

/// Keyset condition: rows after (values, id) in the order of `keys` (NULLs last).
fn keyset(q: &mut Sql, keys: &[SortKey], values: &[SortValue], id: &str) {
    q.push(" WHERE (");
    for i in 0..=keys.len() {
        if i > 0 {
            q.push(" OR ");
        }
        q.push("(1 = 1");
        for (j, v) in values.iter().enumerate().take(i) {
            match v {
                SortValue::Null => q.push(&format!(" AND s.k{j} IS NULL")),
                v => {
                    q.push(&format!(" AND s.k{j} = "));
                    bind_value(q, v);
                }
            }
        }
        if i < keys.len() {
            let v = &values[i];
            match v {
                SortValue::Null => q.push(" AND 1 = 0"),
                v => {
                    let op = if keys[i].desc { "<" } else { ">" };
                    q.push(&format!(" AND (s.k{i} {op} "));
                    bind_value(q, v);
                    q.push(&format!(" OR s.k{i} IS NULL)"));
                }
            }
        } else {
            q.push(" AND s.res_id > ");
            q.text(id);
        }
        q.push(")");
    }
    q.push(")");
}

/// A compiled search as a diesel query. Unlike `sql_query` it may be kept in the connection's
/// prepared-statement cache (keyed by its SQL text), so a search shape seen before is not parsed
/// and planned again; very long statements (huge OR lists) are not cached.
struct Prepared<'p> {
    sql: Sql<'p>,
}

/// Longest SQL text (bytes) and most bound values of a statement kept in the cache.
const CACHE_MAX_SQL: usize = 4096;
const CACHE_MAX_BINDS: usize = 32;

impl diesel::query_builder::QueryId for Prepared<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl diesel::query_builder::Query for Prepared<'_> {
    type SqlType = diesel::sql_types::Untyped;
}

impl<Conn> RunQueryDsl<Conn> for Prepared<'_> {}

impl<DB> diesel::query_builder::QueryFragment<DB> for Prepared<'_>
where
    DB: diesel::backend::Backend
        + diesel::sql_types::HasSqlType<Text>
        + diesel::sql_types::HasSqlType<BigInt>
        + diesel::sql_types::HasSqlType<Double>
        + diesel::sql_types::HasSqlType<Bool>,
    String: diesel::serialize::ToSql<Text, DB>,
    i64: diesel::serialize::ToSql<BigInt, DB>,
    f64: diesel::serialize::ToSql<Double, DB>,
    bool: diesel::serialize::ToSql<Bool, DB>,
{
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, DB>,
    ) -> QueryResult<()> {
        let sql = &self.sql;
        if sql.binds.len() > CACHE_MAX_BINDS
            || sql.text.len() + sql.segments.iter().map(String::len).sum::<usize>() > CACHE_MAX_SQL
        {
            out.unsafe_to_cache_prepared();
        }
        for (segment, bind) in sql.segments.iter().zip(&sql.binds) {
            out.push_sql(segment);
            match bind {
                Bind::Text(s) => out.push_bind_param::<Text, _>(s)?,
                Bind::Int(i) => out.push_bind_param::<BigInt, _>(i)?,
                Bind::Float(f) => out.push_bind_param::<Double, _>(f)?,
                Bind::Bool(b) => out.push_bind_param::<Bool, _>(b)?,
            }
        }
        out.push_sql(&sql.text);
        Ok(())
    }
}

macro_rules! load_rows {
    ($conn:expr, $q:expr, $row:ty) => {{
        let query = Prepared { sql: $q };
        match $conn {
            DbConn::Postgres(c) => query.load::<$row>(c)?,
            DbConn::Sqlite(c) => query.load::<$row>(c)?,
        }
    }};
}

/// Live resources of type `t` matching `query`, ordered by `sort` (then id), after `after`,
/// at most `limit`, as (id, stored JSON).
pub fn run(
    tx: &mut Tx<'_>,
    t: &str,
    query: &Query,
    sort: &[SortKey],
    after: Option<&After>,
    limit: i64,
) -> QueryResult<Vec<(String, String)>> {
    let (protection, conn) = (tx.protection(), tx.conn());
    let mut q = new_sql(protection, conn);
    if sort.is_empty() {
        q.push("SELECT r.res_id, r.content");
        from_where(&mut q, t, query);
        if let Some(After::Id(a) | After::Sorted(_, a)) = after {
            q.push(" AND r.res_id > ");
            q.text(a);
        }
        q.push(" ORDER BY r.res_id");
    } else {
        q.push("SELECT s.res_id, s.content FROM (SELECT r.res_id, r.content");
        for (i, key) in sort.iter().enumerate() {
            q.push(", ");
            sort_expr(&mut q, t, key);
            q.push(&format!(" AS k{i}"));
        }
        from_where(&mut q, t, query);
        q.push(") s");
        if let Some(After::Sorted(values, id)) = after {
            keyset(&mut q, sort, values, id);
        }
        q.push(" ORDER BY ");
        for (i, key) in sort.iter().enumerate() {
            let dir = if key.desc { "DESC" } else { "ASC" };
            q.push(&format!("s.k{i} {dir} NULLS LAST, "));
        }
        q.push("s.res_id");
    }
    q.push(" LIMIT ");
    q.bind(Bind::Int(limit));
    let rows = load_rows!(conn, q, Row);
    rows.into_iter()
        .map(|r| Ok((r.res_id, reveal(protection, r.content)?)))
        .collect()
}

/// How many live resources of type `t` match `query` (`_total=accurate`).
pub fn count(tx: &mut Tx<'_>, t: &str, query: &Query) -> QueryResult<i64> {
    let (protection, conn) = (tx.protection(), tx.conn());
    let mut q = new_sql(protection, conn);
    q.push("SELECT COUNT(*) AS n");
    from_where(&mut q, t, query);
    let rows = load_rows!(conn, q, CountRow);
    Ok(rows.first().map_or(0, |r| r.n))
}

/// The sort values of one resource, for the cursor of the page it ends.
pub fn sort_values(
    tx: &mut Tx<'_>,
    t: &str,
    sort: &[SortKey],
    id: &str,
) -> QueryResult<Vec<SortValue>> {
    let (protection, conn) = (tx.protection(), tx.conn());
    let mut out = Vec::with_capacity(sort.len());
    for key in sort {
        let mut q = new_sql(protection, conn);
        q.push("SELECT ");
        sort_expr(&mut q, t, key);
        q.push(" AS v FROM resources r WHERE r.res_type = ");
        q.text(t);
        q.push(" AND r.res_id = ");
        q.text(id);
        let value = match value_type(key) {
            ValueType::Int => load_rows!(conn, q, IntValue)
                .into_iter()
                .next()
                .and_then(|r| r.v)
                .map(SortValue::Int),
            ValueType::Float => load_rows!(conn, q, FloatValue)
                .into_iter()
                .next()
                .and_then(|r| r.v)
                .map(SortValue::Float),
            ValueType::Text => load_rows!(conn, q, TextValue)
                .into_iter()
                .next()
                .and_then(|r| r.v)
                .map(SortValue::Text),
        };
        out.push(value.unwrap_or(SortValue::Null));
    }
    Ok(out)
}

/// References held by the given resources of type `src_type` (through `param`, or any
/// reference parameter), as (target type, target id), for `_include`.
pub fn references_from(
    conn: &mut DbConn,
    src_type: &str,
    src_ids: &[String],
    param: Option<&str>,
    target_type: Option<&str>,
) -> QueryResult<Vec<(String, String)>> {
    use crate::store::schema::search_reference as x;
    let mut q = x::table
        .filter(x::res_type.eq(src_type))
        .filter(x::res_id.eq_any(src_ids))
        .filter(x::target_id.ne(""))
        .filter(x::target_type.ne(""))
        .select((x::target_type, x::target_id))
        .distinct()
        .into_boxed::<<DbConn as diesel::Connection>::Backend>();
    if let Some(p) = param {
        q = q.filter(x::param.eq(p));
    }
    if let Some(t) = target_type {
        q = q.filter(x::target_type.eq(t));
    }
    q.load(conn)
}

/// Ids of resources of type `src_type` whose `param` (or any reference parameter) refers to
/// one of `target_ids` of `target_type`, for `_revinclude`.
pub fn referring(
    conn: &mut DbConn,
    src_type: &str,
    param: Option<&str>,
    target_type: &str,
    target_ids: &[String],
) -> QueryResult<Vec<String>> {
    use crate::store::schema::search_reference as x;
    let mut q = x::table
        .filter(x::res_type.eq(src_type))
        .filter(x::target_type.eq(target_type))
        .filter(x::target_id.eq_any(target_ids))
        .select(x::res_id)
        .distinct()
        .into_boxed::<<DbConn as diesel::Connection>::Backend>();
    if let Some(p) = param {
        q = q.filter(x::param.eq(p));
    }
    q.load(conn)
}

/// Current resources of type `t` whose token parameter `param` has `system|code` for one of
/// `codes`, as (code, id) pairs: the conditional criteria of a whole bundle settled in a few
/// statements instead of one search each. Codes are compared as indexed (cut by [`key`]); a
/// deleted resource has no index rows.
pub fn token_matches(
    tx: &mut Tx<'_>,
    t: &str,
    param: &str,
    system: &str,
    codes: &[&str],
) -> QueryResult<Vec<(String, String)>> {
    let (protection, conn) = (tx.protection(), tx.conn());
    use crate::store::schema::search_token as tok;
    // Each code as indexed: a protected identifier in its blind forms, each mapped back.
    let protected = protection.blinds(param, Some(system));
    let mut forms: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    if protected {
        for c in codes {
            for f in protection.search_codes(param, Some(system), key(c)) {
                forms.insert(f, key(c).to_owned());
            }
        }
    }
    let mut unique: Vec<&str> = if protected {
        forms.keys().map(String::as_str).collect()
    } else {
        codes.iter().map(|c| key(c)).collect()
    };
    unique.sort_unstable();
    unique.dedup();
    let mut rows: Vec<(String, String)> = Vec::new();
    for keys in unique.chunks(500) {
        match &mut *conn {
            // One index probe per code (a lateral subquery), whatever plan is cached:
            // `code = ANY($1)`, and a plain join with the codes, ran as a scan of every row of
            // the parameter once the plan was cached (a fifth of the database's CPU during
            // ingest).
            DbConn::Postgres(c) => {
                let found: Vec<TokenMatch> = diesel::sql_query(
                    "SELECT k.code, m.res_id FROM unnest($1::text[]) AS k(code) \
                     CROSS JOIN LATERAL (SELECT x.res_id FROM search_token x \
                     WHERE x.res_type = $2 AND x.param = $3 AND x.code = k.code \
                     AND x.system = $4 OFFSET 0) m",
                )
                .bind::<diesel::sql_types::Array<Text>, _>(keys)
                .bind::<Text, _>(t)
                .bind::<Text, _>(param)
                .bind::<Text, _>(key(system))
                .load(c)?;
                rows.extend(found.into_iter().map(|m| (m.code, m.res_id)));
            }
            DbConn::Sqlite(c) => {
                let q = tok::table
                    .filter(tok::res_type.eq(t))
                    .filter(tok::param.eq(param))
                    .filter(tok::system.eq(key(system)))
                    .filter(tok::code.eq_any(keys))
                    .select((tok::code, tok::res_id));
                rows.extend(q.load::<(String, String)>(c)?);
            }
        }
    }
    if !protected {
        return Ok(rows);
    }
    Ok(rows
        .into_iter()
        .filter_map(|(form, id)| Some((forms.get(&form)?.clone(), id)))
        .collect())
}

#[derive(QueryableByName)]
struct TokenMatch {
    #[diesel(sql_type = Text)]
    code: String,
    #[diesel(sql_type = Text)]
    res_id: String,
}

#[derive(QueryableByName)]
struct MemberRow {
    #[diesel(sql_type = Text)]
    res_type: String,
    #[diesel(sql_type = Text)]
    res_id: String,
    #[diesel(sql_type = Text)]
    content: String,
}

/// The date parameters that say when care happened (`$everything`'s `start` and `end`).
const CARE_DATE_PARAMS: &[&str] = &[
    "date",
    "onset-date",
    "recorded-date",
    "authoredon",
    "occurrence",
    "period",
    "issued",
];

/// One page of the live resources whose golden resident is `Patient/golden_id` (their
/// `resident` column, through its index), ordered by (type, id) after
/// `after`, optionally only of `types` and changed since `since` (ms): (type, id, JSON).
pub fn resident_members(
    tx: &mut Tx<'_>,
    golden_id: &str,
    types: &[String],
    since: Option<i64>,
    care: Option<(i64, i64)>,
    after: Option<(&str, &str)>,
    limit: i64,
) -> QueryResult<Vec<(String, String, String)>> {
    let (protection, conn) = (tx.protection(), tx.conn());
    let mut q = new_sql(protection, conn);
    q.push("SELECT r.res_type, r.res_id, r.content FROM resources r WHERE r.resident = ");
    q.text(golden_id);
    q.push(" AND r.deleted = ");
    q.bind(Bind::Bool(false));
    if let Some(s) = since {
        q.push(" AND r.last_updated >= ");
        q.bind(Bind::Int(s));
    }
    if let Some((t, id)) = after {
        q.push(" AND (r.res_type > ");
        q.text(t);
        q.push(" OR (r.res_type = ");
        q.text(t);
        q.push(" AND r.res_id > ");
        q.text(id);
        q.push("))");
    }
    if !types.is_empty() {
        q.push(" AND r.res_type IN (");
        text_list(&mut q, types);
        q.push(")");
    }
    if let Some((start, end)) = care {
        // Care dates: kept when the resource has none, or one overlapping [start, end].
        let params: Vec<String> = CARE_DATE_PARAMS.iter().map(|p| (*p).to_owned()).collect();
        for (i, negate) in [(0, "NOT "), (1, "")] {
            q.push(if i == 0 { " AND (" } else { " OR " });
            q.push(&format!(
                "{negate}EXISTS (SELECT 1 FROM search_date d WHERE d.res_type = r.res_type \
                 AND d.res_id = r.res_id AND d.param IN ("
            ));
            text_list(&mut q, &params);
            q.push(")");
            if i == 1 {
                q.push(" AND d.high >= ");
                q.bind(Bind::Int(start));
                q.push(" AND d.low <= ");
                q.bind(Bind::Int(end));
            }
            q.push(")");
        }
        q.push(")");
    }
    q.push(" ORDER BY r.resident, r.res_type, r.res_id LIMIT ");
    q.bind(Bind::Int(limit));
    let rows = load_rows!(conn, q, MemberRow);
    rows.into_iter()
        .map(|m| Ok((m.res_type, m.res_id, reveal(protection, m.content)?)))
        .collect()
}

/// Which of `ids` (of type `t`) carry the tag `system|code`.
pub fn tagged(
    conn: &mut DbConn,
    t: &str,
    system: &str,
    code: &str,
    ids: &[String],
) -> QueryResult<Vec<String>> {
    use crate::store::schema::search_token as tok;
    let mut out = Vec::new();
    for chunk in ids.chunks(500) {
        match &mut *conn {
            // One primary-key probe per id: as `res_id = ANY($1)` a cached generic plan read
            // every row of the tag (every golden resident) on each call.
            DbConn::Postgres(c) => {
                let found: Vec<IdRow> = diesel::sql_query(
                    "SELECT k.id AS res_id FROM unnest($1::text[]) AS k(id) \
                     WHERE EXISTS (SELECT 1 FROM search_token x WHERE x.res_type = $2 \
                     AND x.param = '_tag' AND x.code = $3 AND x.system = $4 \
                     AND x.res_id = k.id OFFSET 0)",
                )
                .bind::<diesel::sql_types::Array<Text>, _>(chunk)
                .bind::<Text, _>(t)
                .bind::<Text, _>(key(code))
                .bind::<Text, _>(key(system))
                .load(c)?;
                out.extend(found.into_iter().map(|r| r.res_id));
            }
            DbConn::Sqlite(c) => {
                let q = tok::table
                    .filter(tok::res_type.eq(t))
                    .filter(tok::param.eq("_tag"))
                    .filter(tok::code.eq(key(code)))
                    .filter(tok::system.eq(key(system)))
                    .filter(tok::res_id.eq_any(chunk))
                    .select(tok::res_id);
                out.extend(q.load::<String>(c)?);
            }
        }
    }
    Ok(out)
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = Text)]
    res_id: String,
}

/// One page of live resources of type `t` (ids after `after`, in id order) that have no
/// golden resident: data written before the resident index existed. (id, JSON).
pub fn without_resident(
    tx: &mut Tx<'_>,
    t: &str,
    after: &str,
    limit: i64,
) -> QueryResult<Vec<(String, String)>> {
    let (protection, conn) = (tx.protection(), tx.conn());
    let mut q = new_sql(protection, conn);
    q.push("SELECT r.res_id, r.content FROM resources r WHERE r.res_type = ");
    q.text(t);
    q.push(" AND r.deleted = ");
    q.bind(Bind::Bool(false));
    q.push(" AND r.res_id > ");
    q.text(after);
    q.push(" AND r.resident IS NULL ORDER BY r.res_id LIMIT ");
    q.bind(Bind::Int(limit));
    let rows = load_rows!(conn, q, Row);
    rows.into_iter()
        .map(|r| Ok((r.res_id, reveal(protection, r.content)?)))
        .collect()
}
