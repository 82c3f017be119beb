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
//! Each process holds a lock on its own file. Files whose process stopped (a crash, or a stop
//! before everything was copied) are adopted by the next process that starts on the same data
//! directory, and every minute by the running ones, and copied the same way; a line cut short
//! by a crash is dropped (its read was never answered).

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
        crate::files::restrict(dir, 0o700)?;
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
                spare: None,
            }),
            appended: AtomicU64::new(0),
            copied: watch::Sender::new(0),
            synced: watch::Sender::new(0),
            sync_failed: AtomicBool::new(false),
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
        let inner = &self.inner;
        let end = inner.write(events).map_err(|e| {
            tracing::error!(error = %e, events = events.len(), "the audit log could not be written");
            unavailable()
        })?;
        if inner.durability == Durability::Disk {
            let mut synced = inner.synced.subscribe();
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
        let waited = tokio::time::timeout(FLUSH_WAIT, copied.wait_for(|c| *c >= target)).await;
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
                if inner.store.is_closed() {
                    break;
                }
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
    /// Append one line per record to the current file; returns the end (over all this
    /// process's files) the records reach.
    fn write(&self, events: &[NewEvent]) -> std::io::Result<u64> {
        let mut buf = Vec::with_capacity(events.iter().map(|e| e.content.len() + 64).sum());
        for e in events {
            encode(e, &mut buf)?;
        }
        let mut current = lock(&self.current);
        let at = current.len;
        current.file.write_all_at(&buf, at)?;
        current.len += buf.len() as u64;
        Ok(self.appended.fetch_add(buf.len() as u64, Ordering::AcqRel) + buf.len() as u64)
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
        let store = &self.store;
        let copied = &self.copied;
        let result = copy_range(store, &cursor.name, &cursor.reader, cursor.at, len, |n| {
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
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".log") || name.starts_with(&self.node) {
                continue;
            }
            let Ok(reader) = File::open(entry.path()) else {
                continue;
            };
            // Held by a running process: its own copier copies it.
            if reader.try_lock().is_err() {
                continue;
            }
            let log = name.clone();
            let from = match self
                .store
                .read(|conn| repo::log_copied(conn, &log).map_err(ApiError::from))
            {
                Ok(at) => at as u64,
                Err(e) => {
                    tracing::error!(error = %e, "reading how far an audit log file was copied failed");
                    continue;
                }
            };
            let end = reader.metadata().map(|m| m.len()).unwrap_or(0);
            match copy_range(&self.store, &name, &reader, from, end, |_| {}) {
                Ok(_) => {
                    tracing::info!(file = %name, "audit log of a stopped process copied");
                    self.remove(&name);
                }
                Err((_, e)) => {
                    tracing::error!(error = %e, file = %name, "copying a stopped process's audit log failed");
                }
            }
        }
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

/// Copy the complete lines of `name` between `from` and `end` into the database, one
/// transaction per [`COPY_BATCH`] records, each recording how far the file is copied. Returns
/// where it stopped (with the error, if one stopped it); `done` hears of each batch's bytes.
fn copy_range(
    store: &Store,
    name: &str,
    reader: &File,
    from: u64,
    end: u64,
    mut done: impl FnMut(u64),
) -> Result<u64, (u64, ApiError)> {
    let mut at = from;
    let mut buf = Vec::new();
    while at < end {
        buf.resize((end - at).min(READ_CHUNK) as usize, 0);
        let n = match reader.read_at(&mut buf, at) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return Err((at, ApiError::internal(e))),
        };
        // Past the last record of a preallocated file: zeros.
        let data_end = buf[..n].iter().position(|b| *b == 0);
        let chunk = &buf[..data_end.unwrap_or(n)];
        let mut events = Vec::new();
        let mut consumed = 0usize;
        let mut skipped = 0usize;
        for line in chunk.split_inclusive(|b| *b == b'\n') {
            if line.last() != Some(&b'\n') || events.len() == COPY_BATCH {
                break;
            }
            consumed += line.len();
            match decode(&line[..line.len() - 1]) {
                Some(e) => events.push(e),
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
        let log = name.to_owned();
        store
            .write_alone(move |conn| {
                repo::append(conn, &events)?;
                repo::set_log_copied(conn, &log, next as i64)?;
                Ok::<_, ApiError>(())
            })
            .map_err(|e| (at, e))?;
        done(consumed as u64);
        at = next;
    }
    Ok(at)
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

    #[actix_rt::test]
    async fn files_are_replaced_once_copied_and_nothing_is_lost_or_doubled() {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::store::DatabaseUrl::Sqlite(
            dir.path().join("t.db").to_string_lossy().into_owned(),
        );
        crate::store::migrate(&url).unwrap();
        let store = Store::open(
            &url,
            2,
            Arc::new(crate::protect::Protection::disabled()),
            crate::store::Thresholds::default(),
        )
        .unwrap();
        let logs = dir.path().join("audit-log");
        let log = AuditLog::open_sized(&logs, store.clone(), Durability::Disk, 2048).unwrap();
        for n in 0..60 {
            log.append(&[event(n)]).await.unwrap();
            if n % 7 == 0 {
                log.flush().await;
            }
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
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(files().len(), 1, "{:?}", files());
        log.append(&[event(60)]).await.unwrap();
        log.flush().await;
        let mut seen: Vec<i64> = store
            .read(|c| {
                repo::list(c, None, false, None, None, None, 1000)
                    .map(|v| v.iter().map(|e| e.recorded - 1_764_000_000_000).collect())
                    .map_err(ApiError::from)
            })
            .unwrap();
        seen.sort_unstable();
        assert_eq!(seen, (0..=60).collect::<Vec<i64>>());
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
