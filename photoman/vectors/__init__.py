"""Vector storage behind one small interface: embedded Qdrant Edge (default) or a Qdrant server."""

from photoman.vectors.base import (
    CAPTION,
    IMAGE,
    Hit,
    SearchFilter,
    VectorPoint,
    VectorStore,
    collection_name,
    open_store,
    point_id,
)

__all__ = [
    "CAPTION",
    "IMAGE",
    "Hit",
    "SearchFilter",
    "VectorPoint",
    "VectorStore",
    "collection_name",
    "open_store",
    "point_id",
]
