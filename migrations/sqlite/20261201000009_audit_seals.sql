-- Each entry's hash signed with the service's key, which is not in the database (see
-- services/store/src/seal.rs): whoever can write the database can recompute hashes, not seals.
-- Entries written before sealing was configured have none.
ALTER TABLE audit_entries ADD COLUMN seal_kid TEXT;
ALTER TABLE audit_entries ADD COLUMN seal TEXT;
