"""Free space where the library is written: indexing stops, with one clear line, before a full disk hurts.

The embedded vector store maps its files into memory, and a mapped page that cannot be backed on a
full filesystem kills the process with SIGBUS: no exception, no message. SQLite fails its commit
instead. So every batch checks the free space first and stops while ``min_free_mb`` is still
there: the store always has room to finish what it started, what was indexed before is never
touched, and queries, which write nothing, keep working. Anything that still meets ENOSPC (another
program filled the disk between the check and the write) is reported with the same line.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from photoman.config import Settings
from photoman.errors import DiskFullError

BALLAST_NAME = "space-reserve.bin"  # in the data dir: freed to open the library on a completely full disk
BALLAST_MB = 4
_FULL_TEXTS = ("no space left on device", "database or disk is full", "disk quota exceeded", "diskfull")


def free_mb(path: Path | str) -> float:
    """Megabytes an unprivileged writer may still use on the filesystem holding ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize / 1e6


def written_dirs(settings: Settings) -> list[Path]:
    """The local folders a library writes into: the data dir, and a SQLite catalog's folder elsewhere."""
    dirs = [settings.data_dir]
    url = settings.catalog
    if url.startswith("sqlite:///"):
        parent = Path(url.removeprefix("sqlite:///")).parent
        if parent != settings.data_dir:
            dirs.append(parent)
    return [d for d in dirs if d.is_dir()]


def message(where: Path | str, free: float | None, reserve_mb: int | None = None, what: str = "") -> str:
    """The one line a user sees, whichever layer met the full disk."""
    shown = "almost no space" if free is None else f"{free:.0f} MB free"
    kept = f" (photoman keeps {reserve_mb} MB free)" if reserve_mb else ""
    return (
        f"disk full: {shown} in {where}{kept}; {what or 'photoman stopped writing'}; nothing was lost, "
        "and indexing goes on once some space is freed (the daemon resumes by itself)"
    )


def check_space(settings: Settings) -> None:
    """Raise DiskFullError when a folder the library writes to is down to its reserve."""
    for where in written_dirs(settings):
        free = free_mb(where)
        if free < settings.min_free_mb:
            raise DiskFullError(message(where, free, settings.min_free_mb))
    keep_ballast(settings.data_dir)


def keep_ballast(data_dir: Path) -> None:
    """A few MB set aside in the data dir while there is room: on a disk another program filled to
    the last byte, even opening the stores writes a little (the vector store rewrites its config,
    SQLite maps a shared-memory page); :func:`release_ballast` gives that room back to them."""
    path = data_dir / BALLAST_NAME
    if path.exists() or not data_dir.is_dir():
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.posix_fallocate(fd, 0, BALLAST_MB << 20)
        finally:
            os.close(fd)
    except OSError:
        path.unlink(missing_ok=True)  # no room or no fallocate here: nothing set aside, nothing lost


def release_ballast(data_dir: Path) -> bool:
    """Free the set-aside room (True if there was some to free); it is taken again once space returns."""
    path = data_dir / BALLAST_NAME
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def space_ok(settings: Settings) -> bool:
    """Whether writing may (re)start: the reserve is there again, with a margin so it does not flap."""
    return all(free_mb(d) >= settings.min_free_mb * 1.25 for d in written_dirs(settings))


def is_disk_full(exc: BaseException) -> bool:
    """Whether an error from any layer (OS, SQLite, PostgreSQL, the vector store) means "no space"."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFullError):
            return True
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(exc).lower()
        if any(t in text for t in _FULL_TEXTS):
            return True
        exc = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def as_disk_full(exc: BaseException, settings: Settings) -> DiskFullError:
    """The one-line error for an ENOSPC met anywhere while writing."""
    if isinstance(exc, DiskFullError):
        return exc
    where = settings.data_dir
    try:
        free: float | None = free_mb(where)
    except OSError:
        free = None
    return DiskFullError(message(where, free, settings.min_free_mb))
