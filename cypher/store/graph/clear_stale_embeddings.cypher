// Vectors of one space from another model are not comparable with the new ones: after a run,
// lesions it could not embed lose what an older model gave them, so the space never mixes models.
MATCH (l:Lesion)
WHERE l.embedding_space = $space AND l.embedding_model <> $model_sha256
REMOVE l.embedding, l.embedding_model, l.embedding_space, l.embedding_dim
RETURN count(l) AS removed
