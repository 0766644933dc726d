// Starts the study-date migration (lesionkg.etl.dates): takes the graph's key node for this
// transaction (created with $key_id on a graph that has none yet, merged on `scope` as
// etl/record_key does) and says whether its study dates are already shifted: the marker
// `dates_shifted` on the node, or on a key node from before `scope` (which etl/record_key later
// folds into this one). Setting key_id to itself takes the node's write lock, so two imports that
// start together migrate once: the second waits, then finds the marker.
MERGE (k:PseudonymKey {scope: 'graph'})
  ON CREATE SET k.key_id = $key_id
SET k.key_id = k.key_id
WITH k
OPTIONAL MATCH (old:PseudonymKey)
WHERE old.scope IS NULL AND old.key_id = k.key_id
WITH k, collect(old.dates_shifted) AS old_marks
RETURN k.key_id AS key_id, coalesce(k.dates_shifted, false) OR true IN old_marks AS shifted
