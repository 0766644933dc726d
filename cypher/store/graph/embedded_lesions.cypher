// Lesions that carry an embedding of one space, with what retrieval is scored on.
// $space: the embedding space ("triplet"); $split: a DeepLesion split name, or null for all.
MATCH (l:Lesion)
WHERE l.embedding_space = $space AND ($split IS NULL OR l.split = $split)
RETURN l.lesion_id AS lesion_id, l.patient_id AS patient_id, l.coarse_type AS coarse_type,
       l.location AS location, l.embedding AS embedding
ORDER BY lesion_id
