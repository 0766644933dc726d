// Records the pseudonymisation key's id ($key_id) with the first PACS import, so that a later
// import with another key is refused instead of splitting patients in two. The graph holds one
// key: the node is merged on `scope` (unique, cypher/schema.cypher), so of two first imports
// with different keys the second waits for the first's commit, then finds the first's key_id
// and is refused by the caller. Returns the key_id the graph holds now.
MERGE (k:PseudonymKey {scope: 'graph'})
  ON CREATE SET k.key_id = $key_id
WITH k
// A graph from before the `scope` property: its key node without scope is this same key, or
// the caller refuses the import (and this transaction is rolled back).
OPTIONAL MATCH (old:PseudonymKey)
WHERE old.scope IS NULL
WITH k, collect(DISTINCT old.key_id) AS old_ids, collect(old) AS olds
FOREACH (o IN [x IN olds WHERE x.key_id = k.key_id] | DELETE o)
RETURN k.key_id AS key_id, [i IN old_ids WHERE i <> k.key_id] AS other_key_ids
