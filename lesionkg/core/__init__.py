"""Pure logic: records, errors and the algorithms of the lesion graph. Nothing here imports Neo4j or
reads files, so every module is tested without a database."""
