-- One pending draft per patient and decision, under concurrency too (issue 31): a unique key,
-- not a read-then-write. Twelve concurrent $apply calls with store=true had left five or six
-- drafts for one patient. A call that loses the race is decided again and links the winner's
-- draft (hooks), or answers with it ($apply).
-- Drafts that raced in before this key keep their content and status; only the newer ones of
-- each group stop being "the pending draft" a later call links to.
UPDATE careplans SET decision_key = NULL
 WHERE status = 'draft' AND decision_key IS NOT NULL
   AND EXISTS (SELECT 1 FROM careplans o
                WHERE o.tenant = careplans.tenant AND o.patient_ref = careplans.patient_ref
                  AND o.decision_key = careplans.decision_key AND o.status = 'draft'
                  AND (o.created_at < careplans.created_at
                       OR (o.created_at = careplans.created_at AND o.id < careplans.id)));
DROP INDEX careplans_pending_draft;
CREATE UNIQUE INDEX careplans_pending_draft ON careplans (tenant, patient_ref, decision_key)
    WHERE status = 'draft' AND decision_key IS NOT NULL;
