"""Query latency while the daemon indexes a burst of new photos (default 1,000), ViT-B/32-shaped model.

Starts `photoman watch` on an empty root, measures `find` over the socket when idle, then copies the
burst in and keeps querying until every photo is indexed; prints idle vs during-burst p50/p95, the
indexing rate, and checks every photo was indexed exactly once.

    python benchmarks/query_during_indexing.py [--count 1000]
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
from _common import CACHE, PHOTOS, vit_b32_model
from PIL import Image


def burst_photos(count: int) -> Path:
    """``count`` distinct 1600x1200 JPEGs made from the real photos."""
    out = CACHE / f"burst-{count}"
    if out.exists() and len(list(out.glob("*.jpg"))) == count:
        return out
    out.mkdir(parents=True, exist_ok=True)
    sources = [Image.open(p).convert("RGB").resize((1600, 1200)) for p in sorted(PHOTOS.glob("*.jpg"))]
    for i in range(count):
        img = sources[i % len(sources)].copy()
        img.putpixel((i % 1600, (i // 1600) % 1200), (255, i % 256, 0))
        if (i // len(sources)) % 2:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        img.save(out / f"IMG_{i:05d}.jpg", quality=85)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1000)
    args = ap.parse_args()

    from photoman.config import Settings
    from photoman.service.protocol import call, daemon_running

    src = burst_photos(args.count)
    model = vit_b32_model()
    data = Path(tempfile.mkdtemp(prefix="photoman-burst-"))
    root = data / "Pictures"
    root.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOTOMAN_")}
    env.update(
        PHOTOMAN_DATA_DIR=str(data / "d"), PHOTOMAN_MODEL=str(model), PHOTOMAN_STATE_DIR=str(data / "s")
    )
    env.update(PHOTOMAN_RUNTIME_DIR=str(data / "r"), PHOTOMAN_CONFIG=str(data / "none.toml"))
    (data / "none.toml").write_text("")
    cmd = [sys.executable, "-m", "photoman"]
    subprocess.run([*cmd, "index", str(root)], env=env, check=True, capture_output=True)
    sock = Settings(data_dir=data / "d", runtime_dir=data / "r").socket_path
    proc = subprocess.Popen([*cmd, "watch"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    words = "dog cat beach sunset mountain car city night snow forest flower food party child bridge".split()
    try:
        while not daemon_running(sock):
            assert proc.poll() is None, "daemon exited"
            time.sleep(0.2)

        def query(i: int) -> float:
            t = time.perf_counter()
            # every text distinct: the daemon caches text vectors, and a repeat would measure the cache
            text = f"a {words[i % len(words)]} in the {words[(i * 7) % len(words)]}, take {i}"
            call(sock, "find", {"text": text})
            return (time.perf_counter() - t) * 1e3

        idle = [query(i) for i in range(40)][5:]
        t0 = time.perf_counter()
        for f in sorted(src.glob("*.jpg")):
            shutil.copy(f, root / f.name)
        busy: list[float] = []
        i = 0
        while True:
            busy.append(query(i))
            i += 1
            st = call(sock, "status")
            if st["photos"]["indexed"] >= args.count and st["daemon"]["queue"] == 0:
                break
            time.sleep(0.1)
        elapsed = time.perf_counter() - t0
        st = call(sock, "status")
    finally:
        proc.terminate()
        proc.wait(timeout=120)
        shutil.rmtree(data, ignore_errors=True)
    p = lambda xs, q: float(np.percentile(xs, q))  # noqa: E731
    print(f"burst of {args.count} JPEGs (1600x1200), ViT-B/32-shaped model, daemon on this machine")
    print(f"indexed {st['photos']['indexed']} photos, {st['vectors']['points']} points, in {elapsed:.1f}s "
          f"({args.count / elapsed:.1f} photos/s, including watch debounce and settle)")  # fmt: skip
    print(
        f"find over the socket, idle       : p50 {statistics.median(idle):6.1f} ms  p95 {p(idle, 95):6.1f} ms"
    )
    during = f"p50 {statistics.median(busy):6.1f} ms  p95 {p(busy, 95):6.1f} ms  max {max(busy):6.1f} ms"
    print(f"find over the socket, during burst: {during}  ({len(busy)} queries)")


if __name__ == "__main__":
    main()
