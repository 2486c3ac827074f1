"""Many clients at once on the daemon's socket: does every connection get in, and how long does a `find` take?

Starts a real `photoman watch` (temp data dir, tiny random CLIP, a dozen real photos indexed), then
fires bursts of concurrent clients (default 200 per burst, 5 bursts): each opens its own connection
at the same moment and sends one real `find` request with a distinct text. The connects are
non-blocking, so a full listen backlog shows as a refusal (EAGAIN) instead of a silent wait. Prints
p50/p95/max latency (connect to reply), refused and failed connections, and the CPU.

    python benchmarks/socket_load.py [--clients 200] [--bursts 5] [--photos 12]
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from _common import BPE, PHOTOS

WORDS = "dog cat beach sunset mountain car city night snow forest flower food party child bridge".split()


def find_request(text: str) -> bytes:
    """The request line `photoman find TEXT` sends: the one place to change if the wire format does."""
    from photoman.search.engine import Query
    from photoman.search.query import parse_query
    from photoman.service.protocol import encode

    q = Query(terms=parse_query([text]), limit=10)
    return encode({"op": "find", "args": {"query": q.to_json()}})


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return "unknown CPU"


@dataclass
class Burst:
    latencies: list[float] = field(default_factory=list)  # ms, connect to whole reply
    refused: int = 0  # connect failed (EAGAIN: backlog full; ECONNREFUSED)
    failed: list[str] = field(default_factory=list)  # connected, but no good reply


def burst(sock_path: Path, requests: list[bytes], timeout: float = 60.0) -> Burst:
    """Open one connection per request, all at once, send each its request, wait for every reply."""
    res = Burst()
    sel = selectors.DefaultSelector()
    for req in requests:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setblocking(False)
        start = time.perf_counter()
        try:
            s.connect(str(sock_path))
        except OSError:
            res.refused += 1
            s.close()
            continue
        sel.register(s, selectors.EVENT_WRITE, {"start": start, "out": memoryview(req), "in": bytearray()})
    deadline = time.monotonic() + timeout
    while sel.get_map() and time.monotonic() < deadline:
        for key, events in sel.select(timeout=1.0):
            s, st = key.fileobj, key.data
            assert isinstance(s, socket.socket)
            try:
                if events & selectors.EVENT_WRITE:
                    st["out"] = st["out"][s.send(st["out"]) :]
                    if not st["out"]:
                        sel.modify(s, selectors.EVENT_READ, st)
                    continue
                chunk = s.recv(1 << 20)
            except BlockingIOError:
                continue
            except OSError as exc:
                res.failed.append(repr(exc))
                sel.unregister(s)
                s.close()
                continue
            st["in"] += chunk
            if chunk and b"\n" not in chunk:
                continue
            elapsed = (time.perf_counter() - st["start"]) * 1e3
            sel.unregister(s)
            s.close()
            try:
                reply = json.loads(st["in"].split(b"\n", 1)[0])
            except ValueError:
                res.failed.append(f"no reply ({bytes(st['in'][:80])!r})")
                continue
            if reply.get("ok"):
                res.latencies.append(elapsed)
            else:
                res.failed.append(reply.get("error", "?"))
    for key in list(sel.get_map().values()):
        res.failed.append("timed out")
        key.fileobj.close()  # type: ignore[union-attr]
    return res


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q / 100 * len(xs)) - 1))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=200, help="concurrent connections per burst")
    ap.add_argument("--bursts", type=int, default=5)
    ap.add_argument("--photos", type=int, default=12, help="real photos indexed")
    args = ap.parse_args()

    from photoman.config import Settings
    from photoman.service.protocol import call, daemon_running, encode
    from tests.checkpoints import build_random_clip

    tmp = Path(tempfile.mkdtemp(prefix="photoman-socket-load-"))
    model = build_random_clip(tmp / "tiny-clip", BPE, shape="tiny")
    root = tmp / "Pictures"
    root.mkdir()
    for p in sorted(p for p in PHOTOS.iterdir() if p.suffix in (".jpg", ".png"))[: args.photos]:
        shutil.copy(p, root / p.name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOTOMAN_")}
    env.update(PHOTOMAN_DATA_DIR=str(tmp / "data"), PHOTOMAN_STATE_DIR=str(tmp / "state"),
               PHOTOMAN_RUNTIME_DIR=str(tmp / "run"), PHOTOMAN_CONFIG=str(tmp / "none.toml"),
               PHOTOMAN_CACHE_DIR=str(tmp / "cache"), PHOTOMAN_MODEL=str(model), PHOTOMAN_PRECISION="fp32",
               PHOTOMAN_AUTOSTART="0", HF_HUB_OFFLINE="1")  # fmt: skip
    (tmp / "none.toml").write_text("")
    cmd = [sys.executable, "-m", "photoman"]
    indexed = subprocess.run([*cmd, "index", str(root)], env=env, capture_output=True, text=True)
    assert indexed.returncode == 0, indexed.stderr
    sock = Settings(data_dir=tmp / "data", runtime_dir=tmp / "run").socket_path
    err = tmp / "daemon.err"
    with err.open("w") as err_file:
        proc = subprocess.Popen([*cmd, "watch"], env=env, stdout=subprocess.DEVNULL, stderr=err_file)
    try:
        deadline = time.monotonic() + 300
        while not daemon_running(sock):
            assert proc.poll() is None and time.monotonic() < deadline, err.read_text()[-2000:]
            time.sleep(0.2)
        while call(sock, "status")["daemon"]["state"] != "idle":
            time.sleep(0.2)
        points = call(sock, "status")["vectors"]["points"]

        def texts(b: int) -> list[bytes]:  # all distinct: the daemon caches recent query texts
            n = args.clients
            return [
                find_request(f"a {WORDS[i % len(WORDS)]} near a {WORDS[(7 * i + b) % len(WORDS)]}, {b}-{i}")
                for i in range(n)
            ]

        one = []
        for i in range(20):  # one client at a time, for comparison (and warm-up)
            t = time.perf_counter()
            call(sock, "find", {"query": json.loads(find_request(f"warm-up {i}"))["args"]["query"]})
            one.append((time.perf_counter() - t) * 1e3)
        ping = encode({"op": "ping"})  # the socket layer alone, no model work
        ping_bursts = [burst(sock, [ping] * args.clients) for _ in range(args.bursts)]
        per_burst = []
        for b in range(args.bursts):
            per_burst.append(burst(sock, texts(b)))
            time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(timeout=120)
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"CPU: {cpu_name()} ({os.cpu_count()} cores seen); daemon with the tiny random CLIP, {points} photos"
    )
    print(f"one client at a time : find p50 {statistics.median(one[5:]):6.1f} ms")
    print(f"{args.bursts} bursts of {args.clients} concurrent clients, one request each (connect -> reply):")
    for name, bursts in (("ping", ping_bursts), ("find", per_burst)):
        for i, r in enumerate(bursts):
            print(f"  {name} burst {i + 1}: {summary(r)}")
        lat = [x for r in bursts for x in r.latencies]
        refused = sum(r.refused for r in bursts)
        failed = [f for r in bursts for f in r.failed]
        print(f"  {name} all    : {summary(Burst(lat, refused, failed))}")
        asked = args.clients * len(bursts)
        print(f"  {name}: answered {len(lat)} of {asked}; refused {refused}; failed {len(failed)}")
        if failed:
            print(f"  first failures: {failed[:3]}")


def summary(r: Burst) -> str:
    if not r.latencies:
        return f"no replies; refused {r.refused}  failed {len(r.failed)}"
    lat = r.latencies
    return (
        f"p50 {statistics.median(lat):6.1f} ms  p95 {pct(lat, 95):6.1f} ms  max {max(lat):6.1f} ms  "
        f"refused {r.refused}  failed {len(r.failed)}"
    )


if __name__ == "__main__":
    main()
