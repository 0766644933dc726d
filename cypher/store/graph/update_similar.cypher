// Update the SIMILAR_TO lists of older lesions that new lesions entered (an import's reverse-kNN
// step): only what changed is written. $dropped: LIST<MAP{source, target}> edges that left a
// list; $moved: LIST<MAP{source, target, rank: INTEGER}> kept edges whose rank changed; $added:
// LIST<MAP{source, target, distance: FLOAT, rank: INTEGER}> new edges; $space; $producer.
CALL () {
  UNWIND $dropped AS row
  MATCH (:Lesion {lesion_id: row.source})-[e:SIMILAR_TO {space: $space}]->
        (:Lesion {lesion_id: row.target})
  DELETE e
}
CALL () {
  UNWIND $moved AS row
  MATCH (:Lesion {lesion_id: row.source})-[e:SIMILAR_TO {space: $space}]->
        (:Lesion {lesion_id: row.target})
  SET e.rank = row.rank
}
UNWIND $added AS row
MATCH (a:Lesion {lesion_id: row.source}), (b:Lesion {lesion_id: row.target})
CREATE (a)-[:SIMILAR_TO {space: $space, distance: row.distance, rank: row.rank,
                          producer: $producer}]->(b)
RETURN count(*) AS created
