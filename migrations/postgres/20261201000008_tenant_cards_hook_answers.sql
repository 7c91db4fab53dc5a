-- Cards and feedback carry the tenant: another clinic's EHR that knows a card's uuid files
-- feedback on an "unknown card", never on that clinic's card. Cards written before this are
-- given the tenant of the hook call that sent them (its audit entry).
ALTER TABLE cards ADD COLUMN tenant TEXT NOT NULL DEFAULT '';
UPDATE cards SET tenant = COALESCE(
    (SELECT a.tenant FROM audit_entries a
      WHERE a.hook_instance = cards.hook_instance AND a.action = 'hook-call' LIMIT 1), '');
ALTER TABLE feedback ADD COLUMN tenant TEXT NOT NULL DEFAULT '';

-- Exactly once per hookInstance: the answer a call was given, stored with its record, so an
-- EHR's retry of a call cut off before its 200 (same hookInstance, new token) gets the same
-- cards and no second decision or draft. One caller may reuse a hookInstance for other calls
-- (test harnesses send the specification's example uuid with every patient): the request's
-- fingerprint is part of the key. Kept for two days (a retry comes in seconds).
CREATE TABLE hook_answers (
    hook_instance TEXT NOT NULL,
    tenant        TEXT NOT NULL,
    caller_issuer TEXT NOT NULL,
    fingerprint   TEXT NOT NULL,
    response      TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (hook_instance, fingerprint)
);
CREATE INDEX hook_answers_created ON hook_answers (created_at);
GRANT SELECT, INSERT, DELETE ON hook_answers TO stride_service;
