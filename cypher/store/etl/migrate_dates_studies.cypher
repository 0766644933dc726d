// The stored study dates of pseudonymised (PACS) patients, to be shifted once by the patient's
// offset (lesionkg.etl.dates). DeepLesion studies have no dates and keep their public ids.
MATCH (s:Study)
WHERE s.patient_id STARTS WITH 'P-' AND s.study_datetime IS NOT NULL
RETURN s.study_id AS study_id, s.patient_id AS patient_id, s.study_datetime AS study_datetime
