// The vectors of some lesions in one embedding space, as graph/space_vectors returns them.
// $ids: LIST<STRING> lesion ids; $space: 'triplet' or 'cues'.
UNWIND $ids AS id
MATCH (l:Lesion {lesion_id: id})
WITH l, CASE $space WHEN 'triplet' THEN l.embedding WHEN 'cues' THEN l.cues END AS vector,
     CASE $space WHEN 'triplet' THEN l.embedding_model WHEN 'cues' THEN l.cues_version END
       AS producer
WHERE vector IS NOT NULL
RETURN l.lesion_id AS lesion_id, l.patient_id AS patient_id, l.coarse_type AS coarse_type,
       vector, producer
ORDER BY lesion_id
