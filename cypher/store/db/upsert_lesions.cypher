// $rows: LIST<MAP{lesion_id, study_id: STRING, coarse_type: INTEGER|null, props: MAP}>, where
// props holds every Lesion property (see README, "Graph schema"). The study is written first in
// the same transaction. A re-import sets the same values again, so counts and properties stay.
UNWIND $rows AS row
MATCH (s:Study {study_id: row.study_id})
MERGE (l:Lesion {lesion_id: row.lesion_id})
SET l += row.props
MERGE (s)-[:HAS_LESION]->(l)
WITH l, row
// A type changed by a corrected re-import must not leave the old OF_TYPE edge behind.
OPTIONAL MATCH (l)-[old:OF_TYPE]->(t0:LesionType)
WHERE row.coarse_type IS NULL OR t0.code <> row.coarse_type
DELETE old
WITH DISTINCT l, row
WHERE row.coarse_type IS NOT NULL
MATCH (t:LesionType {code: row.coarse_type})
MERGE (l)-[:OF_TYPE]->(t)
