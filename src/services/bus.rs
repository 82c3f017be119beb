//! Telling the other server processes of one database that cached decisions changed, through
//! Redis publish/subscribe (optional: `redis_url`).
//!
//! Without Redis every process asks the database at most once a second whether a Consent
//! changed, so a change made through one process applies in the others within a second. With
//! Redis, a process that writes a Consent, a bundle, a merge or an emergency grant publishes it
//! on the database's channel and every process drops what it cached at once; the database is
//! then asked only every `consent_recheck_ms` as a safety net (a message lost while a process
//! was reconnecting).
//!
//! Publishing never delays a request: messages go through a queue to a publisher thread. Both
//! threads reconnect after an error, and a subscriber that reconnects drops its caches, since
//! it may have missed messages meanwhile.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context as _;

use crate::services::access::break_glass::Grants;
use crate::services::access::consent::Engine;

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A Consent may have been written: decisions are checked against the database again.
    Consent,
    /// Residents changed shape (a merge): every Consent is read again.
    Residents,
    /// A doctor's emergency grants changed.
    Grants(String),
}

impl Change {
    fn encode(&self) -> String {
        match self {
            Change::Consent => "consent".to_owned(),
            Change::Residents => "residents".to_owned(),
            Change::Grants(sub) => format!("grants:{sub}"),
        }
    }

    fn decode(s: &str) -> Option<Change> {
        match s {
            "consent" => Some(Change::Consent),
            "residents" => Some(Change::Residents),
            _ => s
                .strip_prefix("grants:")
                .map(|sub| Change::Grants(sub.to_owned())),
        }
    }
}

/// The publishing side; cheap to clone.
#[derive(Clone)]
pub struct Bus {
    queue: mpsc::Sender<Change>,
}

impl Bus {
    /// Connect to Redis at `url` (refusing to start when it cannot be reached), and start the
    /// publisher and the subscriber of `channel`, which applies changes to `consent` and
    /// `grants`.
    pub fn start(
        url: &str,
        channel: String,
        consent: Arc<Engine>,
        grants: Arc<Grants>,
    ) -> anyhow::Result<Bus> {
        let client =
            redis::Client::open(url).context("invalid setting redis_url (HUIMIN_REDIS_URL)")?;
        let mut probe = client
            .get_connection_with_timeout(Duration::from_secs(5))
            .context("cannot reach Redis (HUIMIN_REDIS_URL)")?;
        redis::cmd("PING")
            .query::<String>(&mut probe)
            .context("Redis (HUIMIN_REDIS_URL) does not answer PING")?;
        let (tx, rx) = mpsc::channel::<Change>();
        let (pc, pch) = (client.clone(), channel.clone());
        std::thread::Builder::new()
            .name("redis-publish".to_owned())
            .spawn(move || publisher(&pc, &pch, &rx))
            .context("starting the Redis publisher")?;
        std::thread::Builder::new()
            .name("redis-subscribe".to_owned())
            .spawn(move || subscriber(&client, &channel, &consent, &grants))
            .context("starting the Redis subscriber")?;
        Ok(Bus { queue: tx })
    }

    /// Tell every process (this one included) of `change`.
    pub fn publish(&self, change: Change) {
        let _ = self.queue.send(change);
    }
}

fn publisher(client: &redis::Client, channel: &str, rx: &mpsc::Receiver<Change>) {
    let mut conn: Option<redis::Connection> = None;
    while let Ok(change) = rx.recv() {
        let message = change.encode();
        for attempt in 0..3 {
            if conn.is_none() {
                conn = client
                    .get_connection_with_timeout(Duration::from_secs(2))
                    .ok();
            }
            let Some(c) = conn.as_mut() else {
                std::thread::sleep(Duration::from_millis(100 << attempt));
                continue;
            };
            match redis::cmd("PUBLISH")
                .arg(channel)
                .arg(&message)
                .query::<i64>(c)
            {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "publishing a cache change to Redis failed");
                    conn = None;
                }
            }
        }
    }
}

fn subscriber(client: &redis::Client, channel: &str, consent: &Engine, grants: &Grants) {
    loop {
        let listened: redis::RedisResult<()> = (|| {
            let mut conn = client.get_connection_with_timeout(Duration::from_secs(5))?;
            let mut sub = conn.as_pubsub();
            sub.subscribe(channel)?;
            // Messages may have been missed while (re)connecting.
            consent.reload();
            grants.forget_all();
            loop {
                let msg = sub.get_message()?;
                let payload: String = msg.get_payload()?;
                match Change::decode(&payload) {
                    Some(Change::Consent) => consent.changed(),
                    Some(Change::Residents) => consent.reload(),
                    Some(Change::Grants(sub)) => grants.forget(&sub),
                    None => {}
                }
            }
        })();
        if let Err(e) = listened {
            tracing::warn!(error = %e, "the Redis subscription failed; reconnecting");
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The channel of the database `store` opens: every process of this database shares it,
/// however each reaches the database (it is named by the identity the database holds, not by
/// its URL), and processes of other databases on the same Redis do not hear it.
pub fn channel_of(store: &crate::store::Store) -> Result<String, crate::error::ApiError> {
    let token = store
        .read(|conn| crate::store::instance_token(conn).map_err(crate::error::ApiError::from))?;
    Ok(format!("huimin:{token}:changes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_round_trip() {
        for c in [
            Change::Consent,
            Change::Residents,
            Change::Grants("dr-1".into()),
        ] {
            assert_eq!(Change::decode(&c.encode()), Some(c));
        }
        assert_eq!(Change::decode("other"), None);
    }
}
