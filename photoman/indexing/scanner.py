"""Walk library roots and diff what is on disk against the catalog."""

from __future__ import annotations

import errno
import os
import stat as st_
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from blake3 import blake3

from photoman.captions.sources import SIDECAR_SUFFIXES, sidecar_names
from photoman.catalog.models import ERROR, Photo
from photoman.catalog.paths import displayable, has_reserved
from photoman.indexing.ignore import IgnoreRules
from photoman.indexing.pairs import fold_raw_pairs
from photoman.media.decode import file_kind, is_image_path
from photoman.paths import absolute, is_inside

PATH_MAX = 4096  # Linux; a longer path cannot be opened in one call
LONG_RECORD = 2048  # an error recorded under a longer path is shortened (with a hash to stay unique)
# errors that may be the machine's fault rather than the file's: tried again on the next run
TRANSIENT_ERRORS = ("the decode worker died", "decoding took longer than")
_RESERVED_WHY = (
    "the name uses characters U+10FF80..U+10FFFF, which photoman reserves for names that are not UTF-8 "
    "(see catalog/paths.py); rename it"
)


@dataclass(frozen=True)
class FileStat:
    """A photo file as seen on disk."""

    path: str
    size: int
    mtime: float
    sidecar_mtime: float | None = None  # newest caption sidecar (.txt/.xmp) beside the photo
    file_id: tuple[int, int] | None = None  # (device, inode): one physical file, however it is reached
    problem: str | None = None  # why it is recorded unread (a FIFO, a device link, a path too long...)
    folder: bool = False  # a folder that could not be listed: what the catalog has under it stays
    raw: str | None = None  # the RAW file of the same shot (IMG_0001.CR2 beside IMG_0001.JPG): pairs.py


def _problem(path: str, why: str, mtime: float = 0.0, folder: bool = False) -> FileStat:
    """A file (or folder) recorded with its reason instead of being read; its path as it can be stored."""
    path = displayable(path)
    if len(path) > LONG_RECORD:
        tag = blake3(os.fsencode(path)).hexdigest()[:12]
        path = f"{path[:1500]}\u2026[{tag}]\u2026{path[-400:]}"
    return FileStat(path, 0, mtime, problem=why, folder=folder)


def _lstat_mtime(path: str) -> float:
    try:
        return os.lstat(path).st_mtime
    except OSError:
        return 0.0


def _too_long(path: str) -> str:
    return f"path too long ({len(os.fsencode(path))} bytes; the system's limit is {PATH_MAX}); not opened"


def scan(
    folder: Path | str, rules: IgnoreRules | None = None, seen: set[tuple[int, int]] | None = None
) -> Iterator[FileStat]:
    """Every image file under folder; hidden folders (.thumbnails, .git, ...) are skipped, and so is
    whatever ``rules`` exclude (the `exclude` setting, `.photomanignore` files, photoman's own dirs).

    With ``seen``, a physical file already met (a hard link, a symlinked file, the same folder
    through a bind mount) is yielded once, under its first path: it is one photo, not a duplicate.
    A RAW file with a JPEG of the same shot beside it is not yielded either: it is that JPEG's ``raw``
    (:func:`photoman.indexing.pairs.fold_raw_pairs`).

    What cannot be read is yielded too, with its reason in ``problem`` (never opened): a photo name
    that is a FIFO, socket, device or broken link, a caption sidecar of a photo that is not a regular
    file, a path too long to open, a folder that cannot be listed (``folder=True``).
    """
    failed: list[OSError] = []
    for dirpath, dirnames, filenames in os.walk(folder, onerror=failed.append, followlinks=False):
        yield from _unlisted(failed)
        dirnames[:] = sorted(
            d for d in dirnames
            if not d.startswith(".") and not (rules and rules.ignored(os.path.join(dirpath, d), True))
        )  # fmt: skip
        sidecars = {n for n in filenames if n.lower().endswith(SIDECAR_SUFFIXES)}
        photos: list[str] = []
        here: list[FileStat] = []
        for name in sorted(filenames):
            if name.startswith(".") or not is_image_path(name):
                continue
            path = os.path.join(dirpath, name)
            if rules is not None and rules.ignored(path, False):
                continue
            photos.append(name)
            if has_reserved(path):
                here.append(_problem(absolute(path), _RESERVED_WHY, _lstat_mtime(path)))
                continue
            stat = stat_photo(path, sidecars)
            if stat is None:
                continue
            if seen is not None and stat.file_id is not None:
                if stat.file_id in seen:
                    continue
                seen.add(stat.file_id)
            here.append(stat)
        yield from fold_raw_pairs(here)
        yield from _bad_sidecars(dirpath, photos, sidecars)
    yield from _unlisted(failed)


