// $rows: LIST<MAP{lesion_id: STRING, embedding: LIST<FLOAT>}>; $model_sha256: the checkpoint's
// sha256; $space: the embedding space's name ("triplet"); $dim: the vector length.
UNWIND $rows AS row
MATCH (l:Lesion {lesion_id: row.lesion_id})
SET l.embedding = row.embedding,
    l.embedding_model = $model_sha256,
    l.embedding_space = $space,
    l.embedding_dim = $dim
