-- Card effectiveness per day, kept as cards and feedback are recorded, so the committee's page
-- reads a few thousand rows instead of counting every card it covers (issue 34: a clinic's
-- year, 500 000 cards, took 0.89 s here and 1.73 s on SQLite counted from the cards;
-- docs/benchmarks.md). One row per clinic, UTC day, rule set, version and card: the cards
-- shown, those with any feedback, any "accepted" and any "overridden" (a card reported both
-- ways counts in both); and per override reason, the cards overridden with it. The counts are
-- exactly what counting the cards and their feedback gives (`Store::card_outcomes_recounted`,
-- compared in the tests).
CREATE TABLE card_days (
    tenant           TEXT NOT NULL,
    day              DATE NOT NULL,
    rule_set_id      TEXT NOT NULL,
    rule_set_version TEXT NOT NULL,
    decision_id      TEXT NOT NULL,
    shown            BIGINT NOT NULL,
    with_feedback    BIGINT NOT NULL,
    accepted         BIGINT NOT NULL,
    overridden       BIGINT NOT NULL,
    PRIMARY KEY (tenant, day, rule_set_id, rule_set_version, decision_id)
);

CREATE TABLE card_day_reasons (
    tenant           TEXT NOT NULL,
    day              DATE NOT NULL,
    rule_set_id      TEXT NOT NULL,
    rule_set_version TEXT NOT NULL,
    decision_id      TEXT NOT NULL,
    reason           TEXT NOT NULL,
    cards            BIGINT NOT NULL,
    PRIMARY KEY (tenant, day, rule_set_id, rule_set_version, decision_id, reason)
);

-- What is recorded already. Writers wait until the triggers below are in place (this migration
-- is one transaction): a card or feedback recorded by a running replica meanwhile would be
-- counted neither here nor by a trigger.
LOCK TABLE cards, feedback IN SHARE ROW EXCLUSIVE MODE;

INSERT INTO card_days
SELECT c.tenant, (c.created_at AT TIME ZONE 'UTC')::date, COALESCE(c.rule_set_id, ''),
       COALESCE(c.rule_set_version, ''), c.decision_id, COUNT(*),
       COUNT(fb.card_uuid), COALESCE(SUM(fb.accepted), 0), COALESCE(SUM(fb.overridden), 0)
  FROM cards c
  LEFT JOIN (SELECT card_uuid, tenant, bool_or(outcome = 'accepted')::int AS accepted,
                    bool_or(outcome = 'overridden')::int AS overridden
               FROM feedback WHERE known_card GROUP BY card_uuid, tenant) fb
    ON fb.card_uuid = c.uuid::text AND fb.tenant = c.tenant
 GROUP BY 1, 2, 3, 4, 5;

INSERT INTO card_day_reasons
SELECT c.tenant, (c.created_at AT TIME ZONE 'UTC')::date, COALESCE(c.rule_set_id, ''),
       COALESCE(c.rule_set_version, ''), c.decision_id,
       COALESCE(f.details #>> '{overrideReason,reason,code}', 'unspecified'), COUNT(DISTINCT c.uuid)
  FROM cards c JOIN feedback f ON f.card_uuid = c.uuid::text AND f.tenant = c.tenant
                              AND f.known_card AND f.outcome = 'overridden'
 GROUP BY 1, 2, 3, 4, 5, 6;

-- And from now on, in the transaction that records each card and each feedback.
CREATE FUNCTION card_days_shown() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO card_days VALUES (NEW.tenant, (NEW.created_at AT TIME ZONE 'UTC')::date,
                                  COALESCE(NEW.rule_set_id, ''), COALESCE(NEW.rule_set_version, ''),
                                  NEW.decision_id, 1, 0, 0, 0)
        ON CONFLICT (tenant, day, rule_set_id, rule_set_version, decision_id)
        DO UPDATE SET shown = card_days.shown + 1;
    RETURN NULL;
END $$;
CREATE TRIGGER card_days_shown AFTER INSERT ON cards FOR EACH ROW EXECUTE FUNCTION card_days_shown();

-- A card counts once per kind of feedback: only the first feedback, the first "accepted", the
-- first "overridden" and the first override with each reason change its day's counts. The
-- card's row is locked first, so two feedbacks of one card recorded at once are counted one
-- after the other (each statement below then sees the other's committed row).
CREATE FUNCTION card_days_feedback() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    c cards%ROWTYPE;
    code TEXT := COALESCE(NEW.details #>> '{overrideReason,reason,code}', 'unspecified');
BEGIN
    SELECT * INTO c FROM cards WHERE uuid = NEW.card_uuid::uuid AND tenant = NEW.tenant FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    UPDATE card_days d
       SET with_feedback = d.with_feedback + (NOT EXISTS (
               SELECT 1 FROM feedback f WHERE f.card_uuid = NEW.card_uuid AND f.tenant = NEW.tenant
                  AND f.known_card AND f.id <> NEW.id))::int,
           accepted = d.accepted + (NEW.outcome = 'accepted' AND NOT EXISTS (
               SELECT 1 FROM feedback f WHERE f.card_uuid = NEW.card_uuid AND f.tenant = NEW.tenant
                  AND f.known_card AND f.outcome = 'accepted' AND f.id <> NEW.id))::int,
           overridden = d.overridden + (NEW.outcome = 'overridden' AND NOT EXISTS (
               SELECT 1 FROM feedback f WHERE f.card_uuid = NEW.card_uuid AND f.tenant = NEW.tenant
                  AND f.known_card AND f.outcome = 'overridden' AND f.id <> NEW.id))::int
     WHERE d.tenant = c.tenant AND d.day = (c.created_at AT TIME ZONE 'UTC')::date
       AND d.rule_set_id = COALESCE(c.rule_set_id, '') AND d.rule_set_version = COALESCE(c.rule_set_version, '')
       AND d.decision_id = c.decision_id;
    IF NEW.outcome = 'overridden' AND NOT EXISTS (
           SELECT 1 FROM feedback f WHERE f.card_uuid = NEW.card_uuid AND f.tenant = NEW.tenant
              AND f.known_card AND f.outcome = 'overridden' AND f.id <> NEW.id
              AND COALESCE(f.details #>> '{overrideReason,reason,code}', 'unspecified') = code) THEN
        INSERT INTO card_day_reasons VALUES (c.tenant, (c.created_at AT TIME ZONE 'UTC')::date,
                                             COALESCE(c.rule_set_id, ''), COALESCE(c.rule_set_version, ''),
                                             c.decision_id, code, 1)
            ON CONFLICT (tenant, day, rule_set_id, rule_set_version, decision_id, reason)
            DO UPDATE SET cards = card_day_reasons.cards + 1;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER card_days_feedback AFTER INSERT ON feedback FOR EACH ROW WHEN (NEW.known_card)
    EXECUTE FUNCTION card_days_feedback();

GRANT SELECT, INSERT, UPDATE ON card_days, card_day_reasons TO stride_service;
