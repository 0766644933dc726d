// Description: The studies with the most measured lesions, with how many series were measured.
// @param limit INTEGER = 10  at most this many studies
// Example: lesionkg query studies_with_most_lesions --param limit=5
MATCH (s:Study)-[:HAS_LESION]->(l:Lesion)
WITH s, count(l) AS lesions, count(DISTINCT l.series_id) AS series
RETURN s.study_id AS study_id, s.patient_id AS patient_id, s.study_index AS study_index,
       lesions, series
ORDER BY lesions DESC, study_id
LIMIT $limit
