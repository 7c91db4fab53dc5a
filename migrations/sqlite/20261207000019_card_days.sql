-- Card effectiveness per day, kept as cards and feedback are recorded, so the committee's page
-- reads a few thousand rows instead of counting every card it covers (issue 34: a clinic's
-- year, 500 000 cards, took 1.73 s on SQLite counted from the cards; docs/benchmarks.md).
-- One row per clinic, UTC day, rule set, version and card: the cards shown, those with any
-- feedback, any "accepted" and any "overridden" (a card reported both ways counts in both);
-- and per override reason, the cards overridden with it. The counts are exactly what counting
-- the cards and their feedback gives (`Store::card_outcomes_recounted`, compared in the tests).
CREATE TABLE card_days (
    tenant           TEXT NOT NULL,
    day              TEXT NOT NULL,
    rule_set_id      TEXT NOT NULL,
    rule_set_version TEXT NOT NULL,
    decision_id      TEXT NOT NULL,
    shown            INTEGER NOT NULL,
    with_feedback    INTEGER NOT NULL,
    accepted         INTEGER NOT NULL,
    overridden       INTEGER NOT NULL,
    PRIMARY KEY (tenant, day, rule_set_id, rule_set_version, decision_id)
) WITHOUT ROWID;

CREATE TABLE card_day_reasons (
    tenant           TEXT NOT NULL,
    day              TEXT NOT NULL,
    rule_set_id      TEXT NOT NULL,
    rule_set_version TEXT NOT NULL,
    decision_id      TEXT NOT NULL,
    reason           TEXT NOT NULL,
    cards            INTEGER NOT NULL,
    PRIMARY KEY (tenant, day, rule_set_id, rule_set_version, decision_id, reason)
) WITHOUT ROWID;

-- What is recorded already.
INSERT INTO card_days
SELECT c.tenant, substr(c.created_at, 1, 10), COALESCE(c.rule_set_id, ''), COALESCE(c.rule_set_version, ''),
       c.decision_id, COUNT(*), SUM(fb.card_uuid IS NOT NULL),
       SUM(COALESCE(fb.accepted, 0)), SUM(COALESCE(fb.overridden, 0))
  FROM cards c
  LEFT JOIN (SELECT card_uuid, tenant, MAX(outcome = 'accepted') AS accepted, MAX(outcome = 'overridden') AS overridden
               FROM feedback WHERE known_card GROUP BY card_uuid, tenant) fb
    ON fb.card_uuid = c.uuid AND fb.tenant = c.tenant
 GROUP BY 1, 2, 3, 4, 5;

INSERT INTO card_day_reasons
SELECT c.tenant, substr(c.created_at, 1, 10), COALESCE(c.rule_set_id, ''), COALESCE(c.rule_set_version, ''),
       c.decision_id, COALESCE(json_extract(f.details, '$.overrideReason.reason.code'), 'unspecified'),
       COUNT(DISTINCT c.uuid)
  FROM cards c JOIN feedback f ON f.card_uuid = c.uuid AND f.tenant = c.tenant
                              AND f.known_card AND f.outcome = 'overridden'
 GROUP BY 1, 2, 3, 4, 5, 6;

-- And from now on, in the transaction that records each card and each feedback.
CREATE TRIGGER card_days_shown AFTER INSERT ON cards
BEGIN
    INSERT INTO card_days VALUES (NEW.tenant, substr(NEW.created_at, 1, 10), COALESCE(NEW.rule_set_id, ''),
                                  COALESCE(NEW.rule_set_version, ''), NEW.decision_id, 1, 0, 0, 0)
        ON CONFLICT DO UPDATE SET shown = shown + 1;
END;

-- A card counts once per kind of feedback: only the first feedback, the first "accepted", the
-- first "overridden" and the first override with each reason change its day's counts.
CREATE TRIGGER card_days_feedback AFTER INSERT ON feedback WHEN NEW.known_card
BEGIN
    UPDATE card_days
       SET with_feedback = with_feedback + NOT EXISTS (
               SELECT 1 FROM feedback f WHERE f.card_uuid = NEW.card_uuid AND f.tenant = NEW.tenant
                  AND f.known_card AND f.id <> NEW.id),
           accepted = accepted + (NEW.outcome = 'accepted' AND NOT EXISTS (
               SELECT 1 FROM feedback f WHERE f.card_uuid = NEW.card_uuid AND f.tenant = NEW.tenant
                  AND f.known_card AND f.outcome = 'accepted' AND f.id <> NEW.id)),
           overridden = overridden + (NEW.outcome = 'overridden' AND NOT EXISTS (
               SELECT 1 FROM feedback f WHERE f.card_uuid = NEW.card_uuid AND f.tenant = NEW.tenant
                  AND f.known_card AND f.outcome = 'overridden' AND f.id <> NEW.id))
     WHERE (tenant, day, rule_set_id, rule_set_version, decision_id) =
           (SELECT c.tenant, substr(c.created_at, 1, 10), COALESCE(c.rule_set_id, ''),
                   COALESCE(c.rule_set_version, ''), c.decision_id
              FROM cards c WHERE c.uuid = NEW.card_uuid AND c.tenant = NEW.tenant);
    INSERT INTO card_day_reasons
    SELECT c.tenant, substr(c.created_at, 1, 10), COALESCE(c.rule_set_id, ''), COALESCE(c.rule_set_version, ''),
           c.decision_id, COALESCE(json_extract(NEW.details, '$.overrideReason.reason.code'), 'unspecified'), 1
      FROM cards c
     WHERE c.uuid = NEW.card_uuid AND c.tenant = NEW.tenant AND NEW.outcome = 'overridden'
       AND NOT EXISTS (
           SELECT 1 FROM feedback f WHERE f.card_uuid = NEW.card_uuid AND f.tenant = NEW.tenant
              AND f.known_card AND f.outcome = 'overridden' AND f.id <> NEW.id
              AND COALESCE(json_extract(f.details, '$.overrideReason.reason.code'), 'unspecified')
                  = COALESCE(json_extract(NEW.details, '$.overrideReason.reason.code'), 'unspecified'))
        ON CONFLICT DO UPDATE SET cards = cards + 1;
END;
