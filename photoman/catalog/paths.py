"""File names that are not UTF-8, stored losslessly.

Python hands such a name over as a str in which each undecodable byte 0x80..0xFF is a lone surrogate
U+DC80..U+DCFF (PEP 383, ``surrogateescape``); ``os.fsencode`` gives the original bytes back. Neither
SQLite's driver, PostgreSQL nor Qdrant accepts lone surrogates, so on the way into a store each is
mapped to U+10FF80..U+10FFFF (the end of plane 16, private use) and mapped back on the way out: the
rest of the program only ever sees the ordinary ``surrogateescape`` str.

The limit: a name that really contains U+10FF80..U+10FFFF would read back as other bytes, so the
scanner records such a file as an error instead of indexing it (:func:`has_reserved`).

This is also where a shared library's per-machine mount mapping applies (``path_map``,
:mod:`photoman.pathmap`): stores hold every path as the indexing machine spells it, the program
only ever sees this machine's. A catalog engine carries its library's mapping (:func:`bind_path_map`),
so its path columns translate both ways and nothing above them needs to know.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from photoman.pathmap import PathMap

_OFFSET = 0x10FF80 - 0xDC80
_SURROGATES = re.compile("[\udc80-\udcff]")
_RESERVED = re.compile("[\U0010ff80-\U0010ffff]")
_TO = {c: c + _OFFSET for c in range(0xDC80, 0xDD00)}
_FROM = {c + _OFFSET: c for c in range(0xDC80, 0xDD00)}


def to_store(path: str, path_map: PathMap | None = None) -> str:
    """The spelling of a path inside the catalog and vector payloads (valid UTF-8 for any name; under a
    mapped root, the stored root's path rather than this machine's)."""
    if path_map:
        path = path_map.to_stored(path)
    if _SURROGATES.search(path) is None:
        return path
    return path.translate(_TO)


def from_store(value: str, path_map: PathMap | None = None) -> str:
    """The path as the program uses it (``os.fsencode`` of it is the name's bytes on disk; under a
    mapped root, where this machine mounts it)."""
    if _RESERVED.search(value) is not None:
        value = value.translate(_FROM)
    return path_map.to_local(value) if path_map else value


_MAP_ATTR = "_photoman_path_map"


def bind_path_map(engine: Any, path_map: PathMap | None) -> None:
    """Make ``engine``'s path columns translate through ``path_map`` (each engine has its own dialect
    object, so two libraries in one process keep their own mappings)."""
    setattr(engine.dialect, _MAP_ATTR, path_map or None)


def path_map_of(bind: Any) -> PathMap | None:
    """The mapping an engine, connection or dialect was given (None: paths are stored as they are)."""
    return getattr(getattr(bind, "dialect", bind), _MAP_ATTR, None)


def has_reserved(path: str) -> bool:
    """Whether a name uses the characters :func:`to_store` maps to (it could not be stored losslessly)."""
    return _RESERVED.search(path) is not None


def displayable(path: str) -> str:
    """The path with reserved characters replaced by U+FFFD: a name to record an error under."""
    return _RESERVED.sub("\ufffd", path)
