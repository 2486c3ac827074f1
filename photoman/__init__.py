"""photoman: semantic photo manager (CLIP embeddings in Qdrant, catalog in SQLite)."""

__version__ = "0.1.0"
