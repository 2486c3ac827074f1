"""How long an exact-mode seal holds the process, by segment size: the store alone, written as the
pipeline writes it (1000-point batches, optimize() after each), then searched and reopened.

Qdrant Edge holds the GIL for the whole of optimize(): a query arriving during a seal waits for its
end (README, issue 13: target ≤ 100 ms). This shows what the segment size buys: shorter seals against
more segments to open. ``--per-index``: the store with no payload index, then with each indexed
field alone (what each index adds to a seal). Usage: python benchmarks/seal_hold.py [--points 100000]
[--sizes 16384,4096,1024] [--per-index]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
from _common import ROOT  # noqa: F401 - puts the checkout on sys.path
from scale import cpu_name, photo

from photoman.catalog.payload import ancestors, camera_terms
from photoman.vectors import IMAGE, SearchFilter, VectorPoint, edge
from photoman.vectors.base import rfc3339
from photoman.vectors.edge import EdgeStore


def points(start: int, vecs: np.ndarray) -> list[VectorPoint]:
    """The scale benchmark's realistic payloads (folders, dates, cameras, some tags)."""
    out = []
    for i, v in zip(range(start, start + len(vecs)), vecs, strict=True):
        path, taken, (make, cam), tags = photo(i)
        camera = f"{make} {cam}"
        out.append(VectorPoint(f"00000000-0000-0000-0000-{i:012x}", {IMAGE: v}, {
            "content_hash": f"{i:064x}", "paths": [path], "folders": ancestors(path, "/bench"),
            "roots": ["/bench"], "taken_at": rfc3339(taken), "camera": camera,
            "camera_terms": camera_terms(camera), "format": "jpeg", "location": None,
            "tags": tags}))  # fmt: skip
    return out


def run(segment_kb: int, n: int, label: str = "") -> None:
    data = Path(tempfile.mkdtemp(prefix="photoman-seal-", dir="/tmp"))
    try:
        store = EdgeStore.open(data / "s", "bench", 512, segment_kb=segment_kb)
        rng = np.random.default_rng(0)
        holds = []
        for start in range(0, n, 1000):
            v = rng.standard_normal((1000, 512)).astype(np.float32)
            store.upsert(points(start, v / np.linalg.norm(v, axis=1, keepdims=True)))
            t = time.perf_counter()
            store.optimize()
            holds.append((time.perf_counter() - t) * 1e3)
        seals = sorted(h for h in holds if h > 20)  # calls that sealed or merged something
        queries = rng.standard_normal((60, 512)).astype(np.float32)

        def timed(flt: SearchFilter | None) -> float:
            ms = []
            for q in queries:
                t = time.perf_counter()
                store.search(q, limit=100, with_payload=False, flt=flt)
                ms.append((time.perf_counter() - t) * 1e3)
            return statistics.median(ms[10:])

        plain = timed(None)
        store.close()
        opens = []
        for _ in range(3):
            t = time.perf_counter()
            store = EdgeStore.open(data / "s", "bench", 512, segment_kb=segment_kb)
            opens.append(time.perf_counter() - t)
            filtered = timed(SearchFilter(folder="/bench/2019", since=datetime(2018, 1, 1),
                                          until=datetime(2019, 12, 31)))  # fmt: skip
            store.close()
        print(f"{label}segments of {segment_kb // 1024} MB: {len(seals)} seals/merges holding the process "
              f"p50 {statistics.median(seals):.0f} ms, max {max(seals):.0f} ms; search p50 {plain:.1f} ms, "
              f"filtered {filtered:.1f} ms; store open {min(opens):.2f}-{max(opens):.2f} s",
              flush=True)  # fmt: skip
    finally:
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--sizes", default="16384,4096,1024", help="segment sizes to try, KB of vectors")
    ap.add_argument("--per-index", action="store_true", help="no payload index, then each field's alone")
    args = ap.parse_args()
    print(f"CPU: {cpu_name()}; {args.points} points, exact mode", flush=True)
    fields = dict(edge.INDEXED_FIELDS)
    variants = [("", fields)]
    if args.per_index:
        variants = [("no payload index: ", {})] + [(f"{f} only: ", {f: k}) for f, k in fields.items()]
    for label, indexed in variants:
        edge.INDEXED_FIELDS = indexed  # what EdgeStore.open indexes (this benchmark's stores only)
        for kb in (int(x) for x in args.sizes.split(",")):
            run(kb, args.points, label)


if __name__ == "__main__":
    main()
