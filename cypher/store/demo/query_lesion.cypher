// A lesion to show retrieval with: the largest labelled, embedded lesion of the held-out split
// (lesions without a split, e.g. PACS bookmarks, come after those of the test split).
MATCH (l:Lesion)
WHERE l.embedding IS NOT NULL AND l.coarse_type IS NOT NULL
RETURN l.lesion_id AS lesion_id
ORDER BY coalesce(l.split = 'test', false) DESC, l.long_axis_mm DESC, l.lesion_id
LIMIT 1
