"""Index folders: scan → decode in worker processes → embed in batches → vectors, then catalog.

Writes follow DESIGN.md's order: a batch's vectors are upserted before its catalog rows commit,
and removals commit in the catalog before their vectors go, so a crash at any point leaves at most
one batch to redo, which :func:`photoman.indexing.reconcile.reconcile` finds on the next run.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from sqlalchemy import or_, select

from photoman.catalog.models import Photo, Root
from photoman.embedding.model import checkpoint_spec
from photoman.embedding.preprocess import PreprocessSpec
from photoman.errors import BadInputError
from photoman.indexing.ignore import IgnoreRules
from photoman.indexing.payload import caption_vectors, payloads_for_hashes
from photoman.indexing.prepare import Prepared, init_worker, prepare
from photoman.indexing.reconcile import reconcile
from photoman.indexing.scanner import FileStat, make_plan, normalise, scan, stat_photo
from photoman.library import Library
from photoman.media.decode import is_image_path
from photoman.vectors import CAPTION, IMAGE, VectorPoint, point_id

Progress = Callable[[int, int], None]  # (files done, files to do)
Encode = Callable[[np.ndarray], np.ndarray]  # uint8 pixel batch -> unit vectors


@dataclass
class IndexReport:
    """What one run did; printed by the CLI and returned to library callers."""

    scanned: int = 0
    unchanged: int = 0
    embedded: int = 0  # new vectors computed
    reused: int = 0  # new or moved paths whose content already had a vector
    removed: int = 0  # catalog rows whose file is gone
    errors: list[tuple[str, str]] = field(default_factory=list)
    requeued: int = 0  # rows found without a vector on start
    orphans_removed: int = 0
    offline_roots: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def processed(self) -> int:
        return self.embedded + self.reused + len(self.errors)


def _check_folder(folder: Path | str) -> str:
    path = normalise(folder)
    if not os.path.exists(path):
        raise BadInputError(f"no such folder: {folder}")
    if not os.path.isdir(path):
        raise BadInputError(f"not a folder: {folder} (give the folder that holds your photos)")
    return path


def register_roots(lib: Library, folders: Sequence[str]) -> dict[str, int]:
    """Root id per folder: a folder inside a known root joins it; a new root adopts roots inside it."""
    out: dict[str, int] = {}
    with lib.catalog.session() as s:
        for folder in folders:
            roots = list(s.scalars(select(Root)))
            parent = next(
                (r for r in roots if folder == r.path or folder.startswith(r.path.rstrip("/") + "/")), None
            )
            if parent is None:
                parent = Root(path=folder, added_at=datetime.now())
                s.add(parent)
                s.flush()
                for inner in roots:
                    if inner.path.startswith(folder.rstrip("/") + "/"):
                        for photo in s.scalars(select(Photo).where(Photo.root_id == inner.id)):
                            photo.root_id = parent.id
                        s.delete(inner)
            out[folder] = parent.id
    return out


def _under(folder: str):  # noqa: ANN202 - SQL expression
    return or_(Photo.path == folder, Photo.path.startswith(folder.rstrip("/") + "/", autoescape=True))


def _stream(
    work: Sequence[FileStat],
    spec: PreprocessSpec,
    known: frozenset[str],
    workers: int,
    captions: tuple[str, ...],
) -> Iterator[Prepared]:
    """Prepared files in completion order, decoded by a process pool that runs ahead of the model."""
    if workers < 1 or len(work) <= 4:
        for f in work:
            yield prepare(f, spec, known, captions)
        return
    ctx = mp.get_context("forkserver")
    _start_forkserver_deaf_to_ctrl_c()
    with ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=init_worker, initargs=(spec, known, captions)
    ) as pool:
        todo = iter(work)
        pending: set[Future[Prepared]] = set()
        window = max(8 * workers, 64)
        try:
            while True:
                while len(pending) < window:
                    f = next(todo, None)
                    if f is None:
                        break
                    pending.add(pool.submit(prepare, f))
                if not pending:
                    return
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield fut.result()
        finally:
            for fut in pending:
                fut.cancel()


def _start_forkserver_deaf_to_ctrl_c() -> None:
    """Ctrl-C in a terminal signals the whole process group. The command reports it once; the fork
    server and the decode workers it forks (which inherit an ignored SIGINT) must not also die of it,
    or the pool breaks mid-shutdown and prints tracebacks."""
    import signal
    import threading
    from multiprocessing import forkserver

    if threading.current_thread() is not threading.main_thread():
        return  # the daemon's indexer thread: no terminal, and only the main thread may set handlers
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, previous)


class _Writer:
    """Accumulates prepared files and writes them a batch at a time (vectors first, catalog second)."""

    def __init__(
        self, lib: Library, roots_of: dict[str, int], report: IndexReport, encode: Encode | None
    ) -> None:
        self.lib = lib
        self.encode = encode
        self.roots_of = roots_of
        self.report = report
        self.pending: list[Prepared] = []
        self.stale_hashes: set[str] = set()  # hashes a changed file no longer has
        self.embedded: set[str] = set()  # hashes embedded by this run
        self.new_hashes: set[str] = set()

    def add(self, prep: Prepared) -> None:
        self.pending.append(prep)
        to_embed = sum(1 for p in self.pending if p.pixels is not None)
        if to_embed >= self.lib.settings.batch_size or len(self.pending) >= 8 * self.lib.settings.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        lib, model_id = self.lib, self.lib.model_id
        items, self.pending = self.pending, []
        pixels: dict[str, np.ndarray] = {}
        for p in items:
            if p.pixels is not None and p.content_hash in self.embedded:
                p.pixels = None  # a copy of something this run already embedded
            if p.pixels is not None and p.error is None:
                pixels.setdefault(p.content_hash, p.pixels)  # type: ignore[arg-type]
        vectors = (
            dict(
                zip(
                    pixels,
                    (self.encode or lib.encoder.encode_pixels)(np.stack(list(pixels.values()))),
                    strict=True,
                )
            )
            if pixels
            else {}
        )
        now = datetime.now()
        with lib.catalog.session() as s:
            rows = {
                r.path: r
                for r in s.scalars(select(Photo).where(Photo.path.in_([p.file.path for p in items])))
            }
            for p in items:
                row = rows.get(p.file.path)
                if row is None:
                    row = Photo(path=p.file.path, root_id=self.roots_of[p.file.path], caption="")
                    s.add(row)
                elif row.content_hash and row.content_hash != p.content_hash:
                    self.stale_hashes.add(row.content_hash)
                row.size, row.mtime, row.content_hash = p.file.size, p.file.mtime, p.content_hash
                row.sidecar_mtime = p.file.sidecar_mtime
                if row.caption_source != "user":
                    row.caption, row.caption_source = p.caption or "", p.caption_source
                row.indexed_at = now
                if p.error is not None:
                    row.status, row.error, row.indexed_model = "error", p.error, None
                    self.report.errors.append((p.file.path, p.error))
                    continue
                m = p.meta
                assert m is not None
                row.status, row.error, row.indexed_model = "ok", None, model_id
                row.width, row.height, row.format, row.orientation = (
                    m.width,
                    m.height,
                    m.format,
                    m.orientation,
                )
                row.taken_at, row.camera_make, row.camera_model = m.taken_at, m.camera_make, m.camera_model
                row.gps_lat, row.gps_lon = m.gps_lat, m.gps_lon
                if p.pixels is None:
                    self.report.reused += 1
            s.flush()
            self.report.embedded += len(vectors)
            self.embedded.update(vectors)
            self.new_hashes.update(vectors)
            ok_hashes = {p.content_hash for p in items if p.error is None}
            payloads = payloads_for_hashes(s, ok_hashes, model_id)
            captions = caption_vectors(lib, s, ok_hashes)
            lib.store.upsert(
                [
                    VectorPoint(point_id(h, model_id), {IMAGE: v, **captions.get(h, {})}, payloads[h])
                    for h, v in vectors.items()
                ]
            )
            for h in ok_hashes - set(vectors):
                pid = point_id(h, model_id)
                lib.store.set_payload([pid], payloads[h])
                if h in captions:
                    lib.store.update_vectors([VectorPoint(pid, captions[h])])
                else:
                    lib.store.delete_vectors([pid], [CAPTION])
            # leaving the block commits the catalog, after the vectors are in
        lib.store.optimize()  # seals the appendable segment once it is full (rarely; ~0.3 ms otherwise)


def forget(lib: Library, rows: Iterable[Photo], extra_stale: set[str]) -> int:
    """Drop rows of vanished files (catalog first), then vectors nothing refers to any more."""
    ids = [r.id for r in rows]
    stale = set(extra_stale)
    with lib.catalog.session() as s:
        for i in range(0, len(ids), 500):
            for row in s.scalars(select(Photo).where(Photo.id.in_(ids[i : i + 500]))):
                if row.content_hash:
                    stale.add(row.content_hash)
                s.delete(row)
    if stale:
        with lib.catalog.session() as s:
            payloads = payloads_for_hashes(s, stale, lib.model_id)
        gone = [point_id(h, lib.model_id) for h in stale if h not in payloads]
        lib.store.delete(gone)
        for h, payload in payloads.items():
            lib.store.set_payload([point_id(h, lib.model_id)], payload)
    return len(ids)


def root_online(path: str, has_photos: bool) -> bool:
    """A root is offline when its folder is gone, or empty while the catalog has photos there (unmounted)."""
    if not os.path.isdir(path):
        return False
    if not has_photos:
        return True
    try:
        with os.scandir(path) as it:
            return next(it, None) is not None
    except OSError:
        return False


def offline_roots(lib: Library) -> list[str]:
    """Roots whose drive is not there right now: their photos are kept but hidden from results."""
    with lib.catalog.session() as s:
        roots = s.execute(select(Root.path, select(Photo.id).where(Photo.root_id == Root.id).exists())).all()
    return [path for path, has in roots if not root_online(path, bool(has))]


def _known_hashes(lib: Library, missing: set[int]) -> frozenset[str]:
    with lib.catalog.session() as s:
        return frozenset(
            s.scalars(
                select(Photo.content_hash).where(
                    Photo.status == "ok",
                    Photo.indexed_model == lib.model_id,
                    Photo.content_hash.is_not(None),
                    Photo.id.not_in(missing) if missing else True,
                )
            )
        )


def _run(
    lib: Library,
    work: list[FileStat],
    gone: list[Photo],
    roots_of: dict[str, int],
    missing: set[int],
    report: IndexReport,
    progress: Progress | None,
    encode: Encode | None,
) -> None:
    total = len(work)
    if progress:
        progress(0, total)
    writer = _Writer(lib, roots_of, report, encode)
    known = _known_hashes(lib, missing) if work else frozenset()
    captions = tuple(c for c in lib.settings.caption_sources if c != "user")
    stream = _stream(work, checkpoint_spec(lib.settings.model), known, lib.settings.decode_workers, captions)
    for done, prep in enumerate(stream, 1):
        writer.add(prep)
        if progress:
            progress(done, total)
    writer.flush()
    if lib.settings.auto_tag and writer.new_hashes:
        from photoman.zeroshot.tagging import label_set, tag_library

        tag_library(lib, label_set(), hashes=sorted(writer.new_hashes))
    report.removed += forget(lib, gone, writer.stale_hashes)
    lib.store.flush()
    lib.store.optimize()


def index(
    lib: Library,
    folders: Sequence[Path | str] | None = None,
    progress: Progress | None = None,
    encode: Encode | None = None,
) -> IndexReport:
    """Index the given folders (added as roots), or every known root when none are given.

    Starts by reconciling catalog and vectors, so it also repairs what a crash left behind.
    A root whose drive is missing (or mounted empty) is skipped: its photos stay, marked offline.
    """
    started = time.perf_counter()
    report = IndexReport()
    if folders:
        paths = [_check_folder(f) for f in folders]
    else:
        with lib.catalog.session() as s:
            paths = list(s.scalars(select(Root.path).order_by(Root.path)))
        if not paths:
            raise BadInputError("no library folders yet: run `photoman index FOLDER` first")
    lib.store  # noqa: B018 - opens the store (and checks the model id) before anything is written
    root_ids = register_roots(lib, [p for p in paths if os.path.isdir(p)])
    offline = set(offline_roots(lib))
    report.offline_roots = sorted(offline)
    rec = reconcile(lib)
    report.requeued, report.orphans_removed = len(rec.missing), rec.orphans_removed

    work: list[FileStat] = []
    gone: list[Photo] = []
    roots_of: dict[str, int] = {}
    rules = IgnoreRules.for_library(lib.settings, list(root_ids))
    seen: set[tuple[int, int]] = set()  # one physical file is one photo, across every root
    for folder in paths:
        if folder in offline or folder not in root_ids:
            continue
        files = list(scan(folder, rules, seen))
        with lib.catalog.session() as s:
            rows = list(s.scalars(select(Photo).where(_under(folder))))
        plan = make_plan(files, rows, lib.model_id, rec.missing)
        report.scanned += len(files)
        report.unchanged += plan.unchanged
        work.extend(plan.work)
        gone.extend(plan.gone)
        roots_of.update((f.path, root_ids[folder]) for f in plan.work)
    _run(lib, work, gone, roots_of, rec.missing, report, progress, encode)
    report.seconds = time.perf_counter() - started
    return report


def _stat_file(path: str, rules: IgnoreRules) -> list[FileStat]:
    """The file itself as a one-element scan, or nothing if it is gone, not a photo, or excluded."""
    stat = stat_photo(path) if is_image_path(path) and not rules.ignored(path, False) else None
    return [stat] if stat else []


def sync(
    lib: Library,
    folders: Sequence[str],
    settle: float = 0.0,
    progress: Progress | None = None,
    encode: Encode | None = None,
) -> tuple[IndexReport, list[str]]:
    """Bring folders inside known roots up to date (the watcher's unit of work); no reconcile.

    A folder that no longer exists loses its photos (unless its root is offline). Files modified
    less than ``settle`` seconds ago are left alone and their folder returned, to be retried once
    the writer is done with them, so a slow copy is indexed once, whole.
    """
    started = time.perf_counter()
    report = IndexReport()
    with lib.catalog.session() as s:
        roots = dict(s.execute(select(Root.path, Root.id)).all())
    offline = set(offline_roots(lib))
    rules = IgnoreRules.for_library(lib.settings, list(roots))
    now = time.time()
    work: list[FileStat] = []
    gone: list[Photo] = []
    roots_of: dict[str, int] = {}
    postponed: list[str] = []
    for folder in sorted(set(normalise(f) for f in folders)):
        root = max(
            (r for r in roots if folder == r or folder.startswith(r.rstrip("/") + "/")), key=len, default=None
        )
        if root is None or root in offline:
            continue
        files = list(scan(folder, rules)) if os.path.isdir(folder) else _stat_file(folder, rules)
        fresh = [f for f in files if now - f.mtime < settle]
        if fresh:
            postponed.append(folder)
            continue
        with lib.catalog.session() as s:
            rows = list(s.scalars(select(Photo).where(_under(folder))))
        plan = make_plan(files, rows, lib.model_id, set())
        report.scanned += len(files)
        report.unchanged += plan.unchanged
        work.extend(plan.work)
        gone.extend(plan.gone)
        roots_of.update((f.path, roots[root]) for f in plan.work)
    _run(lib, work, gone, roots_of, set(), report, progress, encode)
    report.seconds = time.perf_counter() - started
    return report, postponed
