"""Cypher statements shipped as package data (``lesionkg.cypher``); see lesionkg.db.statements."""
