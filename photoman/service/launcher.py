"""Start the daemon in the background (`watch --detach`, or on demand by the first command that needs it).

Two commands started at the same moment start one daemon: the start runs under an exclusive lock
beside the socket, and whoever gets the lock second finds the first one's daemon answering. The
daemon is handed every effective setting of the starting command through PHOTOMAN_* variables,
so a `--config FILE` or `--model` given to the command holds for the daemon too.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

from photoman.config import Settings
from photoman.errors import PhotomanError
from photoman.service.protocol import daemon_running

START_TIMEOUT = 300.0  # a first run may download the model


class DaemonStartError(PhotomanError):
    """The daemon could not be started (it said why in its log)."""


def settings_env(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment that gives a child process exactly these settings."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith("PHOTOMAN_")}
    for f in fields(Settings):
        value = getattr(settings, f.name)
        if value is None:
            continue
        key = "PHOTOMAN_CONFIG" if f.name == "config_file" else f"PHOTOMAN_{f.name.upper()}"
        if isinstance(value, list | dict) and not value:
            continue
        if isinstance(value, list):
            value = os.pathsep.join(str(v) for v in value)
        elif isinstance(value, dict):  # path_map: STORED=LOCAL pairs (JSON when a path holds ':' or '=')
            from photoman.pathmap import env_form

            value = env_form(value)
        env[key] = str(value)
    if settings.config_file is not None and not Path(settings.config_file).exists():
        env.pop("PHOTOMAN_CONFIG", None)  # the default path, absent: nothing to read
    return env


def log_tail(path: Path, lines: int = 5) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start_daemon(settings: Settings, timeout: float = START_TIMEOUT) -> int | None:
    """Start a daemon for this library and wait until it answers; its pid, or None if one already ran."""
    sock = settings.socket_path
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    lock_path = settings.state_dir / f"{sock.stem}.start.lock"
    with open(lock_path, "a+") as lock:
        deadline = time.monotonic() + timeout
        while True:  # the first starter holds this while its daemon comes up; the others wait here
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise DaemonStartError(
                        f"another command is still starting the daemon; see {settings.log_file}"
                    ) from None
                time.sleep(0.05)
        if daemon_running(sock):
            return None
        with open(settings.log_file, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "photoman", "watch", "--detached"],
                env=settings_env(settings), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,
            )  # fmt: skip
        while time.monotonic() < deadline:
            if daemon_running(sock):
                return proc.pid
            if proc.poll() is not None:
                why = log_tail(settings.log_file, 1).removeprefix("photoman: ") or f"see {settings.log_file}"
                err = DaemonStartError(f"the daemon could not start: {why}")
                if proc.returncode in (2, 3, 4):  # its own error's status (a bad setting, busy, disk full)
                    err.exit_code = proc.returncode
                raise err
            time.sleep(0.05)
        raise DaemonStartError(f"the daemon did not answer within {timeout:.0f} s; see {settings.log_file}")
