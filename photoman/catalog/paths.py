"""File names that are not UTF-8, stored losslessly.

Python hands such a name over as a str in which each undecodable byte 0x80..0xFF is a lone surrogate
U+DC80..U+DCFF (PEP 383, ``surrogateescape``); ``os.fsencode`` gives the original bytes back. Neither
SQLite's driver, PostgreSQL nor Qdrant accepts lone surrogates, so on the way into a store each is
mapped to U+10FF80..U+10FFFF (the end of plane 16, private use) and mapped back on the way out: the
rest of the program only ever sees the ordinary ``surrogateescape`` str.

The limit: a name that really contains U+10FF80..U+10FFFF would read back as other bytes, so the
scanner records such a file as an error instead of indexing it (:func:`has_reserved`).
"""

from __future__ import annotations

import re

_OFFSET = 0x10FF80 - 0xDC80
_SURROGATES = re.compile("[\udc80-\udcff]")
_RESERVED = re.compile("[\U0010ff80-\U0010ffff]")
_TO = {c: c + _OFFSET for c in range(0xDC80, 0xDD00)}
_FROM = {c + _OFFSET: c for c in range(0xDC80, 0xDD00)}


def to_store(path: str) -> str:
    """The spelling of a path inside the catalog and vector payloads (valid UTF-8 for any name)."""
    if _SURROGATES.search(path) is None:
        return path
    return path.translate(_TO)


def from_store(value: str) -> str:
    """The path as the program uses it (``os.fsencode`` of it is the name's bytes on disk)."""
    if _RESERVED.search(value) is None:
        return value
    return value.translate(_FROM)


def has_reserved(path: str) -> bool:
    """Whether a name uses the characters :func:`to_store` maps to (it could not be stored losslessly)."""
    return _RESERVED.search(path) is not None


def displayable(path: str) -> str:
    """The path with reserved characters replaced by U+FFFD: a name to record an error under."""
    return _RESERVED.sub("\ufffd", path)
