-- Whom a card was about, so that a clinician's override of a red-flag card can be found for
-- the patient's next decision (issue 30: a red flag that stays until evaluated clears when a
-- clinician records the decision, an override reason on its card). Older cards have none.
ALTER TABLE cards ADD COLUMN patient_ref TEXT;
CREATE INDEX cards_patient ON cards (tenant, patient_ref) WHERE patient_ref IS NOT NULL;
