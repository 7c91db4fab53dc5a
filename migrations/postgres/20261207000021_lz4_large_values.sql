-- PostgreSQL compresses a value of more than about 2 KB before storing it (TOAST): each audit
-- entry's facts (about 16 KB of JSON under the load test's prefetch), each hook answer (about
-- 6 KB) and each CarePlan. Its default method, pglz, was the server's largest single cost per
-- hook call (3 % of all samples under the load test); lz4 cut the server's CPU per call by
-- 12-21 % (docs/benchmarks.md, "PostgreSQL: lz4 for large values"). Only values written from
-- now on change; those stored stay readable as they are. A server that cannot (built without
-- lz4, or older than PostgreSQL 14) keeps pglz, and this migration still succeeds.
DO $$
BEGIN
    EXECUTE 'ALTER TABLE audit_entries ALTER COLUMN facts SET COMPRESSION lz4';
    EXECUTE 'ALTER TABLE hook_answers ALTER COLUMN response SET COMPRESSION lz4';
    EXECUTE 'ALTER TABLE careplans ALTER COLUMN resource SET COMPRESSION lz4';
EXCEPTION WHEN feature_not_supported OR syntax_error THEN
    RAISE NOTICE 'lz4 is not available on this server: large values stay compressed with pglz';
END
$$;
