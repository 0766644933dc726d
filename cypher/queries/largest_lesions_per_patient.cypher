// Description: Each patient's largest lesions (by long axis, over all studies); patients with the
// largest lesion first.
// @param per_patient INTEGER = 1  lesions shown per patient
// @param limit INTEGER = 20  at most this many patients
// Example: lesionkg query largest_lesions_per_patient --param per_patient=3 --param limit=5
MATCH (p:Patient)-[:HAS_STUDY]->(:Study)-[:HAS_LESION]->(l:Lesion)
WITH p, l
ORDER BY l.long_axis_mm DESC, l.lesion_id
WITH p, collect(l)[..$per_patient] AS top
ORDER BY top[0].long_axis_mm DESC, p.patient_id
LIMIT $limit
UNWIND range(0, size(top) - 1) AS i
RETURN p.patient_id AS patient_id, i + 1 AS rank, top[i].lesion_id AS lesion_id,
       top[i].study_index AS study_index,
       coalesce(top[i].coarse_type_name, 'unlabelled') AS type,
       top[i].long_axis_mm AS long_axis_mm
