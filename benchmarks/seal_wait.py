"""How long a query waits while the embedded store seals, merges or builds graphs (issue 13: ≤ 100 ms p99).

Fills a store (the library's own, ``photoman.vectors.shards``) with ``--points`` synthetic clustered
512-d vectors and lets its builds finish; then, in one run: queries back to back for ``--idle``
seconds with nothing else going on, then the same while a writer thread adds ``--extra`` points the
way the indexer does (batches of ``--batch``, default the indexer's 32, ``optimize()`` after each),
which freezes the live shard every 16k points and so starts builds in the child process, merges and
swap-ins. A query is counted
"during a build" when it started while one was under way. A ticker thread that wakes every
millisecond records the longest time the interpreter was held by someone else: what a query arriving
at the worst moment would wait before it even starts (swap-ins, the export's reads, the writer's
batches). Queries are what the daemon runs for ``find``: top 10, payloads, default options.

    python benchmarks/seal_wait.py [--points 100000] [--extra 50000] [--idle 10]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from scale import cpu_name

from photoman.vectors import IMAGE, VectorPoint, point_id
from photoman.vectors.edge import APPROXIMATE_FROM
from photoman.vectors.shards import ShardedStore

DIM = 512


class Ticker:
    """Wakes every millisecond; ``gaps`` are the longest waits between wakes, per phase."""

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


def batches(rng: np.random.Generator, centres: np.ndarray, start: int, n: int, step: int = 1000):  # noqa: ANN201
    for s in range(start, start + n, step):
        k = min(step, start + n - s)
        v = centres[rng.integers(0, len(centres), k)] + rng.standard_normal((k, DIM)).astype(np.float32) / 23
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        yield [
            VectorPoint(point_id(f"x{s + i}", "bench"), {IMAGE: v[i]},
                        {"content_hash": f"x{s + i}", "roots": ["/bench"], "tags": [],
                         "folders": ["/bench", f"/bench/{i % 50}"], "taken_at": "2020-01-01T00:00:00Z"})
            for i in range(k)
        ]  # fmt: skip


def pct(v: list[float], q: float) -> float:
    return float(np.percentile(v, q)) if v else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--extra", type=int, default=50_000)
    ap.add_argument("--idle", type=float, default=10.0)
    ap.add_argument("--batch", type=int, default=32, help="points per write (the indexer's batch_size)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((2000, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    queries = centres[:200]
    data = Path(tempfile.mkdtemp(prefix="photoman-sealwait-", dir="/tmp"))
    try:
        store = ShardedStore.open(data / "store", "bench", DIM)
        t = time.perf_counter()
        for pts in batches(rng, centres, 0, args.points):
            store.upsert(pts)
            store.optimize()
        store.settle(timeout=7200)
        fill_s = time.perf_counter() - t
        roles = store.shard_names()
        mode = "graphs" if args.points >= APPROXIMATE_FROM else "exact"
        print(f"CPU: {cpu_name()}; {args.points} points ({mode}) written and sealed in {fill_s:.0f} s: "
              f"{len(roles['sealed'])} sealed shards + live", flush=True)  # fmt: skip

        def query_loop(until: threading.Event, out: list[tuple[float, bool]]) -> None:
            i = 0
            while not until.is_set():
                building = store.building
                t = time.perf_counter()
                store.search(queries[i % len(queries)], limit=10)
                out.append(((time.perf_counter() - t) * 1e3, building or store.building))
                i += 1
                time.sleep(0.002)

        idle: list[tuple[float, bool]] = []
        stop = threading.Event()
        with Ticker() as tick:
            th = threading.Thread(target=query_loop, args=(stop, idle))
            th.start()
            time.sleep(args.idle)
            stop.set()
            th.join()
        idle_hold = tick.gap * 1e3
        busy: list[tuple[float, bool]] = []
        stop = threading.Event()
        builds0 = store.builds
        with Ticker() as tick:
            th = threading.Thread(target=query_loop, args=(stop, busy))
            th.start()
            t = time.perf_counter()
            for pts in batches(rng, centres, args.points, args.extra, args.batch):
                store.upsert(pts)
                store.optimize()
                time.sleep(0.001)  # the indexer's pace is set by the model: far slower than this
            write_s = time.perf_counter() - t
            while store.building:  # the last builds too
                time.sleep(0.1)
            stop.set()
            th.join()
        busy_hold = tick.gap * 1e3
        during = [ms for ms, b in busy if b]
        lat = [ms for ms, _ in idle]
        print(f"idle: {len(lat)} queries, p50 {statistics.median(lat):.1f} ms, p99 {pct(lat, 99):.1f} ms, "
              f"max {max(lat):.1f} ms; longest hold of the interpreter {idle_hold:.0f} ms")  # fmt: skip
        print(f"writing {args.extra} more points ({write_s:.0f} s) with {store.builds - builds0} builds "
              f"swapped in: {len(during)} queries started during a build: "
              f"p50 {statistics.median(during):.1f} ms, "
              f"p99 {pct(during, 99):.1f} ms, max {max(during):.1f} ms; all {len(busy)} queries p99 "
              f"{pct([ms for ms, _ in busy], 99):.1f} ms; longest hold of the interpreter {busy_hold:.0f} ms "
              f"(what a query arriving then waits before it starts)")  # fmt: skip
        store.close()
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
