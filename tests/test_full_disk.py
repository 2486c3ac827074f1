"""A full disk is a one-line error, never a crash: indexing stops, queries go on, and it all resumes.

The library lives on a real, small tmpfs filled with a filler file. Every command that may meet the
full disk runs as its own process: a SIGBUS from a memory-mapped store file would kill pytest too,
and a negative return code is exactly what these tests must catch.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from photoman.catalog.models import Photo
from photoman.diskspace import free_mb
from photoman.library import Library
from photoman.service.protocol import call

from .conftest import SMALL_SET
from .daemon_helpers import index_here, photoman, settings_of, start, wait_for

RESERVE_MB = 40


def fill(where: Path, leave_mb: float) -> Path:
    """Leave about ``leave_mb`` free on the filesystem of ``where`` (a filler file takes the rest)."""
    filler = where / "filler.bin"
    filler.unlink(missing_ok=True)
    take = max(0, int((free_mb(where) - leave_mb) * 1e6))
    with open(filler, "wb") as fh:
        block = b"\0" * (1 << 20)
        while take > 0:
            try:
                take -= fh.write(block[: min(take, len(block))])
            except OSError:  # full already
                break
    return filler


def consistent(env: dict[str, str]) -> tuple[int, int]:
    """(catalog rows indexed, points in the store), read through the library itself."""
    with Library(settings_of(env), "check", write=False) as lib, lib.catalog.session() as s:
        rows = s.scalar(select(func.count()).select_from(Photo).where(Photo.status == "ok"))
        return int(rows or 0), lib.store.count()


@pytest.fixture
def disk_env(env: dict[str, str], tmp_path: Path, tmpfs: Callable[..., Path]) -> dict[str, str]:
    data = tmpfs(tmp_path / "small-disk", size="400m")
    return {**env, "PHOTOMAN_DATA_DIR": str(data / "data"), "PHOTOMAN_MIN_FREE_MB": str(RESERVE_MB)}


def one_line_disk_full(res: object) -> None:
    assert res.returncode == 4, (res.returncode, res.stdout, res.stderr)  # type: ignore[attr-defined]
    err = res.stderr.strip()  # type: ignore[attr-defined]
    assert err.startswith("photoman: disk full:") and "\n" not in err and "nothing was lost" in err, err


def test_full_disk_stops_indexing_keeps_queries_and_recovers_in_place(
    disk_env: dict[str, str], library_dir: Path, photos_src: Path
) -> None:
    env = disk_env
    index_here(env, library_dir)
    before = consistent(env)
    assert before == (len(SMALL_SET), len(SMALL_SET))
    disk = Path(env["PHOTOMAN_DATA_DIR"]).parent
    newcomers = sorted(p for p in photos_src.iterdir() if p.suffix == ".jpg" and p.name not in SMALL_SET)[:6]
    for p in newcomers:
        shutil.copy(p, library_dir / p.name)

    filler = fill(disk, leave_mb=RESERVE_MB / 2)  # under the reserve: indexing refuses, whole
    one_line_disk_full(photoman(env, "index"))
    assert consistent(env) == before

    fill(disk, leave_mb=0)  # completely full: reading still works, writing is one line
    assert free_mb(disk) < 1
    status = photoman(env, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["photos"]["indexed"] == len(SMALL_SET)
    found = photoman(env, "find", "a photo", "--all", "--json")
    assert found.returncode == 0, found.stderr
    assert len(json.loads(found.stdout)) == len(SMALL_SET)
    one_line_disk_full(photoman(env, "index"))
    one_line_disk_full(photoman(env, "caption", str(library_dir / SMALL_SET[0]), "a cat on a mat"))

    filler.unlink()  # space comes back, in place: the same library opens and catches up
    res = photoman(env, "index", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["embedded"] == len(newcomers)
    assert consistent(env) == (len(SMALL_SET) + len(newcomers),) * 2


def test_daemon_pauses_on_a_full_disk_answers_meanwhile_and_resumes_by_itself(
    disk_env: dict[str, str], library_dir: Path, photos_src: Path, tmp_path: Path
) -> None:
    env = disk_env
    index_here(env, library_dir)
    disk = Path(env["PHOTOMAN_DATA_DIR"]).parent
    proc = start(env, tmp_path)
    sock = settings_of(env).socket_path
    try:
        filler = fill(disk, leave_mb=RESERVE_MB / 2)
        newcomer = next(p for p in sorted(photos_src.glob("*.jpg")) if p.name not in SMALL_SET)
        shutil.copy(newcomer, library_dir / newcomer.name)
        call(sock, "index", {})  # a scan now, not at the next periodic one

        def paused() -> bool:
            return call(sock, "status")["daemon"]["state"] == "disk full"

        wait_for(paused, 60, "the daemon to pause on the full disk")
        daemon = call(sock, "status")["daemon"]
        assert daemon["last_error"].startswith("disk full:") and str(disk) in daemon["last_error"]
        found = photoman(env, "find", "a photo", "--all", "--json")
        assert found.returncode == 0 and len(json.loads(found.stdout)) == len(SMALL_SET), found.stderr
        assert proc.poll() is None
        log = settings_of(env).log_file.read_text()
        assert "disk full:" in log and "Traceback" not in log

        filler.unlink()
        want = len(SMALL_SET) + 1
        wait_for(lambda: call(sock, "status")["photos"]["indexed"] == want, 60, "indexing to resume")
        assert call(sock, "status")["daemon"]["state"] in ("idle", "scanning", "indexing")
    finally:
        photoman(env, "stop")
        proc.wait(timeout=60)
    assert proc.returncode == 0
    assert consistent(env) == (len(SMALL_SET) + 1,) * 2
    assert os.path.exists(env["PHOTOMAN_DATA_DIR"])
