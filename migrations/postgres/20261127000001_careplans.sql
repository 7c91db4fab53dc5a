-- Draft CarePlans awaiting clinic review. The FHIR resource is stored whole; the columns
-- beside it are what the review queue filters and sorts on.
CREATE TABLE careplans (
    id               UUID PRIMARY KEY,
    tenant           TEXT NOT NULL,
    patient_ref      TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('draft', 'active', 'revoked', 'entered-in-error')),
    version          INTEGER NOT NULL DEFAULT 1,
    rule_set_id      TEXT NOT NULL,
    rule_set_version TEXT NOT NULL,
    phase            TEXT NOT NULL,
    red_flag         BOOLEAN NOT NULL DEFAULT FALSE,
    resource         JSONB NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX careplans_queue ON careplans (status, red_flag DESC, created_at DESC);
CREATE INDEX careplans_patient ON careplans (tenant, patient_ref);
