// Description: Lesions closest to a lesion in an embedding space, through the space's Neo4j vector
// index, after filters on patient, type and size; never the lesion itself. similarity is the
// index's score in 0..1, higher is closer: (1 + cosine) / 2 for triplet, 1 / (1 + squared
// euclidean distance) for cues. The index returns the `candidates` nearest lesions and the filters
// then apply to those, so strict filters may leave fewer than k rows: raise candidates. A lesion's
// type is its label, else its predicted type (type_predicted says which).
// @param lesion_id STRING  the query lesion; it needs the space's vector (Lesion.cues or Lesion.embedding)
// @param space STRING = cues  cues (index lesion_cues on Lesion.cues) or triplet (lesion_triplet on Lesion.embedding)
// @param k INTEGER = 10  at most this many lesions
// @param candidates INTEGER = 200  nearest lesions fetched from the index before filtering (at least k + 1)
// @param other_patients BOOLEAN = true  only lesions of other patients
// @param type STRING = any  a coarse type name (liver) or code (4), unlabelled, or any
// @param min_mm FLOAT = 0  smallest long axis, mm (inclusive)
// Example: lesionkg query similar_lesions --param lesion_id=DL-0123456789abcdef --param type=liver
MATCH (a:Lesion {lesion_id: $lesion_id})
WITH a, CASE $space WHEN 'triplet' THEN a.embedding WHEN 'cues' THEN a.cues END AS vector,
     toLower(trim(toString(coalesce($type, 'any')))) AS wanted
WHERE vector IS NOT NULL
// The index name follows the space ('lesion_' + space), as the schema names them.
CALL db.index.vector.queryNodes('lesion_' + $space,
                                CASE WHEN $candidates > $k THEN $candidates ELSE $k + 1 END, vector)
YIELD node AS b, score
WHERE b <> a
  AND (NOT $other_patients OR b.patient_id <> a.patient_id)
  AND b.long_axis_mm >= $min_mm
OPTIONAL MATCH (pt:LesionType {code: b.predicted_type})
WITH b, score, wanted, coalesce(b.coarse_type, b.predicted_type) AS code,
     coalesce(b.coarse_type_name, pt.name) AS name
WHERE wanted = 'any' OR (wanted = 'unlabelled' AND code IS NULL)
   OR toString(code) = wanted OR toLower(name) = wanted
RETURN b.lesion_id AS lesion_id, b.patient_id AS patient_id, b.study_index AS study_index,
       coalesce(name, 'unlabelled') AS type,
       b.coarse_type IS NULL AND code IS NOT NULL AS type_predicted,
       b.long_axis_mm AS long_axis_mm, score AS similarity
ORDER BY similarity DESC, lesion_id
LIMIT $k
