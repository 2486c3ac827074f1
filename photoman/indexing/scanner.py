"""Walk library roots and diff what is on disk against the catalog."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from photoman.catalog.models import Photo
from photoman.media.decode import is_image_path


@dataclass(frozen=True)
class FileStat:
    """A photo file as seen on disk."""

    path: str
    size: int
    mtime: float


def normalise(path: Path | str) -> str:
    """Absolute, normalised path string as the catalog stores it (symlinks kept as named)."""
    return os.path.normpath(os.path.abspath(os.path.expanduser(str(path))))


def scan(folder: Path | str) -> Iterator[FileStat]:
    """Every image file under folder; hidden folders (.thumbnails, .git, ...) are skipped."""
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or not is_image_path(name):
                continue
            full = os.path.join(dirpath, name)
            try:
                st = os.stat(full)
            except OSError:  # vanished between listing and stat
                continue
            if os.path.isfile(full):
                yield FileStat(normalise(full), st.st_size, st.st_mtime)


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
        same_file = row is not None and row.size == f.size and abs(row.mtime - f.mtime) < 1e-6
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
