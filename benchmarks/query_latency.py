"""`find` latency at 10k and 100k stored vectors (synthetic vectors, real store and catalog).

1. in process: what `photoman find "text"` runs once the model is loaded (CLIP text encoding with
   the ViT-B/32-shaped text tower, exact search in embedded Qdrant Edge, join with SQLite);
2. warm: the same query sent to a running `photoman watch` daemon over its Unix socket;
3. cold: a fresh `photoman find` process with no daemon, which imports torch, loads the model and
   opens the store for its one query (the per-query-reload design), and the warm/cold ratio.

    python benchmarks/query_latency.py [--sizes 10000 100000] [--queries 50] [--cold 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import bench_root, vit_b32_model

from photoman.library import Library


def fill(lib: Library, n: int, rng: np.random.Generator) -> None:
    """n rows in the catalog and n points in the store, written the way the pipeline writes them."""
    from sqlalchemy import insert

    from photoman.catalog.models import Photo
    from photoman.vectors import IMAGE, VectorPoint, point_id

    rid = bench_root(lib)
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
                        "content_hash": h,
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
                        "model_id": lib.model_id,
                        "caption": "",
                    }
                    for h in hashes
                ],
            )
        lib.store.optimize()  # as the pipeline does after each batch it writes
    lib.store.flush()


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--cold", type=int, default=5, help="cold CLI processes per size")
    args = ap.parse_args()

    from photoman.config import Settings
    from photoman.library import Library
    from photoman.search.engine import join, search
    from photoman.search.query import Query, Term

    model = vit_b32_model()
    rng = np.random.default_rng(0)
    words = "dog cat beach sunset mountain car city night snow forest flower food party child bridge"
    words = words.split()
    ap_cold = args.cold
    rows = []
    print(f"{'vectors':>8} | {'find p50':>8} {'p95':>6} | {'encode':>6} {'search':>6} {'join':>6}  (p50, ms)")
    for n in args.sizes:
        data = Path(tempfile.mkdtemp(prefix="photoman-qbench-"))
        try:
            with Library(Settings(data_dir=data, model=str(model))) as lib:
                lib.encoder  # noqa: B018 - warm model, as in a running process
                fill(lib, n, rng)
                assert lib.store.count() == n
                total, enc, srch, jn = [], [], [], []
                for i in range(args.queries + 3):
                    q = f"a photo of a {words[i % len(words)]} and a {words[(3 * i + 1) % len(words)]}"
                    # the whole of `photoman find "q"`: encode, cutoff pool, search, join; then each
                    # part alone (the encoder caches text vectors: cleared, so each encode is real)
                    lib.encoder.clear_text_cache()
                    t0 = time.perf_counter()
                    res = search(lib, Query([Term("text", q)], limit=20, include_offline=True))
                    t1 = time.perf_counter()
                    lib.encoder.clear_text_cache()
                    t1b = time.perf_counter()
                    vec = lib.encoder.encode_texts([q])[0]
                    t2 = time.perf_counter()
                    hits = lib.store.search(vec, limit=20)
                    t3 = time.perf_counter()
                    joined = join(lib, hits)
                    t4 = time.perf_counter()
                    assert res and len(joined) == 20
                    if i >= 3:  # warm-up
                        total.append((t1 - t0) * 1e3)
                        enc.append((t2 - t1b) * 1e3)
                        srch.append((t3 - t2) * 1e3)
                        jn.append((t4 - t3) * 1e3)
                parts = " ".join(f"{statistics.median(x):6.1f}" for x in (enc, srch, jn))
                print(f"{n:>8} | {statistics.median(total):8.1f} {pct(total, 95):6.1f} | {parts}")
            warm, cold = daemon_vs_cold(data, model, words, args.queries, ap_cold)
            rows.append((n, warm, cold))
        finally:
            shutil.rmtree(data, ignore_errors=True)
    print()
    print(
        f"{'vectors':>8} | {'warm daemon p50':>15} {'p95':>7} | {'cold process p50':>16} | {'cold/warm':>9}"
    )
    for n, warm, cold in rows:
        ratio = statistics.median(cold) / statistics.median(warm)
        print(
            f"{n:>8} | {statistics.median(warm):12.1f} ms {pct(warm, 95):7.1f} | "
            f"{statistics.median(cold):13.0f} ms | {ratio:8.0f}x"
        )


def daemon_vs_cold(
    data: Path, model: Path, words: list[str], queries: int, cold_runs: int
) -> tuple[list[float], list[float]]:
    """Warm: socket round trips to a running daemon. Cold: one `photoman find` process per query."""
    from photoman.config import Settings
    from photoman.search.query import Query, Term
    from photoman.service.protocol import call, daemon_running

    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOTOMAN_")}
    env.update(PHOTOMAN_DATA_DIR=str(data), PHOTOMAN_MODEL=str(model), PHOTOMAN_STATE_DIR=str(data / "state"),
               PHOTOMAN_RUNTIME_DIR=str(data / "run"), PHOTOMAN_CONFIG=str(data / "none.toml"),
               PHOTOMAN_AUTOSTART="0")  # fmt: skip
    (data / "none.toml").write_text("")
    sock = Settings(data_dir=data, runtime_dir=data / "run").socket_path
    cmd = [sys.executable, "-m", "photoman"]
    err = data / "daemon.err"
    with err.open("w") as err_file:
        proc = subprocess.Popen([*cmd, "watch"], env=env, stdout=subprocess.DEVNULL, stderr=err_file)
    try:
        deadline = time.monotonic() + 300
        while not daemon_running(sock):
            assert proc.poll() is None and time.monotonic() < deadline, err.read_text()[-2000:]
            time.sleep(0.2)
        while call(sock, "status")["daemon"]["state"] != "idle":
            time.sleep(0.2)
        warm, ping = [], []
        for i in range(queries + 3):
            text = f"a photo of a {words[i % len(words)]} next to a {words[(5 * i + 2) % len(words)]} {i}"
            # exactly what `photoman find TEXT --limit 20 --include-offline` sends (the synthetic root
            # has no folder on disk, so it counts as an offline drive: ask for it)
            q = Query([Term("text", text)], limit=20, include_offline=True)
            t = time.perf_counter()
            res = call(sock, "find", {"query": q.to_json()})
            t1 = time.perf_counter()
            call(sock, "ping")
            if i >= 3:
                warm.append((t1 - t) * 1e3)
                ping.append((time.perf_counter() - t1) * 1e3)
            assert 1 <= len(res) <= 20
        print(f"{'':>8}   (socket round trip alone, p50: {statistics.median(ping):.2f} ms)")
    finally:
        proc.terminate()
        proc.wait(timeout=120)
    cold = []
    for i in range(cold_runs):
        t = time.perf_counter()
        q = f"a {words[i]} at dusk"
        out = subprocess.run([*cmd, "--no-daemon", "find", q, "--json", "--include-offline"], env=env,
                             capture_output=True)  # fmt: skip
        assert out.returncode == 0, out.stderr
        cold.append((time.perf_counter() - t) * 1e3)
    return warm, cold


if __name__ == "__main__":
    main()
