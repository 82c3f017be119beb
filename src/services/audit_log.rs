//! The node's audit log: where the audit records of reads become durable before the answer
//! leaves, without a trip through the database's writer.
//!
//! A read's records are appended, by the request's own thread, to a file of this process under
//! the data directory (`<data_dir>/audit-log/<node>.<n>.log`, one line per record): written to
//! the operating system (`os`, which survives a crash of the server process, as a SQLite commit
//! does) or also synced to disk (`disk`, one `fdatasync` for every record appended meanwhile,
//! as a PostgreSQL commit is) before the caller is answered. A copier thread moves the lines
//! into the database's audit trail (`audit_events`, where the sealer chains them with SM3) in
//! large transactions, each of which also records how far the file has been copied
//! (`audit_log_copied`), so a copy cut short by a crash resumes where it stopped and copies
//! nothing twice. A fully copied file past a size is replaced by a new one and removed.
//!
//! **Openings.** With `disk` durability a read does not wait for a sync after its query: before
//! the query runs it appends an *opening* (the interaction's provisional record: who, from
//! which institution, for what purpose, what was asked, outcome "ended without a recorded
//! outcome") and starts its sync, so that the sync overlaps the query; after the query it
//! appends the *closing* (the interaction's records, tagged with the opening) to the operating
//! system, and answers once the opening is on disk. The copier copies closings' records and
//! drops their openings; an opening without a complete closing, left by a machine crash, is
//! copied as the record of its own, so no access answered is missing from the trail. Which
//! openings a node has not closed yet is kept with its copy position (`audit_log_open`).
//!
//! Each process holds a lock on its own file. Files whose process stopped (a crash, or a stop
//! before everything was copied) are adopted by the next process that starts on the same data
//! directory, and every minute by the running ones, and copied the same way; a line cut short
//! by a crash is dropped (its read was never answered).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::watch;

use crate::error::ApiError;
use crate::store::Store;
use crate::store::audit::{self as repo, NewEvent};

/// How a record is made durable before the answer leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Written to the operating system: survives a crash of the server process.
    Os,
    /// Synced to disk: survives a crash of the machine.
    Disk,
}

/// Records copied into the database in one transaction at most.
const COPY_BATCH: usize = 500;
/// Bytes read from a file at a time when copying.
const READ_CHUNK: u64 = 4 << 20;
/// A fully copied file holding at least this much is replaced by a new one.
const ROTATE_BYTES: u64 = 8 << 20;
// With `Durability::Disk`, files are made twice that long (zeros, synced) before use:
// overwriting allocated blocks lets `fdatasync` flush data alone, where growing the file also
// commits the file system's journal (measured here: 0.13 ms against 1.0 ms per synced write).
// Records are written from the start; the first NUL byte marks the end.
/// How often the copier looks for new records when nobody is waiting for them.
const COPY_INTERVAL: Duration = Duration::from_millis(20);
/// How often files of stopped processes are looked for.
const ADOPT_INTERVAL: Duration = Duration::from_secs(60);
/// How long a reader of the audit trail waits for this process's records to be copied.
const FLUSH_WAIT: Duration = Duration::from_secs(5);

/// This process's audit log. Cloning shares it.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    node: String,
    durability: Durability,
    /// A fully copied file holding this much is replaced.
    rotate_bytes: u64,
    /// How long a new file is made before use (0: grown by appends).
    preallocate: u64,
    store: Store,
    /// The file appended to.
    current: Mutex<Current>,
    /// Where the copier stands in this process's files.
    cursor: Mutex<Cursor>,
    /// Bytes appended by this process, over all its files (updated under `current`).
    appended: AtomicU64,
    /// Bytes copied into the database, over all this process's files.
    copied: watch::Sender<u64>,
    /// Bytes synced to disk (`Durability::Disk`).
    synced: watch::Sender<u64>,
    /// Set when a sync failed: nothing appended since can be promised durable.
    sync_failed: AtomicBool,
    /// The number of the next opening.
    next_opening: AtomicU64,
    wake_copier: Arc<Signal>,
    wake_syncer: Arc<Signal>,
}

struct Current {
    file: File,
    name: String,
    seq: u64,
    len: u64,
}

struct Cursor {
    name: String,
    reader: File,
    at: u64,
    /// The openings copied past and not closed yet.
    open: Openings,
    /// The next file, made ahead.
    spare: Option<Spare>,
}

struct Spare {
    seq: u64,
    name: String,
    file: File,
    reader: File,
}

/// A wake-up call for a background thread.
#[derive(Default)]
struct Signal {
    raised: Mutex<bool>,
    cv: Condvar,
}

impl Signal {
    fn raise(&self) {
        *lock(&self.raised) = true;
        self.cv.notify_one();
    }

