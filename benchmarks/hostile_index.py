"""Indexing a folder of real photos mixed with hostile files (issue 17): no run aborted, every good
photo indexed, every hostile file recorded with its reason; peak memory of the run.

The hostile files, cycled up to --count: decompression bomb PNGs (40000x40000), 1x20000 and
1x65500 JPEG strips, PNGs whose header claims 900 MP, sparse 8 GB .jpg files, FIFOs and sockets named
.jpg, links to /dev/zero, broken links, caption sidecars that are FIFOs or /dev/zero, truncated,
empty and random files, names in the characters photoman reserves, a path past PATH_MAX, and
(on a tmpfs, when this runs as root) files dated year 11475 and -1199. Good photos: each real photo
once, some under names that are not UTF-8.

    python benchmarks/hostile_index.py [--count 1000] [--workers 2] [--tiny]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import zlib
from pathlib import Path

from _common import BPE, PHOTOS, vit_b32_model
from PIL import Image


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(w: int, h: int, mode_bits: int, colour: int, rows: int | None = None) -> bytes:
    """A PNG of w x h zero pixels (all rows, or only the first ``rows``: a header that lies)."""
    row = 1 + (w * mode_bits * (3 if colour == 2 else 1) + 7) // 8
    z, zeros, left = zlib.compressobj(1), bytes(1 << 20), row * (h if rows is None else rows)
    parts = []
    while left:
        n = min(left, len(zeros))
        parts.append(z.compress(zeros[:n]))
        left -= n
    parts.append(z.flush())
    ihdr = struct.pack(">IIBBBBB", w, h, mode_bits, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")
    )


def build(folder: Path, count: int, dated: Path | None) -> tuple[set[str], dict[str, str]]:
    """Good photos and hostile files under folder; returns (good paths, hostile path -> kind)."""
    good: set[str] = set()
    hostile: dict[str, str] = {}
    photos = sorted(p for p in PHOTOS.iterdir() if p.suffix in (".jpg", ".png"))
    for i, p in enumerate(photos):
        raw = os.fsencode(folder / f"{i:03d}-") + (b"caf\xe9-" if i % 4 == 0 else b"") + os.fsencode(p.name)
        shutil.copy2(p, raw)
        good.add(os.fsdecode(raw))
    blobs = {
        "bomb": png(40_000, 40_000, 1, 0),
        "claims 900 MP": png(30_000, 30_000, 8, 2, rows=1),
        "truncated": (PHOTOS / "palapeli-data--citrus-fruits.jpg").read_bytes()[:20_000],
        "empty": b"",
    }
    strips = {}
    for kind, size in (("strip 1x20000", (1, 20_000)), ("strip 1x65500", (1, 65_500))):
        tmp = folder / f".{kind}.jpg"
        Image.new("RGB", size, (120, 40, 40)).save(tmp)
        strips[kind] = tmp.read_bytes()
        tmp.unlink()
    kinds = [*blobs, *strips, "random", "sparse 8 GB", "FIFO", "socket", "/dev/zero link", "broken link",
             "FIFO sidecar", "/dev/zero sidecar", "reserved name"]  # fmt: skip
    cwd = os.getcwd()
    os.chdir(folder)  # sockets bind relative: their paths are limited to 108 bytes
    sockets = []
    try:
        for i in range(count):
            kind = kinds[i % len(kinds)]
            name = f"h{i:05d}.jpg" if kind != "reserved name" else f"h{i:05d}-\U0010ff90.jpg"
            path = folder / name
            if kind in blobs:
                path = path.with_suffix(".png") if "bomb" in kind or "MP" in kind else path
                path.write_bytes(blobs[kind])
            elif kind in strips:
                path.write_bytes(strips[kind])
            elif kind == "random":
                path.write_bytes(os.urandom(4096))
            elif kind == "sparse 8 GB":
                with open(path, "wb") as fh:
                    fh.write(b"\xff\xd8\xff\xe0")
                    os.truncate(fh.fileno(), 8 << 30)
            elif kind == "FIFO":
                os.mkfifo(path)
            elif kind == "socket":
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.bind(name)
                sockets.append(s)
            elif kind == "/dev/zero link":
                os.symlink("/dev/zero", path)
            elif kind == "broken link":
                os.symlink(folder / "nowhere", path)
            elif kind in ("FIFO sidecar", "/dev/zero sidecar"):
                photo = photos[i % len(photos)]
                host = folder / f"h{i:05d}{photo.suffix}"
                shutil.copy2(photo, host)
                good.add(str(host))
                path = folder / (host.name + ".txt")
                os.mkfifo(path) if kind == "FIFO sidecar" else os.symlink("/dev/zero", path)
            else:  # reserved name: a real photo, refused for its name
                shutil.copy2(photos[i % len(photos)], path)
            hostile[str(path)] = kind
    finally:
        os.chdir(cwd)
    deep = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)  # a path past PATH_MAX
    for _ in range(20):
        os.mkdir("d" * 250, dir_fd=deep)
        nxt = os.open("d" * 250, os.O_RDONLY | os.O_DIRECTORY, dir_fd=deep)
        os.close(deep)
        deep = nxt
    os.close(deep)
    hostile["deep"] = "path too long"
    if dated is not None:
        for stamp in (2.9998e11, -1.0e11):
            p = dated / f"dated-{stamp:.0e}.png"
            shutil.copy2(photos[0], p)
            os.utime(p, (stamp, stamp))
            good.add(str(p))
    build.sockets = sockets  # type: ignore[attr-defined] - kept open for the run
    return good, hostile


class PeakRSS:
    """Samples the resident memory of this process and all its descendants (decode workers too)."""

    def __init__(self) -> None:
        import psutil

        self.me = psutil.Process()
        self.main = self.tree = 0
        self.each: dict[int, tuple[int, str]] = {}  # pid -> (peak RSS, command line)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                main = self.me.memory_info().rss
                total = main
                for child in self.me.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        mem = child.memory_info().rss
                        total += mem
                        if mem > self.each.get(child.pid, (0, ""))[0]:
                            self.each[child.pid] = (mem, " ".join(child.cmdline())[:80])
            except psutil.Error:
                continue
            self.main, self.tree = max(self.main, main), max(self.tree, total)
            self._stop.wait(0.05)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=1000, help="hostile files (default 1000)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tiny", action="store_true", help="the tests' tiny model instead of a ViT-B/32")
    args = ap.parse_args()

    from sqlalchemy import select

    from photoman.catalog.models import Photo
    from photoman.catalog.paths import displayable
    from photoman.config import Settings
    from photoman.indexing.pipeline import index
    from photoman.library import Library
    from tests.checkpoints import build_random_clip

    work = Path(tempfile.mkdtemp(prefix="photoman-hostile-"))
    mounted = None
    try:
        folder = work / "Pictures"
        folder.mkdir()
        dated = folder / "dated"
        dated.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(dated)], capture_output=True).returncode == 0:
            mounted = dated  # ext4 clamps file times to 1901..2446; tmpfs keeps year 11475
        good, hostile = build(folder, args.count, mounted)
        model = build_random_clip(work / "tiny", BPE, shape="tiny") if args.tiny else vit_b32_model()
        cfg = Settings(data_dir=work / "data", model=str(model), workers=args.workers, autostart=0,
                       state_dir=work / "state", runtime_dir=work / "run")  # fmt: skip
        aborted = 0
        with Library(cfg) as lib, PeakRSS() as rss:
            t = time.perf_counter()
            try:
                index(lib, [folder])
            except Exception as exc:  # noqa: BLE001 - what this benchmark counts
                aborted += 1
                print(f"run aborted: {exc.__class__.__name__}: {exc}")
                raise SystemExit(1) from None
            first = time.perf_counter() - t
            t = time.perf_counter()
            again = index(lib, [folder])
            second = time.perf_counter() - t
            with lib.catalog.session() as s:
                rows = {r.path: (r.status, r.error) for r in s.scalars(select(Photo))}
        ok = {p for p, (status, _) in rows.items() if status == "ok"}
        errors = {p: e for p, (status, e) in rows.items() if status == "error"}
        long_error = next((e for p, e in errors.items() if "path too long" in e), None)

        def reason(path: str) -> str | None:
            return long_error if path == "deep" else errors.get(displayable(path))

        recorded = sum(1 for p in hostile if reason(p))
        missing_good = sorted(good - ok)
        model_name = "tiny" if args.tiny else "ViT-B/32 (random weights)"
        print(f"files: {len(good)} good photos, {len(hostile)} hostile ({len(set(hostile.values()))} kinds), "
              f"{args.workers} decode workers, model {model_name}")  # fmt: skip
        print(f"runs aborted: {aborted} of 2")
        print(f"good photos indexed: {len(good) - len(missing_good)} of {len(good)}"
              + (f" (missing: {missing_good[:3]})" if missing_good else ""))  # fmt: skip
        print(f"hostile files recorded with a reason: {recorded} of {len(hostile)}")
        by_kind: dict[str, str] = {}
        for p, kind in hostile.items():
            by_kind.setdefault(kind, reason(p) or "(not recorded)")
        for kind, err in sorted(by_kind.items()):
            print(f"  {kind:18} {err[:100]}")
        print(f"first run {first:.1f} s, second run {second:.1f} s ({again.unchanged} unchanged, "
              f"{len(again.errors)} retried errors)")  # fmt: skip
        print(f"peak RSS: {rss.main / 2**20:.0f} MB the indexing process, "
              f"{rss.tree / 2**20:.0f} MB with every child process at once (target <= 1536 MB)")  # fmt: skip
        for mem, cmd in sorted(rss.each.values(), reverse=True)[:6]:
            print(f"  child peak {mem / 2**20:6.0f} MB  {cmd}")
    finally:
        for s in getattr(build, "sockets", []):
            s.close()
        if mounted is not None:
            subprocess.run(["umount", "-l", str(mounted)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
