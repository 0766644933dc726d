"""Graph operations: each joins a pure :mod:`lesionkg.core` module with the database layer
(tracks, similarity edges, embeddings, cohort questions, retrieval evaluation)."""
