"""What under a root is not part of the library: the `exclude` setting (gitignore patterns, with
defaults for caches, dependency folders and virtualenvs), a `.photomanignore` file in any folder
(gitignore syntax, relative to that folder, applying below it), and photoman's own data, cache
and state folders. Matching is pathspec's gitignore implementation."""

from __future__ import annotations

import os
import stat
from functools import lru_cache
from typing import Any

import pathspec

from photoman.errors import DecodeError
from photoman.media.decode import read_regular
from photoman.paths import is_inside

IGNORE_FILE = ".photomanignore"


@lru_cache(maxsize=4096)
def _ignore_file(folder: str, mtime: float) -> pathspec.GitIgnoreSpec | None:
    """The `.photomanignore` of a folder, parsed (cached by its modification time); at most 64 KB of
    a regular file is read (a FIFO or device by that name is never opened)."""
    try:
        data = read_regular(os.path.join(folder, IGNORE_FILE), 64 * 1024)
    except (DecodeError, OSError):
        return None
    return _lenient(data.decode("utf-8", "replace").splitlines())


def _lenient(lines: list[str]) -> pathspec.GitIgnoreSpec:
    """The patterns of a file in the library, a line that is not a valid pattern (``[z-a]``) left out:
    a file a user (or anyone) put there must not stop the run."""
    try:
        return pathspec.GitIgnoreSpec.from_lines(lines)
    except Exception:  # noqa: BLE001 - pathspec raises its own error or re.error, by line
        return pathspec.GitIgnoreSpec.from_lines([ln for ln in lines if _pattern_error(ln) is None])


def _pattern_error(pattern: str) -> str | None:
    """Why ``pattern`` is not a valid gitignore pattern, or None when it is one."""
    try:
        pathspec.GitIgnoreSpec.from_lines([pattern])
    except Exception as exc:  # noqa: BLE001 - pathspec raises its own error or re.error
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


def bad_pattern(patterns: list[str]) -> str | None:
    """The first of these patterns that is not a valid gitignore pattern, with why, or None."""
    for p in patterns:
        if (why := _pattern_error(p)) is not None:
            return f"{p!r} ({why})"
    return None


def _spec_of(folder: str) -> pathspec.GitIgnoreSpec | None:
    try:
        st = os.stat(os.path.join(folder, IGNORE_FILE))
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return _ignore_file(folder, st.st_mtime)


def _below(path: str, folder: str) -> str:
    """``path`` relative to ``folder`` (both absolute and normalised, path inside folder): what
    os.path.relpath gives, without its ~25 µs per call (a rescan asks once per file)."""
    return path[len(folder.rstrip("/")) + 1 :]


class IgnoreRules:
    """Decides, for a path under a root, whether the library leaves it out."""

    def __init__(self, patterns: list[str] | tuple[str, ...], own_dirs: list[str], roots: list[str]) -> None:
        self.spec = pathspec.GitIgnoreSpec.from_lines(list(patterns))
        self.own_dirs = [os.path.realpath(d) for d in own_dirs]
        self.roots = sorted(roots, key=len, reverse=True)
        self._chains: dict[str, list[tuple[str, pathspec.GitIgnoreSpec]]] = {}  # per run: new files count

    @classmethod
    def for_library(cls, settings: Any, roots: list[str]) -> IgnoreRules:
        own = [str(settings.data_dir), str(settings.cache_dir), str(settings.state_dir)]
        return cls(settings.exclude, own, roots)

    def root_of(self, path: str) -> str | None:
        return next((r for r in self.roots if is_inside(path, r)), None)

    def _chain(self, folder: str, root: str) -> list[tuple[str, pathspec.GitIgnoreSpec]]:
        """The ignore files that apply inside ``folder``: its own and its ancestors' up to the root."""
        found = self._chains.get(folder)
        if found is None:
            here = _spec_of(folder)
            up = (
                self._chain(os.path.dirname(folder), root)
                if folder != root and is_inside(folder, root)
                else []
            )
            found = up + ([(folder, here)] if here is not None else [])
            self._chains[folder] = found
        return found

    def ignored(self, path: str, is_dir: bool) -> bool:
        """Whether ``path`` (absolute, under a root) is excluded, by a pattern or an ignore file."""
        if any(is_inside(path, d) for d in self.own_dirs):
            return True
        root = self.root_of(path)
        if root is None or path == root:
            return False
        tail = "/" if is_dir else ""
        if self.spec.match_file(_below(path, root) + tail):
            return True
        return any(spec.match_file(_below(path, folder) + tail)
                   for folder, spec in self._chain(os.path.dirname(path), root))  # fmt: skip
