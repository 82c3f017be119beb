-- Public-health statistics (国家基本公共卫生服务规范 indicators): what the indicators count,
-- kept in step with the record in the writes' own transactions, so that an evaluation is a
-- few grouped reads of this database and never a scan of the resources' JSON.

-- Resident population by area (GB/T 2260 code of a district, or a 9-digit township code),
-- year, sex and age band: the denominators (`huimin stats population FILE.csv`).
CREATE TABLE stat_population (
    area TEXT COLLATE "C" NOT NULL,
    year INTEGER NOT NULL,
    -- male, female
    sex TEXT COLLATE "C" NOT NULL,
    age_from INTEGER NOT NULL,
    age_to INTEGER NOT NULL,
    population BIGINT NOT NULL,
    PRIMARY KEY (area, year, sex, age_from)
);

-- One row per golden resident: what the strata need (home area code, sex, birth date as
-- YYYYMMDD), the institution that first recorded the resident (建档机构), when, and whether
-- an institution's record carries a resident health card number.
CREATE TABLE stat_residents (
    resident TEXT COLLATE "C" PRIMARY KEY,
    area TEXT COLLATE "C",
    sex TEXT COLLATE "C",
    birth INTEGER,
    org TEXT COLLATE "C",
    since BIGINT,
    card INTEGER NOT NULL DEFAULT 0,
    golden INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX stat_residents_area ON stat_residents (area);

-- What one resource counts for: a diagnosis (htn, dm), a follow-up or health check, a visit,
-- a measurement with whether it is on target, an appointment, a family-doctor contract.
-- `resident` follows the resource's golden resident (links and merges move it too).
CREATE TABLE stat_facts (
    res_type TEXT COLLATE "C" NOT NULL,
    res_id TEXT COLLATE "C" NOT NULL,
    kind TEXT COLLATE "C" NOT NULL,
    resident TEXT COLLATE "C",
    org TEXT COLLATE "C",
    -- when (ms): the event's time, the diagnosis's onset, the contract's start
    at BIGINT NOT NULL,
    -- the end of what lasts (a contract), else NULL
    until_at BIGINT,
    -- a number the indicator averages (days), else NULL
    value DOUBLE PRECISION,
    -- a yes or no the indicator counts (on target, booked, no-show, timely)
    flag INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (res_type, res_id, kind)
);
CREATE INDEX stat_facts_kind_at ON stat_facts (kind, at);
-- A resident's facts of one kind in a period: one seek per resident of an evaluation (a
-- planner without statistics would otherwise take (kind, at) and read every fact of the kind
-- per resident); a merge moves facts kind by kind through it.
CREATE INDEX stat_facts_kind_resident ON stat_facts (kind, resident, at);
