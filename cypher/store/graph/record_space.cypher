// One node per embedding space: what its vectors, index and edges are, for users and for audits.
MERGE (s:EmbeddingSpace {name: $space})
SET s += $props
