"""The database layer: the only package that imports ``neo4j`` (driver and retries, statements,
schema, writes, named and ad-hoc queries, the local server)."""
