"""Paths as photoman compares them: one spelling per folder, "inside" tested one way, and the folders
that must never become a library root by accident. Light (os only): the thin client uses it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from photoman.errors import BadInputError

# folders whose whole tree is the system, not someone's photos
SYSTEM_FOLDERS = frozenset(
    ["/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/opt", "/proc", "/root",
     "/run", "/sbin", "/snap", "/srv", "/sys", "/tmp", "/usr", "/var", "/System", "/Library", "/Applications",
     "/private", "/Volumes", "/mnt", "/media", "/home", "/Users"]
)  # fmt: skip


def absolute(path: str | os.PathLike[str]) -> str:
    """Absolute and normalised, `~` expanded, symlinks kept as named."""
    return os.path.normpath(os.path.abspath(os.path.expanduser(os.fspath(path))))


def canonical(path: str | os.PathLike[str]) -> str:
    """The one spelling of a folder: absolute with every symlink resolved (a root given through a
    link is watched and stored as the real folder, so no change is missed and nothing doubles)."""
    return os.path.realpath(absolute(path))


def is_inside(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or lies under it (both in the same spelling)."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def check_new_root(
    folder: str | os.PathLike[str], force: bool = False, own: Sequence[str | os.PathLike[str]] = ()
) -> str:
    """A folder fit to be a library root, canonical; the filesystem, a system folder or the home folder
    itself is refused without ``force`` (with the reason on one line), and photoman's ``own`` folders
    (data, state, runtime and cache dirs: Settings.own_folders) always."""
    path = canonical(folder)
    if not os.path.exists(path):
        raise BadInputError(f"no such folder: {folder}")
    if not os.path.isdir(path):
        raise BadInputError(f"not a folder: {folder} (give the folder that holds your photos)")
    for mine in own:
        if is_inside(path, canonical(mine)):
            raise BadInputError(f"refusing to index {path}: photoman keeps its own files there ({mine}); "
                                "give the folder that holds your photos")  # fmt: skip
    if force:
        return path
    home = canonical(Path.home())
    if path == "/":
        why = "the whole filesystem"
    elif path == home:
        why = "your whole home folder (caches, downloads, other programs' images)"
    elif path in SYSTEM_FOLDERS or any(path == canonical(s) for s in SYSTEM_FOLDERS if os.path.isdir(s)):
        why = "a system folder"
    else:
        return path
    raise BadInputError(f"refusing to index {path}: it is {why}; give the folder that holds your photos "
                        "(e.g. ~/Pictures), or add --force")  # fmt: skip
