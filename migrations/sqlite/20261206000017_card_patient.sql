-- Whom a card was about, so that a clinician's override of a red-flag card can be found for
-- the patient's next decision (issue 30: a red flag that stays until evaluated clears when a
-- clinician records the decision, an override reason on its card). Feedback copies the card's
-- patient and decision when it arrives, and is looked up by patient alone: a lookup through
-- the patient's cards grew with every call (2.5 ms at 1200 cards; the load check's single
-- patient went from a 46 ms to a 300 ms median on PostgreSQL). Older rows have none.
ALTER TABLE cards ADD COLUMN patient_ref TEXT;
ALTER TABLE feedback ADD COLUMN patient_ref TEXT;
ALTER TABLE feedback ADD COLUMN decision_id TEXT;
CREATE INDEX feedback_overridden ON feedback (tenant, patient_ref)
    WHERE outcome = 'overridden' AND patient_ref IS NOT NULL;
