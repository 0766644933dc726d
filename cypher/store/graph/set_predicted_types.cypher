// $rows: LIST<MAP{lesion_id: STRING, type: INTEGER|null, confidence: FLOAT}> for lesions without
// a given type; a given type is never touched (the WHERE re-checks it). $space: where the vote
// came from.
UNWIND $rows AS row
MATCH (l:Lesion {lesion_id: row.lesion_id})
WHERE l.coarse_type IS NULL
SET l.predicted_type = row.type,
    l.predicted_type_confidence = row.confidence,
    l.predicted_type_space = $space
