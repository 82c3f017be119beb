//! The access a referral opens (转诊授权): the residents an institution receives referrals or
//! consultations for, while each is open (from the request until its Task ends, and for a
//! completed one `window` after it). Its doctors and system read those residents' records for
//! purpose COC through the one access door ([`crate::services::access::AccessFilter`]),
//! sensitive data excepted, unless the resident's Consent denies coordination of care to it;
//! each such read is audited with the Task as its reason.
//!
//! Read from `workflow_tasks` per institution, at most once a second by each process, and
//! again at once when this process wrote a workflow Task.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::clock;
use crate::error::ApiError;
use crate::store::{Context, Signal, Store, Tx};

/// How long an institution's open referrals are reused before they are read again.
const RECHECK: Duration = Duration::from_secs(1);

/// The open referrals of one institution: resident → the Task that opens the access.
pub type Open = HashMap<String, String>;

/// The referral access of one database.
pub struct Referrals {
    /// How long a completed Task keeps the access open, in ms.
    window_ms: i64,
    store: Arc<Context>,
    cache: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    at: Instant,
    epoch: u64,
    open: Arc<Open>,
}

impl Referrals {
    pub fn new(window_days: u32, store: Arc<Context>) -> Referrals {
        Referrals {
            window_ms: i64::from(window_days) * 86_400_000,
            store,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The open referrals of `org` when they were read less than a second ago and no
    /// workflow Task was written here since (no database needed).
    pub fn cached(&self, org: &str) -> Option<Arc<Open>> {
        let epoch = self.store.epoch(Signal::Workflow);
        let cache = self.cache();
        let e = cache.get(org)?;
        (e.epoch == epoch && e.at.elapsed() < RECHECK).then(|| e.open.clone())
    }

    /// The open referrals of `org` (`Organization/<id>`) now.
    pub fn open(&self, conn: &mut Tx<'_>, org: &str) -> Result<Arc<Open>, ApiError> {
        if let Some(o) = self.cached(org) {
            return Ok(o);
        }
        let epoch = self.store.epoch(Signal::Workflow);
        let now = clock::now_millis();
        let rows = crate::store::workflow::open_for(conn.conn(), org, now, self.window_ms)?;
        let open: Arc<Open> = Arc::new(rows.into_iter().collect());
        let mut cache = self.cache();
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(
            org.to_owned(),
            Entry {
                at: Instant::now(),
                epoch,
                open: open.clone(),
            },
        );
        Ok(open)
    }

    /// [`Referrals::open`] in a read transaction of its own.
    pub fn open_in(&self, store: &Store, org: &str) -> Result<Arc<Open>, ApiError> {
        store.read(|conn| self.open(conn, org))
    }
}
