"""Running photoman as real processes: the CLI, and the daemon with its socket."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from photoman.config import Settings, load_settings
from photoman.service.protocol import daemon_running


def base_env() -> dict[str, str]:
    """This environment without the user's PHOTOMAN_* settings, except the run's own cache
    (conftest.py): the processes a test starts find the encoders built once for the run there."""
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("PHOTOMAN_") or k == "PHOTOMAN_CACHE_DIR"}


def settings_of(env: dict[str, str]) -> Settings:
    return load_settings(env=env)


def photoman(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "photoman", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def start(env: dict[str, str], tmp_path: Path) -> subprocess.Popen[bytes]:
    log = open(tmp_path / "daemon.out", "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([sys.executable, "-m", "photoman", "watch"], env=env, stdout=log, stderr=log)
    sock = settings_of(env).socket_path
    wait_for(lambda: daemon_running(sock) or proc.poll() is not None, 120, "daemon socket")
    assert proc.poll() is None, (tmp_path / "daemon.out").read_text()
    return proc


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def index_here(env: dict[str, str], folder: Path) -> None:
    """Index a folder in this process, as `photoman index FOLDER` with these settings would: the set-up of
    tests about something else (a subprocess would pay the interpreter's and torch's start again)."""
    from photoman import ops
    from photoman.library import Library

    with Library(settings_of(env), "test set-up") as lib:
        report = ops.index(lib, folders=[str(folder)])
    assert report["errors"] == 0 or report["embedded"], report
