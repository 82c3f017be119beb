//! The value a unit of database work is passed: a connection inside its transaction (or a
//! pooled connection for a read), the database's context (its protection keys, the resident
//! index's thresholds, its signals), the rows a large write holds back, and the typed work of
//! the services above (the resident links of a write, the records its audit trail names).
//!
//! Everything a write needs travels in this value instead of in thread-locals or globals: a
//! job carries it from its first statement to its commit, and two stores in one process (two
//! applications with different settings) never see each other's.

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::DbConn;
use super::record::HeldVersion;
use super::record::index::HeldIndex;
use crate::protect::Protection;

/// Thresholds of the resident index's probabilistic match.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// At or above: linked automatically.
    pub upper: f64,
    /// At or above (and below `upper`): a new golden resident, and the match kept for review.
    pub lower: f64,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            upper: 14.0,
            lower: 8.0,
        }
    }
}

/// What one database's work shares: set when the store opens, never changed after.
pub struct Context {
    /// The keys that protect identifiers at rest in this database.
    pub protection: Arc<Protection>,
    /// How the resident index links institution Patients.
    pub thresholds: Thresholds,
    /// One epoch per [`Signal`], moved when a committed write noted it (see [`Tx::note`]):
    /// the caches built on what the signal names are then read again.
    epochs: [AtomicU64; SIGNALS],
    /// The types with subscribers, as this process last read them.
    pub(crate) subscribed: super::notify::Subscribed,
    /// Told when a committed write noted [`Signal::Outbox`].
    outbox: tokio::sync::Notify,
}

/// What a committed write may have changed for the caches above the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// A type newly holds sensitive data: the consent engine reads the list of such types again.
    Sensitive = 0,
    /// A workflow Task (referral, consultation) was written: the access it opens is read again.
    Workflow = 1,
    /// A Subscription was written: the types with subscribers are read again.
    Subscriptions = 2,
    /// Rows were added to the notification outbox: this process's deliverer looks at once.
    Outbox = 3,
}

const SIGNALS: usize = 4;

impl Context {
    pub fn new(protection: Arc<Protection>, thresholds: Thresholds) -> Context {
        Context {
            protection,
            thresholds,
            epochs: Default::default(),
            subscribed: Default::default(),
            outbox: tokio::sync::Notify::new(),
        }
    }

    /// Moves when a committed write made a type newly hold sensitive data (see
    /// [`Tx::note_sensitive_type`]): the consent engine of this store then reads the list of
    /// such types again.
    pub fn sensitive_epoch(&self) -> u64 {
        self.epoch(Signal::Sensitive)
    }

    /// The epoch of `signal`: it moves each time a committed write noted it.
    pub fn epoch(&self, signal: Signal) -> u64 {
        self.epochs[signal as usize].load(Ordering::Acquire)
    }

    /// Resolves once a write that added rows to the outbox has committed since the last time
    /// it resolved (a commit while nobody waits is kept for the next wait).
    pub async fn outbox_written(&self) {
        self.outbox.notified().await;
    }

    /// Move the epoch of `signal` (a change made outside a write's [`Tx`]).
    pub fn signal(&self, signal: Signal) {
        self.epochs[signal as usize].fetch_add(1, Ordering::AcqRel);
    }
}

/// Rows of new resources held back until the transaction flushes them (see
/// [`Tx::defer_writes`]).
#[derive(Default)]
pub(super) struct Held {
    pub(super) versions: Vec<HeldVersion>,
    pub(super) index: Vec<HeldIndex>,
    pub(super) facts: Vec<super::stats::Fact>,
}

/// One unit of database work: see the module's documentation.
pub struct Tx<'c> {
    conn: &'c mut DbConn,
    ctx: &'c Context,
    /// `Some` while new rows are held back.
    pub(super) held: Option<Held>,
    /// The [`Signal`]s noted (a bit each), told to the context once the work commits.
    noted: u8,
    /// The services' typed work, one value per type (a handful at most).
    work: Vec<Box<dyn Any + Send>>,
}

