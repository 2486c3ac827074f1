"""What a user feels at the prompt: wall time of whole `photoman find` processes, Enter to exit.

At ``--size`` stored vectors (synthetic, real Edge store and SQLite catalog, the ViT-B/32-shaped
random model), with distinct query texts, p50/p95 of:

  (a) ``python -c "import json, socket"``: the interpreter floor, measured in the same run
  (b) ``photoman find TEXT --json`` with a warm daemon
  (c) ``photoman --no-daemon find TEXT --json``: in-process, cached ONNX text tower, no torch
  (d) ``photoman find TEXT --json`` with no daemon and autostart on: the call that starts the
      daemon, and the call right after it
  (e) the socket round trip alone (the daemon's share of (b))

and the daemon's start to its first text answer. Targets (issue 11): (b) p50 ≤ 150 ms and ≤ 3x (a);
(c) p50 ≤ 1.5 s; start to first answer ≤ 3 s.

    python benchmarks/cli_latency.py [--size 100000] [--queries 20] [--autostarts 3]
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
from _common import vit_b32_model
from query_latency import fill

WORDS = "dog cat beach sunset mountain car city night snow forest flower food party child bridge".split()


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return "unknown CPU"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def ensure_bytecode() -> None:
    """A pip-installed photoman has its .pyc files (pip compiles them); an editable checkout under
    PYTHONDONTWRITEBYTECODE=1 would compile every module from source on each run (~45 ms here) and
    time something no user runs. Compile them once, as the installer would."""
    import compileall

    import photoman

    root = Path(photoman.__file__).resolve().parent
    compileall.compile_dir(root, quiet=1)
    compileall.compile_dir(root.parent / "migrations", quiet=1)


def photoman_cmd() -> list[str]:
    """The installed console script when there is one (what a user types), else `python -m photoman`."""
    script = Path(sys.executable).parent / "photoman"
    return [str(script)] if script.exists() else [sys.executable, "-m", "photoman"]


def text(i: int) -> str:
    return f"a photo of a {WORDS[i % len(WORDS)]} beside a {WORDS[(7 * i + 3) % len(WORDS)]} no {i}"


def wall(cmd: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    ms = (time.perf_counter() - t) * 1e3
    assert proc.returncode == 0, (cmd, proc.stderr[-2000:])
    return ms, proc


def stats(name: str, values: list[float]) -> str:
    p50, p95 = statistics.median(values), float(np.percentile(values, 95))
    return f"{name:<52} p50 {p50:8.1f} ms   p95 {p95:8.1f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--autostarts", type=int, default=3)
    args = ap.parse_args()

    from photoman.config import Settings
    from photoman.library import Library
    from photoman.service.protocol import call, daemon_running

    ensure_bytecode()
    model = vit_b32_model()
    data = Path(tempfile.mkdtemp(prefix="photoman-clibench-"))
    cache = data / "cache"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOTOMAN_")}
    env.update(PHOTOMAN_DATA_DIR=str(data), PHOTOMAN_MODEL=str(model), PHOTOMAN_STATE_DIR=str(data / "state"),
               PHOTOMAN_RUNTIME_DIR=str(data / "run"), PHOTOMAN_CONFIG=str(data / "none.toml"),
               PHOTOMAN_CACHE_DIR=str(cache), PHOTOMAN_AUTOSTART="0", HF_HUB_OFFLINE="1")  # fmt: skip
    (data / "none.toml").write_text("")
    settings = Settings(data_dir=data, model=str(model), runtime_dir=data / "run", state_dir=data / "state",
                        cache_dir=cache)  # fmt: skip
    sock = settings.socket_path
    pm = photoman_cmd()
    # the synthetic root has no folder on disk (an offline drive): ask for its photos
    find = [*pm, "find", "--json", "--include-offline", "-n", "20"]
    n = args.queries
    print(f"CPU: {cpu_name()}; {os.cpu_count()} cores; {args.size} vectors; {n} distinct queries per line")
    print(f"command: {' '.join(pm)}")
    try:
        with Library(settings) as lib:
            lib.encoder  # noqa: B018 - builds the cached text encoder, as the first run does
            fill(lib, args.size, np.random.default_rng(0))

        floor = [wall([sys.executable, "-c", "import json, socket"], env)[0] for _ in range(n)]

        # (b) and (e): a warm daemon
        t0 = time.perf_counter()
        ms, _ = wall([*pm, "watch", "--detach"], env)
        first, _ = wall([*find, text(10_000)], env)
        start_to_answer = (time.perf_counter() - t0) * 1e3
        while "model_ready_s" not in call(sock, "status")["daemon"]["timings"]:
            time.sleep(0.2)
        timings = call(sock, "status")["daemon"]["timings"]
        while call(sock, "status")["daemon"]["state"] != "idle":
            time.sleep(0.2)
        warm = [wall([*find, text(i)], env)[0] for i in range(n)]
        from photoman.search.query import Query, Term

        rtt, ping = [], []
        for i in range(n):
            q = Query([Term("text", text(1000 + i))], limit=20, include_offline=True)
            t = time.perf_counter()
            call(sock, "find", {"query": q.to_json()})
            rtt.append((time.perf_counter() - t) * 1e3)
            t = time.perf_counter()
            call(sock, "ping")
            ping.append((time.perf_counter() - t) * 1e3)
        wall([*pm, "stop"], env)

        # (c) in-process, no daemon
        cold = [wall([*pm, "--no-daemon", *find[len(pm):], text(2000 + i)], env)[0] for i in range(n)]
        args_ = [*find[len(pm) :], "probe"]
        probe_cmd = [sys.executable, "-X", "importtime", "-m", "photoman", "--no-daemon", *args_]
        probe = subprocess.run(probe_cmd, env=env, capture_output=True, text=True)
        torch_free = "| torch\n" not in probe.stderr and "transformers" not in probe.stderr

        # (d) autostart: the call that starts the daemon, and the one right after it
        auto_env = {**env, "PHOTOMAN_AUTOSTART": "1"}
        starting, after = [], []
        for i in range(args.autostarts):
            assert not daemon_running(sock)
            starting.append(wall([*find, text(3000 + i)], auto_env)[0])
            after.append(wall([*find, text(4000 + i)], auto_env)[0])
            wall([*pm, "stop"], env)

        print()
        print(stats("(a) python -c 'import json, socket' (floor)", floor))
        print(stats("(b) photoman find TEXT --json, warm daemon", warm))
        torch_note = f"  torch imported: {not torch_free}"
        print(stats("(c) photoman --no-daemon find TEXT --json", cold) + torch_note)
        print(stats("(d) no daemon, autostart on: the call that starts it", starting))
        print(stats("    ... and the call right after it", after))
        print(stats("(e) socket round trip of the same find, alone", rtt))
        print(stats("    socket ping", ping))
        b50, a50 = statistics.median(warm), statistics.median(floor)
        print()
        print(f"(b)/(a) = {b50 / a50:.2f}x   (target: (b) p50 <= 150 ms and <= 3x the floor)")
        print(f"(c) p50 = {statistics.median(cold) / 1e3:.2f} s   (target <= 1.5 s)")
        print(f"`watch --detach` returned after {ms / 1e3:.2f} s; start to first text answer (a whole "
              f"`find` process) {start_to_answer / 1e3:.2f} s   (target <= 3 s)")  # fmt: skip
        print(f"daemon's own timings: text queries answered {timings['text_ready_s']:.2f} s after start, "
              f"image model ready at {timings['model_ready_s']:.2f} s")  # fmt: skip
    finally:
        if daemon_running(sock):
            subprocess.run([*pm, "stop"], env=env, capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
