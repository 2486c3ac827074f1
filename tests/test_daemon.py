"""The watch daemon as a real process: live indexing, socket queries, clean stops, kill -9 recovery."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from photoman.catalog import Catalog, Photo
from photoman.config import Settings
from photoman.library import Library
from photoman.service.protocol import DaemonError, call, daemon_running
from photoman.vectors import point_id

from .conftest import SMALL_SET
from .daemon_helpers import index_here, photoman, settings_of, start, wait_for


def catalog_rows(env: dict[str, str]) -> dict[str, Photo]:
    """Read the catalog while the daemon runs (SQLite WAL lets a reader in beside the writer)."""
    cat = Catalog(settings_of(env).catalog)
    try:
        with cat.session() as s:
            return {r.path: r for r in s.scalars(select(Photo))}
    finally:
        cat.close()


def idle(env: dict[str, str]) -> bool:
    d = call(settings_of(env).socket_path, "status")["daemon"]
    return d["state"] == "idle" and d["queue"] == 0


def assert_store_matches_catalog(env: dict[str, str]) -> None:
    with Library(settings_of(env)) as lib:
        rows = [r for r in catalog_rows(env).values() if r.status == "ok"]
        assert lib.store.all_ids() == {point_id(r.content_hash, lib.model_id) for r in rows}


def slow_copy(src: Path, dest: Path, chunks: int = 8, pause: float = 0.25) -> None:
    data = src.read_bytes()
    step = len(data) // chunks + 1
    with open(dest, "wb") as fh:
        for i in range(0, len(data), step):
            fh.write(data[i : i + step])
            fh.flush()
            time.sleep(pause)


def test_daemon_follows_the_library_and_answers_queries(
    env: dict[str, str], library_dir: Path, photos_src: Path, tmp_path: Path
) -> None:
    index_here(env, library_dir)
    # the slow copy pauses 0.25 s between writes: a settle time 12x that is safe on a loaded machine
    env = {**env, "PHOTOMAN_SETTLE": "3.0"}
    proc = start(env, tmp_path)
    try:
        sock = settings_of(env).socket_path
        assert oct(sock.stat().st_mode & 0o777) == "0o600"
        wait_for(lambda: idle(env), 60, "initial reconcile")
        # a second daemon on the same data dir refuses to start
        second = photoman(env, "watch", timeout=120)
        assert second.returncode == 3 and "already running" in second.stderr
        # find goes through the socket and answers with the same schema as the direct path
        res = photoman(env, "find", "--image", str(library_dir / "scikit-image--chelsea.png"), "--json")
        assert (
            res.returncode == 0 and '"path": "' + str(library_dir / "scikit-image--chelsea.png") in res.stdout
        )

        before = call(sock, "status")["daemon"]["embedded_since_start"]
        shutil.move(str(library_dir / "trips"), str(library_dir / "journeys"))  # rename a folder
        (library_dir / "scikit-image--camera.png").unlink()  # delete
        for name in ("scikit-image--moon.png", "palapeli-data--citrus-fruits.jpg"):
            shutil.copy(photos_src / name, library_dir / name)  # new photos
        slow_copy(photos_src / "mate-backgrounds--Dune.jpg", library_dir / "dune.jpg")  # a slow copy
        (library_dir / "zero.jpg").write_bytes(b"")
        data = (photos_src / "exif-js--DSCN0614_small.jpg").read_bytes()
        (library_dir / "truncated.jpg").write_bytes(data[: len(data) // 2])

        expected = {str(p) for p in library_dir.rglob("*") if p.is_file()}

        def converged() -> bool:
            return set(catalog_rows(env)) == expected and idle(env)

        wait_for(converged, 60, "catalog to follow the changes")
        rows = catalog_rows(env)
        errors = {Path(p).name for p, r in rows.items() if r.status == "error"}
        assert errors == {"zero.jpg", "truncated.jpg"}  # the slow copy was indexed whole
        assert rows[str(library_dir / "dune.jpg")].width == 1680
        status = call(sock, "status")
        assert (
            status["daemon"]["embedded_since_start"] - before == 3
        )  # moon, citrus, dune; the moved 4 reused
        assert status["vectors"]["points"] == len(expected) - 2
        hit = call(sock, "find", {"image": str(library_dir / "journeys" / "exif--test1.jpg"), "limit": 1})
        assert hit[0]["path"] == str(library_dir / "journeys" / "exif--test1.jpg")

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not settings_of(env).socket_path.exists()
    assert_store_matches_catalog(env)


def test_kill_9_at_random_moments_loses_nothing_and_duplicates_nothing(
    env: dict[str, str], tmp_path: Path, photos_src: Path
) -> None:
    lib_dir = tmp_path / "lib"
    lib_dir.mkdir()
    names = sorted(p.name for p in photos_src.iterdir() if p.suffix in (".jpg", ".png"))
    for name in names:
        shutil.copy(photos_src / name, lib_dir / name)
    shutil.copy(photos_src / names[0], lib_dir / "copy-of-first.jpg")
    assert (
        photoman(env, "index", str(tmp_path / "empty-start")).returncode == 2
    )  # bad folder, nothing written
    (tmp_path / "seed").mkdir()
    assert photoman(env, "index", str(tmp_path / "seed")).returncode == 0
    # the daemon learns the library root through the socket, then is killed mid-work, three times
    rng = random.Random(1234)
    for round_ in range(3):
        proc = start(env, tmp_path)
        if round_ == 0:
            call(settings_of(env).socket_path, "index", {"folders": [str(lib_dir)]})
        time.sleep(rng.uniform(0.3, 2.0))
        proc.kill()
        proc.wait()
    proc = start(env, tmp_path)
    try:
        wait_for(lambda: idle(env) and len(catalog_rows(env)) == len(names) + 1, 120, "recovery")
        assert photoman(env, "stop").returncode == 0
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    rows = catalog_rows(env)
    assert sorted(rows) == sorted(str(p) for p in lib_dir.iterdir())
    assert all(r.status == "ok" for r in rows.values())
    with Library(settings_of(env)) as lib:
        ids = lib.store.all_ids()
        assert ids == {point_id(r.content_hash, lib.model_id) for r in rows.values()}
        assert lib.store.count() == len(names)  # the copy shares its original's vector


def test_stop_while_the_model_loads_exits_at_once_and_cleanly(env: dict[str, str], tmp_path: Path) -> None:
    """Text queries answer while another thread imports torch and loads the model (a query must not
    touch the half-imported torch: see the next test); `photoman stop` right after a start must not
    wait for torch to finish loading a model it would only throw away; the library is closed properly
    all the same."""
    env = {**env, "PHOTOMAN_PRECISION": "fp32"}  # the torch model (seconds), not the cached ONNX graphs
    proc = start(env, tmp_path)  # returns as soon as text queries are answered
    sock = settings_of(env).socket_path
    loading = "model_ready_s" not in call(sock, "status")["daemon"]["timings"]
    for i in range(10):
        with pytest.raises(DaemonError, match="the library is empty"):  # answered, and says why
            call(sock, "find", {"text": f"a cat number {i}"})
    began = time.monotonic()
    stopped = photoman(env, "stop")
    assert stopped.returncode == 0 and "stopped daemon" in stopped.stdout, stopped.stderr
    assert proc.wait(timeout=30) == 0
    log = settings_of(env).log_file.read_text()
    assert log.rstrip().endswith("stopped") and "Traceback" not in log
    if loading:  # (on a machine that loads the tiny model within ~0.2 s there is nothing to cut short)
        assert "the image model was still loading" in log and "image model ready" not in log
        assert time.monotonic() - began < 5
    with Library(settings_of(env)) as lib:  # lock released, stores open
        assert lib.store.count() == 0


def test_query_threads_leave_a_half_imported_torch_alone(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race the previous test hits only by chance, made certain: while the model's thread is inside
    `import torch`, sys.modules holds a torch module without its functions yet. Sizing a query's
    threads must not reach for it (it did: `AttributeError: partially initialized module 'torch'`)."""
    import types

    from photoman.embedding import threads
    from photoman.service.daemon import use_threads

    monkeypatch.setitem(sys.modules, "torch", types.ModuleType("torch"))  # mid-import: nothing in it yet
    with Library(settings) as lib:
        assert not lib.torch_loaded
        use_threads(1, lib)
        use_threads(2, lib, force=True)
        assert threads.current() == 2


