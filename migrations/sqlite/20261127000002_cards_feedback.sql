-- Every card Stride sent, so that feedback can be tied to it and to its decision.
CREATE TABLE cards (
    uuid          TEXT PRIMARY KEY NOT NULL,
    service_id    TEXT NOT NULL,
    hook_instance TEXT NOT NULL,
    decision_id   TEXT NOT NULL,
    careplan_id   TEXT REFERENCES careplans (id),
    created_at    TEXT NOT NULL
);
CREATE INDEX cards_hook_instance ON cards (hook_instance);

-- Card feedback from the EHR (accepted / overridden). A card Stride does not know is still
-- recorded: the EHR's report is evidence either way.
CREATE TABLE feedback (
    id                TEXT PRIMARY KEY NOT NULL,
    service_id        TEXT NOT NULL,
    card_uuid         TEXT NOT NULL,
    known_card        INTEGER NOT NULL,
    outcome           TEXT NOT NULL CHECK (outcome IN ('accepted', 'overridden')),
    details           TEXT NOT NULL,
    outcome_timestamp TEXT NOT NULL,
    received_at       TEXT NOT NULL
);
CREATE INDEX feedback_card ON feedback (card_uuid);
