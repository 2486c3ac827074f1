"""Walk library roots and diff what is on disk against the catalog."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from photoman.catalog.models import Photo
from photoman.indexing.ignore import IgnoreRules
from photoman.media.captions import SIDECAR_SUFFIXES, sidecar_names
from photoman.media.decode import is_image_path


@dataclass(frozen=True)
class FileStat:
    """A photo file as seen on disk."""

    path: str
    size: int
    mtime: float
    sidecar_mtime: float | None = None  # newest caption sidecar (.txt/.xmp) beside the photo
    file_id: tuple[int, int] | None = None  # (device, inode): one physical file, however it is reached


def normalise(path: Path | str) -> str:
    """Absolute, normalised path string as the catalog stores it (symlinks kept as named)."""
    return os.path.normpath(os.path.abspath(os.path.expanduser(str(path))))


def scan(
    folder: Path | str, rules: IgnoreRules | None = None, seen: set[tuple[int, int]] | None = None
) -> Iterator[FileStat]:
    """Every image file under folder; hidden folders (.thumbnails, .git, ...) are skipped, and so is
    whatever ``rules`` exclude (the `exclude` setting, `.photomanignore` files, photoman's own dirs).

    With ``seen``, a physical file already met (a hard link, a symlinked file, the same folder
    through a bind mount) is yielded once, under its first path: it is one photo, not a duplicate.
    """
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(
            d for d in dirnames
            if not d.startswith(".") and not (rules and rules.ignored(os.path.join(dirpath, d), True))
        )  # fmt: skip
        sidecars = {n for n in filenames if n.lower().endswith(SIDECAR_SUFFIXES)}
        for name in sorted(filenames):
            if name.startswith(".") or not is_image_path(name):
                continue
            if rules is not None and rules.ignored(os.path.join(dirpath, name), False):
                continue
            stat = stat_photo(os.path.join(dirpath, name), sidecars)
            if stat is None:
                continue
            if seen is not None and stat.file_id is not None:
                if stat.file_id in seen:
                    continue
                seen.add(stat.file_id)
            yield stat


def stat_photo(path: str, sidecars: set[str] | None = None) -> FileStat | None:
    """A photo's stat, with its sidecars' newest mtime; None if it vanished or is not a regular file."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not os.path.isfile(path):
        return None
    folder, name = os.path.split(path)
    side: float | None = None
    for cand in sidecar_names(name):
        if sidecars is not None and cand not in sidecars:
            continue
        try:
            m = os.stat(os.path.join(folder, cand)).st_mtime
        except OSError:
            continue
        side = m if side is None else max(side, m)
    return FileStat(normalise(path), st.st_size, st.st_mtime, side, (st.st_dev, st.st_ino))


@dataclass
class Plan:
    """What an index run must do for one folder."""

    work: list[FileStat] = field(default_factory=list)  # new or changed files: hash (and maybe embed)
    gone: list[Photo] = field(default_factory=list)  # rows whose file is no longer there
    unchanged: int = 0


def make_plan(files: Iterable[FileStat], rows: Iterable[Photo], model_id: str, missing: set[int]) -> Plan:
    """Diff disk against catalog rows; ``missing`` holds row ids whose vector the store lacks."""
    plan = Plan()
    by_path = {r.path: r for r in rows}
    seen: set[str] = set()
    for f in files:
        seen.add(f.path)
        row = by_path.get(f.path)
        same_file = (
            row is not None
            and row.size == f.size
            and abs(row.mtime - f.mtime) < 1e-6
            and (row.sidecar_mtime or 0.0) == (f.sidecar_mtime or 0.0)
        )
        if (
            same_file
            and row is not None
            and (row.status == "error" or (row.indexed_model == model_id and row.id not in missing))
        ):
            plan.unchanged += 1
        else:
            plan.work.append(f)
    plan.gone = [r for p, r in by_path.items() if p not in seen]
    return plan
