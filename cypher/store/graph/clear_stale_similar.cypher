// SIMILAR_TO edges of a space that no longer belong to its edge set: from lesions that lost their
// vector, or written by an earlier producer (model or cue version).
MATCH (a:Lesion)-[e:SIMILAR_TO {space: $space}]->()
WHERE e.producer <> $producer
   OR (CASE $space WHEN 'triplet' THEN a.embedding WHEN 'cues' THEN a.cues END) IS NULL
DELETE e
RETURN count(e) AS removed
