-- The reads of each node whose audit records the node log holds only as an opening so far
-- (the interaction's provisional record, synced before its query ran) with no complete
-- closing yet, as of the position audit_log_copied names: written in the same transaction as
-- the records copied, so that the openings of a node that stops before closing them become
-- records of their own ("ended without a recorded outcome") and none is lost or doubled.
CREATE TABLE audit_log_open (
    node TEXT COLLATE "C" PRIMARY KEY,
    open TEXT COLLATE "C" NOT NULL
);
