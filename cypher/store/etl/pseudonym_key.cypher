// The id(s) of the pseudonymisation key that made the graph's PACS ids (never the key itself).
MATCH (k:PseudonymKey)
RETURN DISTINCT k.key_id AS key_id
