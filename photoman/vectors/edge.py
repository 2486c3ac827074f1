"""Embedded Qdrant Edge backend: the Qdrant engine in-process, one shard folder on local disk."""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import qdrant_edge as qe

from photoman.errors import DiskFullError, PhotomanError, StoreBusyError
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

# Payload indexes live on disk (memory-mapped): in-memory ones are rebuilt from disk at every load,
# which at 100k photos cost ~0.3 s of each daemon start and each `--no-daemon` command (~0.9 -> ~0.6 s
# for the whole shard load, measured) and grows with the library; filtered scans read the same pages
# from the page cache.
_INDEX_PARAMS: dict[str, Callable[[], Any]] = {
    "keyword": lambda: qe.KeywordIndexParams(on_disk=True),
    "datetime": lambda: qe.DatetimeIndexParams(on_disk=True),
    "geo": lambda: qe.GeoIndexParams(on_disk=True),
}


# The live shard's size: once it holds this much (KB of float16 vectors: 16k points at 512-d) it is
# sealed, out of process (photoman.vectors.shards). Also the seal size of a shard optimised here.
SEGMENT_KB = 16_384


# Past this many points an exact scan reads too much per query (1M float16 vectors: ~1 GB, ~60-90 ms
# on 2 cores), so sealed shards get an HNSW graph over int8-quantised vectors kept in RAM, and
# searches walk the graph and rescore the best candidates on the float16 originals. Below it the
# exact scan is as fast and costs no build time, so small libraries stay exact.
APPROXIMATE_FROM = 250_000
HNSW_M = 16
HNSW_EF_CONSTRUCT = 100
HNSW_EF = 256  # candidates a search keeps; at least the request's limit
OVERSAMPLING = 4.0  # quantised candidates per result rescored on the originals
# (a graph search pays a fixed cost in every segment: a built shard's graph is one segment)
APPROX_SEAL_FACTOR = 4  # a shard switched to graphs before shards existed: its segment policy
APPROX_MAX_FACTOR = 8
QUANT_MEMORY = qe.Memory.Pinned  # int8 copies in RAM: the graph walk reads them at random


def _segments(segment_kb: int, approximate: bool = False) -> dict[str, Any]:
    """Segment policy, applied to new and existing shards alike."""
    seal_kb, max_kb = segment_kb, 2 * segment_kb
    if approximate:
        seal_kb, max_kb = APPROX_SEAL_FACTOR * segment_kb, APPROX_MAX_FACTOR * segment_kb
    return {
        "optimizers": qe.EdgeOptimizersConfig(
            default_segment_number=2, indexing_threshold=seal_kb, max_segment_size=max_kb
        ),
        # m=0: sealed segments get no HNSW graph; searches are exact scans. An approximate shard
        # gives its image vector a graph of its own (_vector_params)
        "hnsw_config": qe.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10),
    }


def _vector_params(
    name: str, size: int, float16: bool, approximate: bool, segment_kb: int = SEGMENT_KB
) -> qe.EdgeVectorParams:
    """One named vector's storage. Approximate: the image vector gets the graph and int8 copies in
    RAM, and its float16 originals stay on disk (Cold: mapped, not loaded at open), as they are only
    read to rescore a few candidates per query. Caption vectors (few photos have one, but the store
    keeps a slot per point) stay exact, also mapped rather than loaded: a graph and int8 copies of
    empty slots doubled the memory."""
    extra: dict[str, Any] = {}
    if approximate and name != IMAGE:
        # caption vectors: read only by the caption modes (a text or image query searches the image
        # vectors by default), so they stay mapped, not loaded: ~1 KB per photo of RAM saved
        extra = {"memory": qe.Memory.Cold}
    if approximate and name == IMAGE:
        extra = {
            "memory": qe.Memory.Cold,
            "quantization_config": qe.ScalarQuantizationConfig(
                type=qe.ScalarType.Int8, quantile=0.99, memory=QUANT_MEMORY
            ),
            "hnsw_config": qe.HnswIndexConfig(
                m=HNSW_M,
                ef_construct=HNSW_EF_CONSTRUCT,
                # a segment (or a filter's matches in it) smaller than this is scanned exactly, from
                # the payload index when filtered (Qdrant's planner decides per segment, per query):
                # a narrow date or folder filter stays exact, and so do small segments
                full_scan_threshold=segment_kb,
                payload_m=0,  # no per-folder/per-tag subgraphs: filtered graph walks use ACORN (_params)
            ),
        }
    return qe.EdgeVectorParams(
        size=size,
        distance=qe.Distance.Cosine,
        datatype=qe.VectorStorageDatatype.Float16 if float16 else None,
        **extra,
    )


