-- The decision log is read in pages (issue 34: one statement held open for a whole read was
-- cancelled by the statement timeout), newest first for the staff log and its export: each page
-- seeks to where the one before ended instead of sorting the log again (docs/benchmarks.md).
CREATE INDEX audit_newest_first ON audit_entries (recorded_us DESC, tenant, seq DESC, id DESC);
