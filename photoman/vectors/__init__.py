"""Vector storage behind one small interface: embedded Qdrant Edge (default) or a Qdrant server.

The names load on first use, so importing :mod:`photoman.vectors.schema` (the filter type the thin
client builds) does not import numpy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from photoman.vectors.base import (
        CAPTION,
        IMAGE,
        Hit,
        SearchFilter,
        VectorPoint,
        VectorStore,
        collection_name,
        drop_collections,
        open_store,
        payload_hash,
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
    "drop_collections",
    "open_store",
    "payload_hash",
    "point_id",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from photoman.vectors import base

        return getattr(base, name)
    raise AttributeError(f"module 'photoman.vectors' has no attribute {name!r}")
