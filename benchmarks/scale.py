"""photoman at 100k / 300k / 1M photos: a real catalog and store filled with synthetic vectors.

Per size it prints: the time and peak RSS to write that many points and rows (a child process, the
way the pipeline writes them: batches of 2000, optimize() after each; the model is not the subject),
time to open the library (daemon start to first answer), warm daemon `find` p50/p95 (text query,
default options) and the same with a date + folder filter, recall@10 of what the daemon returns
against an exact numpy scan of the same (float16) vectors, daemon RSS with the model loaded, disk
size, and how long a query waits when it arrives while the store seals or optimises a segment.

Vectors are clustered (2000 centres + noise, cosine ~0.7 to their centre), as photo embeddings
are, and each query text's vector is the centre of one cluster, as a real query lands among the
photos it describes. A query pointing nowhere (a random direction: every photo scores ~0 ± 0.04)
has no meaningful top 10, and a graph index finds ~60% of it (measured at 300k).

    python benchmarks/scale.py --sizes 100000,300000,1000000 [--queries 50] [--keep]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from _common import bench_root, daemon_env, vit_b32_model

CAMERAS = [("Canon", "EOS 350D"), ("Canon", "EOS R6"), ("Apple", "iPhone 12"), ("SONY", "ILCE-7M3"),
           ("NIKON", "D750"), ("samsung", "SM-G991B"), ("FUJIFILM", "X-T3")]  # fmt: skip
TAGS = ["beach", "dog", "cat", "sunset", "mountain", "city", "snow", "forest", "party", "food", "child"]
WORDS = [*TAGS, "night", "flower", "bridge"]
START = datetime(2012, 1, 1)
DAYS = 12 * 365


def cpu_name() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "?")


def clustered(rng: np.random.Generator, centres: np.ndarray, k: int) -> np.ndarray:
    v = centres[rng.integers(0, len(centres), k)] + rng.standard_normal((k, centres.shape[1])).astype(
        np.float32
    ) / np.sqrt(centres.shape[1])
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def photo(i: int) -> tuple[str, datetime, tuple[str, str], list[str]]:
    """Path, date, camera, tags of synthetic photo i: ~10 events a month in year/month folders."""
    taken = START + timedelta(days=(i * 7919) % DAYS, seconds=i % 86400)
    folder = f"/bench/{taken.year}/{taken.month:02d}-event{(i // 97) % 10}"
    tags = [TAGS[i % len(TAGS)]] if i % 5 == 0 else []
    return f"{folder}/IMG_{i:07d}.jpg", taken, CAMERAS[i % len(CAMERAS)], tags


def fill(data: Path, model: Path, n: int, approximate_from: int) -> None:
    """Child process: n catalog rows and n points, written as the pipeline writes them."""
    from sqlalchemy import insert

    from photoman.catalog.models import Photo
    from photoman.catalog.payload import ancestors, camera_terms
    from photoman.config import Settings
    from photoman.library import Library
    from photoman.vectors import IMAGE, VectorPoint, point_id
    from photoman.vectors.base import rfc3339

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((2000, 512)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    queries = np.load(data / "queries.npy")
    centres[: len(queries)] = queries  # each query text has its cluster of photos, as real ones do
    stored = np.lib.format.open_memmap(data / "vectors.npy", mode="w+", dtype=np.float16, shape=(n, 512))
    with Library(Settings(data_dir=data, model=str(model))) as lib:
        rid = bench_root(lib)
        step = 2000
        for start in range(0, n, step):
            count = min(step, n - start)
            vecs = clustered(rng, centres, count)
            stored[start : start + count] = vecs
            rows, points = [], []
            for i, v in zip(range(start, start + count), vecs, strict=True):
                path, taken, (make, cam), tags = photo(i)
                h = f"{i:064x}"
                camera = f"{make} {cam}"
                points.append(VectorPoint(point_id(h, lib.model_id), {IMAGE: v}, {
                    "content_hash": h, "paths": [path], "folders": ancestors(path, "/bench"),
                    "roots": ["/bench"], "taken_at": rfc3339(taken), "camera": camera,
                    "camera_terms": camera_terms(camera),
                    "format": "jpeg", "location": None, "tags": tags}))  # fmt: skip
                rows.append({"root_id": rid, "path": path, "content_hash": h, "size": 2_500_000 + i,
                             "mtime": taken.timestamp(), "status": "ok", "model_id": lib.model_id,
                             "caption": "", "taken_at": taken, "camera_make": make, "camera_model": cam,
                             "format": "JPEG", "width": 4000, "height": 3000})  # fmt: skip
            lib.store.upsert(points)
            with lib.catalog.session() as s:
                s.execute(insert(Photo), rows)
            lib.store.optimize()
        lib.store.flush()
        lib.store.settle(timeout=7200)  # type: ignore[attr-defined]  # the builds are part of the write
    stored.flush()


def rss_mb(pid: int) -> tuple[float, float]:
    """VmRSS and VmHWM (peak) of a process, MB."""
    st = _status(pid)
    return st["VmRSS"], st["VmHWM"]


def _status(pid: int) -> dict[str, float]:
    """The kB figures of /proc/PID/status, in MB."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: int(v.split()[0]) / 1024 for k, v in (ln.split(":", 1) for ln in lines if ln.endswith(" kB"))}


