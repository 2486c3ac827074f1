"""What a store split into shards built by a child process would still hold the daemon for: the load.

Issue 13's seal-wait target (a query arriving during a seal or graph build waits ≤ 100 ms) cannot
be met while the shard is optimised in the daemon: Qdrant Edge 0.9.0 holds the GIL for the whole
of optimize(). The way out is to build sealed shards in a child process and swap them into the
daemon, which then pays only EdgeShard.load (also holding the GIL). This measures that price:
for each size and mode, a child process writes the shard as the pipeline would (2000-point
batches, the scale benchmark's payloads) and optimises it; this process then loads it three
times, with a 1 ms ticker thread showing how long the interpreter was held, and searches it
(showing whether a search holds it too). ``--no-wal``: shards created with the WAL off
(``EdgeConfig(wal_enabled=False)``), as a built shard that only takes deletes could be.

Usage: python benchmarks/swap_in.py [--sizes 16000,64000] [--modes exact,approx] [--no-wal]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from _common import ROOT
from scale import cpu_name
from seal_hold import points

from photoman.vectors import edge
from photoman.vectors.edge import EdgeStore


class Ticker:
    """A thread that wakes every millisecond: the longest gap between wakes is the longest time the
    interpreter was held by someone else (what a query arriving then would wait)."""

    def __init__(self) -> None:
        self.gap = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last = time.perf_counter()
        while not self._stop.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            self.gap = max(self.gap, now - last)
            last = now

    def __enter__(self) -> Ticker:
        self._thread.start()
        time.sleep(0.01)
        self.gap = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def segment_kb(n: int, mode: str) -> int:
    """Today's policy for exact shards; approximate ones seal at a quarter of the shard, so the
    built shard is sealed segments with graphs (what a child would hand over), not one appendable."""
    return edge.SEGMENT_KB if mode == "exact" else max(64, n // 4 // edge.APPROX_SEAL_FACTOR)


def build(path: Path, n: int, mode: str, wal: bool) -> None:
    """The child's part: write and optimise the shard, then close it."""
    if not wal:
        plain = edge._config

        def no_wal(dim: int, segment_kb: int):  # noqa: ANN202 - the bindings' config type
            cfg = plain(dim, segment_kb)
            return edge.qe.EdgeConfig(vectors=cfg.vectors, optimizers=cfg.optimizers,
                                      hnsw_config=cfg.hnsw_config, wal_enabled=False)  # fmt: skip

        edge._config = no_wal
    store = EdgeStore.open(
        path, "bench", 512, segment_kb(n, mode), approximate_from=0 if mode == "approx" else 10**9
    )
    rng = np.random.default_rng(0)
    for start in range(0, n, 2000):
        v = rng.standard_normal((min(2000, n - start), 512)).astype(np.float32)
        store.upsert(points(start, v / np.linalg.norm(v, axis=1, keepdims=True)))
    store.optimize(idle=True)
    store.close()


def measure(n: int, mode: str, wal: bool) -> None:
    data = Path(tempfile.mkdtemp(prefix="photoman-swap-", dir="/tmp"))
    try:
        t = time.perf_counter()
        cmd = [sys.executable, __file__, "--build", str(data / "s"), str(n), mode] + (
            [] if wal else ["--no-wal"]
        )
        subprocess.run(cmd, check=True, cwd=ROOT)
        built = time.perf_counter() - t
        loads, holds, searches, search_holds = [], [], [], []
        q = np.random.default_rng(1).standard_normal((40, 512)).astype(np.float32)
        for _ in range(3):
            with Ticker() as tick:
                t = time.perf_counter()
                store = EdgeStore.open(data / "s", "bench", 512, segment_kb(n, mode))
                loads.append((time.perf_counter() - t) * 1e3)
            holds.append(tick.gap * 1e3)
            with Ticker() as tick:
                for v in q:
                    t = time.perf_counter()
                    store.search(v, limit=10, with_payload=False)
                    searches.append((time.perf_counter() - t) * 1e3)
            search_holds.append(tick.gap * 1e3)
            store.close()
        segs = store_segments(data / "s")
        what = f"{n} points, {mode}{'' if wal else ', no WAL'} ({segs} segments)"
        print(f"{what}: built in a child in {built:.1f} s; "
              f"load {min(loads):.0f}-{max(loads):.0f} ms holding the interpreter {min(holds):.0f}-"
              f"{max(holds):.0f} ms; search p50 {statistics.median(searches):.1f} ms (longest hold "
              f"{max(search_holds):.1f} ms)", flush=True)  # fmt: skip
    finally:
        shutil.rmtree(data, ignore_errors=True)


def store_segments(path: Path) -> int:
    return sum(1 for p in (path / "segments").iterdir() if p.is_dir())


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--build":
        build(Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4], "--no-wal" not in sys.argv)
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="16000,64000")
    ap.add_argument("--modes", default="exact,approx")
    ap.add_argument("--no-wal", action="store_true", help="also shards made with the WAL off")
    args = ap.parse_args()
    print(f"CPU: {cpu_name()}", flush=True)
    for mode in args.modes.split(","):
        for n in (int(x) for x in args.sizes.split(",")):
            measure(n, mode, wal=True)
            if args.no_wal:
                measure(n, mode, wal=False)


if __name__ == "__main__":
    main()
