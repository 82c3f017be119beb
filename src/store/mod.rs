//! The database: one connection type over PostgreSQL and SQLite, a pool, migrations, and the
//! repository functions that read and write resources.
//!
//! Backend-specific statements are isolated in `match` arms on [`DbConn`].
//!
//! Writes use **group commit**: writer threads with their own connections take every write
//! waiting in their queue, run each in its own savepoint inside one transaction (a failing
//! write rolls back only its savepoint), commit once, and only then answer each caller. A
//! commit then writes each touched index page (and syncs the log) once per group instead of
//! once per write, which is what bounds write throughput. SQLite, which allows one writer, has
//! one writer thread (whose page cache also stays warm); PostgreSQL has several, and relies on
//! row locks and constraints, so any number of server processes may write at once.

/// Run one diesel statement on the concrete connection inside [`DbConn`].
///
/// Statements sent through the `MultiConnection` wrapper are prepared again on every call;
/// on the concrete `SqliteConnection` / `PgConnection` diesel caches their prepared statements.
/// The hot statements of the read and write paths therefore go through this `match`.
macro_rules! native {
    ($conn:expr, $c:ident => $body:expr) => {
        match $crate::store::AsConn::as_conn($conn) {
            DbConn::Postgres($c) => $body,
            DbConn::Sqlite($c) => $body,
        }
    };
}

/// Rows into a PostgreSQL table with one binary `COPY`: no statement to parse and plan, and
/// PostgreSQL's bulk insert path (a transaction's held-back rows, see [`defer_writes`]).
macro_rules! copy_rows {
    ($c:expr, $table:ident, $rows:expr) => {
        diesel::copy_from($table::table)
            .from_insertable($rows.as_slice())
            .execute($c)?
    };
}

pub mod access;
pub mod audit;
pub mod notify;
pub mod record;
pub mod residents;
pub mod scheduling;
pub mod schema;
pub mod stats;
pub mod tx;
pub mod workflow;

pub use tx::{Context, Signal, Spare, Thresholds, Tx};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use diesel::Connection;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{ManageConnection, Pool, R2D2Connection};
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::protect::Protection;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// A connection to either backend.
#[derive(diesel::MultiConnection)]
pub enum DbConn {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

/// What a statement runs on: a connection, or the [`Tx`] holding one.
pub trait AsConn {
    fn as_conn(&mut self) -> &mut DbConn;
}

impl AsConn for DbConn {
    fn as_conn(&mut self) -> &mut DbConn {
        self
    }
}

impl AsConn for Tx<'_> {
    fn as_conn(&mut self) -> &mut DbConn {
        self.conn()
    }
}

pub use crate::config::DatabaseUrl;

/// Establishes pooled connections for the backend named by the URL, with SQLite tuned for a
/// concurrent server (WAL, busy timeout).
#[derive(Debug, Clone)]
pub struct Manager {
    url: DatabaseUrl,
}

const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
     PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA cache_size = -32000; \
     PRAGMA mmap_size = 1073741824; PRAGMA temp_store = MEMORY;";

impl Manager {
    fn open(&self) -> Result<DbConn, diesel::r2d2::Error> {
        match &self.url {
            DatabaseUrl::Postgres(url) => PgConnection::establish(url)
                .map(DbConn::Postgres)
                .map_err(diesel::r2d2::Error::ConnectionError),
            DatabaseUrl::Sqlite(path) => {
                let mut c = SqliteConnection::establish(path)
                    .map_err(diesel::r2d2::Error::ConnectionError)?;
                c.batch_execute(SQLITE_PRAGMAS)
                    .map_err(diesel::r2d2::Error::QueryError)?;
                Ok(DbConn::Sqlite(c))
            }
        }
    }
}

/// A pooled connection, with when it was last known to work.
pub struct Pooled {
    conn: DbConn,
    /// When the pool last took it back or checked it.
    known_good_at: Instant,
    /// [`LOST_CONNECTIONS`] as it stood then.
    epoch: u64,
}

impl std::ops::Deref for Pooled {
    type Target = DbConn;
    fn deref(&self) -> &DbConn {
        &self.conn
    }
}

impl std::ops::DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut DbConn {
        &mut self.conn
    }
}

/// How many statements found their PostgreSQL connection closed (a restart, a terminated
/// backend). When it moves, every pooled connection is checked before its next use.
/// Process-wide by design, unlike everything else a store's work needs (see [`Tx`]): it is only
/// a hint, and another store of the process pays at most one `SELECT 1` per connection for it.
static LOST_CONNECTIONS: AtomicU64 = AtomicU64::new(0);

/// When a lost connection was last logged (ms since the epoch).
static LOST_LOGGED_AT: AtomicU64 = AtomicU64::new(0);

/// A lost connection is logged at most this often: while the database is away every
/// statement of every thread finds it, and the first line says it all.
const LOST_LOG_EVERY_MS: u64 = 10_000;

impl From<diesel::result::Error> for crate::error::ApiError {
    fn from(e: diesel::result::Error) -> Self {
        if is_contention(&e) {
            return crate::error::ApiError::Contention;
        }
        if is_connection_lost(&e) {
            // Check every pooled connection before its next use.
            connection_lost(&e);
            return database_unavailable();
        }
        crate::error::ApiError::internal(e)
    }
}

impl From<diesel::r2d2::PoolError> for crate::error::ApiError {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        tracing::error!(error = %e, "database pool unavailable");
        database_unavailable()
    }
}

