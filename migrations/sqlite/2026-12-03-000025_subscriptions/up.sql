-- Notifications (subscribe/publish, WS/T 790 service 14): one row per active Subscription,
-- written with it, holding what delivery needs (the criteria's type and query, the endpoint and
-- its headers, the payload, the subscriber it delivers as) and its delivery state.
CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY,
    res_type TEXT NOT NULL,
    criteria TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    -- JSON array of "Name: value"
    headers TEXT NOT NULL,
    -- NULL: notified with no body; else the payload's media type
    payload TEXT,
    -- JSON: the subscriber's identity (subject, role, institution, user, purpose, scopes)
    subscriber TEXT NOT NULL,
    active BOOLEAN NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    retry_at BIGINT NOT NULL DEFAULT 0,
    error TEXT
);
CREATE INDEX subscriptions_type ON subscriptions (res_type);

-- The outbox: one row per change a Subscription of its type may be told of, written in the
-- change's own transaction, deleted once delivered (or once it turns out not to match). A
-- deliverer leases rows before it sends them, so that processes sharing the database do not
-- send the same row twice while both run.
CREATE TABLE notifications (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription TEXT NOT NULL,
    res_type TEXT NOT NULL,
    res_id TEXT NOT NULL,
    version_id BIGINT NOT NULL,
    created BIGINT NOT NULL,
    lease_until BIGINT NOT NULL DEFAULT 0,
    lease_owner BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX notifications_subscription ON notifications (subscription, seq);
