"""Opening the encoder in a fresh process: the full load (torch + transformers) vs the cached one.

Every daemon start, `photoman index` run and model-only command opens the encoder. Each variant runs
in a new process, interleaved, ``--runs`` times; printed: wall time of the whole process (interpreter
start to exit, what a user waits for), the open alone, peak RSS, and whether torch was imported.
The model is ViT-B/32-shaped with random weights (the real model's cost). Both variants then embed
the same 4 real photos, so the open includes a first batch.

    python benchmarks/encoder_open.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import PHOTOS, ROOT, vit_b32_model

CHILD = r"""
import json, sys, time
from pathlib import Path
t0 = time.perf_counter()
model, cache, how, precision = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[5]
if how == "full":
    from photoman.embedding.model import load_encoder
    enc = load_encoder(model, device="cpu", precision=precision, text_int8=True, cache_dir=cache)
else:
    from photoman.embedding.cached import open_cached
    enc = open_cached(model, "cpu", precision, True, cache)
    assert enc is not None, "nothing cached"
opened = time.perf_counter() - t0
from photoman.media.decode import load_image
files = sorted(p for p in Path(sys.argv[4]).iterdir() if p.suffix == ".jpg")[:4]
enc.encode_images([load_image(f, min_side=enc.spec.size) for f in files])
enc.encode_texts(["two dogs running across a frosty field"])
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent through fork and exec
hwm_kb = next(int(ln.split()[1]) for ln in open("/proc/self/status") if ln.startswith("VmHWM:"))
print(json.dumps({"open_s": opened, "runtime": enc.precision_info["runtime"],
                  "rss_mb": hwm_kb / 1024,
                  "torch": "torch" in sys.modules, "transformers": "transformers" in sys.modules}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    from photoman.embedding.model import load_encoder
    from photoman.embedding.precision import cpu_name

    model = str(vit_b32_model())
    cache = Path(tempfile.mkdtemp(prefix="photoman-bench-cache-"))
    print(f"CPU {cpu_name()}, {os.cpu_count()} cores; ViT-B/32 shape, random weights; {args.runs} runs")
    from photoman.embedding.cached import open_cached

    t0 = time.perf_counter()
    first = load_encoder(model, device="cpu", precision="auto", text_int8=True, cache_dir=cache)
    load_encoder(model, device="cpu", precision="onnx", text_int8=True, cache_dir=cache)
    took = time.perf_counter() - t0
    auto = first.precision_info["runtime"]
    print(f"first loads here (export, measure, write the cache): {took:.1f} s; precision auto chose {auto}")
    del first
    variants = ["full auto", "full onnx", "cached onnx"]
    if open_cached(model, "cpu", "auto", True, cache) is not None:
        variants.append("cached auto")
    else:
        print(f"(auto runs {auto} here, which nothing cached runs: a process with default settings loads it)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rows: dict[str, list[dict]] = {v: [] for v in variants}
    for _ in range(args.runs):
        for variant in rows:
            how, precision = variant.split()
            t = time.perf_counter()
            cmd = [sys.executable, "-c", CHILD, model, str(cache), how, str(PHOTOS), precision]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            row["wall_s"] = time.perf_counter() - t
            rows[variant].append(row)
    for how, runs in rows.items():
        wall = sorted(r["wall_s"] for r in runs)
        opened = sorted(r["open_s"] for r in runs)
        rss = sorted(r["rss_mb"] for r in runs)
        print(f"{how:11s}: process {statistics.median(wall):5.2f} s ({wall[0]:.2f}-{wall[-1]:.2f}), "
              f"open {statistics.median(opened):5.2f} s ({opened[0]:.2f}-{opened[-1]:.2f}), "
              f"peak RSS {statistics.median(rss):5.0f} MB, torch imported: {runs[0]['torch']}, "
              f"transformers: {runs[0]['transformers']}, "
              f"image runtime {runs[0]['runtime']}")  # fmt: skip
    full = statistics.median(r["wall_s"] for r in rows["full onnx"])
    fast = statistics.median(r["wall_s"] for r in rows["cached onnx"])
    print(f"cached onnx / full onnx, whole process: {fast / full:.2f}x the time")


if __name__ == "__main__":
    main()
