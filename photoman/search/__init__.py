"""Search: turn a query into a vector, ask Qdrant, join the hits with the catalog."""