def test_watch_once_and_detach_stop(env: dict[str, str], library_dir: Path, tmp_path: Path) -> None:
    index_here(env, library_dir)
    shutil.copy(library_dir / "scikit-image--coffee.png", library_dir / "coffee-2.png")
    once = photoman(env, "watch", "--once")
    assert once.returncode == 0 and "1 reused" in once.stdout
    started = photoman(env, "watch", "--detach")
    assert started.returncode == 0 and "daemon running (pid" in started.stdout
    try:
        status = photoman(env, "status")
        assert "daemon    pid" in status.stdout and "(native)" in status.stdout
        busy = photoman(env, "watch", "--once")
        assert busy.returncode == 3 and busy.stderr.count("\n") == 1
        # `index` with a daemon up hands the new root to it and returns at once
        extra = tmp_path / "phone"
        extra.mkdir()
        shutil.copy(library_dir / "scikit-image--chelsea.png", extra / "IMG_0001.png")
        shutil.copy(library_dir / "trips" / "exif--test1.jpg", extra / "IMG_0002.jpg")
        handed = photoman(env, "index", str(extra))
        assert handed.returncode == 0 and "running daemon is indexing it" in handed.stdout
        wait_for(
            lambda: str(extra / "IMG_0002.jpg") in catalog_rows(env) and idle(env), 60, "new root indexed"
        )
        assert str(extra) in [r["path"] for r in call(settings_of(env).socket_path, "status")["roots"]]
        missing = photoman(env, "index", str(tmp_path / "nope"))
        assert missing.returncode == 2 and "no such folder" in missing.stderr
        # tag and dupes run inside the daemon (it owns the library); the exact copy is found
        tagged = photoman(env, "tag")
        assert tagged.returncode == 0 and "photos with 334 labels" in tagged.stdout
        tags = photoman(env, "tags", "--json")
        assert tags.returncode == 0 and isinstance(json.loads(tags.stdout), dict)
        dup = json.loads(photoman(env, "dupes", "--json", "--threshold", "0.9995", "--no-rotations").stdout)
        exact = [g for g in dup["groups"] if g["kind"] == "exact"]
        assert any(str(extra / "IMG_0001.png") in [p["path"] for p in g["photos"]] for g in exact)
    finally:
        stopped = photoman(env, "stop")
    assert stopped.returncode == 0 and "stopped daemon" in stopped.stdout
    assert "starting" in settings_of(env).log_file.read_text()
    again = photoman(env, "stop")
    assert again.returncode == 1 and "no daemon is running" in again.stderr