def _unlisted(failed: list[OSError]) -> Iterator[FileStat]:
    """Folders os.walk could not list (its onerror), as problems: recorded, and their rows kept."""
    for exc in failed:
        path = os.fsdecode(exc.filename) if exc.filename is not None else ""
        if not path:
            continue
        why = (
            _too_long(path)
            if exc.errno == errno.ENAMETOOLONG
            else f"cannot list folder: {exc.strerror or exc}"
        )
        yield _problem(absolute(path), why, _lstat_mtime(path), folder=True)
    failed.clear()


def _bad_sidecars(folder: str, photos: list[str], sidecars: set[str]) -> Iterator[FileStat]:
    """The caption sidecars of these photos that are not regular files (never read, recorded)."""
    done: set[str] = set()
    for photo in photos:
        for cand in sidecar_names(photo):
            if cand not in sidecars or cand in done:
                continue
            done.add(cand)
            path = os.path.join(folder, cand)
            try:
                mode = os.stat(path).st_mode
            except OSError:
                continue
            if not st_.S_ISREG(mode):
                yield _problem(absolute(path), f"caption sidecar is not a regular file ({file_kind(mode)}); "
                               "not read", _lstat_mtime(path))  # fmt: skip


def stat_photo(path: str, sidecars: set[str] | None = None) -> FileStat | None:
    """A photo's stat, with its sidecars' newest mtime; None if it vanished or is a folder.

    A name that is not a regular file (FIFO, socket, device, broken link) or cannot be reached comes
    back with its reason in ``problem``: the caller records it, nothing opens it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        try:
            link = os.readlink(path)
        except OSError:
            return None  # vanished since the folder was listed
        return _problem(absolute(path), f"broken symbolic link (to {link})", _lstat_mtime(path))
    except OSError as exc:
        why = _too_long(path) if exc.errno == errno.ENAMETOOLONG else f"cannot read: {exc.strerror or exc}"
        return _problem(absolute(path), why, _lstat_mtime(path))
    if st_.S_ISDIR(st.st_mode):
        return None
    if not st_.S_ISREG(st.st_mode):
        why = f"not a regular file ({file_kind(st.st_mode)}); not opened"
        return _problem(absolute(path), why, _lstat_mtime(path))
    folder, name = os.path.split(path)
    side: float | None = None
    for cand in sidecar_names(name):
        if sidecars is not None and cand not in sidecars:
            continue
        try:
            sst = os.stat(os.path.join(folder, cand))
        except OSError:
            continue
        if st_.S_ISREG(sst.st_mode):
            side = sst.st_mtime if side is None else max(side, sst.st_mtime)
    return FileStat(absolute(path), st.st_size, st.st_mtime, side, (st.st_dev, st.st_ino))


@dataclass
class Plan:
    """What an index run must do for one folder."""

    work: list[FileStat] = field(default_factory=list)  # new or changed files: hash (and maybe embed)
    gone: list[Photo] = field(default_factory=list)  # rows whose file is no longer there
    unchanged: int = 0
    back: list[int] = field(default_factory=list)  # ids of rows pending removal whose file is back
    paired: list[Photo] = field(default_factory=list)  # rows of RAW files now half of a RAW+JPEG pair


def make_plan(files: Iterable[FileStat], rows: Iterable[Photo], model_id: str, missing: set[int]) -> Plan:
    """Diff disk against catalog rows; ``missing`` holds row ids whose vector the store lacks.

    Rows under a folder that could not be listed are not gone: unreadable is not deleted. An error
    that may have been the machine's (a decode worker killed, a timeout) is tried again. A RAW file's
    own row goes (``paired``, not ``gone``: the file is there) once it is half of a RAW+JPEG pair, and
    a photo whose RAW came or went is read again (its row records the RAW)."""
    plan = Plan()
    by_path = {r.path: r for r in rows}
    seen: set[str] = set()
    unlisted: list[str] = []
    raws: set[str] = set()
    for f in files:
        seen.add(f.path)
        if f.raw is not None:
            raws.add(f.raw)
        if f.folder:
            unlisted.append(f.path)
        row = by_path.get(f.path)
        if row is not None and row.missing_since is not None:
            plan.back.append(row.id)
        same_file = (
            row is not None
            and row.size == f.size
            and abs(row.mtime - f.mtime) < 1e-6
            and (row.sidecar_mtime or 0.0) == (f.sidecar_mtime or 0.0)
            and row.raw_path == f.raw
        )
        if (
            same_file
            and row is not None
            and (
                (row.status == ERROR and not (row.error or "").startswith(TRANSIENT_ERRORS))
                or (row.status != "error" and row.model_id == model_id and row.id not in missing)
            )
        ):
            plan.unchanged += 1
        else:
            plan.work.append(f)
    plan.paired = [r for p, r in by_path.items() if p not in seen and p in raws]
    plan.gone = [
        r
        for p, r in by_path.items()
        if p not in seen and p not in raws and not any(is_inside(p, u) for u in unlisted)
    ]
    return plan