    /// Wait until raised or `timeout` passed.
    fn wait(&self, timeout: Duration) {
        let mut raised = lock(&self.raised);
        if !*raised {
            raised = self
                .cv
                .wait_timeout(raised, timeout)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        *raised = false;
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn file_name(node: &str, seq: u64) -> String {
    format!("{node}.{seq:06}.log")
}

/// Create a new log file locked by this process (zero-filled and synced when `preallocate`).
/// It gets its name only once locked, so that no other process takes it for the file of a
/// stopped one.
fn create(dir: &Path, name: &str, preallocate: u64) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let making = dir.join(format!("{name}.new"));
    let file = options.open(&making)?;
    file.try_lock().map_err(std::io::Error::other)?;
    if preallocate > 0 {
        let zeros = vec![0u8; preallocate.min(1 << 20) as usize];
        let mut at = 0;
        while at < preallocate {
            let n = (preallocate - at).min(zeros.len() as u64);
            file.write_all_at(&zeros[..n as usize], at)?;
            at += n;
        }
        file.sync_all()?;
    }
    std::fs::rename(&making, dir.join(name))?;
    Ok(file)
}

impl AuditLog {
    /// Open a new log file of this process in `dir` and start the copier (and, for
    /// `Durability::Disk`, the syncer).
    pub fn open(dir: &Path, store: Store, durability: Durability) -> anyhow::Result<AuditLog> {
        AuditLog::open_sized(dir, store, durability, ROTATE_BYTES)
    }

    /// [`AuditLog::open`] with files replaced once they hold `rotate_bytes`.
    fn open_sized(
        dir: &Path,
        store: Store,
        durability: Durability,
        rotate_bytes: u64,
    ) -> anyhow::Result<AuditLog> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the audit log directory {}", dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("restricting {}", dir.display()))?;
        }
        let node = uuid::Uuid::new_v4().simple().to_string();
        let name = file_name(&node, 1);
        let preallocate = if durability == Durability::Disk {
            2 * rotate_bytes
        } else {
            0
        };
        let file = create(dir, &name, preallocate)
            .with_context(|| format!("creating the audit log file in {}", dir.display()))?;
        let reader = File::open(dir.join(&name))
            .with_context(|| format!("opening the audit log file in {}", dir.display()))?;
        let inner = Arc::new(Inner {
            dir: dir.to_path_buf(),
            node,
            durability,
            rotate_bytes,
            preallocate,
            store,
            current: Mutex::new(Current {
                file,
                name: name.clone(),
                seq: 1,
                len: 0,
            }),
            cursor: Mutex::new(Cursor {
                name,
                reader,
                at: 0,
                open: Openings::default(),
                spare: None,
            }),
            appended: AtomicU64::new(0),
            copied: watch::Sender::new(0),
            synced: watch::Sender::new(0),
            sync_failed: AtomicBool::new(false),
            next_opening: AtomicU64::new(1),
            wake_copier: Arc::new(Signal::default()),
            wake_syncer: Arc::new(Signal::default()),
        });
        // What stopped processes left is in the trail before this one answers anything.
        inner.adopt_orphans();
        spawn(
            "huimin-audit-copy",
            &inner,
            inner.wake_copier.clone(),
            |inner, adopt| {
                inner.copy_own();
                if adopt {
                    inner.adopt_orphans();
                }
            },
        )?;
        if durability == Durability::Disk {
            spawn(
                "huimin-audit-sync",
                &inner,
                inner.wake_syncer.clone(),
                |inner, _| {
                    inner.sync();
                },
            )?;
        }
        Ok(AuditLog { inner })
    }

    /// Append `events` and return once they are as durable as configured. Fails when they
    /// cannot be (the caller must then not answer with data).
    pub async fn append(&self, events: &[NewEvent]) -> Result<(), ApiError> {
        let end = self.inner.write(events, Tag::None)?;
        self.durable(end).await
    }

    /// With `disk` durability, append the opening of an interaction about to run (its
    /// provisional record) and start syncing it, so that the sync overlaps the interaction;
    /// `None` with `os` durability, where nothing waits for a sync.
    pub fn begin(&self, provisional: &NewEvent) -> Result<Option<Opening>, ApiError> {
        let inner = &self.inner;
        if inner.durability != Durability::Disk {
            return Ok(None);
        }
        let id = inner.next_opening.fetch_add(1, Ordering::Relaxed);
        let end = inner.write(std::slice::from_ref(provisional), Tag::Opening(id))?;
        inner.wake_syncer.raise();
        Ok(Some(Opening { id, end }))
    }

