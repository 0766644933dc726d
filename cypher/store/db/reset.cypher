// Deletes every node and relationship in batches (the schema stays; it is re-applied anyway).
MATCH (n)
CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS
