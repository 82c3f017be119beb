//! Emergency access (break-glass, 破窗) for a bounded time.
//!
//! A doctor states an emergency in `X-Break-Glass-Reason`: that request is not narrowed by
//! consent, and every resident it touched is granted to that doctor for
//! `break_glass_minutes` (a grant already running is extended). While a grant runs, the
//! doctor's requests without the header see that resident's record as well, and every
//! access to it is audited as break-glass (purpose ETREAT + BTG, flagged, with the stated
//! reason), so the resident lists each one (`AuditEvent?purpose=BTG`). Grants are rows in the
//! database, so every server process honours them; each process reads a doctor's grants at
//! most once a second (a grant made on another process may take that long to be seen here).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::clock;
use crate::error::ApiError;
use crate::store::{Store, Tx, access as repo};

/// How long a doctor's grants are reused before they are read again.
const RECHECK: Duration = Duration::from_secs(1);

/// Running grants of one doctor: resident → (reason, expires in ms).
pub type Granted = HashMap<String, (String, i64)>;

/// The grants of this database.
pub struct Grants {
    minutes: u32,
    cache: Mutex<HashMap<String, (Instant, Arc<Granted>)>>,
}

impl Grants {
    pub fn new(minutes: u32) -> Grants {
        Grants {
            minutes,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Arc<Granted>)>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The grants of doctor `sub` running now, when they were read less than a second ago (no
    /// database needed).
    pub fn cached(&self, sub: &str) -> Option<Arc<Granted>> {
        let now = clock::now_millis();
        let cache = self.cache();
        let (at, g) = cache.get(sub)?;
        if at.elapsed() >= RECHECK {
            return None;
        }
        if g.values().all(|(_, expires)| *expires > now) {
            return Some(g.clone());
        }
        Some(Arc::new(
            g.iter()
                .filter(|(_, (_, expires))| *expires > now)
                .map(|(r, v)| (r.clone(), v.clone()))
                .collect(),
        ))
    }

    /// [`Grants::active`] in a read transaction of its own.
    pub fn active_in(&self, store: &Store, sub: &str) -> Result<Arc<Granted>, ApiError> {
        store.read(|conn| self.active(conn, sub))
    }

    /// The grants of doctor `sub` running now.
    pub fn active(&self, conn: &mut Tx<'_>, sub: &str) -> Result<Arc<Granted>, ApiError> {
        if let Some(g) = self.cached(sub) {
            return Ok(g);
        }
        let rows = repo::active(conn, sub, clock::now_millis())?;
        let granted: Arc<Granted> = Arc::new(
            rows.into_iter()
                .map(|(r, reason, expires)| (r, (reason, expires)))
                .collect(),
        );
        let mut cache = self.cache();
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(sub.to_owned(), (Instant::now(), granted.clone()));
        Ok(granted)
    }

    /// Forget what was read of doctor `sub`'s grants (they changed elsewhere).
    pub fn forget(&self, sub: &str) {
        self.cache().remove(sub);
    }

    /// Forget every doctor's grants read so far.
    pub fn forget_all(&self) {
        self.cache().clear();
    }

    /// Grant doctor `sub` the `residents` an emergency request touched.
    pub async fn grant(
        &self,
        store: &Store,
        sub: &str,
        residents: Vec<String>,
        reason: &str,
    ) -> Result<(), ApiError> {
        if residents.is_empty() {
            return Ok(());
        }
        let now = clock::now_millis();
        let expires = now + i64::from(self.minutes) * 60_000;
        let (s, r) = (sub.to_owned(), reason.to_owned());
        store
            .append_async(move |c| {
                repo::grant(c, &s, &residents, &r, now, expires).map_err(ApiError::from)
            })
            .await?;
        self.cache().remove(sub);
        Ok(())
    }
}