    /// Append the closing of `opening` (the interaction's records, written to the operating
    /// system) and return once the opening is on disk.
    pub async fn close(&self, opening: Opening, events: &[NewEvent]) -> Result<(), ApiError> {
        self.close_now(&opening, events)?;
        self.durable(opening.end).await
    }

    /// Append the closing of `opening` without waiting (an interaction that ended unanswered).
    pub fn close_now(&self, opening: &Opening, events: &[NewEvent]) -> Result<(), ApiError> {
        let count = events.len() as u64;
        self.inner
            .write(events, Tag::Closing(opening.id, count))
            .map(|_| ())
    }

    /// Return once everything appended up to `end` is as durable as configured.
    async fn durable(&self, end: u64) -> Result<(), ApiError> {
        let inner = &self.inner;
        if inner.durability == Durability::Disk {
            let mut synced = inner.synced.subscribe();
            if *synced.borrow() >= end {
                return Ok(());
            }
            inner.wake_syncer.raise();
            let reached = synced
                .wait_for(|s| *s >= end || inner.sync_failed.load(Ordering::Acquire))
                .await
                .is_ok();
            if !reached || inner.sync_failed.load(Ordering::Acquire) {
                return Err(unavailable());
            }
        }
        Ok(())
    }

    /// Wait (a few seconds at most) until every record this process appended so far is in the
    /// database, so that a reader of the audit trail sees its own accesses.
    pub async fn flush(&self) {
        let target = self.inner.appended.load(Ordering::Acquire);
        let mut copied = self.inner.copied.subscribe();
        if *copied.borrow() >= target {
            return;
        }
        self.inner.wake_copier.raise();
        let waited =
            actix_web::rt::time::timeout(FLUSH_WAIT, copied.wait_for(|c| *c >= target)).await;
        if !matches!(waited, Ok(Ok(_))) {
            tracing::warn!("the audit log is behind: the audit trail read may miss recent records");
        }
    }

    /// Copy everything appended so far (at shutdown).
    pub fn drain(&self) {
        self.inner.copy_own();
    }
}

fn unavailable() -> ApiError {
    ApiError::Unavailable("the audit trail is not available".to_owned())
}

/// An interaction's opening in this process's log (see [`AuditLog::begin`]).
#[derive(Debug)]
pub struct Opening {
    id: u64,
    /// Where the opening ends in this process's log.
    end: u64,
}

/// Run `step` on a thread of its own whenever `signal` is raised, and at least every
/// [`COPY_INTERVAL`], for as long as the log is in use; `step` hears when it is time to look
/// for files of stopped processes.
fn spawn(
    name: &str,
    inner: &Arc<Inner>,
    signal: Arc<Signal>,
    step: fn(&Inner, bool),
) -> anyhow::Result<()> {
    let weak: Weak<Inner> = Arc::downgrade(inner);
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let mut adopted = Instant::now();
            loop {
                signal.wait(COPY_INTERVAL);
                let Some(inner) = weak.upgrade() else { break };
                let adopt = adopted.elapsed() >= ADOPT_INTERVAL;
                if adopt {
                    adopted = Instant::now();
                }
                step(&inner, adopt);
            }
        })
        .with_context(|| format!("starting the {name} thread"))?;
    Ok(())
}

impl Inner {
    /// Append one line per record to the current file (a closing without records: one line
    /// of its own); returns the end (over all this process's files) the records reach.
    fn write(&self, events: &[NewEvent], tag: Tag) -> Result<u64, ApiError> {
        let mut buf = Vec::with_capacity(events.iter().map(|e| e.content.len() + 64).sum());
        let written = (|| {
            if events.is_empty() {
                tag.encode(&mut buf)?;
                buf.push(b'\n');
            }
            for e in events {
                tag.encode(&mut buf)?;
                encode(e, &mut buf)?;
            }
            let mut current = lock(&self.current);
            let at = current.len;
            current.file.write_all_at(&buf, at)?;
            current.len += buf.len() as u64;
            Ok::<_, std::io::Error>(
                self.appended.fetch_add(buf.len() as u64, Ordering::AcqRel) + buf.len() as u64,
            )
        })();
        written.map_err(|e| {
            tracing::error!(error = %e, events = events.len(), "the audit log could not be written");
            unavailable()
        })
    }

    /// Append bytes as they are (a test's half-written closing).
    #[cfg(test)]
    fn append_raw(&self, bytes: &[u8]) {
        let mut current = lock(&self.current);
        let at = current.len;
        current.file.write_all_at(bytes, at).unwrap();
        current.len += bytes.len() as u64;
        self.appended
            .fetch_add(bytes.len() as u64, Ordering::AcqRel);
    }

