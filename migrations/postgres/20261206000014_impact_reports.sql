-- The impact reports signers read: computed once (for a candidate, its file content, the
-- version in force and a clinic), kept, and named by a sign-off through their hash, so that
-- decisions recorded after a signer read the report do not make their sign-off stale.
CREATE TABLE impact_reports (
    impact_hash       TEXT NOT NULL,
    guideline_id      TEXT NOT NULL,
    version           TEXT NOT NULL,
    content_hash      TEXT NOT NULL,
    in_force_version  TEXT NOT NULL,
    tenant            TEXT NOT NULL,
    decisions         BIGINT NOT NULL,
    changed           BIGINT NOT NULL,
    computed_at       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (impact_hash, guideline_id, version, content_hash, in_force_version, tenant)
);
GRANT SELECT, INSERT ON impact_reports TO stride_service;
