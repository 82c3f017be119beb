-- Emergency access grants (break-glass, 破窗): a doctor who stated an emergency reads the
-- residents that request touched without consent until `expires`; every access under a grant
-- is audited as break-glass with the stated reason.
CREATE TABLE break_glass (
    sub TEXT NOT NULL,          -- the doctor (token subject)
    resident TEXT NOT NULL,     -- the golden resident
    reason TEXT NOT NULL,
    granted BIGINT NOT NULL,    -- ms since the epoch
    expires BIGINT NOT NULL,
    PRIMARY KEY (sub, resident)
);
