"""Startup reconcile and a full rescan with nothing changed, at 100k real (tiny) files on disk.

The catalog and store are filled directly (the files' real paths, sizes and times, synthetic
vectors), so nothing needs embedding: what is timed is the walk of the roots, the diff against
the catalog and the reconcile of catalog against store, in process (the library functions the
daemon runs) and in a daemon (start to idle, and an `index` request to idle again).

    python benchmarks/rescan.py [--files 100000]
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
from _common import daemon_env, vit_b32_model
from PIL import Image


def make_files(root: Path, n: int) -> None:
    """n tiny JPEGs in ~100-file folders; a distinct trailing byte string each (distinct hashes)."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 12), (90, 120, 200)).save(buf, "JPEG", quality=80)
    jpeg = buf.getvalue()
    for i in range(n):
        folder = root / f"{2010 + i % 12}" / f"{i // 100:05d}"
        if i % 100 == 0 or not folder.exists():
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"IMG_{i:07d}.jpg").write_bytes(jpeg + f"{i:016d}".encode())


def fill_catalog(data: Path, model: Path, root: Path) -> int:
    """A row and a point for every file, as if indexed: the scan finds nothing to do."""
    from sqlalchemy import insert

    from photoman.catalog.models import Photo, Root
    from photoman.config import Settings
    from photoman.indexing.scanner import scan
    from photoman.library import Library
    from photoman.vectors import IMAGE, VectorPoint, point_id

    with Library(Settings(data_dir=data, model=str(model))) as lib:
        with lib.catalog.session() as s:
            r = Root(path=str(root), added_at=datetime.now())
            s.add(r)
            s.flush()
            rid = r.id
        files = [f for f in scan(str(root)) if not f.problem and not f.folder]
        rng = np.random.default_rng(0)
        for start in range(0, len(files), 2000):
            batch = files[start : start + 2000]
            vecs = rng.standard_normal((len(batch), lib.dim)).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            hashes = [f"{start + i:064x}" for i in range(len(batch))]
            lib.store.upsert([VectorPoint(point_id(h, lib.model_id), {IMAGE: v},
                                          {"content_hash": h, "paths": [f.path], "roots": [str(root)]})
                              for h, v, f in zip(hashes, vecs, batch, strict=True)])  # fmt: skip
            with lib.catalog.session() as s:
                s.execute(insert(Photo), [
                    {"root_id": rid, "path": f.path, "content_hash": h, "size": f.size, "mtime": f.mtime,
                     "status": "ok", "model_id": lib.model_id, "caption": "", "format": "JPEG"}
                    for h, f in zip(hashes, batch, strict=True)])  # fmt: skip
            lib.store.optimize()
        return len(files)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--profile", action="store_true", help="profile the in-process rescan, skip the daemon")
    args = ap.parse_args()

    from photoman.config import Settings
    from photoman.indexing.pipeline import index
    from photoman.indexing.reconcile import reconcile
    from photoman.library import Library
    from photoman.service.protocol import call, daemon_running

    model = vit_b32_model()
    work = Path(tempfile.mkdtemp(prefix="photoman-rescan-", dir="/tmp"))
    try:
        root, data = work / "photos", work / "data"
        t = time.perf_counter()
        make_files(root, args.files)
        print(f"{args.files} files written in {time.perf_counter() - t:.0f} s", flush=True)
        n = fill_catalog(data, model, root)
        print(f"catalog + store filled with {n} rows", flush=True)
        subprocess.run(["sync"], check=False)
        with Library(Settings(data_dir=data, model=str(model))) as lib:
            t = time.perf_counter()
            rec = reconcile(lib)
            t_rec = time.perf_counter() - t
            t = time.perf_counter()
            if args.profile:
                import cProfile
                import pstats

                with cProfile.Profile() as prof:
                    report = index(lib, None)
                pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
            else:
                report = index(lib, None)
            t_scan = time.perf_counter() - t
        assert not rec.missing and report.embedded == 0, (rec, report)
        print(f"in process: reconcile {t_rec:.2f} s, full rescan with nothing changed {t_scan:.2f} s "
              f"(includes a reconcile)", flush=True)  # fmt: skip
        if args.profile:
            return

        env = daemon_env(data, model, work)
        sock = Settings(data_dir=data, runtime_dir=data / "run").socket_path
        t = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "photoman", "watch"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            while not daemon_running(sock):
                assert proc.poll() is None
                time.sleep(0.05)
            t_up = time.perf_counter() - t
            seen_busy = False
            states: dict[str, float] = {}
            while True:
                st = call(sock, "status")["daemon"]
                states.setdefault(st["state"], round(time.perf_counter() - t, 1))
                seen_busy |= st["state"] != "idle"
                if st["state"] == "idle" and (seen_busy or st["uptime_s"] > 60):
                    break
                time.sleep(0.05)
            t_idle = time.perf_counter() - t
            call(sock, "index", {})
            t = time.perf_counter()
            while call(sock, "status")["daemon"]["state"] == "idle" and time.perf_counter() - t < 5:
                time.sleep(0.02)
            while call(sock, "status")["daemon"]["state"] != "idle":
                time.sleep(0.05)
            t_again = time.perf_counter() - t
        finally:
            proc.terminate()
            proc.wait(timeout=120)
        print(f"daemon: socket up {t_up:.1f} s, startup reconcile + scan done (idle) {t_idle:.1f} s "
              f"after start; `index` request (full rescan, nothing changed) {t_again:.1f} s")  # fmt: skip
        print(f"  daemon states first seen at (s after start): {states}; the startup scan itself "
              f"(scanning -> idle): {t_idle - states.get('scanning', t_idle):.1f} s")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
