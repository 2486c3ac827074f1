"""The watcher on real folders: native events, debouncing, polling when inotify runs out."""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from photoman.indexing.watcher import DirtyPaths, Watcher, inotify_hint


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def taken(dirty: DirtyPaths, into: set[str]) -> Callable[[], set[str]]:
    def take() -> set[str]:
        into.update(dirty.take_quiet(0.0))
        return into

    return take


def test_dirty_paths_wait_for_quiet_and_fold_folders() -> None:
    dirty = DirtyPaths()
    dirty.add("/lib/a", when=time.monotonic() - 5)
    dirty.add("/lib/a/x.jpg", when=time.monotonic() - 5)
    dirty.add("/lib/b.jpg")  # just touched: not quiet yet
    assert dirty.take_quiet(1.0) == ["/lib/a"]  # x.jpg is inside a, which is rescanned whole
    assert len(dirty) == 1 and dirty.changed.is_set()
    assert dirty.take_quiet(0.0) == ["/lib/b.jpg"] and not dirty.changed.is_set()


def test_native_watch_reports_photos_and_folders_not_hidden_or_other_files(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    (root / "trip").mkdir(parents=True)
    dirty = DirtyPaths()
    watcher = Watcher(dirty)
    try:
        assert watcher.watch(str(root)) == "native"
        assert watcher.watch(str(root)) == "native"  # idempotent
        (root / "trip" / "a.jpg").write_bytes(b"x")
        (root / "notes.txt").write_text("not a photo")
        (root / ".thumbs").mkdir()
        (root / ".thumbs" / "b.jpg").write_bytes(b"x")
        (root / "trip").rename(root / "trip-2024")
        seen: set[str] = set()
        take = taken(dirty, seen)
        assert wait_for(lambda: {str(root / "trip"), str(root / "trip-2024")} <= take())
        assert not any(p.endswith(("notes.txt", "b.jpg", ".thumbs")) for p in seen)
    finally:
        watcher.stop()
    assert not watcher.observers


def _hold_every_inotify_instance() -> list[int]:
    """Open inotify instances until the kernel refuses (EMFILE): what a busy desktop session can do."""
    limit_file = Path("/proc/sys/fs/inotify/max_user_instances")
    if not limit_file.exists() or int(limit_file.read_text()) > 8192:
        pytest.skip("no inotify instance limit low enough to reach in a test")
    libc = ctypes.CDLL(None, use_errno=True)
    fds: list[int] = []
    while True:
        fd = libc.inotify_init1(os.O_CLOEXEC)
        if fd >= 0:
            fds.append(fd)
            continue
        if ctypes.get_errno() == errno.EMFILE:
            return fds
        for fd in fds:
            os.close(fd)
        pytest.skip(f"inotify_init1 failed: {os.strerror(ctypes.get_errno())}")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify limits are Linux's")
def test_inotify_limit_falls_back_to_polling_with_the_sysctl_hint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "lib"
    root.mkdir()
    dirty = DirtyPaths()
    watcher = Watcher(dirty, poll_interval=0.2)
    fds = _hold_every_inotify_instance()
    try:
        with caplog.at_level(logging.WARNING, logger="photoman.watcher"):
            kind = watcher.watch(str(root))  # the real inotify observer fails to start here
    finally:
        for fd in fds:
            os.close(fd)
    try:
        assert kind == "polling" and watcher.kinds == {str(root): "polling"}
        assert "fs.inotify.max_user_instances" in caplog.text and str(root) in caplog.text
        (root / "late.jpg").write_bytes(b"x")  # still noticed, by polling
        seen: set[str] = set()
        assert wait_for(lambda: str(root / "late.jpg") in taken(dirty, seen)())
    finally:
        watcher.stop()


def test_watch_limit_hint_names_the_watch_sysctl() -> None:
    hint = inotify_hint(errno.ENOSPC, "/photos")
    assert "sudo sysctl fs.inotify.max_user_watches=524288" in hint and "polling /photos" in hint


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
def test_reading_the_library_raises_no_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rescan lists every folder and a decode reads files: no events for those (at 100k photos they
    overflowed inotify's queue and watchdog re-walked the whole tree); writing a photo still is one,
    and so is `touch -d` on one (the date of a photo without EXIF)."""
    from photoman.indexing import watcher as watcher_mod

    root = tmp_path / "lib"
    for i in range(5):
        (root / f"d{i}").mkdir(parents=True)
        (root / f"d{i}" / "a.jpg").write_bytes(b"x" * 100)
    kinds: list[str] = []
    real = watcher_mod._Handler.on_any_event

    def record(self: object, event: object) -> None:
        kinds.append(event.event_type)  # type: ignore[attr-defined]
        real(self, event)  # type: ignore[arg-type]

    monkeypatch.setattr(watcher_mod._Handler, "on_any_event", record)
    dirty = DirtyPaths()
    watcher = Watcher(dirty)
    try:
        assert watcher.watch(str(root)) == "native"
        time.sleep(0.5)
        for _ in range(3):
            for folder in root.iterdir():
                for f in os.scandir(folder):
                    Path(f.path).read_bytes()
        time.sleep(0.6)
        assert kinds == []
        (root / "d0" / "new.jpg").write_bytes(b"y")
        assert wait_for(lambda: "created" in kinds)
        os.utime(root / "d1" / "a.jpg", (1_000_000_000, 1_000_000_000))
        assert wait_for(lambda: str(root / "d1" / "a.jpg") in taken(dirty, set())())
        assert not {"opened", "closed_no_write"} & set(kinds)
    finally:
        watcher.stop()
