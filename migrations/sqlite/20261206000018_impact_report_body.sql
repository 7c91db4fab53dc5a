-- The impact report itself, kept beside its hash (the summary by transition and the first
-- changed decisions, as JSON): the impact page reads the stored report instead of deciding
-- every stored decision again on each view. NULL for reports kept before, and for reports
-- kept by a sign-off or the command line (their hash and counts only).
ALTER TABLE impact_reports ADD COLUMN report TEXT;
