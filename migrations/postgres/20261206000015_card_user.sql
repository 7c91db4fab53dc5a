-- The feedback export names the user a card was shown to and where (the DSI criterion's user
-- and location): kept on the card, so the export needs no search of the audit log per
-- feedback. Cards written before take them from their hook call's audit entry.
ALTER TABLE cards ADD COLUMN user_ref TEXT;
ALTER TABLE cards ADD COLUMN encounter TEXT;
UPDATE cards SET
    user_ref = (SELECT a.details ->> 'user' FROM audit_entries a
                 WHERE a.hook_instance = cards.hook_instance AND a.action = 'hook-call'
                   AND a.tenant = cards.tenant LIMIT 1),
    encounter = (SELECT a.details ->> 'encounter' FROM audit_entries a
                  WHERE a.hook_instance = cards.hook_instance AND a.action = 'hook-call'
                    AND a.tenant = cards.tenant LIMIT 1);