fn database_unavailable() -> crate::error::ApiError {
    crate::error::ApiError::Unavailable("the database is unavailable, try again later".to_owned())
}

/// Note that a statement found its connection closed (`error`, logged at most every 10 s).
pub fn connection_lost(error: &dyn std::fmt::Display) {
    LOST_CONNECTIONS.fetch_add(1, Ordering::AcqRel);
    let now = u64::try_from(crate::clock::now_millis()).unwrap_or(0);
    if log_due(&LOST_LOGGED_AT, now, LOST_LOG_EVERY_MS) {
        tracing::error!(error = %error, "the database connection was lost");
    } else {
        tracing::debug!(error = %error, "the database connection was lost");
    }
}

/// Whether a line logged at most every `every` ms is due at `now` (one caller wins the turn).
fn log_due(last: &AtomicU64, now: u64, every: u64) -> bool {
    let before = last.load(Ordering::Acquire);
    now.saturating_sub(before) >= every
        && last
            .compare_exchange(before, now, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
}

/// A PostgreSQL connection handed back this recently is lent again without a `SELECT 1`
/// round trip (which was a third of the statements of a read by id); HikariCP's bypass window
/// is 500 ms too. Connections idle for longer, and all of them once any statement found its
/// connection closed, are checked first.
const TRUSTED_FOR: Duration = Duration::from_millis(500);

impl ManageConnection for Manager {
    type Connection = Pooled;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<Pooled, Self::Error> {
        Ok(Pooled {
            conn: self.open()?,
            known_good_at: Instant::now(),
            epoch: LOST_CONNECTIONS.load(Ordering::Acquire),
        })
    }

    fn is_valid(&self, conn: &mut Pooled) -> Result<(), Self::Error> {
        let epoch = LOST_CONNECTIONS.load(Ordering::Acquire);
        if conn.epoch == epoch && conn.known_good_at.elapsed() < TRUSTED_FOR {
            return Ok(());
        }
        R2D2Connection::ping(&mut conn.conn).map_err(diesel::r2d2::Error::QueryError)?;
        conn.known_good_at = Instant::now();
        conn.epoch = epoch;
        Ok(())
    }

    fn has_broken(&self, conn: &mut Pooled) -> bool {
        conn.known_good_at = Instant::now();
        R2D2Connection::is_broken(&mut conn.conn)
    }
}

/// The shared handle to the database.
#[derive(Clone)]
pub struct Store {
    pool: Pool<Manager>,
    /// The queue of the group-commit writer threads.
    writer: mpsc::Sender<Job>,
    url: DatabaseUrl,
    /// What every unit of work on this database is given (its keys, thresholds, signals).
    ctx: Arc<Context>,
    /// Set once the application is done with the store: its background threads (statistics,
    /// checkpoints, the audit sealer and copier) stop, so they send the writers no more work.
    closed: Arc<std::sync::atomic::AtomicBool>,
}

impl Store {
    /// Connect, reporting the real cause when the database cannot be reached.
    pub fn open(
        url: &DatabaseUrl,
        pool_size: u32,
        protection: Arc<Protection>,
        thresholds: Thresholds,
    ) -> anyhow::Result<Store> {
        check_reachable(url)?;
        let manager = Manager { url: url.clone() };
        let writer = spawn_writers(manager.clone(), url)?;
        let pool = Pool::builder()
            .max_size(pool_size)
            .connection_timeout(Duration::from_secs(5))
            // A SQLite file does not go away under a connection: no `SELECT 1` per checkout.
            // A PostgreSQL connection is checked, so that one a restart broke is replaced.
            .test_on_check_out(!matches!(url, DatabaseUrl::Sqlite(_)))
            .build(manager)
            .context("creating the database connection pool")?;
        let store = Store {
            pool,
            writer,
            url: url.clone(),
            ctx: Arc::new(Context::new(protection, thresholds)),
            closed: Arc::default(),
        };
        store.check_keys()?;
        Ok(store)
    }

    pub fn backend_name(&self) -> &'static str {
        self.url.backend_name()
    }

    /// Whether this is the embedded SQLite database (local file, no network).
    pub fn is_embedded(&self) -> bool {
        matches!(self.url, DatabaseUrl::Sqlite(_))
    }

    /// Refuse a keyring that holds none of the keys this database's identifiers were protected
    /// with (a second server that generated its own development keyring would seal what the
    /// others cannot open, and its blind index would find nothing of theirs); note the active
    /// key as used.
    fn check_keys(&self) -> anyhow::Result<()> {
        use diesel::prelude::*;
        use schema::protect_keys as k;
        let mut conn = self.pool.get().context("checking the database's keys")?;
        let listed: Vec<String> = native!(&mut **conn, c => k::table.select(k::id).load(c))
            .context("reading the database's keys")?;
        let ours = self.ctx.protection.key_ids();
        if !listed.is_empty() && !listed.iter().any(|id| ours.contains(&id.as_str())) {
            anyhow::bail!(
                "this database's identifiers are protected by key(s) {} and the keyring holds none \
                 of them: every server and tool of one database needs the same keyring \
                 (keyring_file, HUIMIN_KEYRING_FILE)",
                listed.join(", ")
            );
        }
        if let Some(active) = self.ctx.protection.active()
            && !listed.contains(&active.id)
        {
            let q = diesel::insert_into(k::table)
                .values((
                    k::id.eq(&active.id),
                    k::added.eq(crate::clock::now_millis()),
                ))
                .on_conflict_do_nothing();
            native!(&mut **conn, c => q.execute(c)).context("noting the active key")?;
        }
        Ok(())
    }

    /// Forget a retired key (nothing stored uses it any more).
    pub fn forget_key(&self, id: &str) -> anyhow::Result<()> {
        use diesel::prelude::*;
        use schema::protect_keys as k;
        let mut conn = self.pool.get().context("forgetting a key")?;
        let q = diesel::delete(k::table.filter(k::id.eq(id)));
        native!(&mut **conn, c => q.execute(c)).context("forgetting a key")?;
        Ok(())
    }

    /// The keys protecting identifiers at rest.
    pub fn protection(&self) -> &Arc<Protection> {
        &self.ctx.protection
    }

    /// What every unit of work on this database shares.
    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// Run `f` on a pooled connection.
    pub fn read<T, E>(&self, f: impl FnOnce(&mut Tx<'_>) -> Result<T, E>) -> Result<T, E>
    where
        E: From<diesel::r2d2::PoolError>,
    {
        let mut conn = self.pool.get()?;
        f(&mut Tx::new(&mut conn, &self.ctx))
    }

    /// Run `f` inside one database transaction: all of it is committed, or none. Returns once
    /// the outcome is durable (on SQLite, once the group `f` was committed with is).
    pub fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnMut(&mut Tx<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: WriteError,
    {
        self.submit(f, false)
    }

    /// Like [`Store::write`], for a large write (a transaction bundle): it runs as a
    /// transaction of its own instead of in a savepoint of a group, so SQLite keeps no
    /// savepoint journal of every page it changes.
    pub fn write_alone<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnMut(&mut Tx<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: WriteError,
    {
        self.submit(f, true)
    }

    /// An append that cannot fail half-way (the audit records of a read), without blocking a
    /// thread: the caller's task is woken when the group it was committed with is. It runs
    /// directly in the group's transaction, without a savepoint of its own (SQLite journals
    /// every page a savepoint changes); if it fails after all, the whole group is rolled back
    /// and every write in it answered with an error, never lost silently.
    pub async fn append_async<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnMut(&mut Tx<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: WriteError,
    {
        self.submit_async(f, Mode::Plain).await
    }

    /// Like [`Store::write`] (or [`Store::write_alone`] when `alone`), without a blocked
    /// thread: the caller's task is woken when the write's group has committed or failed. For
    /// a request that would otherwise hold a thread of the pool while it waits for the writer
    /// (in a rush, those threads were all waiting, and the requests that needed only a read
    /// queued behind them).
    pub async fn write_async<T, E, F>(&self, f: F, alone: bool) -> Result<T, E>
    where
        F: FnMut(&mut Tx<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: WriteError,
    {
        let mode = if alone { Mode::Alone } else { Mode::Savepoint };
        self.submit_async(f, mode).await
    }

    async fn submit_async<T, E, F>(&self, f: F, mode: Mode) -> Result<T, E>
    where
        F: FnMut(&mut Tx<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: WriteError,
    {
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<T, E>>();
        self.enqueue(f, mode, move |out| {
            let _ = tx.send(out);
        })?;
        rx.await
            .unwrap_or_else(|_| Err(E::from(group_error(WRITER_STOPPED))))
    }

    fn submit<T, E, F>(&self, f: F, alone: bool) -> Result<T, E>
    where
        F: FnMut(&mut Tx<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: WriteError,
    {
        let (tx, rx) = mpsc::sync_channel::<Result<T, E>>(1);
        let mode = if alone { Mode::Alone } else { Mode::Savepoint };
        self.enqueue(f, mode, move |out| {
            let _ = tx.send(out);
        })?;
        rx.recv()
            .unwrap_or_else(|_| Err(E::from(group_error(WRITER_STOPPED))))
    }

    /// Queue `f` for the writers as `mode` says; `reply` gets its outcome once the commit is
    /// known.
    fn enqueue<T, E, F>(
        &self,
        f: F,
        mode: Mode,
        reply: impl FnOnce(Result<T, E>) + Send + 'static,
    ) -> Result<(), E>
    where
        F: FnMut(&mut Tx<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: WriteError,
    {
        self.writer
            .send(job(f, mode, self.ctx.clone(), reply))
            .map_err(|_| E::from(group_error(WRITER_STOPPED)))
    }

    /// Tell the store's background threads to stop (the application stopped).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Whether [`Store::close`] was called on this store or a clone of it.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Keep the planner's statistics current as the data grows, so that search plans stay
    /// index-driven after bulk loads. SQLite: `PRAGMA optimize` (bounded `analysis_limit`) at
    /// start and every ten minutes. PostgreSQL: every minute, `ANALYZE` the tables changed by
    /// more than a tenth since their last analysis, which is what autovacuum does when it is
    /// on (and nothing is left to do then).
    pub fn start_maintenance(&self) {
        let store = self.clone();
        let spawned = std::thread::Builder::new()
            .name("db-statistics".to_owned())
            .spawn(move || {
                while !store.is_closed() {
                    // On SQLite through the writer: ANALYZE writes, and a second writer would
                    // make the group transaction's upgrade from read to write fail.
                    let done: anyhow::Result<()> = if store.is_embedded() {
                        store.write(|c| refresh_statistics(c.conn()).map_err(anyhow::Error::from))
                    } else {
                        store.read(|c| refresh_statistics(c.conn()).map_err(anyhow::Error::from))
                    };
                    if let Err(e) = done {
                        tracing::warn!(error = %e, "refreshing planner statistics failed");
                    }
                    let every = if store.is_embedded() { 600 } else { 60 };
                    let until = Instant::now() + Duration::from_secs(every);
                    while Instant::now() < until && !store.is_closed() {
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the statistics thread");
        }
        if self.is_embedded() {
            // Copy the WAL back into the database file five times a second, beside the writer
            // instead of inside it (the automatic checkpoint with its fsync took 6 to 11 % of
            // the writer's time during bulk ingest, also at one checkpoint a second here).
            // PASSIVE never blocks readers or the writer.
            let store = self.clone();
            let spawned = std::thread::Builder::new()
                .name("sqlite-checkpoint".to_owned())
                .spawn(move || {
                    while !store.is_closed() {
                        std::thread::sleep(Duration::from_millis(200));
                        let done = store.read(|c| {
                            let DbConn::Sqlite(c) = c.conn() else {
                                return Ok(());
                            };
                            let r: Checkpoint = diesel::RunQueryDsl::get_result(
                                diesel::sql_query("PRAGMA wal_checkpoint(PASSIVE)"),
                                c,
                            )?;
                            // Readers that never pause (a server under steady reads, each
                            // audited) keep the log in use, so the writer never starts it
                            // again from the top and it grows without end, every read
                            // searching it further, until the writer's own checkpoint stalls
                            // it for seconds. Past 64 MiB of log, when at most 16 MiB of it
                            // are still to be copied, copy them and restart it (the writer
                            // waits for that, readers wait for nothing). A bulk load, whose log
                            // the checkpoint does not catch up with, is left to the writer's
                            // own checkpoint as before.
                            if r.log > WAL_RESTART_FRAMES
                                && r.log - r.checkpointed <= WAL_RESTART_BEHIND
                            {
                                diesel::RunQueryDsl::execute(
                                    diesel::sql_query("PRAGMA wal_checkpoint(RESTART)"),
                                    c,
                                )?;
                            }
                            Ok::<_, anyhow::Error>(())
                        });
                        if let Err(e) = done {
                            tracing::warn!(error = %e, "WAL checkpoint failed");
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "could not start the checkpoint thread");
            }
        }
    }

    /// Whether the database answers a trivial query.
    pub fn ping(&self) -> bool {
        match self.pool.get() {
            Ok(mut c) => c.batch_execute("SELECT 1").is_ok(),
            Err(_) => false,
        }
    }
}

#[derive(diesel::QueryableByName)]
struct StaleTable {
    #[diesel(sql_type = diesel::sql_types::Text)]
    relname: String,
}

/// What `PRAGMA wal_checkpoint` reports: busy, frames in the log, frames copied.
#[derive(diesel::QueryableByName)]
struct Checkpoint {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    #[expect(dead_code, reason = "part of the row")]
    busy: i32,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    log: i32,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    checkpointed: i32,
}

/// Log frames (4 KiB pages) past which the log is restarted (64 MiB)…
const WAL_RESTART_FRAMES: i32 = 16_384;
/// …when at most this many frames are still to be copied (16 MiB).
const WAL_RESTART_BEHIND: i32 = 4_096;

/// See [`Store::start_maintenance`].
fn refresh_statistics(conn: &mut DbConn) -> diesel::QueryResult<()> {
    match conn {
        DbConn::Sqlite(c) => {
            c.batch_execute("PRAGMA analysis_limit = 1000; PRAGMA optimize = 0x10002;")
        }
        DbConn::Postgres(c) => {
            use diesel::RunQueryDsl as _;
            let stale: Vec<StaleTable> = diesel::sql_query(
                "SELECT relname::text AS relname FROM pg_stat_user_tables \
                 WHERE schemaname = current_schema() \
                 AND n_mod_since_analyze > 1000 + 0.1 * n_live_tup",
            )
            .load(c)?;
            for t in stale {
                let name = t.relname.replace('"', "\"\"");
                c.batch_execute(&format!("ANALYZE \"{name}\""))?;
            }
            Ok(())
        }
    }
}

/// Hold back new resources and index rows written in `tx` until [`flush_writes`]: a large
/// PostgreSQL transaction then inserts them as a few multi-row statements per table instead of
/// several round trips per resource. Nothing in the same transaction may read what is held back
/// before the flush. Held rows go with the `Tx` when the work fails.
pub fn defer_writes(tx: &mut Tx<'_>) {
    tx.held = Some(tx::Held::default());
}

/// Insert everything held back by [`defer_writes`] and stop holding back.
pub fn flush_writes(tx: &mut Tx<'_>) -> diesel::QueryResult<()> {
    let held = tx.held.take().unwrap_or_default();
    record::flush(tx, &held.versions)?;
    record::index::flush(tx, &held.index)?;
    if held.facts.is_empty() {
        return Ok(());
    }
    stats::insert(tx.conn(), &held.facts)
}

/// Write what is held back so far and go on holding back: for work inside a bundle that must
/// read what the bundle wrote before it (a Slot's Schedule written by an earlier entry).
/// Nothing to do when nothing is held back.
pub fn flush_held(tx: &mut Tx<'_>) -> diesel::QueryResult<()> {
    if tx.held.is_none() {
        return Ok(());
    }
    flush_writes(tx)?;
    defer_writes(tx);
    Ok(())
}

/// Forget everything held back (the transaction failed).
pub fn discard_writes(tx: &mut Tx<'_>) {
    tx.held = None;
}

/// The error a write ends in: a database failure converts into it, and it says whether the
/// write may pass when run again (it met concurrent writes: a deadlock, a serialization
/// failure).
pub trait WriteError:
    From<diesel::r2d2::PoolError> + From<diesel::result::Error> + Send + 'static
{
    fn retryable(&self) -> bool;
}

impl WriteError for crate::error::ApiError {
    fn retryable(&self) -> bool {
        crate::error::ApiError::retryable(self)
    }
}

impl WriteError for anyhow::Error {
    fn retryable(&self) -> bool {
        self.downcast_ref::<diesel::result::Error>()
            .is_some_and(is_contention)
            || self
                .downcast_ref::<crate::error::ApiError>()
                .is_some_and(crate::error::ApiError::retryable)
    }
}

/// One queued write: runs inside the group transaction. Given no connection but why, it
/// answers its caller with that failure without running.
type JobFn = Box<dyn FnOnce(Result<&mut DbConn, &str>) -> Ran + Send>;

/// What running a job left to do.
enum Ran {
    /// How to answer its caller once the group's commit outcome is known, and whether the
    /// group's transaction must roll back.
    Done(Completion, bool),
    /// It met concurrent writes: run it again in a later group (after a pause), once this
    /// group's transaction (rolled back when the flag says so) has let their locks go.
    Again(Job, bool),
}

/// Runs of one write, at most, when it keeps meeting concurrent writes (PostgreSQL deadlocks,
/// serialization failures); the last failure is answered (503, `Retry-After`).
const MAX_RUNS: u32 = 5;

/// How a writer job runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// In a savepoint of its group: a failure rolls back only itself.
    Savepoint,
    /// Directly in its group's transaction: a failure rolls back the group.
    Plain,
    /// As a transaction of its own.
    Alone,
}

/// A writer job running `f` as `mode` says that hands its outcome to `reply` once the commit
/// is known. `f` may run again (up to [`MAX_RUNS`] in all) when it meets concurrent writes:
/// what it did is rolled back first, so it must not keep anything of an earlier run.
fn job<T, E, F>(
    f: F,
    mode: Mode,
    ctx: Arc<Context>,
    reply: impl FnOnce(Result<T, E>) + Send + 'static,
) -> Job
where
    F: FnMut(&mut Tx<'_>) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: WriteError,
{
    job_run(f, mode, ctx, reply, 1)
}

fn job_run<T, E, F>(
    mut f: F,
    mode: Mode,
    ctx: Arc<Context>,
    reply: impl FnOnce(Result<T, E>) + Send + 'static,
    run: u32,
) -> Job
where
    F: FnMut(&mut Tx<'_>) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: WriteError,
{
    let go: JobFn = Box::new(move |conn: Result<&mut DbConn, &str>| {
        let conn = match conn {
            Ok(c) => c,
            Err(why) => {
                let e = E::from(group_error(why));
                let done: Completion = Box::new(move |_| reply(Err(e)));
                return Ran::Done(done, false);
            }
        };
        // Savepoint: a nested diesel transaction inside the group's transaction, so a failing
        // write rolls back only itself. Plain: straight in the group's transaction, which a
        // failure rolls back. Alone: the write is the whole transaction, rolled back when it
        // fails. Each run has a `Tx` of its own: nothing it held back or noted outlives it.
        let mut noted = 0;
        let mut once = |c: &mut DbConn| {
            let mut tx = Tx::new(c, &ctx);
            let mut out = f(&mut tx);
            // The statistics' cells take the difference the write made (see `stats::cells`).
            if out.is_ok()
                && let Err(e) = stats::cells::settle(&mut tx)
            {
                out = Err(E::from(e));
            }
            noted = tx.noted();
            out
        };
        let result = match mode {
            Mode::Savepoint => conn.transaction(&mut once),
            Mode::Plain | Mode::Alone => once(conn),
        };
        let roll_back = result.is_err() && mode != Mode::Savepoint;
        // A write that met concurrent ones runs again in a later group (a Plain one is an
        // append that cannot meet any, and its failure takes its whole group with it). Only
        // on PostgreSQL: SQLite has one writer, and its writes hand over what they consume
        // (`Spare`).
        if let Err(e) = &result
            && e.retryable()
            && run < MAX_RUNS
            && mode != Mode::Plain
            && matches!(conn, DbConn::Postgres(_))
        {
            return Ran::Again(job_run(f, mode, ctx, reply, run + 1), roll_back);
        }
        let done: Completion = Box::new(move |commit_error: Option<&str>| {
            reply(match (result, commit_error) {
                (Err(e), _) => Err(e),
                (Ok(v), None) => {
                    Tx::committed(&ctx, noted);
                    Ok(v)
                }
                (Ok(_), Some(why)) => Err(E::from(group_error(why))),
            });
        });
        Ran::Done(done, roll_back)
    });
    Job {
        alone: mode == Mode::Alone,
        runs: run,
        run: go,
    }
}

struct Job {
    /// Runs as a transaction of its own (see [`Store::write_alone`]).
    alone: bool,
    /// Which run of its write this is (1: the first).
    runs: u32,
    run: JobFn,
}

/// The writers' shared queue, with a job taken out but left for the next group.
struct Queue {
    rx: mpsc::Receiver<Job>,
    held: Option<Job>,
}
type Completion = Box<dyn FnOnce(Option<&str>) + Send>;

/// Most writes committed together.
const MAX_GROUP: usize = 256;

/// Why a write failed when no writer took it or answered it.
const WRITER_STOPPED: &str = "the database writer has stopped";
/// Why a group failed when its writer's connection was closed under it.
const CONNECTION_CLOSED: &str = "the database connection was closed";
/// Why a group failed otherwise.
const COMMIT_FAILED: &str = "the write could not be committed";

fn group_error(why: &str) -> diesel::result::Error {
    let kind = if why == CONNECTION_CLOSED {
        diesel::result::DatabaseErrorKind::ClosedConnection
    } else {
        diesel::result::DatabaseErrorKind::Unknown
    };
    diesel::result::Error::DatabaseError(kind, Box::new(why.to_owned()))
}

/// Writer threads per backend: SQLite allows one writer; PostgreSQL takes several groups at
/// once (row locks and constraints keep them correct).
fn writer_count(url: &DatabaseUrl) -> usize {
    match url {
        DatabaseUrl::Sqlite(_) => 1,
        DatabaseUrl::Postgres(_) => 4,
    }
}

/// A writer's connection. On SQLite its statement journals live in a temporary file once they
/// pass 64 KiB (`temp_store = FILE`): an in-memory journal is a list of 1 KiB chunks that SQLite
/// walks from the start at the end of every statement, so inside a large transaction (a bundle
/// of hundreds of entries) each statement cost time proportional to everything written before
/// it (12.9 s per 360-entry bundle).
fn writer_connection(manager: &Manager) -> anyhow::Result<DbConn> {
    let mut conn = manager
        .open()
        .context("opening a database writer connection")?;
    if let DbConn::Sqlite(c) = &mut conn {
        // Checkpoints run on their own thread (see `Store::start_maintenance`); the writer
        // checkpoints itself only as a backstop when the WAL passes 50,000 pages (200 MiB).
        // The page cache stays at 32 MiB: commits that drop cached pages past the end of the
        // database scan the cache's whole hash table, which at 256 MiB was 16 % of the server's
        // time under audited reads (reads by id 7,840 → 9,090/s at 32 MiB); the 256 MiB that
        // once sped ingest by 5 % made no measurable difference to it any more.
        c.batch_execute(
            "PRAGMA temp_store = FILE; PRAGMA wal_autocheckpoint = 50000; PRAGMA cache_size = -32000;",
        )
            .context("configuring the SQLite writer")?;
    }
    Ok(conn)
}

/// Start the group-commit writer threads, sharing one queue; they end when every sender
/// (every `Store` clone) is gone.
fn spawn_writers(manager: Manager, url: &DatabaseUrl) -> anyhow::Result<mpsc::Sender<Job>> {
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = std::sync::Arc::new(std::sync::Mutex::new(Queue { rx, held: None }));
    for n in 0..writer_count(url) {
        let mut writer = Writer {
            conn: writer_connection(&manager)?,
            manager: manager.clone(),
            retry_at: None,
        };
        let rx = rx.clone();
        std::thread::Builder::new()
            .name(format!("db-writer-{n}"))
            .spawn(move || {
                while let Some(jobs) = next_group(&rx) {
                    let group = std::panic::AssertUnwindSafe(|| writer.run(jobs));
                    if std::panic::catch_unwind(group).is_err() {
                        // The callers of this group see their answer channel close and fail;
                        // the writer carries on with a fresh connection (refusing writes until
                        // it can open one).
                        tracing::error!("a write panicked; its group was rolled back");
                        writer.reconnect();
                    }
                }
            })
            .context("starting a database writer thread")?;
    }
    Ok(tx)
}

/// Wait for a write, then take every write already queued behind it (up to [`MAX_GROUP`]).
fn next_group(queue: &std::sync::Mutex<Queue>) -> Option<Vec<Job>> {
    let mut q = queue
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let first = match q.held.take() {
        Some(j) => j,
        None => q.rx.recv().ok()?,
    };
    if first.alone {
        return Some(vec![first]);
    }
    let mut jobs = vec![first];
    while jobs.len() < MAX_GROUP {
        match q.rx.try_recv() {
            Ok(j) if j.alone => {
                q.held = Some(j);
                break;
            }
            Ok(j) => jobs.push(j),
            Err(_) => break,
        }
    }
    Some(jobs)
}

/// Run `f` in a transaction. On SQLite it begins `IMMEDIATE`, holding the write lock from the
/// start: a transaction that reads first and then writes would fail outright (not wait) if the
/// checkpoint thread restarted the write-ahead log in between.
fn group_transaction(
    conn: &mut DbConn,
    f: impl FnOnce(&mut DbConn) -> diesel::QueryResult<()>,
) -> diesel::QueryResult<()> {
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    type Manager = <DbConn as Connection>::TransactionManager;
    match conn {
        DbConn::Sqlite(c) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?,
        DbConn::Postgres(_) => Manager::begin_transaction(conn)?,
    }
    let out = f(conn).and_then(|()| Manager::commit_transaction(conn));
    if out.is_err() {
        let _ = Manager::rollback_transaction(conn);
    }
    out
}

/// What a group left: why it could not be committed (not when a job rolled it back), the jobs
/// it did not run (those after a job that rolled the group back, or all when the transaction
/// could not begin), and the jobs to run again (they met concurrent writes).
struct Left {
    failure: Option<&'static str>,
    unrun: Vec<Job>,
    again: Vec<Job>,
}

/// Run a group of writes in one transaction and answer each caller after the commit.
fn run_group(conn: &mut DbConn, jobs: Vec<Job>) -> Left {
    let mut completions = Vec::with_capacity(jobs.len());
    let mut again = Vec::new();
    let mut rolled_back = false;
    let mut queue = jobs.into_iter();
    let committed = group_transaction(conn, |conn| {
        for job in queue.by_ref() {
            let roll_back = match (job.run)(Ok(conn)) {
                Ran::Done(done, roll_back) => {
                    completions.push(done);
                    roll_back
                }
                Ran::Again(job, roll_back) => {
                    again.push(job);
                    roll_back
                }
            };
            if roll_back {
                rolled_back = true;
                return Err(diesel::result::Error::RollbackTransaction);
            }
        }
        Ok(())
    });
    let failure = match committed {
        Ok(()) => None,
        Err(_) if rolled_back => Some("rolled back"),
        Err(e) => {
            tracing::error!(error = %e, "group commit failed");
            Some(if is_connection_lost(&e) {
                CONNECTION_CLOSED
            } else {
                COMMIT_FAILED
            })
        }
    };
    for done in completions {
        done(failure);
    }
    Left {
        failure: failure.filter(|_| !rolled_back),
        unrun: queue.collect(),
        again,
    }
}

/// A pause before writes that met concurrent ones run again: growing with the run, with
/// jitter so that the writes that met do not meet again in step (2–4 ms after the first run,
/// up to 32–64 ms after the fourth).
fn contention_pause(runs: u32) -> Duration {
    let base = 2u64 << runs.saturating_sub(1).min(4);
    let mut byte = [0u8; 1];
    let jitter = match getrandom::fill(&mut byte) {
        Ok(()) => base * u64::from(byte[0]) / 255,
        Err(_) => base / 2,
    };
    Duration::from_millis(base + jitter)
}

/// How long a writer that could not reconnect refuses writes before it tries again.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// A writer thread's connection.
struct Writer {
    conn: DbConn,
    manager: Manager,
    /// Set while the database cannot be reached: writes are refused until then, and a
    /// reconnect is tried.
    retry_at: Option<Instant>,
}

impl Writer {
    /// Run `jobs` as a group. When the group fails to commit and the connection is gone (a
    /// database restart, a terminated backend), reconnect; jobs the group did not run go into a
    /// new group, twice at most, and are then refused. While the database cannot be reached,
    /// writes are refused at once and a reconnect is tried every [`RECONNECT_PAUSE`].
    fn run(&mut self, jobs: Vec<Job>) {
        if let Some(at) = self.retry_at
            && (Instant::now() < at || !self.reconnect())
        {
            refuse(jobs, CONNECTION_CLOSED);
            return;
        }
        let mut jobs = jobs;
        let mut regroups = 0;
        loop {
            let Left {
                failure,
                mut unrun,
                again,
            } = run_group(&mut self.conn, jobs);
            let lost = failure.is_some()
                && (R2D2Connection::is_broken(&mut self.conn)
                    || R2D2Connection::ping(&mut self.conn).is_err());
            if lost && !self.reconnect() {
                refuse(unrun, CONNECTION_CLOSED);
                refuse(again, CONNECTION_CLOSED);
                return;
            }
            if !unrun.is_empty() {
                if regroups == 2 {
                    refuse(std::mem::take(&mut unrun), failure.unwrap_or(COMMIT_FAILED));
                }
                regroups += 1;
            }
            if let Some(runs) = again.iter().map(|j| j.runs).max() {
                std::thread::sleep(contention_pause(runs));
            }
            unrun.extend(again);
            if unrun.is_empty() {
                return;
            }
            jobs = unrun;
        }
    }

    fn reconnect(&mut self) -> bool {
        match writer_connection(&self.manager) {
            Ok(fresh) => {
                self.retry_at = None;
                tracing::warn!("a database writer reconnected");
                self.conn = fresh;
                true
            }
            Err(e) => {
                if self.retry_at.is_none() {
                    tracing::error!(error = %e, "a database writer lost its connection; writes are refused until it reconnects");
                }
                self.retry_at = Some(Instant::now() + RECONNECT_PAUSE);
                false
            }
        }
    }
}

/// Answer jobs that were not run with the failure `why`.
fn refuse(jobs: Vec<Job>, why: &str) {
    for job in jobs {
        if let Ran::Done(done, _) = (job.run)(Err(why)) {
            done(Some(why));
        }
    }
}

/// Connect once with the backend's own connection type, so that failures carry their real cause
/// (the pool reports only a generic error).
fn check_reachable(url: &DatabaseUrl) -> anyhow::Result<()> {
    match url {
        DatabaseUrl::Postgres(u) => {
            PgConnection::establish(u)
                .with_context(|| format!("cannot connect to PostgreSQL at {}", redact(u)))?;
        }
        DatabaseUrl::Sqlite(path) => {
            if let Some(dir) = std::path::Path::new(path).parent()
                && !dir.as_os_str().is_empty()
                && !dir.exists()
            {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating the data directory {}", dir.display()))?;
                crate::files::restrict(dir, 0o700)?;
            }
            private_database_file(path)?;
            SqliteConnection::establish(path)
                .with_context(|| format!("cannot open the SQLite database {path}"))?;
        }
    }
    Ok(())
}

/// The SQLite database file readable by this user only: created `0600` when new (SQLite gives
/// its `-wal` and `-shm` files the database file's permissions), and an existing one open to
/// others narrowed to that.
fn private_database_file(path: &str) -> anyhow::Result<()> {
    if path.starts_with(':') || path.starts_with("file:") {
        return Ok(());
    }
    let p = std::path::Path::new(path);
    if !p.exists() {
        match crate::files::create_private(p) {
            Ok(_) => {}
            // Created meanwhile by another process: it narrows its own.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(e).with_context(|| format!("creating the SQLite database {path}"));
            }
        }
        return Ok(());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(p)
            .with_context(|| format!("reading {path}"))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            tracing::warn!("the SQLite database was readable by others: narrowed to its owner");
            crate::files::restrict(p, 0o600)?;
        }
    }
    Ok(())
}

/// A URL with any password removed, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Apply every pending migration; returns the versions applied.
pub fn migrate(url: &DatabaseUrl) -> anyhow::Result<Vec<String>> {
    check_reachable(url)?;
    let applied = match url {
        DatabaseUrl::Postgres(u) => {
            let mut c = PgConnection::establish(u)?;
            run_pending(&mut c, POSTGRES_MIGRATIONS)?
        }
        DatabaseUrl::Sqlite(p) => {
            let mut c = SqliteConnection::establish(p)?;
            c.batch_execute("PRAGMA journal_mode = WAL;")?;
            run_pending(&mut c, SQLITE_MIGRATIONS)?
        }
    };
    Ok(applied)
}

/// Revert the most recent migration (for `huimin migrate --revert`).
pub fn revert_last(url: &DatabaseUrl) -> anyhow::Result<String> {
    let version = match url {
        DatabaseUrl::Postgres(u) => {
            let mut c = PgConnection::establish(u)?;
            c.revert_last_migration(POSTGRES_MIGRATIONS)
                .map_err(|e| anyhow::anyhow!("reverting: {e}"))?
                .to_string()
        }
        DatabaseUrl::Sqlite(p) => {
            let mut c = SqliteConnection::establish(p)?;
            c.revert_last_migration(SQLITE_MIGRATIONS)
                .map_err(|e| anyhow::anyhow!("reverting: {e}"))?
                .to_string()
        }
    };
    Ok(version)
}

fn run_pending<C>(c: &mut C, m: EmbeddedMigrations) -> anyhow::Result<Vec<String>>
where
    C: MigrationHarness<C::Backend> + Connection,
{
    let done = c
        .run_pending_migrations(m)
        .map_err(|e| anyhow::anyhow!("running migrations: {e}"))?;
    Ok(done.iter().map(ToString::to_string).collect())
}

/// The database's own identity (made by migration 000019): the same for every process of
/// this database, however each reaches it.
pub fn instance_token(conn: &mut DbConn) -> diesel::QueryResult<String> {
    use diesel::prelude::*;
    schema::instance::table
        .filter(schema::instance::id.eq(1))
        .select(schema::instance::token)
        .first(conn)
}

/// Whether a diesel error says the connection is gone (closed by the server, or a statement
/// could not be sent): the connection must be checked or replaced before it is used again.
pub fn is_connection_lost(e: &diesel::result::Error) -> bool {
    matches!(
        e,
        diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::ClosedConnection
                | diesel::result::DatabaseErrorKind::UnableToSendCommand,
            _,
        )
    )
}

/// Whether a diesel error says the statement met concurrent writes, so that the write may pass
/// when run again: a serialization failure, or a deadlock (PostgreSQL aborts one transaction
/// of a cycle of lock waits; diesel gives no kind for it, so its message, `deadlock detected`
/// in the server's default language, is read).
pub fn is_contention(e: &diesel::result::Error) -> bool {
    match e {
        diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::SerializationFailure,
            _,
        ) => true,
        diesel::result::Error::DatabaseError(_, info) => {
            info.message().starts_with("deadlock detected")
        }
        _ => false,
    }
}

/// Whether a diesel error is a unique-constraint violation (a concurrent insert won the race).
pub fn is_unique_violation(e: &diesel::result::Error) -> bool {
    matches!(
        e,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)
    )
}

#[cfg(test)]
mod tests {
    use super::{AtomicU64, DatabaseUrl, LOST_LOG_EVERY_MS, log_due};

    #[test]
    fn a_lost_connection_is_logged_once_every_ten_seconds() {
        let last = AtomicU64::new(0);
        let t = 1_764_000_000_000;
        assert!(log_due(&last, t, LOST_LOG_EVERY_MS));
        assert!(!log_due(&last, t + 1, LOST_LOG_EVERY_MS));
        assert!(!log_due(
            &last,
            t + LOST_LOG_EVERY_MS - 1,
            LOST_LOG_EVERY_MS
        ));
        assert!(log_due(&last, t + LOST_LOG_EVERY_MS, LOST_LOG_EVERY_MS));
    }

    #[test]
    fn postgres_urls_get_a_connect_timeout_unless_they_name_one() {
        let pg = |u: &str| match DatabaseUrl::parse(u) {
            Ok(DatabaseUrl::Postgres(u)) => u,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            pg("postgres://u@h/db"),
            "postgres://u@h/db?connect_timeout=5"
        );
        assert_eq!(
            pg("postgresql://u@h:5432/db?sslmode=disable"),
            "postgresql://u@h:5432/db?sslmode=disable&connect_timeout=5"
        );
        assert_eq!(
            pg("postgres://u@h/db?connect_timeout=30"),
            "postgres://u@h/db?connect_timeout=30"
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite://data/huimin.db"),
            Ok(DatabaseUrl::Sqlite("data/huimin.db".to_owned()))
        );
    }
}
