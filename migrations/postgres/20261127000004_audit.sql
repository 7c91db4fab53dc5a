-- The decision log: append-only, hash-chained per tenant (each entry carries the hash of the
-- one before it, so an edit or a deletion breaks the chain and `stride audit verify` shows it).
-- Partitioned by month; Stride creates the coming months' partitions ahead of time.
CREATE TABLE audit_entries (
    id               UUID NOT NULL,
    tenant           TEXT NOT NULL,
    seq              BIGINT NOT NULL,
    recorded_at      TIMESTAMPTZ NOT NULL,
    recorded_us      BIGINT NOT NULL,            -- the same instant, as hashed
    action           TEXT NOT NULL,
    outcome          TEXT NOT NULL,
    caller_issuer    TEXT,
    caller_subject   TEXT,
    hook             TEXT,
    hook_instance    TEXT,
    service_id       TEXT,
    patient_ref      TEXT,
    as_of            TEXT,
    input_digest     TEXT,
    facts            TEXT,                       -- the exact JSON text that was hashed
    rule_set_id      TEXT,
    rule_set_version TEXT,
    rule_set_hash    TEXT,
    decision_ids     JSONB NOT NULL,
    card_uuids       JSONB NOT NULL,
    careplan_id      UUID,
    trace_id         TEXT,
    details          JSONB NOT NULL,
    prev_hash        TEXT NOT NULL,
    hash             TEXT NOT NULL,
    PRIMARY KEY (id, recorded_at)
) PARTITION BY RANGE (recorded_at);
CREATE TABLE audit_entries_default PARTITION OF audit_entries DEFAULT;
CREATE INDEX audit_chain ON audit_entries (tenant, seq);
CREATE INDEX audit_patient ON audit_entries (patient_ref, recorded_at);
CREATE INDEX audit_time ON audit_entries (recorded_at);

-- The service runs as (a member of) stride_service: it may add and read entries, nothing else.
-- Roles are cluster-wide: another database's migration may be creating it at the same moment.
DO $$
BEGIN
    CREATE ROLE stride_service NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;
GRANT SELECT, INSERT ON audit_entries TO stride_service;
REVOKE UPDATE, DELETE, TRUNCATE ON audit_entries FROM stride_service;
GRANT SELECT, INSERT, UPDATE ON careplans, cards, feedback, seen_jti TO stride_service;
GRANT DELETE ON seen_jti TO stride_service;
-- So a service started without migrating can check that the schema is current.
GRANT SELECT ON _sqlx_migrations TO stride_service;
