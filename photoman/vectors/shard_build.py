"""Build sealed Qdrant Edge shards from exported points, in a child process of the store's owner.

Qdrant Edge holds the Python interpreter (GIL) for the whole of a seal or graph build: 0.4-0.8 s per
16k points sealed, seconds to minutes of graph. Run in the daemon, every query arriving meanwhile
waited that long. So the store (:mod:`photoman.vectors.shards`) writes the points to seal into a job
folder and this module, run as ``python -m photoman.vectors.shard_build JOB``, builds them into new
shard folders there, at the lowest CPU priority; the daemon only loads the result (tens of ms).

A job folder holds ``spec.json`` (dim, outputs, whether to build graphs), ``ids.json`` and
``payloads.jsonl`` (one line per point), ``image.npy`` and ``caption.npy`` (row i: point i's vectors)
and ``caption_rows.npy`` (the points that have a caption vector). The child writes each output shard under its
own name, then ``done.json`` last: a folder without it is unfinished and is thrown away.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe

from photoman.vectors.base import CAPTION, IMAGE, INDEXED_FIELDS
from photoman.vectors.edge import _INDEX_PARAMS, _record_format, _vector_params

BATCH = 1000
# exact shards are built as this many sealed segments, which one search scans in parallel (one core
# each): the 2-core machine scans a 64k-point shard in about half the time of one segment
EXACT_SEGMENTS = 2


def _exact_params(dim: int) -> qe.EdgeVectorParams:
    f16 = qe.VectorStorageDatatype.Float16
    return qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine, datatype=f16, memory=qe.Memory.Cold)


def built_config(dim: int, approximate: bool, segment_kb: int) -> qe.EdgeConfig:
    """A shard that is only ever read, deleted from and given payloads after its build: no WAL (loading
    a WAL costs ~100 ms whatever the shard's size), every point sealed (the optimiser seals anything
    over 1 KB of vectors) and no merging (the store merges shards, not Qdrant)."""
    vectors = {name: _vector_params(name, dim, True, approximate, segment_kb) for name in (IMAGE, CAPTION)}
    if not approximate:  # vectors read from the page cache, not loaded at open: 64k points load in
        # ~50 ms rather than ~130 (an exact scan reads them all either way)
        vectors = {name: _exact_params(dim) for name in (IMAGE, CAPTION)}
    return qe.EdgeConfig(
        vectors=vectors,
        optimizers=qe.EdgeOptimizersConfig(
            default_segment_number=64, indexing_threshold=1, max_segment_size=10**9
        ),
        hnsw_config=qe.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10),
        wal_enabled=False,
    )


class _Export:
    """The job's points, read in order: the payload file once, the vectors through memory maps."""

    def __init__(self, job: Path) -> None:
        self.ids = json.loads((job / "ids.json").read_text())
        self.image = np.load(job / "image.npy", mmap_mode="r")
        self.captions = {int(r) for r in np.load(job / "caption_rows.npy")}  # points that have one
        self.caption = np.load(job / "caption.npy", mmap_mode="r")  # (row i: point i's, where it has one)
        self._payloads = open(job / "payloads.jsonl")  # noqa: SIM115 - read across calls, closed in close()
        self._next = 0

    def points(self, start: int, end: int) -> list[qe.Point]:
        assert start == self._next, "points are read in order"
        out = []
        for i in range(start, end):
            vectors: dict[str, Any] = {IMAGE: self.image[i].tolist()}
            if i in self.captions:
                vectors[CAPTION] = self.caption[i].tolist()
            out.append(qe.Point(self.ids[i], vectors, json.loads(self._payloads.readline())))
        self._next = end
        return out

    def close(self) -> None:
        self._payloads.close()


def build_shard(
    export: _Export, out: Path, start: int, end: int, dim: int, approximate: bool, segment_kb: int
) -> None:
    """Points ``start:end`` of the job as a sealed shard at ``out``, flushed and closed."""
    shard = qe.EdgeShard.create(str(out), built_config(dim, approximate, segment_kb))
    try:
        for field, kind in INDEXED_FIELDS.items():
            shard.update(qe.UpdateOperation.create_field_index(field, _INDEX_PARAMS[kind]()))
        parts = 1 if approximate else EXACT_SEGMENTS  # a graph costs per segment searched: one
        step = max(1, -(-(end - start) // parts))
        for part in range(start, end, step):
            stop = min(part + step, end)
            for i in range(part, stop, BATCH):
                shard.update(qe.UpdateOperation.upsert_points(export.points(i, min(i + BATCH, stop))))
            shard.optimize()  # seals what was written so far into a segment of its own
        shard.flush()
    finally:
        shard.close()
    _record_format(out)


def _die_with_parent(parent: int) -> None:
    """A build whose store's process is gone is garbage (the next open deletes its folder, and could
    hand the same job name to a new build): on Linux the kernel kills this process with its parent."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # (gone before the call above)
        sys.exit(1)


def main(job: Path, parent: int | None = None) -> None:
    if parent is not None:
        _die_with_parent(parent)
    with contextlib.suppress(OSError):
        os.nice(19)  # the daemon answers queries on the same cores: it goes first
    spec = json.loads((job / "spec.json").read_text())
    export = _Export(job)
    try:
        for name, start, end in spec["outputs"]:
            build_shard(export, job / name, start, end, spec["dim"], spec["approximate"], spec["segment_kb"])
    finally:
        export.close()
    tmp = job / "done.json.tmp"
    tmp.write_text(json.dumps({"outputs": [o[0] for o in spec["outputs"]]}))
    with open(tmp) as f:
        os.fsync(f.fileno())
    os.replace(tmp, job / "done.json")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else None)
