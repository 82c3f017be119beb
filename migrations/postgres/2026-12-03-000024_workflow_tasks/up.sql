-- Two-way referrals (双向转诊) and remote consultations (远程会诊): one row per workflow Task,
-- written with the Task in its transaction. The access that follows a referral reads it (which
-- residents an institution's doctors may see for the referral, and until when), the overdue
-- sweep finds the Tasks past their deadline here, and the state machine knows a workflow Task
-- by it.
CREATE TABLE workflow_tasks (
    task_id TEXT COLLATE "C" PRIMARY KEY,
    request_id TEXT COLLATE "C" NOT NULL,
    -- referral-up, referral-down or consultation
    kind TEXT COLLATE "C" NOT NULL,
    resident TEXT COLLATE "C" NOT NULL,
    -- Organization/<id> that asked (the Task's custodian) and that receives
    requester TEXT COLLATE "C" NOT NULL,
    owner TEXT COLLATE "C" NOT NULL,
    -- Practitioner/<id> when the Task is owned by one practitioner's role
    owner_practitioner TEXT COLLATE "C",
    status TEXT COLLATE "C" NOT NULL,
    -- restriction.period.end (ms), the deadline to accept
    deadline BIGINT,
    overdue BOOLEAN NOT NULL DEFAULT FALSE,
    opened BIGINT NOT NULL,
    -- when the access the Task opens ends (ms); NULL while the Task is open
    closes BIGINT
);
CREATE INDEX workflow_tasks_owner ON workflow_tasks (owner, closes);
CREATE INDEX workflow_tasks_due ON workflow_tasks (deadline) WHERE overdue = FALSE AND status IN ('requested', 'received');