    /// Sync what was appended (one `fdatasync` for every record appended meanwhile).
    fn sync(&self) {
        let (target, file) = {
            let current = lock(&self.current);
            (
                self.appended.load(Ordering::Acquire),
                current.file.try_clone(),
            )
        };
        if target <= *self.synced.borrow() {
            return;
        }
        match file.and_then(|f| f.sync_data()) {
            Ok(()) => {
                self.synced.send_replace(target);
            }
            Err(e) => {
                tracing::error!(error = %e, "syncing the audit log failed: reads are refused");
                self.sync_failed.store(true, Ordering::Release);
                self.synced.send_modify(|_| {});
            }
        }
    }

    /// Copy this process's new records into the database; replace the file once it is large
    /// and fully copied.
    fn copy_own(&self) {
        let mut cursor = lock(&self.cursor);
        // Only `rotate`, called here under the cursor's lock, moves to a new file, so the cursor and
        // the current file name the same one.
        let len = lock(&self.current).len;
        if cursor.at >= len {
            if cursor.at >= self.rotate_bytes {
                self.rotate(&mut cursor);
            }
            return;
        }
        let copied = &self.copied;
        let cursor = &mut *cursor;
        let file = FileCopy {
            store: &self.store,
            node: &self.node,
            name: &cursor.name,
            reader: &cursor.reader,
        };
        let result = file.copy(cursor.at, len, &mut cursor.open, |n| {
            copied.send_modify(|c| *c += n);
        });
        match result {
            Ok(at) => cursor.at = at,
            Err((at, e)) => {
                cursor.at = at;
                tracing::error!(error = %e, "copying the audit log into the database failed; retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }

    /// Start a new file when nothing was appended to the fully copied current one, and remove
    /// the old one.
    fn rotate(&self, cursor: &mut Cursor) {
        // The next file is made (with disk durability: zero-filled and synced) before the
        // appenders' lock is taken, so that no append waits for it.
        if cursor.spare.is_none() {
            let seq = lock(&self.current).seq + 1;
            let name = file_name(&self.node, seq);
            let opened = create(&self.dir, &name, self.preallocate)
                .and_then(|f| File::open(self.dir.join(&name)).map(|r| (f, r)));
            match opened {
                Ok((file, reader)) => {
                    cursor.spare = Some(Spare {
                        seq,
                        name,
                        file,
                        reader,
                    })
                }
                Err(e) => {
                    tracing::error!(error = %e, "starting a new audit log file failed");
                    return;
                }
            }
        }
        let old = {
            let mut current = lock(&self.current);
            // Appended to meanwhile: the spare waits for the next round.
            if current.len != cursor.at {
                return;
            }
            let Some(spare) = cursor.spare.take() else {
                return;
            };
            let old = std::mem::replace(&mut current.name, spare.name.clone());
            current.file = spare.file;
            current.seq = spare.seq;
            current.len = 0;
            cursor.name = spare.name;
            cursor.reader = spare.reader;
            cursor.at = 0;
            old
        };
        self.remove(&old);
    }

    /// Remove a fully copied file, then its copy record (in this order: a crash in between
    /// leaves a harmless record, never a file copied again).
    fn remove(&self, name: &str) {
        if let Err(e) = std::fs::remove_file(self.dir.join(name)) {
            tracing::error!(error = %e, "removing a copied audit log file failed");
            return;
        }
        let log = name.to_owned();
        if let Err(e) = self
            .store
            .write(move |conn| repo::forget_log(conn, &log).map_err(ApiError::from))
        {
            tracing::warn!(error = %e, "forgetting a removed audit log file failed");
        }
    }

    /// Copy and remove the files of processes that stopped.
    fn adopt_orphans(&self) {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "reading the audit log directory failed");
                return;
            }
        };
        // Each other node's files, in order.
        let mut nodes: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".log") || name.starts_with(&self.node) {
                continue;
            }
            if let Some((node, _)) = name.split_once('.') {
                nodes.entry(node.to_owned()).or_default().push(name);
            }
        }
        for (node, mut names) in nodes {
            names.sort();
            if let Some(files) = self.stopped(&node, &names) {
                self.adopt(&node, files);
            }
        }
    }

    /// The files of `node`, locked, when its process has stopped: every file of it is
    /// unlocked. A running process always holds one (it makes its next file, locked, before it
    /// lets go of the current one), so after locking them all, none may have appeared since.
    fn stopped(&self, node: &str, names: &[String]) -> Option<Vec<(String, File)>> {
        let mut files = Vec::with_capacity(names.len());
        for name in names {
            let reader = File::open(self.dir.join(name)).ok()?;
            reader.try_lock().ok()?;
            files.push((name.clone(), reader));
        }
        let prefix = format!("{node}.");
        let now = std::fs::read_dir(&self.dir).ok()?;
        let appeared = now.flatten().any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(&prefix) && name.ends_with(".log") && !names.contains(&name)
        });
        (!appeared).then_some(files)
    }

    /// Copy a stopped node's files (each from where it was copied to), record the openings it
    /// left unclosed, and remove the files.
    fn adopt(&self, node: &str, files: Vec<(String, File)>) {
        let loaded = self.store.read(|conn| {
            repo::log_open(conn, node)
                .map(|t| Openings::from_text(t.as_deref().unwrap_or("")))
                .map_err(ApiError::from)
        });
        let mut open = match loaded {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "reading a stopped process's audit log state failed");
                return;
            }
        };
        for (name, reader) in &files {
            let log = name.clone();
            let from = match self
                .store
                .read(|conn| repo::log_copied(conn, &log).map_err(ApiError::from))
            {
                Ok(at) => at as u64,
                Err(e) => {
                    tracing::error!(error = %e, "reading how far an audit log file was copied failed");
                    return;
                }
            };
            let end = reader.metadata().map(|m| m.len()).unwrap_or(0);
            let file = FileCopy {
                store: &self.store,
                node,
                name,
                reader,
            };
            if let Err((_, e)) = file.copy(from, end, &mut open, |_| {}) {
                tracing::error!(error = %e, file = %name, "copying a stopped process's audit log failed");
                return;
            }
        }
        let unclosed = open.len();
        let node_id = node.to_owned();
        let recorded = self.store.write_alone(move |conn| {
            let events = open.into_events(conn)?;
            repo::append(conn, &events)?;
            repo::forget_log_open(conn, &node_id)?;
            Ok::<_, ApiError>(())
        });
        if let Err(e) = recorded {
            tracing::error!(error = %e, "recording a stopped process's unclosed audit openings failed");
            return;
        }
        if unclosed > 0 {
            tracing::warn!(
                interactions = unclosed,
                "a stopped process left interactions without a recorded outcome; recorded as such"
            );
        }
        for (name, _) in &files {
            tracing::info!(file = %name, "audit log of a stopped process copied");
            self.remove(name);
        }
    }
}

