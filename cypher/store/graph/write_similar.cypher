// Replace the SIMILAR_TO edges of one space leaving a batch of lesions, in one transaction.
// $sources: LIST<STRING> lesion ids; $rows: LIST<MAP{source, target: STRING, distance: FLOAT,
// rank: INTEGER}>; $space: the space's name; $producer: checkpoint sha256 or cue version.
CALL () {
  UNWIND $sources AS id
  MATCH (:Lesion {lesion_id: id})-[old:SIMILAR_TO {space: $space}]->()
  DELETE old
}
UNWIND $rows AS row
MATCH (a:Lesion {lesion_id: row.source}), (b:Lesion {lesion_id: row.target})
CREATE (a)-[:SIMILAR_TO {space: $space, distance: row.distance, rank: row.rank,
                          producer: $producer}]->(b)
RETURN count(*) AS created
