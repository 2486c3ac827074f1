"""Hostile files under a library root, generated here on disk: each costs one catalog line with its
reason, never the run (issue 17), and what is not a regular file is recorded, not skipped (issue 20).

Everything runs the real pipeline: the tiny CLIP, decode worker processes, SQLite and embedded Qdrant.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pytest
from PIL import Image
from sqlalchemy import select, update

from photoman.catalog.models import Photo, Root
from photoman.catalog.queries import pending_removals
from photoman.catalog.roots import offline_roots
from photoman.config import Settings
from photoman.errors import DecodeError
from photoman.indexing import pipeline
from photoman.indexing.pipeline import IndexReport, index, sync
from photoman.indexing.prepare import Prepared, prepare
from photoman.indexing.scanner import FileStat
from photoman.library import Library
from photoman.media.decode import image_size, load_image
from photoman.search.engine import find
from photoman.status import library_status
from photoman.vectors import SearchFilter, point_id

# the fixtures' photos (tests.conftest is not imported here: decode workers import this module by
# name, for crash_on_marker, and must not run the conftest's set-up)
SMALL_SET = [
    "scikit-image--chelsea.png",
    "scikit-image--coffee.png",
    "scikit-image--camera.png",
    "scikit-image--rocket.jpg",
    "scikit-learn--china.jpg",
    "exif--test1.jpg",
    "exif-parser--starfish.jpg",
    "exif-js--dsc_09827.jpg",
    "palapeli-data--castle-maintenon.jpg",
    "mate-backgrounds--Storm.jpg",
]
T = TypeVar("T")
HANG = 30.0  # seconds after which an index run counts as hung


def rows(lib: Library) -> dict[str, Photo]:
    with lib.catalog.session() as s:
        return {r.path: r for r in s.scalars(select(Photo))}


def errors_by_name(report: IndexReport) -> dict[str, str]:
    return {os.path.basename(p): e for p, e in report.errors}


def no_hang(call: Callable[[], T], unblock: Sequence[Path] = ()) -> T:
    """call() in a thread: one that hangs fails the test (and FIFOs are then opened for writing, so
    whatever blocks on them gets end-of-file and the suite can go on)."""
    out: dict[str, object] = {}

    def run() -> None:
        try:
            out["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(HANG)
    if t.is_alive():
        deadline = time.monotonic() + 10
        while t.is_alive() and time.monotonic() < deadline:
            for fifo in unblock:
                with contextlib.suppress(OSError):
                    os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            t.join(0.2)
        pytest.fail(f"hung for more than {HANG:.0f} s")
    if "error" in out:
        raise out["error"]  # type: ignore[misc]
    return out["value"]  # type: ignore[return-value]


def index_or_fail(lib: Library, folders: list[Path], unblock: Sequence[Path] = ()) -> IndexReport:
    """index() that fails the test, rather than hanging it, should the run hang."""
    return no_hang(lambda: index(lib, folders), unblock)


def png_bomb(path: Path, side: int = 40_000) -> None:
    """A real 1-bit PNG of side × side pixels, all black: under 1 MB on disk, 1.6 gigapixels decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z, zeros, left = zlib.compressobj(1), bytes(1 << 20), side * (1 + side // 8)
    parts = []
    while left:
        n = min(left, len(zeros))
        parts.append(z.compress(zeros[:n]))
        left -= n
    parts.append(z.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")
    )


def umount(where: Path) -> None:
    subprocess.run(["umount", str(where)], check=True)


# ---- 1. names that are not UTF-8 -------------------------------------------------------------------


def test_file_names_that_are_not_utf8_are_indexed_and_stored_losslessly(
    settings: Settings, library_dir: Path, photos_src: Path
) -> None:
    base = os.fsencode(library_dir)
    cafe_raw = base + b"/caf\xe9.jpg"  # Latin-1 name, as old cameras and Windows shares write them
    shutil.copy(photos_src / "palapeli-data--citrus-fruits.jpg", cafe_raw)
    os.mkdir(base + b"/f\xf6lder")
    inner_raw = base + b"/f\xf6lder/\xff\xfe.png"
    Image.open(photos_src / "scikit-image--astronaut.png").save(inner_raw.decode("utf-8", "surrogateescape"))
    reserved = library_dir / "plane16-\U0010ff90.jpg"  # the characters the catalog maps to: refused
    shutil.copy(photos_src / "scikit-image--coffee.png", reserved)
    cafe, inner = os.fsdecode(cafe_raw), os.fsdecode(inner_raw)
    with Library(settings) as lib:
        rep = index_or_fail(lib, [library_dir])
        from photoman.catalog.paths import from_store, to_store

        assert rep.embedded == 12, rep.errors
        errs = errors_by_name(rep)
        assert len(errs) == 1 and "U+10FF80" in next(iter(errs.values()))
        r = rows(lib)
        assert r[cafe].status == "ok" and os.fsencode(r[cafe].path) == cafe_raw
        assert r[inner].status == "ok" and os.fsencode(r[inner].path) == inner_raw
        # in the store: the payload holds the stored spelling, which maps back to the same bytes
        pid = point_id(r[inner].content_hash, lib.model_id)
        payload = lib.store.retrieve([pid])[0].payload
        assert [from_store(p) for p in payload["paths"]] == [inner]
        assert to_store(os.path.dirname(inner)) in payload["folders"]
        assert find(lib, image=cafe, limit=1)[0].path == cafe
        again = index_or_fail(lib, [library_dir])  # the names compare equal on the next run too
        assert again.unchanged == 13 and again.embedded == 0 and not again.errors
        os.rename(cafe_raw, base + b"/cafe.jpg")  # a move keeps the vector
        moved = index_or_fail(lib, [library_dir])
        assert moved.reused == 1 and moved.removed == 1 and moved.embedded == 0


def test_store_mapping_round_trips_every_surrogate_escape() -> None:
    from photoman.catalog.paths import from_store, to_store

    names = ["plain/ascii.jpg", "ünïcødé/写真.jpg", os.fsdecode(bytes(range(0x80, 0x100)))]
    for name in names:
        stored = to_store(name)
        stored.encode("utf-8")  # what SQLite, PostgreSQL and Qdrant accept
        assert from_store(stored) == name
    assert to_store(names[0]) is names[0] or to_store(names[0]) == names[0]


# ---- 2. bombs, giant files, endless sidecars ---------------------------------------------------------


def test_bombs_giant_files_and_endless_sidecars_cost_one_line_each(
    settings: Settings, library_dir: Path
) -> None:
    png_bomb(library_dir / "bomb.png")  # 40000 x 40000
    Image.new("RGB", (1, 20_000), (200, 30, 30)).save(library_dir / "strip.jpg")
    Image.new("RGB", (1, 65_500), (30, 200, 30)).save(library_dir / "tall.jpg")
    with open(library_dir / "huge.jpg", "wb") as fh:  # sparse: 8 GB long, nothing on disk
        fh.write(b"\xff\xd8\xff\xe0")
        os.truncate(fh.fileno(), 8 << 30)
    os.symlink("/dev/zero", library_dir / "scikit-image--chelsea.png.txt")  # an endless caption
    with Library(settings) as lib:
        rep = index_or_fail(lib, [library_dir])
        errs = errors_by_name(rep)
        assert rep.embedded == 10, errs
        assert set(errs) == {"bomb.png", "strip.jpg", "tall.jpg", "huge.jpg", "scikit-image--chelsea.png.txt"}
        assert "pixels" in errs["bomb.png"] and "1600" in errs["bomb.png"]  # refused before decoding
        assert "aspect" in errs["strip.jpg"] and "aspect" in errs["tall.jpg"]
        assert "too large" in errs["huge.jpg"]
        assert "character device" in errs["scikit-image--chelsea.png.txt"]
        r = rows(lib)
        assert r[str(library_dir / "scikit-image--chelsea.png")].status == "ok"
        assert all(r[str(library_dir / n)].status == "error" for n in ("bomb.png", "huge.jpg"))
        again = index_or_fail(lib, [library_dir])
        assert again.unchanged == 15 and not again.errors


def test_hostile_images_are_refused_before_any_memory_is_spent(tmp_path: Path) -> None:
    """In a fresh process (its peak RSS is the figure): the bomb, the strips, the sparse file, an
    endless sidecar, each through prepare() and the query-image path. Pillow decodes a whole PNG to
    look for EXIF, so the bounds must come before any metadata is read."""
    png_bomb(tmp_path / "bomb.png")
    Image.new("RGB", (1, 65_500), (30, 200, 30)).save(tmp_path / "tall.jpg")
    with open(tmp_path / "huge.jpg", "wb") as fh:
        os.truncate(fh.fileno(), 8 << 30)
    os.symlink("/dev/zero", tmp_path / "bomb.png.txt")
    script = """
import resource, sys
from photoman.errors import DecodeError
from photoman.indexing.prepare import prepare
from photoman.indexing.scanner import stat_photo
from photoman.media.decode import image_size, load_image
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for name in ("bomb.png", "tall.jpg", "huge.jpg"):
    p = sys.argv[1] + "/" + name
    assert prepare(stat_photo(p)).error, name
    for call in (load_image, image_size):
        try:
            call(p)
            raise SystemExit(name + " decoded")
        except DecodeError:
            pass
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)
"""
    res = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    assert int(res.stdout.split()[-1]) < 64, f"{res.stdout.strip()} MB spent on files that are refused"


# ---- 3. FIFOs, sockets, device links: never opened, never waited on, recorded (issue 20) -----------


def test_fifos_sockets_and_device_links_never_block_and_are_recorded(
    settings: Settings, library_dir: Path
) -> None:
    fifos = [
        library_dir / "pipe.jpg",  # a FIFO named like a photo
        library_dir / "scikit-image--coffee.png.txt",  # a caption sidecar that is a FIFO
        library_dir / "scikit-image--camera.xmp",  # an XMP sidecar that is a FIFO
        library_dir / ".photomanignore",  # the ignore file itself
    ]
    for f in fifos:
        os.mkfifo(f)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    cwd = os.getcwd()
    os.chdir(library_dir)  # a relative bind: socket paths are limited to 108 bytes
    try:
        sock.bind("sock.png")
    finally:
        os.chdir(cwd)
    os.symlink("/dev/null", library_dir / "null.jpg")
    os.symlink(library_dir / "nowhere.jpg", library_dir / "dangling.jpg")
    try:
        with Library(settings) as lib:
            rep = index_or_fail(lib, [library_dir], unblock=fifos)
            errs = errors_by_name(rep)
            assert rep.embedded == 10, errs
            assert "FIFO" in errs.pop("pipe.jpg") and "socket" in errs.pop("sock.png")
            assert "character device" in errs.pop("null.jpg")
            assert "broken symbolic link" in errs.pop("dangling.jpg")
            assert "FIFO" in errs.pop("scikit-image--coffee.png.txt")
            assert "FIFO" in errs.pop("scikit-image--camera.xmp")
            assert errs == {}
            again = index_or_fail(lib, [library_dir], unblock=fifos)
            assert again.unchanged == 16 and not again.errors
    finally:
        sock.close()

    def refused(call: Callable[[], object]) -> str:
        out: dict[str, str] = {}

        def run() -> None:
            try:
                call()
            except DecodeError as exc:
                out["msg"] = str(exc)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        t.join(5)
        for f in fifos:  # unblock a reader, should one be waiting
            with contextlib.suppress(OSError):
                os.close(os.open(f, os.O_WRONLY | os.O_NONBLOCK))
        assert not t.is_alive(), "blocked on a FIFO"
        return out.get("msg", "")

    # a FIFO given as a query image, to classify or locate: one line, at once
    assert "FIFO" in refused(lambda: load_image(library_dir / "pipe.jpg"))
    assert "FIFO" in refused(lambda: image_size(library_dir / "pipe.jpg"))
    assert "character device" in refused(lambda: load_image("/dev/zero"))


def test_over_long_paths_are_recorded_not_skipped(
    settings: Settings, library_dir: Path, photos_src: Path
) -> None:
    data = (photos_src / "scikit-image--coffee.png").read_bytes()
    fd = os.open(library_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(20):  # 20 x 250 characters: past PATH_MAX (4096), reachable only step by step
            os.mkdir("d" * 250, dir_fd=fd)
            nxt = os.open("d" * 250, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        out = os.open("deep.png", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(out, data)
        os.close(out)
    finally:
        os.close(fd)
    with Library(settings) as lib:
        rep = index_or_fail(lib, [library_dir])
        assert rep.embedded == 10 and len(rep.errors) == 1, rep.errors
        path, err = rep.errors[0]
        assert "too long" in err and path.startswith(str(library_dir / ("d" * 250)))
        again = index_or_fail(lib, [library_dir])
        assert again.unchanged == 11 and not again.errors


def test_the_watchers_sync_records_hostile_files_too(
    settings: Settings, library_dir: Path, photos_src: Path
) -> None:
    trips = library_dir / "trips"
    with Library(settings) as lib:
        index_or_fail(lib, [library_dir])
        os.mkfifo(trips / "late.jpg")
        os.symlink("/dev/zero", trips / "zero.jpg")
        shutil.copy(photos_src / "palapeli-data--citrus-fruits.jpg", os.fsencode(trips) + b"/\xe9t\xe9.jpg")
        rep, postponed = no_hang(lambda: sync(lib, [str(trips)]), unblock=[trips / "late.jpg"])
        errs = errors_by_name(rep)
        assert postponed == [] and rep.embedded == 1 and set(errs) == {"late.jpg", "zero.jpg"}
        assert "FIFO" in errs["late.jpg"] and "character device" in errs["zero.jpg"]
        assert os.fsencode(trips) + b"/\xe9t\xe9.jpg" in {os.fsencode(p) for p in rows(lib)}
        # a single-file event (what the watcher reports for a photo name)
        rep, _ = no_hang(lambda: sync(lib, [str(trips / "late.jpg")]), unblock=[trips / "late.jpg"])
        assert rep.unchanged == 1 and not rep.errors


# ---- 4. absurd modification times ------------------------------------------------------------------


def test_mtimes_out_of_datetime_range_are_unknown_dates(
    settings: Settings, tmp_path: Path, photos_src: Path, tmpfs: Callable[[Path], Path]
) -> None:
    lib_dir = tmpfs(tmp_path / "tmpfs")  # ext4 clamps such times to 1901..2446; tmpfs keeps them
    for name in SMALL_SET[:5]:
        shutil.copy(photos_src / name, lib_dir / name)
    future, past = lib_dir / SMALL_SET[0], lib_dir / SMALL_SET[1]  # PNGs: no EXIF date to fall back on
    os.utime(future, (2.9998e11, 2.9998e11))  # year 11475
    os.utime(past, (-1.0e11, -1.0e11))  # year -1199
    assert os.stat(future).st_mtime == 2.9998e11
    with Library(settings) as lib:
        rep = index_or_fail(lib, [lib_dir])
        assert rep.embedded == 5 and not rep.errors
        r = rows(lib)
        for p in (future, past):
            payload = lib.store.retrieve([point_id(r[str(p)].content_hash, lib.model_id)])[0].payload
            assert payload.get("taken_at") is None  # unknown date, not a crash
        assert len(find(lib, text="a photo", limit=10)) == 5


def test_payload_of_a_row_with_an_absurd_mtime() -> None:
    from photoman.catalog.payload import payload_for

    for mtime in (2.9998e11, -1.0e11, 1e300, float("nan")):
        row = Photo(path="/r/a.jpg", root_id=1, content_hash="h", mtime=mtime, size=1, status="ok")
        assert payload_for([row], {1: "/r"})["taken_at"] is None


# ---- 5. decode workers die with their parent; a dying worker costs one file --------------------------


def _group_alive(pgid: int) -> list[str]:
    """Live (not zombie) processes of a process group, as 'pid state cmd'."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(f"{entry} {fields[0]}")
    return out


def test_kill_9_of_index_leaves_no_decode_workers(
    cli_env: Settings, photos_src: Path, tmp_path: Path
) -> None:
    lib_dir = tmp_path / "many"
    lib_dir.mkdir()
    jpgs = sorted(photos_src.glob("*.jpg"))
    for i in range(60):  # enough files that the workers are mid-run when the command dies
        shutil.copy(jpgs[i % len(jpgs)], lib_dir / f"{i:03d}.jpg")
    env = dict(os.environ)
    cmd = [sys.executable, "-m", "photoman", "index", str(lib_dir)]
    out = subprocess.DEVNULL
    proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=out, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # decode workers: grandchildren (forked by the fork server)
            if len(_group_alive(proc.pid)) >= 3 + cli_env.decode_workers:  # + tracker, fork server
                break
            if proc.poll() is not None:
                pytest.fail("index finished before its workers were seen")
            time.sleep(0.05)
        time.sleep(0.3)
        before = _group_alive(proc.pid)
        assert len(before) >= 3, before
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 5
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _group_alive(proc.pid) == [], f"outlived their parent: {_group_alive(proc.pid)} (of {before})"
    finally:
        for line in _group_alive(proc.pid):
            os.kill(int(line.split()[0]), signal.SIGKILL)


def crash_on_marker(file: FileStat, *args: object) -> Prepared:
    """Stands in for `prepare` in the decode workers (this module is imported there by name): a file
    named crash-* makes the worker really segfault (a NULL read through ctypes), as a decoder bug
    would; hang-* makes it hang; alloc-* asks for 5 GB. Every other file goes through the real prepare."""
    name = os.path.basename(file.path)
    if name.startswith("crash-"):
        ctypes.string_at(0)
    if name.startswith("hang-"):
        time.sleep(300)
    if name.startswith("alloc-"):  # an allocation no bound foresaw: 5 GB, written so it is real
        block = bytearray(5 << 30)
        block[:: 1 << 12] = b"\1" * len(block[:: 1 << 12])
    return prepare(file, *args)  # type: ignore[arg-type]


def test_a_worker_that_dies_costs_its_file_and_the_run_goes_on(
    settings: Settings, library_dir: Path, photos_src: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline, "prepare", crash_on_marker)
    monkeypatch.setattr(pipeline, "DECODE_TIMEOUT", 3.0, raising=False)
    shutil.copy(photos_src / "scikit-image--astronaut.png", library_dir / "crash-astronaut.png")
    shutil.copy(photos_src / "palapeli-data--citrus-fruits.jpg", library_dir / "trips" / "crash-citrus.jpg")
    shutil.copy(photos_src / "scikit-learn--flower.jpg", library_dir / "hang-flower.jpg")
    shutil.copy(photos_src / "imgaug--quokka.jpg", library_dir / "alloc-quokka.jpg")
    with Library(replace(settings, workers=2)) as lib:
        rep = index_or_fail(lib, [library_dir])
        errs = errors_by_name(rep)
        assert rep.embedded == 10, errs
        assert set(errs) == {"crash-astronaut.png", "crash-citrus.jpg", "hang-flower.jpg", "alloc-quokka.jpg"}
        assert "SIGSEGV" in errs["crash-astronaut.png"] and "SIGSEGV" in errs["crash-citrus.jpg"]
        assert "longer than 3 s" in errs["hang-flower.jpg"]
        assert "out of memory" in errs["alloc-quokka.jpg"]  # the worker's memory cap, not the OOM killer
        # a crash may be the machine's fault (the OOM killer): those files are tried again next run
        again = index_or_fail(lib, [library_dir])
        assert again.unchanged == 11 and len(again.errors) == 3


# ---- 6. a drive that is gone is not a deletion -------------------------------------------------------


def test_unmounted_drive_with_a_stray_file_is_offline_not_empty(
    settings: Settings, tmp_path: Path, photos_src: Path, tmpfs: Callable[[Path], Path]
) -> None:
    drive = tmpfs(tmp_path / "media" / "usb")
    inner = drive / "Photos"  # a root inside the drive, and the drive's mount point itself as a root
    inner.mkdir()
    for name in SMALL_SET[:4]:
        shutil.copy2(photos_src / name, inner / name)
    other = tmpfs(tmp_path / "media" / "card")
    for name in SMALL_SET[4:8]:
        shutil.copy2(photos_src / name, other / name)
    with Library(settings) as lib:
        rep = index_or_fail(lib, [inner, other])
        assert rep.embedded == 8 and offline_roots(lib) == []
        umount(drive)
        umount(other)
        (drive / "Photos").mkdir()  # what a sync tool leaves in the empty mount point
        (drive / "Photos" / ".DS_Store").write_bytes(b"\0" * 16)
        (other / ".directory").write_text("[Desktop Entry]\n")
        (other / "lost+found").mkdir()
        assert sorted(offline_roots(lib)) == [str(other), str(inner)]
        rep = index_or_fail(lib, [])
        assert rep.removed == 0 and sorted(rep.offline_roots) == [str(other), str(inner)]
        assert len([r for r in rows(lib).values() if r.status == "ok"]) == 8
        assert lib.store.count() == 8
        assert find(lib, text="a photo", limit=10) == []  # hidden while offline, not forgotten
        shutil.rmtree(drive / "Photos")
        shutil.rmtree(other / "lost+found")
        (other / ".directory").unlink()
        tmpfs(drive)  # the drive comes back
        tmpfs(other)
        inner.mkdir()
        for name in SMALL_SET[:4]:
            shutil.copy2(photos_src / name, inner / name)
        for name in SMALL_SET[4:8]:
            shutil.copy2(photos_src / name, other / name)
        assert offline_roots(lib) == []
        rep = index_or_fail(lib, [])
        assert rep.unchanged == 8 and rep.removed == 0 and rep.embedded == 0
        assert len(find(lib, text="a photo", limit=10)) == 8


def test_legacy_root_without_mount_record_keeps_the_old_rule(settings: Settings, library_dir: Path) -> None:
    """A root recorded before mounts were remembered: gone or emptied means offline; it learns its mount
    on the next run that finds it online."""
    with Library(settings) as lib:
        index_or_fail(lib, [library_dir])
        with lib.catalog.session() as s:
            s.execute(update(Root).values(device=None, mount=None))
        assert offline_roots(lib) == []
        index_or_fail(lib, [])
        with lib.catalog.session() as s:
            root = s.scalar(select(Root))
            assert root.mount == "/" or root.mount is not None and str(library_dir).startswith(root.mount)
            assert root.device == os.stat(library_dir).st_dev


def test_mass_deletion_waits_for_a_second_scan(cli_env: Settings, tmp_path: Path, photos_src: Path) -> None:
    settings = cli_env
    lib_dir = tmp_path / "Pictures"
    lib_dir.mkdir()
    for i in range(20):
        shutil.copy(photos_src / SMALL_SET[i % len(SMALL_SET)], lib_dir / f"{i:02d}-{SMALL_SET[i % 10]}")
    with Library(settings) as lib:
        assert index_or_fail(lib, [lib_dir]).scanned == 20
        from photoman.catalog.queries import tag_counts
        from photoman.zeroshot.tagging import tag_library

        tag_library(lib, [("a cat", None), ("a dog", None)], min_prob=0.0, top_k=1)  # one tag per file
        assert sum(n for _, n in tag_counts(lib)) == 20
        victims = sorted(lib_dir.iterdir())[:16]  # 80 %: a glitch as likely as a decision
        for v in victims:
            v.unlink()
        first = index_or_fail(lib, [lib_dir])
        assert first.removed == 0 and first.pending_removal == 16
        assert len(rows(lib)) == 20 and lib.store.count() == 10
        with lib.catalog.session() as s:
            pending = s.scalars(select(Photo.path).where(Photo.missing_since.is_not(None))).all()
        assert sorted(pending) == sorted(str(v) for v in victims)
        assert pending_removals(lib, limit=3) == (16, sorted(pending)[:3])
        # what a user sees meanwhile: not in results; in status and doctor, with what happens next
        # (six contents lost both copies, four keep one: a limit of 4 still gets those 4, each at its
        # copy still there, filtered in the store, not dropped after a top 4 full of gone photos)
        results = find(lib, text="a photo", limit=4)
        assert sorted(r.path for r in results) == sorted(str(f) for f in lib_dir.iterdir())
        assert all(r.duplicates == [] for r in results)
        inside = SearchFilter(folder=str(lib_dir))
        assert len(find(lib, image=lib_dir / f"16-{SMALL_SET[6]}", limit=20, flt=inside)) == 4
        assert library_status(lib)["pending_removal"] == {"photos": 16, "paths": sorted(pending)[:5]}
        assert sum(n for _, n in tag_counts(lib)) == 4  # `tags` agrees with what `find --tag` shows
        from photoman.doctor import diagnose

        note = next(f for f in diagnose(settings) if f.check == "removals")
        assert note.ok and note.detail.startswith("16 photos went missing in one scan")
        from typer.testing import CliRunner

        from photoman.cli import app

        out = CliRunner().invoke(app, ["status"]).stdout
        assert "missing   16 photos gone since the last scan" in out and str(victims[0]) in out
        shutil.copy(photos_src / SMALL_SET[0], victims[0])  # one came back meanwhile: kept
        second = index_or_fail(lib, [lib_dir])
        assert second.removed == 15 and second.pending_removal == 0
        assert len(rows(lib)) == 5
        with lib.catalog.session() as s:
            assert s.scalar(select(Photo).where(Photo.path == str(victims[0]))).missing_since is None
        few = sorted(lib_dir.iterdir())[:1]  # a small share goes at once
        few[0].unlink()
        assert index_or_fail(lib, [lib_dir]).removed == 1
        for f in lib_dir.iterdir():  # a whole root emptied, however small: confirmed by a second scan
            f.unlink()
        emptied = index_or_fail(lib, [lib_dir])
        assert emptied.removed == 0 and emptied.pending_removal == 4
        assert index_or_fail(lib, [lib_dir]).removed == 4 and rows(lib) == {}


def test_regular_file_check_is_on_the_file_not_the_name(tmp_path: Path) -> None:
    """stat before open: a FIFO is refused by prepare() itself too (a race with the scan)."""
    fifo = tmp_path / "late.jpg"
    os.mkfifo(fifo)
    st = os.lstat(fifo)
    assert stat.S_ISFIFO(st.st_mode)
    out: dict[str, Prepared] = {}
    t = threading.Thread(
        target=lambda: out.update(p=prepare(FileStat(str(fifo), 0, st.st_mtime))), daemon=True
    )
    t.start()
    t.join(5)
    if t.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("prepare() blocked on a FIFO")
    assert "FIFO" in (out["p"].error or "")
