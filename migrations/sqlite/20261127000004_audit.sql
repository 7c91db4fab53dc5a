-- The decision log: append-only, hash-chained per tenant (each entry carries the hash of the
-- one before it, so an edit or a deletion breaks the chain and `stride audit verify` shows it).
CREATE TABLE audit_entries (
    id               TEXT PRIMARY KEY NOT NULL,
    tenant           TEXT NOT NULL,
    seq              INTEGER NOT NULL,
    recorded_at      INTEGER NOT NULL,           -- unix microseconds
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
    facts            TEXT,
    rule_set_id      TEXT,
    rule_set_version TEXT,
    rule_set_hash    TEXT,
    decision_ids     TEXT NOT NULL,
    card_uuids       TEXT NOT NULL,
    careplan_id      TEXT,
    trace_id         TEXT,
    details          TEXT NOT NULL,
    prev_hash        TEXT NOT NULL,
    hash             TEXT NOT NULL,
    UNIQUE (tenant, seq)
);
CREATE INDEX audit_patient ON audit_entries (patient_ref, recorded_at);
CREATE INDEX audit_time ON audit_entries (recorded_at);

-- No UPDATE or DELETE path exists in Stride; the database refuses them too.
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;
