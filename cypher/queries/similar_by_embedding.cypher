// Description: Lesions of other patients whose triplet embedding is closest to a lesion's, by
// Neo4j's vector.similarity.cosine ((1 + cosine) / 2, in 0..1); an exhaustive scan.
// @param lesion_id STRING  the query lesion (needs Lesion.embedding: run `lesionkg embed`)
// @param k INTEGER = 5  how many lesions to return
// Example: lesionkg query similar_by_embedding --param lesion_id=DL-0123456789abcdef --param k=5
MATCH (a:Lesion {lesion_id: $lesion_id})
WHERE a.embedding IS NOT NULL
MATCH (b:Lesion)
WHERE b.patient_id <> a.patient_id AND b.embedding IS NOT NULL
  AND b.embedding_model = a.embedding_model
WITH a, b, vector.similarity.cosine(a.embedding, b.embedding) AS similarity
ORDER BY similarity DESC
LIMIT $k
RETURN b.lesion_id AS lesion_id, b.patient_id AS patient_id,
       coalesce(b.coarse_type_name, 'unlabelled') AS type,
       coalesce(a.coarse_type_name, 'unlabelled') AS query_type,
       round(b.long_axis_mm, 1) AS long_axis_mm, round(similarity, 4) AS similarity