impl<'c> Tx<'c> {
    pub(super) fn new(conn: &'c mut DbConn, ctx: &'c Context) -> Tx<'c> {
        Tx {
            conn,
            ctx,
            held: None,
            noted: 0,
            work: Vec::new(),
        }
    }

    /// The connection, for a diesel statement.
    pub fn conn(&mut self) -> &mut DbConn {
        self.conn
    }

    /// The keys that protect identifiers in this database.
    pub fn protection(&self) -> &'c Protection {
        &self.ctx.protection
    }

    /// The resident index's match thresholds.
    pub fn thresholds(&self) -> Thresholds {
        self.ctx.thresholds
    }

    /// This work made a type newly hold sensitive data: once it commits, consent decisions
    /// read the list of such types again.
    pub fn note_sensitive_type(&mut self) {
        self.note(Signal::Sensitive);
    }

    /// This work changed what `signal` names: once it commits, the caches built on it are
    /// read again.
    pub fn note(&mut self, signal: Signal) {
        self.noted |= 1 << signal as u8;
    }

    /// The store's context.
    pub fn context(&self) -> &'c Context {
        self.ctx
    }

    /// Hand on what the work noted, now that it committed.
    pub(super) fn committed(ctx: &Context, noted: u8) {
        for (i, epoch) in ctx.epochs.iter().enumerate() {
            if noted & (1 << i) != 0 {
                epoch.fetch_add(1, Ordering::AcqRel);
            }
        }
        if noted & (1 << Signal::Outbox as u8) != 0 {
            ctx.outbox.notify_one();
        }
    }

    pub(super) fn noted(&self) -> u8 {
        self.noted
    }

    /// Run `f` in a savepoint: when it fails, what it wrote is rolled back and the rest of the
    /// transaction carries on.
    pub fn savepoint<T, E>(&mut self, f: impl FnOnce(&mut Tx<'c>) -> Result<T, E>) -> Result<T, E>
    where
        E: From<diesel::result::Error>,
    {
        use diesel::connection::{Connection, TransactionManager};
        type Manager = <DbConn as Connection>::TransactionManager;
        Manager::begin_transaction(self.conn)?;
        let touched = super::stats::cells::mark(self);
        match f(self) {
            Ok(v) => {
                Manager::commit_transaction(self.conn)?;
                Ok(v)
            }
            Err(e) => {
                Manager::rollback_transaction(self.conn)?;
                super::stats::cells::forget_since(self, touched);
                Err(e)
            }
        }
    }

    /// The services' work of type `W` in this transaction, begun empty on first use.
    pub fn work<W: Default + Send + 'static>(&mut self) -> &mut W {
        let at = match self.work.iter().position(|w| w.is::<W>()) {
            Some(at) => at,
            None => {
                self.work.push(Box::new(W::default()));
                self.work.len() - 1
            }
        };
        match self.work[at].downcast_mut::<W>() {
            Some(w) => w,
            None => unreachable!("the slot was found or made for this type"),
        }
    }

    /// Take the work of type `W` out of the transaction (empty when none was begun).
    pub fn take_work<W: Default + Send + 'static>(&mut self) -> W {
        match self.work.iter().position(|w| w.is::<W>()) {
            Some(at) => match self.work.swap_remove(at).downcast::<W>() {
                Ok(w) => *w,
                Err(_) => W::default(),
            },
            None => W::default(),
        }
    }
}

impl std::ops::Deref for Tx<'_> {
    type Target = DbConn;
    fn deref(&self) -> &DbConn {
        self.conn
    }
}

impl std::ops::DerefMut for Tx<'_> {
    fn deref_mut(&mut self) -> &mut DbConn {
        self.conn
    }
}

/// What a write consumes, kept for a run again: a write that meets concurrent ones runs again
/// (see `Store::write`), and needs what it was given as it was. On SQLite (one writer: its
/// writes never meet) the value is handed over; on PostgreSQL each run gets a copy.
#[derive(Debug)]
pub struct Spare<T>(Option<T>);

impl<T: Clone> Spare<T> {
    pub fn new(value: T) -> Self {
        Spare(Some(value))
    }

    /// The value for this run of the write.
    pub fn for_run(&mut self, tx: &mut Tx<'_>) -> Result<T, crate::error::ApiError> {
        let value = match tx.conn() {
            DbConn::Postgres(_) => self.0.clone(),
            DbConn::Sqlite(_) => self.0.take(),
        };
        value.ok_or_else(|| crate::error::ApiError::internal("a write ran again on SQLite"))
    }
}
