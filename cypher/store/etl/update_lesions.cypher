// Applies the changed values of re-imported bookmarks (`lesionkg etl --update`).
// $rows: LIST<MAP{lesion_id: STRING, coarse_type: INTEGER|null, props: MAP}>, props holding only
// the changed properties and those derived from them (cue vector, type name).
UNWIND $rows AS row
MATCH (l:Lesion {lesion_id: row.lesion_id})
SET l += row.props
WITH l, row
OPTIONAL MATCH (l)-[old:OF_TYPE]->(t0:LesionType)
WHERE row.coarse_type IS NULL OR t0.code <> row.coarse_type
DELETE old
WITH DISTINCT l, row
WHERE row.coarse_type IS NOT NULL
MATCH (t:LesionType {code: row.coarse_type})
MERGE (l)-[:OF_TYPE]->(t)
