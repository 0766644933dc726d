// Predicted types of older lesions whose SIMILAR_TO list an import changed (see
// graph/set_predicted_types): a given type is never touched, and a cues vote never replaces the
// vote of a lesion that has a triplet embedding (the triplet space decides those).
// $rows: LIST<MAP{lesion_id: STRING, type: INTEGER|null, confidence: FLOAT}>; $space.
UNWIND $rows AS row
MATCH (l:Lesion {lesion_id: row.lesion_id})
WHERE l.coarse_type IS NULL AND ($space = 'triplet' OR l.embedding IS NULL)
SET l.predicted_type = row.type,
    l.predicted_type_confidence = row.confidence,
    l.predicted_type_space = $space