def test_library_notices_go_to_the_daemon_log(env: dict[str, str], tmp_path: Path) -> None:
    """A notice raised inside a detached daemon (building the fast text encoder of a model it has not
    seen) lands in its log file, once, with the log's own prefix; the starting command stays quiet."""
    env = {**env, "PHOTOMAN_CACHE_DIR": str(tmp_path / "fresh-cache")}
    started = photoman(env, "watch", "--detach")
    assert started.returncode == 0 and "Preparing" not in started.stderr, started.stderr
    try:
        sock = settings_of(env).socket_path
        wait_for(lambda: "text_ready_s" in call(sock, "status")["daemon"]["timings"], 120, "text encoder")
    finally:
        assert photoman(env, "stop").returncode == 0
    log = settings_of(env).log_file.read_text()
    notice = "Preparing the fast text encoder for this model (once, a few seconds)…"
    lines = [ln for ln in log.splitlines() if notice in ln]
    assert len(lines) == 1, log  # not a second, unprefixed copy through the daemon's stderr
    assert lines[0].endswith(f"INFO photoman.embedding.model: {notice}"), lines


def test_offline_root_is_hidden_not_deleted(settings: Settings, library_dir: Path, tmp_path: Path) -> None:
    from photoman.indexing.pipeline import index
    from photoman.search.engine import find

    with Library(settings) as lib:
        index(lib, [library_dir])
        away = tmp_path / "unplugged"
        library_dir.rename(away)  # the drive is gone
        rep = index(lib)
        assert rep.removed == 0 and rep.offline_roots == [str(library_dir)]
        assert len(catalog_rows_of(lib)) == len(SMALL_SET)
        query = away / "scikit-image--chelsea.png"
        assert find(lib, image=query, limit=5) == []
        assert find(lib, image=query, limit=1, include_offline=True)[0].path == str(
            library_dir / "scikit-image--chelsea.png"
        )
        library_dir.mkdir()  # mount point back, but empty: still offline
        assert index(lib).removed == 0
        library_dir.rmdir()
        away.rename(library_dir)  # the drive returns
        assert index(lib).unchanged == len(SMALL_SET)
        assert find(lib, image=library_dir / "scikit-image--chelsea.png", limit=1)[0].score > 0.99


