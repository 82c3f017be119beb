//! The workflow Tasks' table (`workflow_tasks`): one row per referral or consultation Task,
//! written with the Task (see [`crate::services::workflow`]).

use diesel::prelude::*;
use diesel::result::QueryResult;

use crate::store::DbConn;
use crate::store::schema::workflow_tasks as w;

/// A workflow Task's row.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Insertable, AsChangeset)]
#[diesel(table_name = crate::store::schema::workflow_tasks)]
#[diesel(treat_none_as_null = true)]
pub struct TaskRow {
    pub task_id: String,
    pub request_id: String,
    /// `referral-up`, `referral-down` or `consultation`.
    pub kind: String,
    /// The golden resident the Task is for.
    pub resident: String,
    /// The asking institution (`Organization/<id>`), the Task's custodian.
    pub requester: String,
    /// The receiving institution (`Organization/<id>`).
    pub owner: String,
    /// The receiving practitioner (`Practitioner/<id>`) when a PractitionerRole owns the Task.
    pub owner_practitioner: Option<String>,
    pub status: String,
    /// The deadline to accept (`restriction.period.end`, ms).
    pub deadline: Option<i64>,
    pub overdue: bool,
    pub opened: i64,
    /// When the access the Task opens ends (ms); `None` while open.
    pub closes: Option<i64>,
}

/// Write `row` (a new Task's, or a Task's new version).
pub fn put(conn: &mut DbConn, row: &TaskRow) -> QueryResult<()> {
    let q = diesel::insert_into(w::table)
        .values(row)
        .on_conflict(w::task_id)
        .do_update()
        .set(row);
    native!(conn, c => q.execute(c)).map(|_| ())
}

/// The row of Task `id`, if it is a workflow Task.
pub fn get(conn: &mut DbConn, id: &str) -> QueryResult<Option<TaskRow>> {
    let q = w::table.filter(w::task_id.eq(id));
    native!(conn, c => q.first::<TaskRow>(c).optional())
}

/// The Tasks `org` (`Organization/<id>`) receives whose access is open at `now`: open ones,
/// and completed ones that ended less than `window` ms ago. (resident, Task id).
pub fn open_for(
    conn: &mut DbConn,
    org: &str,
    now: i64,
    window: i64,
) -> QueryResult<Vec<(String, String)>> {
    let q = w::table
        .filter(w::owner.eq(org))
        .filter(w::opened.le(now))
        .filter(
            w::closes
                .is_null()
                .or(w::status.eq("completed").and(w::closes.gt(now - window))),
        )
        .select((w::resident, w::task_id));
    native!(conn, c => q.load(c))
}

/// Tasks not accepted by their deadline (before `now`) and not yet flagged overdue, at most
/// `limit`.
pub fn due(conn: &mut DbConn, now: i64, limit: i64) -> QueryResult<Vec<String>> {
    let q = w::table
        .filter(w::overdue.eq(false))
        .filter(w::status.eq_any(["requested", "received"]))
        .filter(w::deadline.lt(now))
        .select(w::task_id)
        .order(w::deadline.asc())
        .limit(limit);
    native!(conn, c => q.load(c))
}
