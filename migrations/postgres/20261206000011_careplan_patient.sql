-- Who the plan is for, as the EHR's Patient said when the plan was drafted (name, birth date,
-- sex): the review queue and the plan page name the patient, not only their id. Null where
-- the EHR sent no Patient (and for plans drafted before this column).
ALTER TABLE careplans ADD COLUMN patient JSONB;
