-- One pending draft per patient and decision: a patient-view that reaches the decision of the
-- patient's pending draft reuses it (rule set, version, decision ids and activities make the
-- key). Older drafts have no key and are left as they are. Not a unique index: two calls of
-- one patient racing past the lookup would make the second fail with 503 (seen under the
-- load check, whose calls are all one patient); at worst they leave two drafts.
ALTER TABLE careplans ADD COLUMN decision_key TEXT;
CREATE INDEX careplans_pending_draft ON careplans (tenant, patient_ref, decision_key)
    WHERE status = 'draft' AND decision_key IS NOT NULL;
