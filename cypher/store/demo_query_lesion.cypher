// A lesion to show retrieval with: the largest labelled, embedded lesion of the held-out split.
MATCH (l:Lesion)
WHERE l.embedding IS NOT NULL AND l.coarse_type IS NOT NULL
RETURN l.lesion_id AS lesion_id
ORDER BY l.split = 'test' DESC, l.long_axis_mm DESC, l.lesion_id
LIMIT 1
