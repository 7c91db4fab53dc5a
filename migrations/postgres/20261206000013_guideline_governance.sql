-- Rule-set versions go live per clinic only through recorded sign-offs: two distinct staff
-- with guideline.approve each acknowledge the impact report of the version against the one in
-- force for the clinic (its hash), for the file's content hash; a rejection carries its reason.
-- An activation names the version, the content hash and who activated it; the newest per clinic
-- and guideline is in force. Both are also audit entries (sealed where keys are in use).
CREATE TABLE guideline_sign_offs (
    id            TEXT PRIMARY KEY NOT NULL,
    guideline_id  TEXT NOT NULL,
    version       TEXT NOT NULL,
    content_hash  TEXT NOT NULL,
    tenant        TEXT NOT NULL,
    signer        TEXT NOT NULL,
    decision      TEXT NOT NULL CHECK (decision IN ('approve', 'reject')),
    reason        TEXT,
    impact_hash   TEXT NOT NULL,
    -- The version in force for the clinic when the report signed off on was computed: an
    -- approval counts only while that version is still the one in force.
    in_force_version TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX guideline_sign_offs_version ON guideline_sign_offs (guideline_id, version, tenant);
CREATE TABLE guideline_activations (
    id            TEXT PRIMARY KEY NOT NULL,
    guideline_id  TEXT NOT NULL,
    version       TEXT NOT NULL,
    content_hash  TEXT NOT NULL,
    tenant        TEXT NOT NULL,
    activated_by  TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX guideline_activations_tenant ON guideline_activations (tenant, guideline_id, created_at);
-- The service role records and reads them; it never changes or removes one.
GRANT SELECT, INSERT ON guideline_sign_offs, guideline_activations TO stride_service;
