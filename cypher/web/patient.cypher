// One patient with its studies in time order, each with its lesions (largest first); no row when
// the patient is unknown.
MATCH (p:Patient {patient_id: $patient_id})
OPTIONAL MATCH (p)-[:HAS_STUDY]->(s:Study)
OPTIONAL MATCH (s)-[:HAS_LESION]->(l:Lesion)
WITH p, s, l
ORDER BY s.study_index, l.long_axis_mm DESC, l.lesion_id
WITH p, s, collect(l {.lesion_id, .series_id, .key_slice, .coarse_type, .coarse_type_name,
                      .predicted_type, .long_axis_mm, .short_axis_mm, .track_id,
                      .study_index}) AS lesions
ORDER BY s.study_index
RETURN p {.*} AS patient,
       collect(s {.study_id, .study_index, .patient_age, .study_datetime, lesions: lesions})
         AS studies
