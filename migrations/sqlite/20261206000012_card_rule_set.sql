-- Card effectiveness is asked per rule-set version and card: each card now names the version
-- that decided it. Cards written before are given their hook call's version (its audit entry).
ALTER TABLE cards ADD COLUMN rule_set_id TEXT;
ALTER TABLE cards ADD COLUMN rule_set_version TEXT;
UPDATE cards SET
    rule_set_id = (SELECT a.rule_set_id FROM audit_entries a
                    WHERE a.hook_instance = cards.hook_instance AND a.action = 'hook-call'
                      AND a.tenant = cards.tenant LIMIT 1),
    rule_set_version = (SELECT a.rule_set_version FROM audit_entries a
                         WHERE a.hook_instance = cards.hook_instance AND a.action = 'hook-call'
                           AND a.tenant = cards.tenant LIMIT 1);
-- The analytics filter: a tenant's cards over a period.
CREATE INDEX cards_tenant_time ON cards (tenant, created_at);