def _is_approximate(path: Path) -> bool:
    """Whether the shard was switched to graph search (it stays so: see EdgeStore.optimize)."""
    import json

    try:
        stored = json.loads((path / "edge_config.json").read_text())
    except (OSError, ValueError):
        return False
    configs = [stored.get("hnsw_config")] + [v.get("hnsw_config") for v in stored.get("vectors", {}).values()]
    return any(int((c or {}).get("m") or 0) > 0 for c in configs)


def _persisted(path: Path, segment_kb: int, approximate: bool) -> qe.EdgeConfig:
    """The shard's own vector config (EdgeConfig needs it on load) with today's segment policy."""
    import json

    stored = json.loads((path / "edge_config.json").read_text())
    vectors = {
        name: _vector_params(name, int(v["size"]), v.get("datatype") == "float16", approximate, segment_kb)
        for name, v in stored["vectors"].items()
    }
    return qe.EdgeConfig(vectors=vectors, **_segments(segment_kb, approximate))


def _load(
    path: Path, segment_kb: int, ballast_dir: Path | None, approximate: bool, keep_config: bool = False
) -> qe.EdgeShard:
    """Load with today's segment policy. Loading rewrites the shard's config file, so a disk full to
    the last byte refuses it: then the data dir's set-aside room is freed and the shard loaded as it
    was saved (photoman.diskspace.release_ballast). ``keep_config``: load as saved (a shard built
    sealed, photoman.vectors.shard_build, keeps the config it was built with)."""
    if keep_config:
        return qe.EdgeShard.load(str(path))
    try:
        return qe.EdgeShard.load(str(path), _persisted(path, segment_kb, approximate))
    except Exception as exc:
        from photoman.diskspace import is_disk_full, release_ballast

        if not is_disk_full(exc) or ballast_dir is None or not release_ballast(ballast_dir):
            raise
        return qe.EdgeShard.load(str(path))


def _config(dim: int, segment_kb: int) -> qe.EdgeConfig:
    # float16 storage: an exact scan reads half the bytes (100k vectors: 19 -> 12 ms here) and CLIP
    # unit vectors keep ~1e-4 score precision. Shards made before keep their float32 config.
    def params() -> qe.EdgeVectorParams:
        return qe.EdgeVectorParams(
            size=dim, distance=qe.Distance.Cosine, datatype=qe.VectorStorageDatatype.Float16
        )

    return qe.EdgeConfig(vectors={IMAGE: params(), CAPTION: params()}, **_segments(segment_kb))


# The shard's payload format (base.PAYLOAD_FORMAT), in a file of photoman's own in the shard folder (it
# moves and goes with the shard); a shard without one was written by a photoman before the format had
# a number (format 1)
FORMAT_FILE = "photoman_store.json"


def _stored_format(path: Path) -> int:
    """The payload format the shard recorded; 1 when it has no record (or an unreadable one: the
    upgrade then runs again, finds nothing to change and records it afresh)."""
    import json

    try:
        return int(json.loads((path / FORMAT_FILE).read_text())["payload_format"])
    except (OSError, ValueError, KeyError, TypeError):
        return 1