def du_mb(path: Path) -> float:
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file()) / 1e6


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run_size(
    n: int, model: Path, queries: int, approximate_from: int, keep: bool, seal: int, precision: str = "auto",
    cold: bool = False,
) -> dict:
    from photoman.config import Settings
    from photoman.library import Library
    from photoman.search.query import Query, Term
    from photoman.service.protocol import call, daemon_running
    from photoman.vectors import SearchFilter

    data = Path(tempfile.mkdtemp(prefix=f"photoman-scale-{n}-", dir="/tmp"))
    out: dict = {"n": n}
    try:
        texts = [f"a photo of a {WORDS[i % len(WORDS)]} next to a {WORDS[(5 * i + 2) % len(WORDS)]} {i}"
                 for i in range(queries + 3)]  # fmt: skip
        enc_dir = Path(tempfile.mkdtemp(prefix="photoman-scale-enc-", dir="/tmp"))
        with Library(Settings(data_dir=enc_dir, model=str(model))) as lib:
            qvecs = np.stack([lib.text_encoder.encode_texts([t])[0] for t in texts])
        shutil.rmtree(enc_dir, ignore_errors=True)
        np.save(data / "queries.npy", qvecs)
        t = time.perf_counter()
        child = subprocess.Popen([sys.executable, __file__, "--fill", str(n), "--data", str(data)])
        _, status, usage = os.wait4(child.pid, 0)
        assert status == 0, f"fill failed: {status}"
        out["fill_s"] = time.perf_counter() - t
        out["fill_rss"] = usage.ru_maxrss / 1024
        out["disk_vectors"] = du_mb(data / "vectors")
        out["disk_catalog"] = sum(du_mb(p) if p.is_dir() else p.stat().st_blocks * 512 / 1e6
                                  for p in data.glob("catalog*"))  # fmt: skip
        stored = np.load(data / "vectors.npy", mmap_mode="r")

        exact = np.argsort(-(np.asarray(stored, dtype=np.float32) @ qvecs.T), axis=0)[:10].T

        since, until, folder = datetime(2018, 1, 1), datetime(2019, 12, 31), "/bench/2019"
        mask = np.array([since <= photo(i)[1] <= until and photo(i)[0].startswith(folder + "/")
                         for i in range(n)])  # fmt: skip
        idx = np.flatnonzero(mask)
        sub = np.asarray(stored[idx], dtype=np.float32)
        exact_f = idx[np.argsort(-(sub @ qvecs.T), axis=0)[:10].T]
        out["filter_share"] = len(idx) / n

        env = {**daemon_env(data, model, data), "PHOTOMAN_PRECISION": precision}
        sock = Settings(data_dir=data, runtime_dir=data / "run").socket_path
        err = data / "daemon.err"
        q0 = Query([Term("text", "a photo of a dog on a beach")], include_offline=True)

        def start_daemon() -> tuple[subprocess.Popen, float]:
            """A daemon started, and the seconds from its start to its first answer."""
            t = time.perf_counter()
            with err.open("w") as err_file:
                proc = subprocess.Popen([sys.executable, "-m", "photoman", "watch"], env=env,
                                        stdout=subprocess.DEVNULL, stderr=err_file)  # fmt: skip
            while True:
                assert proc.poll() is None and time.perf_counter() - t < 600, err.read_text()[-2000:]
                if daemon_running(sock):
                    try:
                        call(sock, "find", {"query": q0.to_json()})
                        return proc, time.perf_counter() - t
                    except Exception:  # noqa: BLE001 - still loading
                        pass
                time.sleep(0.05)

        proc, out["open_s"] = start_daemon()
        try:
            deadline = time.monotonic() + 900  # the first scan, and any graph build the open started
            while call(sock, "status")["daemon"]["state"] != "idle" and time.monotonic() < deadline:
                time.sleep(0.5)

            def timed(q: Query) -> tuple[float, list[dict]]:
                t = time.perf_counter()
                res = call(sock, "find", {"query": q.to_json()})
                return (time.perf_counter() - t) * 1e3, res

            def recall(res: list[dict], truth: np.ndarray) -> float:
                got = {int(r["content_hash"], 16) for r in res[:10]}
                return len(got & set(truth.tolist())) / 10

            flt = SearchFilter(folder=folder, since=since, until=until)
            plain, filtered, rec, rec_f = [], [], [], []
            for i, text in enumerate(texts):
                ms, _ = timed(Query([Term("text", text)], include_offline=True))  # default options
                ms_f, _ = timed(Query([Term("text", text)], include_offline=True, filters=flt))
                _, res = timed(Query([Term("text", text)], include_offline=True, cutoff="none"))
                exact_q = Query([Term("text", text)], include_offline=True, cutoff="none", filters=flt)
                _, res_f = timed(exact_q)
                if i >= 3:  # warm-up
                    plain.append(ms)
                    filtered.append(ms_f)
                    rec.append(recall(res, exact[i]))
                    rec_f.append(recall(res_f, exact_f[i]))
            out.update(p50=statistics.median(plain), p95=pct(plain, 95), fp50=statistics.median(filtered),
                       fp95=pct(filtered, 95), recall=float(np.mean(rec)), recall_f=float(np.mean(rec_f)),
                       rss=rss_mb(proc.pid)[0], rss_peak=rss_mb(proc.pid)[1])  # fmt: skip
            mem = _status(proc.pid)
            out.update(rss_anon=mem["RssAnon"], rss_file=mem["RssFile"])
        finally:
            proc.terminate()
            proc.wait(timeout=120)
        if cold:
            if drop_page_cache():
                proc, out["open_cold_s"] = start_daemon()
                proc.terminate()
                proc.wait(timeout=120)
            else:
                out["open_cold_s"] = None
        out["disk_total"] = du_mb(data) - (data / "vectors.npy").stat().st_blocks * 512 / 1e6
        if seal:
            out.update(seal_test(data, model, qvecs, seal, approximate_from))
    finally:
        if not keep:
            shutil.rmtree(data, ignore_errors=True)
    return out


