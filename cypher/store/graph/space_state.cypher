// What a space records for keeping its SIMILAR_TO lists (see graph/lock_space); no row when the
// space has no EmbeddingSpace node yet.
MATCH (s:EmbeddingSpace {name: $space})
RETURN coalesce(s.generation, 0) AS generation, s.k AS k, s.other_patients AS other_patients
