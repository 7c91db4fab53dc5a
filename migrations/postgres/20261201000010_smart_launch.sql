-- SMART App Launch (issue 23). A sign-in an EHR started names that EHR's FHIR base, so the
-- callback trades the code with the EHR's authorization server; the session it makes is limited
-- to the patient the EHR launched for, and names the FHIR resource of the staff member.
ALTER TABLE staff_logins ADD COLUMN smart_iss TEXT;
ALTER TABLE staff_sessions ADD COLUMN patient TEXT;
ALTER TABLE staff_sessions ADD COLUMN fhir_user TEXT;