/// The openings copied past and not closed yet: by number, the provisional record and how
/// many of its closing's lines were seen.
#[derive(Debug, Default, Clone)]
struct Openings(BTreeMap<u64, (NewEvent, u64)>);

impl Openings {
    fn len(&self) -> usize {
        self.0.len()
    }

    /// Take in one line: an opening is kept until its closing's lines have all been seen;
    /// records (of a closing, or untagged) go to `events`.
    fn take(&mut self, line: Line, events: &mut Vec<NewEvent>) {
        match line {
            Line::Record(e) => events.push(e),
            Line::Opening(id, e) => {
                self.0.insert(id, (e, 0));
            }
            Line::Closing(id, count, e) => {
                if let Some(e) = e {
                    events.push(e);
                }
                if let Some((_, seen)) = self.0.get_mut(&id) {
                    *seen += 1;
                    if *seen >= count {
                        self.0.remove(&id);
                    }
                }
            }
        }
    }

    /// As stored in `audit_log_open`: one line per opening, `number TAB seen TAB record`.
    fn to_text(&self) -> String {
        let mut buf = Vec::new();
        for (id, (e, seen)) in &self.0 {
            let _ = write!(buf, "{id}\t{seen}\t");
            // Each was decoded from a line, so it encodes as one.
            if encode(e, &mut buf).is_err() {
                buf.push(b'\n');
            }
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    fn from_text(text: &str) -> Openings {
        let mut open = Openings::default();
        for line in text.lines() {
            let mut fields = line.splitn(3, '\t');
            let (Some(id), Some(seen), Some(rest)) = (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            if let (Ok(id), Ok(seen), Some(e)) = (id.parse(), seen.parse(), decode(rest.as_bytes()))
            {
                open.0.insert(id, (e, seen));
            }
        }
        open
    }

    /// The records of the openings that were never closed: each its provisional record, with
    /// the resident of the resource it asked for when that can be told.
    fn into_events(self, conn: &mut crate::store::DbConn) -> Result<Vec<NewEvent>, ApiError> {
        self.0
            .into_values()
            .map(|(mut e, _)| {
                crate::services::audit::attribute_unclosed(conn, &mut e)?;
                Ok(e)
            })
            .collect()
    }
}

/// What a line of the log is tagged with.
#[derive(Debug, Clone, Copy)]
enum Tag {
    /// A record on its own.
    None,
    /// The opening with this number.
    Opening(u64),
    /// One of the lines (this many) that close the opening with this number.
    Closing(u64, u64),
}

impl Tag {
    /// `o<number> TAB` or `c<number>/<count> TAB` before the record (a closing without
    /// records is the tag alone).
    fn encode(self, buf: &mut Vec<u8>) -> std::io::Result<()> {
        match self {
            Tag::None => Ok(()),
            Tag::Opening(id) => write!(buf, "o{id}\t"),
            Tag::Closing(id, count) => write!(buf, "c{id}/{count}\t"),
        }
    }
}

/// A line of the log, read back.
#[derive(Debug)]
enum Line {
    Record(NewEvent),
    Opening(u64, NewEvent),
    Closing(u64, u64, Option<NewEvent>),
}

fn decode_line(line: &[u8]) -> Option<Line> {
    match line.first()? {
        b'o' | b'c' => {
            let tab = line.iter().position(|b| *b == b'\t');
            let (tag, rest) = match tab {
                Some(t) => (&line[1..t], Some(&line[t + 1..])),
                None => (&line[1..], None),
            };
            let tag = std::str::from_utf8(tag).ok()?;
            if line[0] == b'o' {
                Some(Line::Opening(tag.parse().ok()?, decode(rest?)?))
            } else {
                let (id, count) = tag.split_once('/')?;
                let (id, count) = (id.parse().ok()?, count.parse().ok()?);
                match rest {
                    Some(r) => Some(Line::Closing(id, count, Some(decode(r)?))),
                    None if count == 0 => Some(Line::Closing(id, 0, None)),
                    None => None,
                }
            }
        }
        _ => decode(line).map(Line::Record),
    }
}

/// One record as a line: `recorded TAB flagged TAB resident TAB content LF`. The content is
/// compact JSON, which escapes every control character, and a resident is a resource id.
fn encode(e: &NewEvent, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let resident = e.resident.as_deref().unwrap_or("");
    if [resident, e.content.as_str()]
        .iter()
        .any(|s| s.bytes().any(|b| b == b'\n' || b == b'\t'))
    {
        return Err(std::io::Error::other(
            "an audit record holds a line break or tab",
        ));
    }
    let _ = write!(buf, "{}\t{}\t", e.recorded, u8::from(e.flagged));
    buf.extend_from_slice(resident.as_bytes());
    buf.push(b'\t');
    buf.extend_from_slice(e.content.as_bytes());
    buf.push(b'\n');
    Ok(())
}

fn decode(line: &[u8]) -> Option<NewEvent> {
    let line = std::str::from_utf8(line).ok()?;
    let mut fields = line.splitn(4, '\t');
    let recorded = fields.next()?.parse().ok()?;
    let flagged = match fields.next()? {
        "0" => false,
        "1" => true,
        _ => return None,
    };
    let resident = fields.next()?;
    let content = fields.next()?;
    if content.is_empty() {
        return None;
    }
    Some(NewEvent {
        recorded,
        resident: (!resident.is_empty()).then(|| resident.to_owned()),
        flagged,
        content: content.to_owned(),
    })
}

/// One log file of `node` being copied into the database.
struct FileCopy<'a> {
    store: &'a Store,
    node: &'a str,
    name: &'a str,
    reader: &'a File,
}

impl FileCopy<'_> {
    /// Copy the complete lines between `from` and `end` into the database, one transaction
    /// per [`COPY_BATCH`] lines, each recording how far the file is copied and which of the
    /// node's openings are still unclosed (`open`, updated as batches commit). Returns where
    /// it stopped (with the error, if one stopped it); `done` hears of each batch's bytes.
    fn copy(
        &self,
        from: u64,
        end: u64,
        open: &mut Openings,
        mut done: impl FnMut(u64),
    ) -> Result<u64, (u64, ApiError)> {
        let name = self.name;
        let mut at = from;
        let mut buf = Vec::new();
        while at < end {
            buf.resize((end - at).min(READ_CHUNK) as usize, 0);
            let n = match self.reader.read_at(&mut buf, at) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => return Err((at, ApiError::internal(e))),
            };
            // Past the last record of a preallocated file: zeros.
            let data_end = buf[..n].iter().position(|b| *b == 0);
            let chunk = &buf[..data_end.unwrap_or(n)];
            let mut events = Vec::new();
            let mut after = open.clone();
            let mut consumed = 0usize;
            let mut skipped = 0usize;
            for line in chunk.split_inclusive(|b| *b == b'\n').take(COPY_BATCH) {
                if line.last() != Some(&b'\n') {
                    break;
                }
                consumed += line.len();
                match decode_line(&line[..line.len() - 1]) {
                    Some(l) => after.take(l, &mut events),
                    None => skipped += 1,
                }
            }
            if skipped > 0 {
                tracing::error!(file = %name, offset = at, lines = skipped, "unreadable audit log lines skipped");
            }
            if consumed == 0 {
                // No complete line: the tail of a file whose writer was cut short.
                if n as u64 == READ_CHUNK && data_end.is_none() {
                    tracing::error!(file = %name, offset = at, "an audit log line longer than the read size skipped");
                    at += READ_CHUNK;
                    continue;
                }
                break;
            }
            let next = at + consumed as u64;
            let (log, node) = (name.to_owned(), self.node.to_owned());
            let state = (after.len() + open.len() > 0).then(|| after.to_text());
            self.store
                .write_alone(move |conn| {
                    repo::append(conn, &events)?;
                    repo::set_log_copied(conn, &log, next as i64)?;
                    if let Some(text) = state {
                        repo::set_log_open(conn, &node, &text)?;
                    }
                    Ok::<_, ApiError>(())
                })
                .map_err(|e| (at, e))?;
            *open = after;
            done(consumed as u64);
            at = next;
        }
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: usize) -> NewEvent {
        NewEvent {
            recorded: 1_764_000_000_000 + n as i64,
            resident: Some(format!("r{n}")),
            flagged: false,
            content: format!(
                r#"{{"resourceType":"AuditEvent","n":{n},"pad":"{}"}}"#,
                "x".repeat(200)
            ),
        }
    }

