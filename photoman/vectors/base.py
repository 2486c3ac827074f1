"""The VectorStore protocol, its value types, and naming of collections and points."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from photoman.catalog.paths import to_store
from photoman.vectors.schema import CAPTION, IMAGE, SearchFilter, rfc3339

if TYPE_CHECKING:
    from photoman.config import Settings

__all__ = ["CAPTION", "IMAGE", "SearchFilter", "rfc3339"]

RRF_K = 60
_NAMESPACE = uuid.UUID("6c1f3a52-9d0e-4c55-8a43-70686f746f6d")

# What a point's payload holds, by format. 1: the content hash under "hash"; 2: under "content_hash",
# the catalog's name for it. A store records the format of its payloads once every point has it
# (edge: a file in the shard folder; server: the collection's metadata); one written with an older
# format is upgraded when opened, UPGRADE_BATCH points at a time, the record written last, so a crash
# part way leaves a store that upgrades again on the next open. Readers take either key meanwhile
# (payload_hash): a shared server's store may be upgraded by another machine while this one searches.
PAYLOAD_FORMAT = 2
HASH_KEY = "content_hash"
OLD_HASH_KEY = "hash"  # format 1
UPGRADE_BATCH = 1000

# payload fields that filters use; each gets a payload index in both backends
INDEXED_FIELDS = {
    "roots": "keyword",
    "folders": "keyword",
    "camera_terms": "keyword",
    "format": "keyword",
    "tags": "keyword",
    "taken_at": "datetime",
    "location": "geo",
}


def payload_hash(payload: dict[str, Any]) -> str | None:
    """The content hash a point's payload carries, under either format's key (see PAYLOAD_FORMAT), so a
    store part way through its upgrade loses no result."""
    found = payload.get(HASH_KEY)
    return found if found is not None else payload.get(OLD_HASH_KEY)


def point_id(content_hash: str, model_id: str) -> str:
    """UUID from content hash and model: identical bytes share a point, a new model gets new ones."""
    return str(uuid.uuid5(_NAMESPACE, f"{model_id}\n{content_hash}"))


def collection_prefix(model_id: str) -> str:
    """What every collection of this model is named with, whatever its vector size."""
    tail = model_id.rstrip("/").split("/")[-1]
    slug = re.sub(r"[^A-Za-z0-9]+", "-", tail).strip("-").lower()[:40] or "model"
    digest = hashlib.sha1(model_id.encode()).hexdigest()[:8]
    return f"photoman-{slug}-{digest}-"


def collection_name(model_id: str, dim: int) -> str:
    """Collection (or shard folder) name carrying the model id and vector size."""
    return f"{collection_prefix(model_id)}{dim}"


def drop_collections(settings: Settings, model_id: str) -> list[str]:
    """Delete this model's collections (it must not be open); the names deleted.

    Found by name, so a model whose checkpoint is no longer on this machine can still be dropped."""
    prefix = collection_prefix(model_id)
    if settings.qdrant_url:
        from photoman.vectors.server import ServerStore

        return ServerStore.drop_named(settings.qdrant_url, prefix, api_key=settings.qdrant_api_key)
    import shutil

    gone = []
    for folder in sorted(settings.vectors_dir.glob(prefix + "*")):
        if folder.is_dir() and folder.name[len(prefix) :].isdigit():
            shutil.rmtree(folder)
            gone.append(folder.name)
    return gone


@dataclass
class VectorPoint:
    """A point to upsert: its id, named unit vectors, and the payload filters need."""

    id: str
    vectors: dict[str, np.ndarray]
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class Hit:
    """One search result from the store."""

    id: str
    score: float
    payload: dict[str, Any]


class VectorStore(Protocol):
    """What photoman needs from Qdrant; both backends pass the same test suite."""

    name: str
    dim: int

    def upsert(self, points: Sequence[VectorPoint]) -> None:
        """Insert or replace points (idempotent)."""

    def set_payload(self, ids: Sequence[str], payload: dict[str, Any]) -> None:
        """Replace the given payload keys on existing points (moves, renames, duplicates)."""

    def delete(self, ids: Sequence[str]) -> None:
        """Remove points; unknown ids are ignored."""

    def update_vectors(self, points: Sequence[VectorPoint]) -> None:
        """Replace only the named vectors given (a caption edit re-embeds nothing else)."""

    def delete_vectors(self, ids: Sequence[str], names: Sequence[str]) -> None:
        """Drop named vectors from points (a caption removed)."""

    def fused_search(
        self,
        queries: dict[str, np.ndarray],
        limit: int = 10,
        flt: SearchFilter | None = None,
        thresholds: dict[str, float] | None = None,
    ) -> list[Hit]:
        """Search several named vectors (each above its threshold) and fuse the rankings by RRF, k=60."""

    def search(
        self,
        vector: np.ndarray,
        using: str = IMAGE,
        limit: int = 10,
        flt: SearchFilter | None = None,
        with_payload: bool = True,
    ) -> list[Hit]:
        """Exact nearest neighbours by cosine similarity, best first (payload-less hits are cheaper)."""

    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[VectorPoint]:
        """Points by id (missing ids are skipped)."""

    def all_ids(self) -> set[str]:
        """Every point id (for reconciling with the catalog)."""

    def count(self) -> int:
        """Number of points."""

    def flush(self) -> None:
        """Make everything written so far durable."""

    def optimize(self, idle: bool = False) -> None:
        """Reorganise storage for fast search after writes (a no-op where the store does it itself);
        ``idle``: the caller knows no user is waiting, so long work put off earlier may run now."""

    def disk_bytes(self) -> int | None:
        """Bytes on local disk, when the store is local."""

    def close(self) -> None:
        """Flush and release the store."""


def translate_filter(flt: SearchFilter | None, m: Any, date_range: Any, has_id: Any) -> Any:
    """SearchFilter as a Qdrant filter, written once for both backends.

    ``m`` is the backend's module (``qdrant_edge`` or ``qdrant_client.models``): both name their
    FieldCondition, MatchValue, MatchAny, GeoPoint, GeoRadius and Filter alike; the date range class
    and the id condition differ, so they are passed in.
    """
    if flt is None or flt.is_empty():
        return None

    def field(key: str, **kw: Any) -> Any:
        return m.FieldCondition(key=key, **kw)

    must: list[Any] = []
    if flt.roots:
        must.append(field("roots", match=m.MatchAny(any=[to_store(r) for r in flt.roots])))
    if flt.folder:
        must.append(field("folders", match=m.MatchValue(value=to_store(flt.folder))))
    must += [field("camera_terms", match=m.MatchValue(value=w)) for w in flt.camera or []]
    must += [field("tags", match=m.MatchValue(value=t)) for t in flt.tags or []]
    if flt.near:
        lat, lon, km = flt.near
        must.append(
            field("location", geo_radius=m.GeoRadius(center=m.GeoPoint(lon=lon, lat=lat), radius=km * 1000))
        )
    if flt.formats:
        must.append(field("format", match=m.MatchAny(any=list(flt.formats))))
    if flt.since or flt.until:
        since = rfc3339(flt.since) if flt.since else None
        until = rfc3339(flt.until) if flt.until else None
        must.append(field("taken_at", range=date_range(gte=since, lte=until)))
    if flt.ids is not None:
        must.append(has_id(list(flt.ids)))
    excluded = [to_store(r) for r in flt.exclude_roots or []]
    must_not = [field("roots", match=m.MatchAny(any=excluded))] if excluded else []
    if flt.exclude_ids:
        must_not.append(has_id(list(flt.exclude_ids)))
    return m.Filter(must=must or None, must_not=must_not or None)


def fusion_plan(limit: int, thresholds: dict[str, float] | None) -> tuple[int, dict[str, float]]:
    """How deep each named vector's prefetch goes before RRF, and the cutoffs that actually cut."""
    return max(limit * 4, 100), {k: v for k, v in (thresholds or {}).items() if v != float("-inf")}


def cosine(score: float) -> float:
    """A stored-vector cosine, clamped: float16 storage can put a self-match at 1.0002."""
    return min(1.0, max(-1.0, float(score)))


def as_list(vec: np.ndarray | Sequence[float]) -> list[float]:
    return np.asarray(vec, dtype=np.float32).ravel().tolist()


def open_store(settings: Settings, model_id: str, dim: int) -> VectorStore:
    """The configured backend: a Qdrant server when ``qdrant_url`` is set, else embedded Edge."""
    name = collection_name(model_id, dim)
    if settings.qdrant_url:
        from photoman.vectors.server import ServerStore

        return ServerStore.connect(settings.qdrant_url, name, dim, api_key=settings.qdrant_api_key)
    from photoman.vectors.shards import ShardedStore

    return ShardedStore.open(settings.vectors_dir / name, name, dim, ballast_dir=settings.data_dir)
