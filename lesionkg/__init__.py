"""LesionKG: a lesion knowledge base for radiology on Neo4j."""

__version__ = "0.1.0"