    fn store(dir: &Path) -> Store {
        let url =
            crate::store::DatabaseUrl::Sqlite(dir.join("t.db").to_string_lossy().into_owned());
        crate::store::migrate(&url).unwrap();
        Store::open(&url, 2, Arc::new(crate::protect::Protection::disabled())).unwrap()
    }

    /// The records in the trail, by their number in [`event`] (provisional ones: 1000 + n).
    fn trail(store: &Store) -> Vec<i64> {
        let mut seen: Vec<i64> = store
            .read(|c| {
                repo::list(c, None, false, None, None, None, 1000)
                    .map(|v| v.iter().map(|e| e.recorded - 1_764_000_000_000).collect())
                    .map_err(ApiError::from)
            })
            .unwrap();
        seen.sort_unstable();
        seen
    }

    #[actix_rt::test]
    async fn files_are_replaced_once_copied_and_nothing_is_lost_or_doubled() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let logs = dir.path().join("audit-log");
        let log = AuditLog::open_sized(&logs, store.clone(), Durability::Disk, 2048).unwrap();
        let mut held = Vec::new();
        for n in 0..60 {
            if n % 3 == 0 {
                log.append(&[event(n)]).await.unwrap();
            } else {
                // Openings, closed at once or a few records later (across a replaced file).
                held.push((log.begin(&event(1000 + n)).unwrap().unwrap(), n));
                if n % 3 == 2 {
                    for (o, m) in held.drain(..) {
                        log.close(o, &[event(m)]).await.unwrap();
                    }
                }
            }
            if n % 7 == 0 {
                log.flush().await;
            }
        }
        for (o, m) in held.drain(..) {
            log.close(o, &[event(m)]).await.unwrap();
        }
        log.flush().await;
        // The copier replaces a fully copied file on its next round.
        let files = || -> Vec<String> {
            std::fs::read_dir(&logs)
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while files().iter().any(|f| f.ends_with(".000001.log")) {
            assert!(Instant::now() < deadline, "never replaced: {:?}", files());
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(files().len(), 1, "{:?}", files());
        log.append(&[event(60)]).await.unwrap();
        log.flush().await;
        assert_eq!(trail(&store), (0..=60).collect::<Vec<i64>>());
    }

    /// A process stops (its log dropped without a drain, as in a crash) with openings unclosed,
    /// some already copied past, one of them closed in part: the next process records each
    /// once, as its provisional record, beside the closed ones' records, none doubled.
    #[actix_rt::test]
    async fn openings_a_stopped_process_left_unclosed_are_recorded_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let logs = dir.path().join("audit-log");
        let log = AuditLog::open(&logs, store.clone(), Durability::Disk).unwrap();
        let closed = log.begin(&event(1001)).unwrap().unwrap();
        let copied_past = log.begin(&event(1002)).unwrap().unwrap();
        let in_part = log.begin(&event(1003)).unwrap().unwrap();
        log.close(closed, &[event(1), event(2)]).await.unwrap();
        log.flush().await;
        // Copied past: the two open ones are kept with the copy position.
        let kept = store
            .read(|c| repo::log_open(c, &log.inner.node).map_err(ApiError::from))
            .unwrap()
            .unwrap();
        assert_eq!(Openings::from_text(&kept).len(), 2, "{kept}");
        // Closed in part: one line of a closing of two (the second never written).
        let mut line = Vec::new();
        Tag::Closing(in_part.id, 2).encode(&mut line).unwrap();
        encode(&event(3), &mut line).unwrap();
        line.push(b'\n');
        log.inner.append_raw(&line);
        // Opened and not copied yet; then the process stops.
        let _fresh = log.begin(&event(1004)).unwrap().unwrap();
        let _ = copied_past;
        let stopped = log.inner.node.clone();
        drop(log);
        std::thread::sleep(Duration::from_millis(200));
        let next = AuditLog::open(&logs, store.clone(), Durability::Disk).unwrap();
        assert_eq!(trail(&store), vec![1, 2, 3, 1002, 1003, 1004]);
        // The stopped node's state is gone with its files.
        let left = store
            .read(|c| repo::log_open(c, &stopped).map_err(ApiError::from))
            .unwrap();
        assert!(left.is_none());
        drop(next);
    }

