//! History at every level, newest first, of what the caller may see: across resources the
//! versions of resources the caller may not see are left out (a page may then hold fewer
//! entries than asked, and carries no total); an instance the caller may not see answers as an
//! absent one.

use std::collections::HashMap;

use super::{HistoryScope, not_found, residents};
use crate::error::ApiError;
use crate::services::access::AccessFilter;
use crate::services::audit::Accessed;
use crate::store::Store;
use crate::store::record::{self as repo, Version};

/// One page of history.
pub struct HistoryPage {
    /// The versions shown, newest first.
    pub versions: Vec<Version>,
    /// Where the next page starts (the last version read, shown or not), when more follows.
    pub next: Option<i64>,
    /// What the page shows, for its audit events: (`Type/id`, resident) per version.
    pub touched: Accessed,
}

/// A page of history of `scope` for a caller with `access`: at most `count` versions older
/// than `before_seq`, changed since `since`.
pub fn history(
    store: &Store,
    access: &AccessFilter,
    scope: HistoryScope<'_>,
    since: Option<i64>,
    before_seq: Option<i64>,
    count: i64,
) -> Result<HistoryPage, ApiError> {
    let filtered = match scope {
        HistoryScope::Instance(..) => false,
        HistoryScope::Type(t) => access.may_hide(Some(t)),
        HistoryScope::System => access.may_hide(None),
    };
    let want = usize::try_from(count).unwrap_or(usize::MAX);
    let (mut versions, mut touched, more) = store.read(|conn| {
        if let HistoryScope::Instance(t, id) = scope
            && repo::find_current(conn, t, id)?.is_none()
        {
            return Err(not_found(t, id));
        }
        let mut rows = repo::history(conn, scope, since, before_seq, count + 1)?;
        let more = rows.len() > want;
        rows.truncate(want);
        let keys: Vec<(&str, &str)> = rows
            .iter()
            .map(|v| (v.res_type.as_str(), v.res_id.as_str()))
            .collect();
        let touched = residents(conn, &keys)?;
        Ok((rows, touched, more))
    })?;
    let next = versions.last().filter(|_| more).map(|v| v.seq);
    if let HistoryScope::Instance(t, id) = scope {
        let resident = touched.first().and_then(|(_, r)| r.as_deref());
        if !access.visible_in(store, t, id, resident)? {
            return Err(access.hidden(t, id));
        }
    }
    if filtered {
        // One verdict per resource, however many of its versions the page holds.
        let mut verdicts: HashMap<String, bool> = HashMap::new();
        let mut keep = Vec::with_capacity(versions.len());
        for ((key, resident), v) in touched.iter().zip(&versions) {
            let shown = match verdicts.get(key) {
                Some(b) => *b,
                None => {
                    let b = store
                        .read(|c| access.visible(c, &v.res_type, &v.res_id, resident.as_deref()))?;
                    verdicts.insert(key.clone(), b);
                    b
                }
            };
            keep.push(shown);
        }
        let mut k = keep.iter();
        versions.retain(|_| k.next().copied().unwrap_or(false));
        let mut k = keep.iter();
        touched.retain(|_| k.next().copied().unwrap_or(false));
    }
    Ok(HistoryPage {
        versions,
        next,
        touched,
    })
}
