"""Whether a library root is online: decided from the mount that holds it, never from emptiness.

When a root is registered, and on every run that finds it online, the catalog remembers its device
(``st_dev``) and the mount point holding it (the root itself when it is a mount point, ``/`` when it
lies on the system disk). A drive that is unmounted leaves its mount point behind as an ordinary
folder, often with a stray ``.DS_Store``, ``.directory`` or ``lost+found`` in it, or a sync tool's
fresh copy of the folder names: such a root is offline because the remembered mount point is no
longer a mount point, whatever the folder holds. A root whose mount was never recorded (catalogs
from before this rule) keeps the old test until a run records it: gone, or empty while the catalog
has photos there, is offline.

:func:`root_online` is the one rule; ``photoman.catalog.roots.offline_roots`` applies it to the
library for `index`, `find`, `status`, `roots` and the daemon alike.
"""

from __future__ import annotations

import os
import sys

from photoman.paths import is_inside


def _unescape(field: str) -> str:
    """Mount points in mountinfo escape space, tab, newline and backslash as octal (\\040)."""
    if "\\" not in field:
        return field
    raw = os.fsencode(field)
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i : i + 1] == b"\\" and raw[i + 1 : i + 4].isdigit() and len(raw[i + 1 : i + 4]) == 3:
            out.append(int(raw[i + 1 : i + 4], 8))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return os.fsdecode(bytes(out))


def mount_points() -> set[str] | None:
    """Every mount point of this process's mount namespace (Linux), or None where that is not known."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        with open("/proc/self/mountinfo", "rb") as fh:
            lines = fh.read(16 << 20).splitlines()
    except OSError:
        return None
    out = set()
    for line in lines:
        fields = line.split(b" ")
        if len(fields) > 4:
            out.add(_unescape(os.fsdecode(fields[4])))
    return out or None


def is_mount_point(path: str, mounts: set[str] | None = None) -> bool:
    """Whether ``path`` is a mount point now (mountinfo; else the st_dev test, blind to bind mounts)."""
    if mounts is not None:
        return path in mounts
    return os.path.ismount(path)


def mount_of(path: str, mounts: set[str] | None = None) -> str:
    """The mount point holding ``path`` (itself if it is one), symlinks resolved."""
    real = os.path.realpath(path)
    if mounts is not None:
        return max((m for m in mounts if is_inside(real, m)), key=len, default="/")
    here = real
    while not os.path.ismount(here):
        up = os.path.dirname(here)
        if up == here:
            break
        here = up
    return here


def root_state(path: str, mounts: set[str] | None = None) -> tuple[int, str] | None:
    """(device, mount point) of a root folder now, to remember while it is online; None if it is gone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, mount_of(path, mounts)


def root_online(path: str, mount: str | None, has_photos: bool, mounts: set[str] | None = None) -> bool:
    """The one rule for "is this root online" (see the module docstring).

    ``mount`` is the mount point remembered when the root was last seen online (None: never
    recorded). Offline: the folder is gone, or that mount point is not mounted any more. A root on
    the system disk (``/``) is online whenever its folder exists, even empty: an emptied folder is a
    deletion, which the index's mass-deletion guard confirms on a second scan.
    """
    if not os.path.isdir(path):
        return False
    real = os.path.realpath(path)
    if mount is not None and is_inside(real, mount):
        return mount == "/" or is_mount_point(mount, mounts)
    # never recorded (or the root was relocated away from it): the old test, until a run records it
    if not has_photos:
        return True
    try:
        with os.scandir(path) as it:
            return next(it, None) is not None
    except OSError:
        return False