def catalog_rows_of(lib: Library) -> list[Photo]:
    with lib.catalog.session() as s:
        return list(s.scalars(select(Photo)))


def test_a_busy_daemon_is_waited_for_not_replaced(
    env: dict[str, str], library_dir: Path, tmp_path: Path
) -> None:
    """A daemon that accepts but does not answer (its store's native code holding the interpreter while
    it builds a search graph; here, the process stopped) is busy, not gone: a query says so once, with
    how to resume a stopped one, and waits for it; no second daemon is started (autostart on) and the
    library is not opened beside it (off: both queries wait on the one daemon); `doctor` reports it
    rather than hang."""
    from photoman.service.protocol import PING_TIMEOUT

    index_here(env, library_dir)
    proc = start(env, tmp_path)
    queries: list[subprocess.Popen[str]] = []
    try:
        proc.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        cmd = [sys.executable, "-m", "photoman", "find", "a cat", "--json"]
        for autostart in ("0", "1"):
            its_env = {**env, "PHOTOMAN_AUTOSTART": autostart}
            pipe = subprocess.PIPE
            queries.append(subprocess.Popen(cmd, env=its_env, stdout=pipe, stderr=pipe, text=True))
        doctor = photoman(env, "doctor", timeout=120)
        assert "Traceback" not in doctor.stderr and f"kill -CONT {proc.pid}" in doctor.stdout, doctor
        # longer than the pings that took it for gone (with autostart, the launcher's second one too)
        time.sleep(max(0.0, 2 * PING_TIMEOUT + 1 - (time.monotonic() - started)))
        assert all(q.poll() is None for q in queries)  # still waiting
        proc.send_signal(signal.SIGCONT)
        for q in queries:
            out, err = q.communicate(timeout=120)
            assert q.returncode == 0, err
            assert json.loads(out) and err.count(f"the daemon (pid {proc.pid}) is stopped") == 1, err
            assert "started the photoman daemon" not in err and err.count("\n") == 1, err
    finally:
        for q in queries:
            if q.poll() is None:
                q.kill()
                q.wait()
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# the daemon, whose indexing batches fail while the file argv[1] exists (a fault injected where a real
# one, e.g. the catalog's foreign key refusing a row, surfaced)
_FAILS_WHILE = """
import os, sys
from photoman.indexing import pipeline

flush, marker = pipeline._Writer.flush, sys.argv[1]

def failing(self):
    if self.pending and os.path.exists(marker):
        raise RuntimeError("injected failure")
    return flush(self)

pipeline._Writer.flush = failing
sys.argv = ["photoman", "watch"]
from photoman.cli import main
sys.exit(main())
"""


def test_an_indexing_failure_shows_in_doctor_and_is_retried_soon(
    env: dict[str, str], library_dir: Path, tmp_path: Path
) -> None:
    """A daemon whose indexing run failed says so in `doctor` (a FIX line with the error, not "ok"),
    until it retries (by itself a minute later; here `photoman index`, the fix doctor names)."""
    log = open(tmp_path / "daemon.out", "ab")  # noqa: SIM115 - closed with the process
    marker = tmp_path / "fail"
    marker.touch()
    cmd = [sys.executable, "-c", _FAILS_WHILE, str(marker)]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log)
    try:
        sock = settings_of(env).socket_path
        wait_for(lambda: daemon_running(sock) or proc.poll() is not None, 60, "daemon")
        call(sock, "index", {"folders": [str(library_dir)]})  # what `photoman index FOLDER` sends
        wait_for(lambda: call(sock, "status")["daemon"]["state"] == "error", 60, "the failed run")
        from photoman.doctor import diagnose  # what `photoman doctor` prints, one finding a line

        found = next(f for f in diagnose(settings_of(env)) if f.check == "daemon")
        assert not found.ok and "injected failure" in found.detail and found.fix, found
        marker.unlink()  # the fault is gone: the retry indexes everything
        call(sock, "index", {"folders": []})
        wait_for(lambda: call(sock, "status")["photos"]["indexed"] == len(SMALL_SET), 60, "the retry")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
