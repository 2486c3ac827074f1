"""RAW+JPEG pairs. A camera set to RAW+JPEG writes IMG_0001.CR2 and IMG_0001.JPG for one shot: one
photo with two files. The JPEG (the camera's own rendering, already small) is the one indexed and
searched; its catalog row names the RAW (``Photo.raw_path``), and the RAW gets no row of its own, so
the pair is never two results, never a near duplicate, and `dupes --trash` never splits it.

A pair is two files in the same folder with the same name up to the extension (exactly: IMG_0001.CR2
and img_0001.jpg are not a pair), one a RAW and the other a JPEG or HEIF
(:data:`~photoman.media.formats.PAIRED_EXTENSIONS`). When the JPEG goes, the RAW is indexed on its own
again; when the RAW goes, the JPEG's row forgets it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from photoman.media.formats import PAIRED_EXTENSIONS, is_raw_path

if TYPE_CHECKING:  # the scanner folds pairs as it lists a folder
    from photoman.indexing.scanner import FileStat


def _shot(path: str) -> tuple[str, str, str]:
    """(folder, name without extension, lower-case extension) of a path."""
    folder, name = os.path.split(path)
    stem, ext = os.path.splitext(name)
    return folder, stem, ext.lower()


def fold_raw_pairs(files: Iterable[FileStat]) -> list[FileStat]:
    """The files with each RAW that has a JPEG (or HEIF) of the same shot folded into that file's
    ``raw``; a RAW with no such partner, or one the scan could not read, stays a photo of its own."""
    files = list(files)
    partner: dict[tuple[str, str], int] = {}  # (folder, stem) -> index of its JPEG/HEIF
    for i, f in enumerate(files):
        folder, stem, ext = _shot(f.path)
        if f.problem is None and not f.folder and ext in PAIRED_EXTENSIONS:
            j = partner.get((folder, stem))
            if j is None or PAIRED_EXTENSIONS.index(ext) < PAIRED_EXTENSIONS.index(_shot(files[j].path)[2]):
                partner[(folder, stem)] = i
    raw_of: dict[int, str] = {}  # index of a JPEG -> its RAW's path
    folded: set[int] = set()
    for i, f in enumerate(files):
        if f.problem is not None or f.folder or not is_raw_path(f.path):
            continue
        j = partner.get(_shot(f.path)[:2])
        if j is not None and j not in raw_of:  # one RAW per JPEG; a second RAW (a DNG copy) stays
            raw_of[j] = f.path
            folded.add(i)
    return [replace(f, raw=raw_of[i]) if i in raw_of else f for i, f in enumerate(files) if i not in folded]


def same_shot(path: str) -> list[str]:
    """The path and the files of its folder that may pair with it (same name, RAW or JPEG/HEIF): what
    the watcher re-reads when one half of a pair is added, changed or removed."""
    folder, stem, ext = _shot(path)
    if not (is_raw_path(path) or ext in PAIRED_EXTENSIONS):
        return [path]
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return [path]
    found = {path}
    for name in names:
        other_stem, other_ext = os.path.splitext(name)
        if other_stem == stem and (is_raw_path(name) or other_ext.lower() in PAIRED_EXTENSIONS):
            found.add(os.path.join(folder, name))
    return sorted(found)


def raw_sibling(path: str) -> str | None:
    """The RAW file on disk now that makes a pair with this JPEG/HEIF, if any (checked again before a
    file is trashed: the catalog may not know a RAW copied in since the last scan)."""
    if _shot(path)[2] not in PAIRED_EXTENSIONS:
        return None
    return next((p for p in same_shot(path) if is_raw_path(p) and os.path.isfile(p)), None)
