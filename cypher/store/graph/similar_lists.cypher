// Every lesion's SIMILAR_TO list in one space, nearest first: the state an import updates.
// $space: the space's name.
MATCH (a:Lesion)-[e:SIMILAR_TO {space: $space}]->(b:Lesion)
WITH a, e, b
ORDER BY a.lesion_id, e.rank
RETURN a.lesion_id AS source, collect(b.lesion_id) AS targets, collect(e.distance) AS distances
