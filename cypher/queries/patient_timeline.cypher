// Description: A patient's studies in time order, each with its lesions (largest first).
// @param patient_id STRING  the patient id as in DeepLesion file names, e.g. 000002
// Example: lesionkg query patient_timeline --param patient_id=000002
MATCH (p:Patient {patient_id: $patient_id})-[:HAS_STUDY]->(s:Study)
OPTIONAL MATCH (s)-[:HAS_LESION]->(l:Lesion)
WITH s, l
ORDER BY l.long_axis_mm DESC, l.lesion_id
WITH s, collect(l {.lesion_id, .series_id, .key_slice, .coarse_type_name, .long_axis_mm,
                   .short_axis_mm}) AS lesions
RETURN s.study_index AS study_index, s.study_id AS study_id, s.patient_age AS patient_age,
       size(lesions) AS n_lesions, lesions
ORDER BY study_index
