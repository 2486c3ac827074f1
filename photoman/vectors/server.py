"""Qdrant server backend through qdrant-client (also its in-process mode, which tests use)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from photoman.errors import PhotomanError
from photoman.vectors.base import (
    CAPTION,
    HASH_KEY,
    IMAGE,
    INDEXED_FIELDS,
    OLD_HASH_KEY,
    PAYLOAD_FORMAT,
    RRF_K,
    UPGRADE_BATCH,
    Hit,
    SearchFilter,
    VectorPoint,
    as_list,
    cosine,
    fusion_plan,
    translate_filter,
)

_SCHEMA = {
    "keyword": models.PayloadSchemaType.KEYWORD,
    "datetime": models.PayloadSchemaType.DATETIME,
    "geo": models.PayloadSchemaType.GEO,
}


# The collection's payload format (base.PAYLOAD_FORMAT), in its metadata (Qdrant 1.16+); a collection
# without it was made by a photoman before the format had a number (format 1)
FORMAT_KEY = "photoman_payload_format"

HNSW_EF = 128
OVERSAMPLING = 2.0


def _params(limit: int) -> models.SearchParams:
    """A server chooses by size itself: segments under its indexing threshold (~20k photos) are
    scanned exactly, bigger ones get HNSW; quantised candidates are rescored on the originals
    (the embedded store's approximate mode, photoman.vectors.edge)."""
    return models.SearchParams(
        hnsw_ef=max(HNSW_EF, limit),
        quantization=models.QuantizationSearchParams(rescore=True, oversampling=OVERSAMPLING),
    )


def _ids_filter(ids: list[Any]) -> models.Filter:
    return models.Filter(must=[models.HasIdCondition(has_id=ids)])


def server_filter(flt: SearchFilter | None) -> models.Filter | None:
    """SearchFilter as a qdrant-client filter."""
    return translate_filter(flt, models, models.DatetimeRange, lambda ids: models.HasIdCondition(has_id=ids))


class ServerStore:
    """One collection on a Qdrant server (or qdrant-client's local mode with location=':memory:')."""

    def __init__(self, client: QdrantClient, name: str, dim: int) -> None:
        if getattr(client, "_is_local", False) or type(client._client).__name__ == "QdrantLocal":
            # local mode ignores indexes and search params by design; its warnings say nothing useful here
            warnings.filterwarnings("ignore", message=".*(local Qdrant|Local mode).*", category=UserWarning)
        self._client = client
        self.name = name
        self.dim = dim

    @staticmethod
    def _client_for(url: str, api_key: str | None) -> QdrantClient:
        if url == ":memory:" or not url.startswith(("http://", "https://")):
            return QdrantClient(location=url) if url == ":memory:" else QdrantClient(path=url)
        # no version check: qdrant-client runs it in a daemon thread, which a command that fails fast
        # (a server not there) left inside OpenSSL as the interpreter exited: a segfault or bus error
        # after the one-line message, most runs. A server too old fails on the first call instead.
        return QdrantClient(url=url, api_key=api_key, timeout=30, check_compatibility=False)

    @classmethod
    def drop_named(cls, url: str, prefix: str, api_key: str | None = None) -> list[str]:
        """Delete the collections named ``prefix`` + a vector size (a model's); the names deleted."""
        try:
            client = cls._client_for(url, api_key)
            names = [c.name for c in client.get_collections().collections]
            gone = [n for n in names if n.startswith(prefix) and n[len(prefix) :].isdigit()]
            for n in gone:
                client.delete_collection(n)
            client.close()
        except Exception as exc:  # noqa: BLE001 - connection refused, timeouts, bad URLs: one line
            raise PhotomanError(f"cannot reach Qdrant at {url}: {str(exc).splitlines()[0]}") from None
        return gone

    @classmethod
    def connect(cls, url: str, name: str, dim: int, api_key: str | None = None) -> ServerStore:
        """Connect, ensure the collection; ``:memory:`` or a folder path mean qdrant-client local mode."""
        try:
            client = cls._client_for(url, api_key)
            store = cls(client, name, dim)
            store._ensure_collection()
        except PhotomanError:
            raise
        except Exception as exc:  # noqa: BLE001 - connection refused, timeouts, bad URLs: one line
            raise PhotomanError(f"cannot reach Qdrant at {url}: {str(exc).splitlines()[0]}") from None
        return store

    def _ensure_collection(self) -> None:
        if not self._client.collection_exists(self.name):
            # float16 like the embedded store: half the memory and scan bandwidth, ~1e-4 score precision
            params = models.VectorParams(
                size=self.dim, distance=models.Distance.COSINE, datatype=models.Datatype.FLOAT16
            )
            # int8 copies in RAM for the graph walk (a quarter of the float32 bytes); payload_m=0: no
            # per-field subgraphs, filtered queries go exact (small) or walk the graph (large)
            quant = models.ScalarQuantization(
                scalar=models.ScalarQuantizationConfig(
                    type=models.ScalarType.INT8, quantile=0.99, always_ram=True
                )
            )
            self._client.create_collection(
                self.name,
                vectors_config={IMAGE: params, CAPTION: params},
                hnsw_config=models.HnswConfigDiff(payload_m=0),
                quantization_config=quant,
                metadata={FORMAT_KEY: PAYLOAD_FORMAT},
            )
        info = self._client.get_collection(self.name)
        have = set((info.payload_schema or {}).keys())
        for field, kind in INDEXED_FIELDS.items():
            if field not in have:
                self._client.create_payload_index(self.name, field, _SCHEMA[kind], wait=True)
        stored = (info.config.metadata or {}).get(FORMAT_KEY)
        if not isinstance(stored, int) or stored < PAYLOAD_FORMAT:
            self._upgrade_payloads()

    def _upgrade_payloads(self) -> None:
        """Bring a collection an older photoman wrote to today's payload format, once (the embedded
        store's _upgrade_payloads, which says why it is safe to cut short): per batch, one request
        sets "content_hash" on each point that still has "hash" and then deletes "hash"; the format
        goes into the collection's metadata last. Each point is addressed by a filter on its id, so a
        point another machine deletes meanwhile is skipped, not an error; values are the same whoever
        writes them (a point's id derives from its hash), so machines upgrading at once agree."""
        offset = None
        while True:
            recs, offset = self._client.scroll(
                self.name, limit=UPGRADE_BATCH, offset=offset, with_payload=[OLD_HASH_KEY], with_vectors=False
            )
            old = {}  # id: the hash, of the points that still have it under the old key
            for r in recs:
                payload = r.payload or {}
                if OLD_HASH_KEY in payload:
                    old[r.id] = payload[OLD_HASH_KEY]
            if old:
                ops: list[models.UpdateOperation] = [
                    models.SetPayloadOperation(
                        set_payload=models.SetPayload(payload={HASH_KEY: value}, filter=_ids_filter([pid]))
                    )
                    for pid, value in old.items()
                ]
                ops.append(
                    models.DeletePayloadOperation(
                        delete_payload=models.DeletePayload(
                            keys=[OLD_HASH_KEY], filter=_ids_filter(list(old))
                        )
                    )
                )
                self._client.batch_update_points(self.name, ops, wait=True)
            if offset is None:
                break
        self._client.update_collection(self.name, metadata={FORMAT_KEY: PAYLOAD_FORMAT})

    def upsert(self, points: Sequence[VectorPoint]) -> None:
        if not points:
            return
        pts = [
            models.PointStruct(
                id=p.id, vector={k: as_list(v) for k, v in p.vectors.items()}, payload=p.payload
            )
            for p in points
        ]
        self._client.upsert(self.name, pts, wait=True)

    def set_payload(self, ids: Sequence[str], payload: dict[str, Any]) -> None:
        if ids:
            self._client.set_payload(self.name, payload=payload, points=list(ids), wait=True)

    def delete(self, ids: Sequence[str]) -> None:
        if ids:
            self._client.delete(self.name, points_selector=models.PointIdsList(points=list(ids)), wait=True)

    def update_vectors(self, points: Sequence[VectorPoint]) -> None:
        if points:
            pv = [
                models.PointVectors(id=p.id, vector={k: as_list(v) for k, v in p.vectors.items()})
                for p in points
            ]
            self._client.update_vectors(self.name, points=pv, wait=True)

    def delete_vectors(self, ids: Sequence[str], names: Sequence[str]) -> None:
        if ids:
            self._client.delete_vectors(self.name, vectors=list(names), points=list(ids), wait=True)

    def fused_search(
        self,
        queries: dict[str, np.ndarray],
        limit: int = 10,
        flt: SearchFilter | None = None,
        thresholds: dict[str, float] | None = None,
    ) -> list[Hit]:
        depth, thresholds = fusion_plan(limit, thresholds)
        f = server_filter(flt)
        res = self._client.query_points(
            self.name,
            prefetch=[
                models.Prefetch(query=as_list(v), using=name, filter=f, limit=depth,
                                params=_params(depth), score_threshold=thresholds.get(name))
                for name, v in queries.items()
            ],
            query=models.RrfQuery(rrf=models.Rrf(k=RRF_K)),
            query_filter=f,
            limit=limit,
            with_payload=True,
        )  # fmt: skip
        return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in res.points]

    def search(
        self,
        vector: np.ndarray,
        using: str = IMAGE,
        limit: int = 10,
        flt: SearchFilter | None = None,
        with_payload: bool = True,
    ) -> list[Hit]:
        res = self._client.query_points(
            self.name,
            query=as_list(vector),
            using=using,
            query_filter=server_filter(flt),
            limit=limit,
            with_payload=with_payload,
            search_params=_params(limit),
        )
        return [Hit(str(p.id), cosine(p.score), dict(p.payload or {})) for p in res.points]

    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[VectorPoint]:
        if not ids:
            return []
        recs = self._client.retrieve(self.name, list(ids), with_payload=True, with_vectors=with_vectors)
        out = []
        for r in recs:
            vecs = r.vector if isinstance(r.vector, dict) else {}
            out.append(
                VectorPoint(
                    str(r.id), {k: np.asarray(v, dtype=np.float32) for k, v in vecs.items()}, r.payload or {}
                )
            )
        return out

    def all_ids(self) -> set[str]:
        ids: set[str] = set()
        offset = None
        while True:
            recs, offset = self._client.scroll(
                self.name, limit=1000, offset=offset, with_payload=False, with_vectors=False
            )
            ids.update(str(r.id) for r in recs)
            if offset is None:
                return ids

    def count(self) -> int:
        return int(self._client.count(self.name, exact=True).count)

    def flush(self) -> None:
        """Server writes are durable once acknowledged (wait=True)."""

    def optimize(self, idle: bool = False) -> None:
        """The server runs its own optimizers in the background."""

    def disk_bytes(self) -> int | None:
        return None

    def close(self) -> None:
        self._client.close()
