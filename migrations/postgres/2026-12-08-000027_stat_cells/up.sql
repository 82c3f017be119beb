-- The statistics' aggregates (src/store/stats/cells.rs): what the golden residents and the
-- events count for, summed by indicator, period and finest stratum, kept exact in each
-- write's transaction, so that an evaluation reads cells instead of its members. A database
-- that kept facts before this table existed has them summed at the next start.
CREATE TABLE stat_cells (
    -- res (residents), a presence kind, a diagnosis kind (a programme), an event kind
    ind TEXT COLLATE "C" NOT NULL,
    -- YYYYMM a month, YYYY*100+12+q a quarter, YYYY*100 a year; 0 for residents
    period INTEGER NOT NULL,
    -- home area code ('' unknown)
    area TEXT COLLATE "C" NOT NULL,
    sex TEXT COLLATE "C" NOT NULL,
    -- age band (0-4, -1 unknown); a resident row's birth year
    age INTEGER NOT NULL,
    -- the resident's first institution, or the event's
    org TEXT COLLATE "C" NOT NULL,
    flag INTEGER NOT NULL,
    n BIGINT NOT NULL,
    total DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (ind, period, area, sex, age, org, flag)
)
-- Room on each page, so that an upsert's new row version stays on its page (heap-only: no
-- new index entry).
WITH (fillfactor = 50);
