-- Every card Stride sent, so that feedback can be tied to it and to its decision.
CREATE TABLE cards (
    uuid          UUID PRIMARY KEY,
    service_id    TEXT NOT NULL,
    hook_instance TEXT NOT NULL,
    decision_id   TEXT NOT NULL,
    careplan_id   UUID REFERENCES careplans (id),
    created_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX cards_hook_instance ON cards (hook_instance);

-- Card feedback from the EHR (accepted / overridden). A card Stride does not know is still
-- recorded: the EHR's report is evidence either way.
CREATE TABLE feedback (
    id                UUID PRIMARY KEY,
    service_id        TEXT NOT NULL,
    card_uuid         TEXT NOT NULL,
    known_card        BOOLEAN NOT NULL,
    outcome           TEXT NOT NULL CHECK (outcome IN ('accepted', 'overridden')),
    details           JSONB NOT NULL,
    outcome_timestamp TIMESTAMPTZ NOT NULL,
    received_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX feedback_card ON feedback (card_uuid);