def drop_page_cache() -> bool:
    """Empty the kernel's page cache (root only), so the next open reads the store from disk, as after
    a reboot; False where that is not allowed."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
    except OSError:
        return False
    return True


def seal_test(data: Path, model: Path, qvecs: np.ndarray, extra: int, approximate_from: int) -> dict:
    """Queries sent back to back (top 10 with payloads, as the daemon runs `find`) while a writer adds
    ``extra`` points as the indexer does (batches of 32, optimize() after each): every 16k points the
    live shard is frozen and built into a sealed one by a child process, then swapped in. Latency of
    the queries that started during a build, and the longest time the interpreter was held (a 1 ms
    ticker thread): what a query arriving at the worst moment waits before it starts."""
    from seal_wait import Ticker

    from photoman.config import Settings
    from photoman.library import Library
    from photoman.vectors import IMAGE, VectorPoint, point_id

    rng = np.random.default_rng(1)
    with Library(Settings(data_dir=data, model=str(model))) as lib:
        store = lib.store
        n0 = store.count()
        builds0 = store.builds  # type: ignore[attr-defined]
        queries: list[tuple[float, bool]] = []
        done = threading.Event()

        def writer() -> None:
            for start in range(0, extra, 32):
                v = rng.standard_normal((32, 512)).astype(np.float32)
                v /= np.linalg.norm(v, axis=1, keepdims=True)
                store.upsert([VectorPoint(point_id(f"x{n0 + start + i}", lib.model_id), {IMAGE: v[i]},
                                          {"content_hash": f"x{n0 + start + i}", "roots": ["/bench"]})
                              for i in range(32)])  # fmt: skip
                store.optimize()
                time.sleep(0.001)
            while store.building:  # type: ignore[attr-defined]
                time.sleep(0.1)
            done.set()

        with Ticker() as tick:
            th = threading.Thread(target=writer)
            th.start()
            i = 0
            while not done.is_set():
                building = store.building  # type: ignore[attr-defined]
                t = time.perf_counter()
                store.search(qvecs[i % len(qvecs)], limit=10)
                queries.append(((time.perf_counter() - t) * 1e3, building or store.building))  # type: ignore[attr-defined]
                i += 1
                time.sleep(0.002)
            th.join()
        builds = store.builds - builds0  # type: ignore[attr-defined]
    during = [ms for ms, b in queries if b]
    return {"builds": builds, "during_n": len(during),
            "during_p50": statistics.median(during) if during else 0.0,
            "during_p99": pct(during, 99) if during else 0.0, "during_max": max(during, default=0.0),
            "hold_max": tick.gap * 1e3, "queries": len(queries)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,300000,1000000")
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--seal-points", type=int, default=34000, help="points added during the seal test")
    ap.add_argument("--keep", action="store_true", help="keep the data dirs under /tmp")
    ap.add_argument("--precision", default="auto", help="the daemon's precision setting (onnx: torch-free)")
    ap.add_argument("--cold", action="store_true", help="also open after emptying the page cache (root)")
    ap.add_argument("--fill", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()

    from photoman.vectors import edge

    threshold = edge.APPROXIMATE_FROM
    model = vit_b32_model()
    if args.fill is not None:
        fill(args.data, model, args.fill, threshold)
        return
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; graph search from {threshold} points", flush=True)
    for n in [int(x) for x in args.sizes.split(",")]:
        r = run_size(n, model, args.queries, threshold, args.keep, args.seal_points, args.precision,
                     args.cold)  # fmt: skip
        mode = "approximate (HNSW + int8)" if n >= threshold else "exact"
        print(f"\n== {n} photos, {mode}", flush=True)
        print(f"  write {n} points + rows: {r['fill_s']:.0f} s, peak RSS {r['fill_rss']:.0f} MB")
        print(f"  open (daemon start to first answer): {r['open_s']:.2f} s")
        if "open_cold_s" in r:
            cold_s = r["open_cold_s"]
            print("  open with the page cache emptied first (as after a reboot): "
                  + (f"{cold_s:.2f} s" if cold_s is not None else "skipped (emptying it needs root)"))
        print(f"  warm find p50 {r['p50']:.1f} ms, p95 {r['p95']:.1f} ms; recall@10 {r['recall']:.3f}")
        print(f"  date+folder filter ({r['filter_share']:.1%} of photos): p50 {r['fp50']:.1f} ms, "
              f"p95 {r['fp95']:.1f} ms; recall@10 {r['recall_f']:.3f}")  # fmt: skip
        print(f"  daemon RSS with the model loaded: {r['rss']:.0f} MB (peak {r['rss_peak']:.0f} MB; "
              f"anonymous {r['rss_anon']:.0f} MB, file pages mapped {r['rss_file']:.0f} MB)")
        print(f"  disk: {r['disk_total']:.0f} MB (vectors {r['disk_vectors']:.0f} MB, "
              f"catalog {r['disk_catalog']:.0f} MB)")  # fmt: skip
        if "builds" in r:
            print(f"  queries while {args.seal_points} points are added: {r['builds']} shard builds swapped "
                  f"in; {r['during_n']} queries started during a build: p50 {r['during_p50']:.1f} ms, p99 "
                  f"{r['during_p99']:.1f} ms, max {r['during_max']:.1f} ms; longest hold of the interpreter "
                  f"{r['hold_max']:.0f} ms")  # fmt: skip
        print(f"  (this process's peak RSS so far: "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)", flush=True)


if __name__ == "__main__":
    main()
