// The studies of the patients in $patient_ids (LIST<STRING>), to re-number them by study time
// when a new study arrives.
UNWIND $patient_ids AS pid
MATCH (s:Study {patient_id: pid})
RETURN s.study_id AS study_id, s.patient_id AS patient_id, s.study_datetime AS study_datetime,
       s.study_index AS study_index