def _record_format(path: Path) -> None:
    """Record today's payload format: written aside, synced, renamed over (never a torn file)."""
    import json

    tmp = path / (FORMAT_FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump({"payload_format": PAYLOAD_FORMAT}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path / FORMAT_FILE)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def edge_filter(flt: SearchFilter | None) -> qe.Filter | None:
    """SearchFilter as a Qdrant Edge filter."""
    return translate_filter(flt, qe, qe.RangeDateTime, lambda ids: qe.HasIdCondition(point_ids=set(ids)))


# Below this much free space (beyond the holes themselves), sparse store files get their blocks.
BACK_WHEN_FREE_BELOW_MB = 1024


def back_sparse_files(path: Path) -> None:
    """Give the holes in the shard's files real blocks once the disk is getting full.

    Qdrant Edge creates its vector chunks, payload pages and WAL segments as sparse 32 MB files
    and writes into them through memory maps. On a full filesystem a write into a hole cannot be
    backed and the kernel kills the process with SIGBUS; loading a shard writes into its appendable
    chunk, so a full disk made even reading impossible. Called before loading and after every
    optimize(): with plenty of space nothing is done (holes cost nothing, a fresh store stays
    ~20 MB on disk); within ``BACK_WHEN_FREE_BELOW_MB`` of full, every hole is allocated (~200 MB
    for a fresh store), so no later write into these files can need space. What still can, a new
    chunk, is covered by the free-space reserve checked before each batch (photoman.diskspace).
    """
    from photoman.diskspace import free_mb, message

    if not path.is_dir() or free_mb(path) > 2 * BACK_WHEN_FREE_BELOW_MB:
        return  # plenty of room (a shard's holes stay well under this): no walk on the batch path
    sparse: list[tuple[Path, int]] = []
    for f in path.rglob("*"):
        st = f.lstat()
        if stat.S_ISREG(st.st_mode) and st.st_blocks * 512 < st.st_size:
            sparse.append((f, st.st_size))
    holes_mb = sum(size for _, size in sparse) / 1e6
    if not sparse or free_mb(path) > holes_mb + BACK_WHEN_FREE_BELOW_MB:
        return
    for f, size in sparse:
        try:
            fd = os.open(f, os.O_RDWR)
            try:
                os.posix_fallocate(fd, 0, size)
            finally:
                os.close(fd)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                what = "the vector store needs a little room even to open"
                raise DiskFullError(message(path.parent.parent, free_mb(path), what=what)) from None
            if exc.errno not in (errno.ENOENT, errno.EOPNOTSUPP, errno.EINVAL):  # gone, or no fallocate here
                raise


def _points(recs: Sequence[Any]) -> list[VectorPoint]:
    """Records from the bindings as VectorPoints (vectors only where they were asked for)."""
    return [
        VectorPoint(
            str(r.id),
            {k: np.asarray(v, dtype=np.float32) for k, v in cast(dict[str, Any], r.vector or {}).items()},
            dict(r.payload or {}),
        )
        for r in recs
    ]


class EdgeStore:
    """A Qdrant Edge shard; only one process may hold it open (its WAL is locked)."""

    def __init__(
        self,
        shard: qe.EdgeShard,
        path: Path,
        name: str,
        dim: int,
        segment_kb: int = SEGMENT_KB,
        ballast_dir: Path | None = None,
    ) -> None:
        self._shard = shard
        # held by every call on the shard, from any thread (the daemon's queries, its writer, the
        # export of a build: photoman.vectors.shards), and by its close
        self._swap = threading.RLock()
        self._changed = False  # a store only read is closed without a flush (~0.1-0.25 s at 100k)
        self.unflushed = False  # written since the last flush
        self.path = path
        self.name = name
        self.dim = dim
        self.segment_kb = segment_kb
        self.ballast_dir = ballast_dir
        self.approximate = _is_approximate(path)  # built with a graph (photoman.vectors.shard_build)

    @classmethod
    def open(
        cls,
        path: Path,
        name: str,
        dim: int,
        segment_kb: int = SEGMENT_KB,
        ballast_dir: Path | None = None,
        keep_config: bool = False,
    ) -> EdgeStore:
        """Load the shard at path, creating it (with payload indexes) on first use. ``keep_config``:
        load a shard as it was built (see :func:`_load`)."""
        path.mkdir(parents=True, exist_ok=True)
        back_sparse_files(path)
        created = False
        try:
            if (path / "edge_config.json").exists():
                shard = _load(path, segment_kb, ballast_dir, _is_approximate(path), keep_config)
            else:
                shard = qe.EdgeShard.create(str(path), _config(dim, segment_kb))
                created = True
        except Exception as exc:  # noqa: BLE001 - the bindings raise plain exceptions: sorted below
            text = str(exc)
            if "WouldBlock" in text or "lock" in text.lower():
                raise StoreBusyError(
                    f"vector store {path} is in use by another process (Qdrant Edge allows one opener)"
                ) from None
            raise PhotomanError(f"cannot open vector store {path}: {text.splitlines()[0]}") from None
        store = cls(shard, path, name, dim, segment_kb, ballast_dir)
        store._ensure_indexes()
        store._upgrade_payloads(empty=created)
        return store

    def _params(self, limit: int, filtered: bool) -> qe.SearchParams:
        """Exact scan for a small library; graph + quantised candidates + exact rescoring past it.

        A filter the planner does not send to the exact path walks the graph with ACORN (it looks
        past neighbours the filter rejects): with no per-field subgraphs (payload_m=0) a plain walk
        loses results once the filter rejects half the graph.
        """
        if not self.approximate:
            return qe.SearchParams(exact=True)
        return qe.SearchParams(
            hnsw_ef=max(HNSW_EF, limit),
            quantization=qe.QuantizationSearchParams(rescore=True, oversampling=OVERSAMPLING),
            acorn=qe.AcornSearchParams(enable=True) if filtered else None,
        )

    def _ensure_indexes(self) -> None:
        """Every filtered field indexed, on disk; an in-memory index from an older store is rebuilt
        on disk once (seconds per 100k photos). On a full disk the old index is kept."""
        have = self._shard.info().payload_schema
        for field, kind in INDEXED_FIELDS.items():
            info = have.get(field)
            if info is not None and getattr(info.params, "on_disk", False):
                continue
            try:
                if info is not None:
                    self._update(qe.UpdateOperation.delete_field_index(field))
                self._update(qe.UpdateOperation.create_field_index(field, _INDEX_PARAMS[kind]()))
            except Exception as exc:
                from photoman.diskspace import is_disk_full

                if info is None or not is_disk_full(exc):
                    raise

    def _upgrade_payloads(self, empty: bool = False) -> None:
        """Bring a shard an older photoman wrote to today's payload format (base.PAYLOAD_FORMAT), once:
        format 1 kept the content hash under "hash". Each point that still has it gets "content_hash"
        set, then its batch loses "hash"; the format is recorded only once all of it is flushed. A crash
        part way leaves no record, so the next open scrolls again: points done have no "hash" left, one
        caught between its two writes gets the same value again. ``empty``: a shard just created, with
        nothing to rewrite. Within ``BACK_WHEN_FREE_BELOW_MB`` of a full disk (the rewrite writes new
        payload pages: a full disk under a memory map is SIGBUS) it waits for a later open, as it does
        after meeting ENOSPC; readers take both keys meanwhile."""
        if _stored_format(self.path) >= PAYLOAD_FORMAT:
            return
        from photoman.diskspace import free_mb, is_disk_full

        if not empty and free_mb(self.path) < BACK_WHEN_FREE_BELOW_MB:
            return
        selector = qe.PayloadSelector.Include([OLD_HASH_KEY])
        try:
            offset = None
            while not empty:
                page = qe.ScrollRequest(
                    offset=offset, limit=UPGRADE_BATCH, with_payload=selector, with_vector=False
                )
                recs, offset = self._shard.scroll(page)
                old = {}  # id: the hash, of the points that still have it under the old key
                for r in recs:
                    payload = r.payload or {}
                    if OLD_HASH_KEY in payload:
                        old[r.id] = payload[OLD_HASH_KEY]
                for pid, content_hash in old.items():
                    self._update(qe.UpdateOperation.set_payload([pid], {HASH_KEY: content_hash}))
                if old:
                    self._update(qe.UpdateOperation.delete_payload(list(old), [OLD_HASH_KEY]))
                if offset is None:
                    break
            if self._changed:
                self._shard.flush()
            _record_format(self.path)
        except Exception as exc:
            if not is_disk_full(exc):
                raise

    def _update(self, op: qe.UpdateOperation) -> None:
        self._changed = self.unflushed = True
        with self._swap:
            self._shard.update(op)

    def upsert(self, points: Sequence[VectorPoint]) -> None:
        if not points:
            return
        pts = [qe.Point(p.id, {k: as_list(v) for k, v in p.vectors.items()}, p.payload) for p in points]
        self._update(qe.UpdateOperation.upsert_points(pts))

    def set_payload(self, ids: Sequence[str], payload: dict[str, Any]) -> None:
        if ids:
            self._update(qe.UpdateOperation.set_payload(list(ids), payload))

    def delete(self, ids: Sequence[str]) -> None:
        if ids:
            self._update(qe.UpdateOperation.delete_points(list(ids)))

    def update_vectors(self, points: Sequence[VectorPoint]) -> None:
        if points:
            pv = [qe.PointVectors(p.id, {k: as_list(v) for k, v in p.vectors.items()}) for p in points]
            self._update(qe.UpdateOperation.update_vectors(pv))

    def delete_vectors(self, ids: Sequence[str], names: Sequence[str]) -> None:
        if ids:
            self._update(qe.UpdateOperation.delete_vectors(list(ids), list(names)))

    def fused_search(
        self,
        queries: dict[str, np.ndarray],
        limit: int = 10,
        flt: SearchFilter | None = None,
        thresholds: dict[str, float] | None = None,
    ) -> list[Hit]:
        depth, thresholds = fusion_plan(limit, thresholds)
        f = edge_filter(flt)
        req = qe.QueryRequest(
            limit=limit,
            prefetches=[
                qe.Prefetch(depth, query=qe.Query.Nearest(as_list(v), using=name), filter=f,
                            params=self._params(depth, f is not None), score_threshold=thresholds.get(name))
                for name, v in queries.items()
            ],
            query=qe.Fusion.Rrf(k=RRF_K),  # type: ignore[arg-type]  # a Fusion; the stubs miss the variant
            filter=f,
            with_payload=True,
        )  # fmt: skip
        with self._swap:
            found = self._shard.query(req)
        return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in found]

    def search(
        self,
        vector: np.ndarray,
        using: str = IMAGE,
        limit: int = 10,
        flt: SearchFilter | None = None,
        with_payload: bool = True,
        score_threshold: float | None = None,
    ) -> list[Hit]:
        req = qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(as_list(vector), using=using),
            filter=(f := edge_filter(flt)),
            with_payload=with_payload,
            params=self._params(limit, f is not None),
            score_threshold=score_threshold,
        )
        with self._swap:
            found = self._shard.query(req)
        return [Hit(str(p.id), cosine(p.score), dict(p.payload or {})) for p in found]

    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[VectorPoint]:
        if not ids:
            return []
        with self._swap:
            recs = self._shard.retrieve(list(ids), with_payload=True, with_vector=with_vectors)
        return _points(recs)

    def present(self, ids: Sequence[str]) -> set[str]:
        """Which of these points this shard holds."""
        if not ids:
            return set()
        with self._swap:
            recs = self._shard.retrieve(list(ids), with_payload=False, with_vector=False)
        return {str(r.id) for r in recs}

    def page(self, offset: Any, limit: int) -> tuple[list[VectorPoint], Any]:
        """Up to ``limit`` points with vectors and payloads from ``offset`` (None: the start), and the
        offset of the next page (None: no more)."""
        with self._swap:
            recs, offset = self._shard.scroll(
                qe.ScrollRequest(offset=offset, limit=limit, with_payload=True, with_vector=True)
            )
        return _points(recs), offset

    def all_ids(self) -> set[str]:
        ids: set[str] = set()
        offset = None
        while True:
            with self._swap:
                recs, offset = self._shard.scroll(
                    qe.ScrollRequest(offset=offset, limit=1000, with_payload=False, with_vector=False)
                )
            ids.update(str(r.id) for r in recs)
            if offset is None:
                return ids

    def count(self) -> int:
        with self._swap:
            return int(self._shard.count(qe.CountRequest(exact=True)))

    def flush(self) -> None:
        with self._swap:
            self._shard.flush()
            self.unflushed = False

    def optimize(self, idle: bool = False) -> None:
        """Seal a full appendable segment / merge small ones (Qdrant's optimiser). It holds the GIL
        throughout (0.4-0.8 s per 16k points sealed here), so the library's store never calls it in
        its own process: shards are sealed by a child (photoman.vectors.shards). Files it creates
        sparse get their blocks here (:func:`back_sparse_files`)."""
        self._changed = True
        self._shard.optimize()
        back_sparse_files(self.path)

    def disk_bytes(self) -> int | None:
        # allocated blocks, not apparent size: the WAL preallocates sparse 32 MB segments
        return sum(f.stat().st_blocks * 512 for f in self.path.rglob("*") if f.is_file())

    def close(self) -> None:
        if self._shard is not None:
            if self._changed:  # unflushed writes of an earlier writer stay in the WAL, replayed on load
                self._shard.flush()
            self._shard.close()
            self._shard = None  # type: ignore[assignment]
