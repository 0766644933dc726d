// The first similarity step of an import's write transaction: takes the write lock of the space's
// EmbeddingSpace node, so that imports maintaining the space's SIMILAR_TO lists do it one at a
// time, each seeing every list the others committed. The generation counts those transactions
// (and `lesionkg link` runs): an import whose in-memory lists are of an older generation reads
// the graph's again. k and other_patients are kept when recorded (by `link` or the first import).
// $space: the space's name; $k: the import's k when the space records none.
// The lock is taken before the generation is read (SET then REMOVE of a marker), so that two
// imports never read the same generation. The node is unique (cypher/schema.cypher).
MERGE (s:EmbeddingSpace {name: $space})
SET s._lock = true
REMOVE s._lock
WITH s
SET s.generation = coalesce(s.generation, 0) + 1,
    s.k = coalesce(s.k, $k),
    s.other_patients = coalesce(s.other_patients, false)
RETURN s.generation AS generation, s.k AS k, s.other_patients AS other_patients
