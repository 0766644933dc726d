// Every lesion's vector in one embedding space ($space: 'triplet' = Lesion.embedding, 'cues' =
// Lesion.cues), with what produced it (checkpoint sha256 or cue version) and its given type.
MATCH (l:Lesion)
WITH l, CASE $space WHEN 'triplet' THEN l.embedding WHEN 'cues' THEN l.cues END AS vector,
     CASE $space WHEN 'triplet' THEN l.embedding_model WHEN 'cues' THEN l.cues_version END
       AS producer
WHERE vector IS NOT NULL
RETURN l.lesion_id AS lesion_id, l.patient_id AS patient_id, l.coarse_type AS coarse_type,
       l.file_name AS file_name, l.location AS location, l.window AS window, vector, producer
ORDER BY lesion_id
