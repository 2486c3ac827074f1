"""In-process `find` latency at 10k and 100k stored vectors (synthetic vectors, real store and catalog).

Each query runs what `photoman find "text"` runs once the model is loaded: CLIP text encoding
(ViT-B/32-shaped text tower), exact search in embedded Qdrant Edge, join with the SQLite catalog.

    python benchmarks/query_latency.py [--sizes 10000 100000] [--queries 50]
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
from _common import vit_b32_model


def fill(lib, n: int, rng: np.random.Generator) -> None:
    """n rows in the catalog and n points in the store, written the way the pipeline writes them."""
    from sqlalchemy import insert

    from photoman.catalog.models import Photo, Root
    from photoman.vectors import IMAGE, VectorPoint, point_id

    with lib.catalog.session() as s:
        root = Root(path="/bench", added_at=datetime.now())
        s.add(root)
        s.flush()
        rid = root.id
    step = 2000
    for start in range(0, n, step):
        count = min(step, n - start)
        vecs = rng.standard_normal((count, lib.dim)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        hashes = [f"{start + i:064x}" for i in range(count)]
        lib.store.upsert(
            [
                VectorPoint(
                    point_id(h, lib.model_id),
                    {IMAGE: v},
                    {
                        "hash": h,
                        "paths": [f"/bench/{h[-8:]}.jpg"],
                        "folders": ["/bench"],
                        "roots": ["/bench"],
                        "taken_at": "2020-01-01T00:00:00Z",
                        "camera": None,
                        "format": "jpeg",
                    },
                )
                for h, v in zip(hashes, vecs, strict=True)
            ]
        )
        with lib.catalog.session() as s:
            s.execute(
                insert(Photo),
                [
                    {
                        "root_id": rid,
                        "path": f"/bench/{h[-8:]}.jpg",
                        "content_hash": h,
                        "size": 1,
                        "mtime": 0.0,
                        "status": "ok",
                        "indexed_model": lib.model_id,
                        "caption": "",
                    }
                    for h in hashes
                ],
            )
    lib.store.flush()


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=50)
    args = ap.parse_args()

    from photoman.config import Settings
    from photoman.library import Library
    from photoman.search.engine import search_vector, text_vector

    model = vit_b32_model()
    rng = np.random.default_rng(0)
    words = "dog cat beach sunset mountain car city night snow forest flower food party child bridge"
    words = words.split()
    print(f"{'vectors':>8} | {'find p50':>9} {'find p95':>9} | {'encode p50':>10} {'search+join p50':>15} ms")
    for n in args.sizes:
        data = Path(tempfile.mkdtemp(prefix="photoman-qbench-"))
        try:
            with Library(Settings(data_dir=data, model=str(model))) as lib:
                lib.encoder  # noqa: B018 - warm model, as in a running process
                fill(lib, n, rng)
                assert lib.store.count() == n
                total, enc, srch = [], [], []
                for i in range(args.queries + 3):
                    q = f"a photo of a {words[i % len(words)]} and a {words[(3 * i + 1) % len(words)]}"
                    t0 = time.perf_counter()
                    vec = text_vector(lib, q)
                    t1 = time.perf_counter()
                    res = search_vector(lib, vec, limit=20)
                    t2 = time.perf_counter()
                    assert len(res) == 20
                    if i >= 3:  # warm-up
                        total.append((t2 - t0) * 1e3)
                        enc.append((t1 - t0) * 1e3)
                        srch.append((t2 - t1) * 1e3)
                print(
                    f"{n:>8} | {statistics.median(total):9.1f} {pct(total, 95):9.1f} | "
                    f"{statistics.median(enc):10.1f} {statistics.median(srch):15.1f}"
                )
        finally:
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
