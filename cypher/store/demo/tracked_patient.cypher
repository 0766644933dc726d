// A patient to show tracks and response with: the one whose longest track spans most studies,
// among the patients whose ids start at $first_patient (the demo cohort) when given.
MATCH (l:Lesion)
WHERE l.track_id IS NOT NULL AND ($first_patient IS NULL OR l.patient_id >= $first_patient)
WITH l.patient_id AS patient_id, l.track_id AS track, count(DISTINCT l.study_index) AS studies
RETURN patient_id, max(studies) AS studies
ORDER BY studies DESC, patient_id
LIMIT 1
