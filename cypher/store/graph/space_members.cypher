// The ids of the lesions that have a vector in one embedding space ($space: 'triplet' or 'cues').
MATCH (l:Lesion)
WHERE (CASE $space WHEN 'triplet' THEN l.embedding WHEN 'cues' THEN l.cues END) IS NOT NULL
RETURN l.lesion_id AS lesion_id
