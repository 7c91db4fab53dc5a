-- Every review action on a CarePlan, with the version it produced: a revised plan is a new
-- version, and earlier versions stay readable.
CREATE TABLE careplan_versions (
    careplan_id UUID NOT NULL REFERENCES careplans (id),
    version     INTEGER NOT NULL,
    action      TEXT NOT NULL CHECK (action IN ('approve', 'revise', 'reject')),
    reviewer    TEXT NOT NULL,
    reason      TEXT,
    resource    JSONB NOT NULL,
    reviewed_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (careplan_id, version)
);
GRANT SELECT, INSERT ON careplan_versions TO stride_service;