    /// An opening not closed yet is not copied, and nothing of the next process's adoption
    /// touches a running process's openings.
    #[actix_rt::test]
    async fn a_running_process_openings_are_left_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let logs = dir.path().join("audit-log");
        let first = AuditLog::open(&logs, store.clone(), Durability::Disk).unwrap();
        let open = first.begin(&event(1001)).unwrap().unwrap();
        first.flush().await;
        let second = AuditLog::open(&logs, store.clone(), Durability::Disk).unwrap();
        second.inner.adopt_orphans();
        assert_eq!(trail(&store), Vec::<i64>::new());
        first.close(open, &[event(1)]).await.unwrap();
        first.flush().await;
        assert_eq!(trail(&store), vec![1]);
        drop(second);
    }

    #[test]
    fn tagged_lines_read_back() {
        let mut buf = Vec::new();
        Tag::Opening(7).encode(&mut buf).unwrap();
        encode(&event(1), &mut buf).unwrap();
        let line = decode_line(&buf[..buf.len() - 1]).unwrap();
        assert!(matches!(line, Line::Opening(7, ref e) if e.recorded == event(1).recorded));
        buf.clear();
        Tag::Closing(7, 2).encode(&mut buf).unwrap();
        encode(&event(2), &mut buf).unwrap();
        let line = decode_line(&buf[..buf.len() - 1]).unwrap();
        assert!(matches!(line, Line::Closing(7, 2, Some(_))));
        assert!(matches!(
            decode_line(b"c7/0"),
            Some(Line::Closing(7, 0, None))
        ));
        // A closing that names records but holds none, or a bad tag: unreadable.
        assert!(decode_line(b"c7/1").is_none());
        assert!(decode_line(b"cx/1\t1\t0\t\t{}").is_none());
        assert!(decode_line(b"o\t1\t0\t\t{}").is_none());
        // Openings seen and closed in part survive their stored form.
        let mut open = Openings::default();
        let mut events = Vec::new();
        open.take(Line::Opening(1, event(1001)), &mut events);
        open.take(Line::Opening(2, event(1002)), &mut events);
        open.take(Line::Closing(2, 2, Some(event(2))), &mut events);
        let back = Openings::from_text(&open.to_text());
        assert_eq!(back.0.len(), 2);
        assert_eq!(back.0[&2].1, 1);
        assert_eq!(back.0[&1].0.content, event(1001).content);
        open.take(Line::Closing(2, 2, Some(event(3))), &mut events);
        open.take(Line::Closing(1, 0, None), &mut events);
        assert_eq!(open.len(), 0);
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn a_record_survives_its_line() {
        let e = NewEvent {
            recorded: 1_764_000_000_123,
            resident: Some("abc-1".to_owned()),
            flagged: true,
            content: r#"{"a":"x\ty\nz","b":[1,2]}"#.to_owned(),
        };
        let mut buf = Vec::new();
        encode(&e, &mut buf).unwrap();
        assert_eq!(buf.iter().filter(|b| **b == b'\n').count(), 1);
        let back = decode(&buf[..buf.len() - 1]).unwrap();
        assert_eq!(back.recorded, e.recorded);
        assert_eq!(back.resident, e.resident);
        assert!(back.flagged);
        assert_eq!(back.content, e.content);
        let none = NewEvent {
            resident: None,
            flagged: false,
            ..e.clone()
        };
        buf.clear();
        encode(&none, &mut buf).unwrap();
        let back = decode(&buf[..buf.len() - 1]).unwrap();
        assert_eq!(back.resident, None);
        assert!(!back.flagged);
        // A raw line break would split the record: refused.
        let broken = NewEvent {
            content: "{\"a\":\"\n\"}".to_owned(),
            ..e
        };
        assert!(encode(&broken, &mut Vec::new()).is_err());
        assert!(decode(b"12\t2\t\t{}").is_none());
        assert!(decode(b"x\t0\t\t{}").is_none());
        assert!(decode(b"12\t0\t\t").is_none());
    }
}
