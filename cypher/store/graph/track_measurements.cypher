// One patient's tracked lesion measurements, for lesionkg.response (cohort.patient_response).
// $patient_id: the patient. No row when the patient is unknown; one row of nulls when it exists
// but none of its lesions has a track_id yet; otherwise one row per tracked lesion, in time order.
// coarse_type is the label where there is one, else the predicted type: it only serves as the
// organ proxy of RECIST's two-targets-per-organ cap, and putting every unlabelled lesion (all of
// DeepLesion's train split) in one group would cap such a patient at two targets.
MATCH (p:Patient {patient_id: $patient_id})
OPTIONAL MATCH (p)-[:HAS_STUDY]->(s:Study)-[:HAS_LESION]->(l:Lesion)
WHERE l.track_id IS NOT NULL AND l.long_axis_mm IS NOT NULL
RETURN l.track_id AS track_id, l.lesion_id AS lesion_id, s.study_index AS study_index,
       l.series_id AS series_id, l.long_axis_mm AS long_axis_mm,
       coalesce(l.coarse_type, l.predicted_type) AS coarse_type
ORDER BY study_index, series_id, lesion_id
