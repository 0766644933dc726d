// What matching needs of the lesions of one patient ($patient_id) or of every patient (null).
// Only a given type counts: a predicted type is a vote of nearby lesions' types, i.e. mostly the
// location again, which the cost already has (using it lowered recall on the synthetic truth from
// 0.976 to 0.952). The embedding is the triplet space's, if any.
MATCH (l:Lesion)
WHERE $patient_id IS NULL OR l.patient_id = $patient_id
RETURN l.patient_id AS patient_id, l.lesion_id AS lesion_id, l.study_index AS study_index,
       l.series_id AS series_id, l.location AS location, l.long_axis_mm AS long_axis_mm,
       l.coarse_type AS coarse_type,
       CASE WHEN l.embedding_space = 'triplet' THEN l.embedding END AS embedding
ORDER BY patient_id, lesion_id
