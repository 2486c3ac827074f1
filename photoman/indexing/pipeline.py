"""Index folders: scan → decode in worker processes → embed in batches → vectors, then catalog.

Writes follow DESIGN.md's order: a batch's vectors are upserted before its catalog rows commit,
and removals commit in the catalog before their vectors go, so a crash at any point leaves at most
one batch to redo, which :func:`photoman.indexing.reconcile.reconcile` finds on the next run. Payloads and
caption vectors rewritten for contents the catalog already has (a copy, a move) are recorded first
(catalog/pending.py).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from sqlalchemy import func, select, true, update

from photoman.catalog.models import ERROR, OK, Photo, Root, path_under
from photoman.catalog.payload import caption_vectors, payloads_for_hashes
from photoman.catalog.pending import mark_in, new_token, release
from photoman.catalog.roots import forget, offline_roots, register_roots, remember_roots
from photoman.diskspace import check_space
from photoman.embedding.model import checkpoint_spec
from photoman.embedding.preprocess import PreprocessSpec
from photoman.errors import BadInputError
from photoman.indexing.forkserver import start as start_fork_server
from photoman.indexing.ignore import IgnoreRules
from photoman.indexing.pairs import fold_raw_pairs, same_shot
from photoman.indexing.prepare import Prepared, prepare
from photoman.indexing.reconcile import reconcile
from photoman.indexing.scanner import FileStat, Plan, make_plan, scan, stat_photo
from photoman.indexing.workers import DecodePool
from photoman.library import Library
from photoman.media.decode import is_image_path
from photoman.mounts import root_online
from photoman.paths import absolute, is_inside
from photoman.vectors import CAPTION, IMAGE, VectorPoint, point_id

__all__ = ["IndexReport", "index", "offline_roots", "register_roots", "root_online", "sync", "forget"]

Progress = Callable[[int, int], None]  # (files done, files to do)
DECODE_TIMEOUT = 300.0  # seconds one file may take in a decode worker before it is stopped and recorded
# a scan that finds more than this share of a root's photos gone (and more than MASS_MIN of them)
# keeps them, pending removal, until a later scan still finds them gone
MASS_SHARE, MASS_MIN = 0.2, 10
Encode = Callable[[np.ndarray], np.ndarray]  # uint8 pixel batch -> unit vectors
HOLD_WHILE_LOADING = 16  # batches of decoded photos held while the model loads (~75 MB at 224 px)


@dataclass
class IndexReport:
    """What one run did; printed by the CLI and returned to library callers."""

    scanned: int = 0
    unchanged: int = 0
    embedded: int = 0  # new vectors computed
    reused: int = 0  # new or moved paths whose content already had a vector
    removed: int = 0  # catalog rows whose file is gone
    pending_removal: int = 0  # gone too, but kept until a second scan confirms (a mass deletion)
    errors: list[tuple[str, str]] = field(default_factory=list)
    requeued: int = 0  # rows found without a vector on start
    orphans_removed: int = 0
    orphans_kept: int = 0  # vectors the catalog does not know, too many to be a crash's: left alone
    offline_roots: list[str] = field(default_factory=list)
    new_hashes: list[str] = field(default_factory=list)  # content embedded this run (what auto-tag tags)
    seconds: float = 0.0

    @property
    def processed(self) -> int:
        return self.embedded + self.reused + len(self.errors)


def _check_folder(folder: Path | str) -> str:
    from photoman.catalog.paths import has_reserved

    if not os.fspath(folder):
        raise BadInputError("an empty path (it would mean the current folder): name the folder")
    path = absolute(folder)
    if not os.path.exists(path):
        raise BadInputError(f"no such folder: {folder}")
    if not os.path.isdir(path):
        raise BadInputError(f"not a folder: {folder} (give the folder that holds your photos)")
    if has_reserved(path):
        raise BadInputError(f"{path!a}: the name uses characters U+10FF80..U+10FFFF, which photoman reserves "
                            "for names that are not UTF-8; rename it")  # fmt: skip
    return path


def _under(folder: str):  # noqa: ANN202 - SQL expression
    return path_under(Photo.path, folder)


def decode_stream(
    work: Sequence[FileStat],
    spec: PreprocessSpec,
    known: frozenset[str],
    workers: int,
    captions: tuple[str, ...],
) -> Generator[Prepared, None, None]:
    """Prepared files in completion order, decoded by worker processes that run ahead of the model.

    What the scan already found unreadable (a FIFO, a device link...) is answered without opening it.
    A worker that dies or hangs costs the file it was on (see :mod:`photoman.indexing.workers`)."""
    todo = []
    for f in work:
        if f.problem is not None:
            yield Prepared(f, error=f.problem)
        else:
            todo.append(f)
    if workers < 1 or not todo:  # in this process only when asked to: a file may crash its decoder
        for f in todo:
            yield prepare(f, spec, known, captions)
        return
    init = (spec, known, captions)
    pool = DecodePool(start_fork_server(), min(workers, len(todo)), init, prepare, DECODE_TIMEOUT)
    graceful = False
    try:
        yield from pool.run(todo)
        graceful = True
    finally:
        pool.close(graceful)


class _Writer:
    """Accumulates prepared files and writes them a batch at a time (vectors first, catalog second)."""

    def __init__(
        self,
        lib: Library,
        roots_of: dict[str, int],
        report: IndexReport,
        encode: Encode | None,
        loader: _ModelLoader | None = None,
    ) -> None:
        self.lib = lib
        self.encode = encode
        self.loader = loader or _ModelLoader(lib, enabled=False)
        self.roots_of = roots_of
        self.report = report
        self.pending: list[Prepared] = []
        self.stale_hashes: set[str] = set()  # hashes a changed file no longer has
        self.token = new_token()  # their crash records (catalog/pending.py), ended by the run's forget
        self.embedded: set[str] = set()  # hashes embedded by this run
        self.new_hashes: set[str] = set()
        self.placed: dict[str, list[str]] = {}  # known contents this run wrote at new paths: their names

    def add(self, prep: Prepared) -> None:
        self.pending.append(prep)
        if prep.pixels is not None:
            self.loader.need()
        batch = self.lib.settings.batch_size
        to_embed = sum(1 for p in self.pending if p.pixels is not None)
        if to_embed < batch and len(self.pending) < 8 * batch:
            return
        if len(self.pending) < HOLD_WHILE_LOADING * batch and not self.loader.ready():
            return  # the decoders run on while the model loads; the batches go once it is there
        while self.pending:
            self.flush()

    def flush(self) -> None:
        """Write the first batch of what is pending (``batch_size`` photos to embed, at most)."""
        if not self.pending:
            return
        check_space(self.lib.settings)  # before any of this batch is written: all of it or none
        lib, model_id = self.lib, self.lib.model_id
        items, self.pending = _first_batch(self.pending, lib.settings.batch_size)
        pixels: dict[str, np.ndarray] = {}
        embeds: dict[str | None, Prepared] = {}  # content: the file whose pixels give its vector
        for p in items:
            if p.pixels is not None and p.content_hash in self.embedded:
                p.pixels = None  # a copy of something this run already embedded
            if p.pixels is not None and p.error is None and p.content_hash not in pixels:
                pixels[p.content_hash] = p.pixels  # type: ignore[index]
                embeds[p.content_hash] = p
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
        # contents with committed rows already (a copy, a move, a point reconcile found lost): the store
        # takes these paths and captions before the rows commit, so a kill between the two (then the files
        # gone) would leave paths and a caption vector the catalog never had. A content without one is
        # new: after a kill its point is an orphan, which reconcile deletes.
        touched = sorted({p.content_hash for p in items if p.error is None and p.content_hash is not None})
        with lib.catalog.session() as s:
            rows_of = select(Photo.content_hash).where(Photo.content_hash.in_(touched)).distinct()
            known = {h for h in s.scalars(rows_of) if h}
            mark_in(s, known, model_id, self.token, caption=True)
        now = datetime.now()
        with lib.catalog.session() as s:
            rows = {
                r.path: r
                for r in s.scalars(select(Photo).where(Photo.path.in_([p.file.path for p in items])))
            }
            # a root removed while this run went on (`roots remove` served by the daemon meanwhile):
            # its photos are not added back (their rows would name a root that is no longer there)
            new_paths = [p.file.path for p in items if p.file.path not in rows]
            wanted = {self.roots_of[path] for path in new_paths}
            alive = set(s.scalars(select(Root.id).where(Root.id.in_(wanted)))) if wanted else set()
            orphaned = {path for path in new_paths if self.roots_of[path] not in alive}
            if orphaned:
                items = [p for p in items if p.file.path not in orphaned]
                kept = {p.content_hash for p in items}
                vectors = {h: v for h, v in vectors.items() if h in kept}
            # a user's captions of these contents whose file is gone: a file moved or renamed keeps its
            # caption, as it keeps its vector (the old row goes at the run's end, with what the user
            # typed); a copy does not take it (the point keeps it through the original's row)
            theirs: dict[str, str] = {}
            if known:
                captioned = s.execute(
                    select(Photo.content_hash, Photo.caption, Photo.path)
                    .where(Photo.content_hash.in_(sorted(known)), Photo.caption_source == "user")
                    .order_by(Photo.path.desc())
                )
                theirs = {h: c for h, c, path in captioned if h and not os.path.lexists(path)}
            for p in items:
                row = rows.get(p.file.path)
                new_here = row is None or row.content_hash != p.content_hash
                if p.error is None and p.content_hash in known and new_here:
                    # a content the library had, at a new path: maybe one end of a move (_settle_removals)
                    self.placed.setdefault(p.content_hash, []).append(os.path.basename(p.file.path))
                if row is None:
                    row = Photo(path=p.file.path, root_id=self.roots_of[p.file.path], caption="")
                    if p.content_hash in theirs:
                        row.caption_source = "user"  # (kept below: a user's caption is never overwritten)
                        row.caption = theirs[p.content_hash]
                    s.add(row)
                elif row.content_hash and row.content_hash != p.content_hash:
                    self.stale_hashes.add(row.content_hash)
                    # its payload still names this file: the run's last step (forget) rewrites it; a
                    # crash before then leaves it marked
                    mark_in(s, [row.content_hash], model_id, self.token)
                row.size, row.mtime, row.content_hash = p.file.size, p.file.mtime, p.content_hash
                row.sidecar_mtime = p.file.sidecar_mtime
                row.raw_path = p.file.raw
                if row.caption_source != "user":
                    row.caption, row.caption_source = p.caption or "", p.caption_source
                row.indexed_at = now
                if p.error is not None:
                    row.status, row.error, row.model_id = ERROR, p.error, None
                    self.report.errors.append((p.file.path, p.error))
                    continue
                m = p.meta
                assert m is not None
                row.status, row.error, row.model_id = OK, None, model_id
                row.width, row.height, row.format, row.orientation = (
                    m.width,
                    m.height,
                    m.format,
                    m.orientation,
                )
                row.taken_at, row.camera_make, row.camera_model = m.taken_at, m.camera_make, m.camera_model
                row.gps_lat, row.gps_lon = m.gps_lat, m.gps_lon
                if embeds.get(p.content_hash) is not p:  # (a copy in one batch: one vector, counted once)
                    self.report.reused += 1
            s.flush()
            self.report.embedded += len(vectors)
            self.embedded.update(vectors)
            self.new_hashes.update(vectors)
            ok_hashes = {p.content_hash for p in items if p.error is None and p.content_hash is not None}
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
        lib.captions_changed(known)  # their caption may have changed: a switch under way embeds them again
        lib.store.optimize()  # seals the appendable segment once it is full (rarely; ~0.3 ms otherwise)


def _first_batch(pending: list[Prepared], batch: int) -> tuple[list[Prepared], list[Prepared]]:
    """The items up to the ``batch``-th one with pixels to embed, and the rest."""
    seen = 0
    for i, p in enumerate(pending):
        seen += p.pixels is not None
        if seen == batch:
            return pending[: i + 1], pending[i + 1 :]
    return pending, []


class _ModelLoader:
    """Loads the encoder in a thread once the first photo needs it, while the decode workers go on (its
    imports and weights cost a one-off `index` seconds that the workers would otherwise wait out).

    Not on the very first load of a model on this machine with `precision = "auto"`: that load times
    the runtimes against each other, which must not happen while the workers take the cores. A load
    that fails is not ready either: the next batch loads it again and reports why."""

    def __init__(self, lib: Library, enabled: bool) -> None:
        self.lib = lib
        self.thread: threading.Thread | None = None
        self.enabled = enabled and not lib.encoder_loaded and _measured_here(lib)

    def need(self) -> None:
        """A photo to embed has arrived: start loading, if it was not started and may be."""
        if self.enabled and self.thread is None:

            def load() -> None:
                with contextlib.suppress(Exception):  # the next batch loads it again and says why
                    self.lib.encoder  # noqa: B018 - loads it (under the library's model lock)

            self.thread = threading.Thread(target=load, name="photoman-model-load", daemon=True)
            self.thread.start()

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join()

    def ready(self) -> bool:
        """False only while the thread loads; not started, the first batch loads it itself."""
        return self.thread is None or self.lib.encoder_loaded or not self.thread.is_alive()


def _measured_here(lib: Library) -> bool:
    """Whether loading the model needs no `auto` measurement (done before on this machine, a setting
    that names the runtime, or a GPU, where nothing is measured)."""
    s = lib.settings
    if s.precision != "auto" or s.device not in ("auto", "cpu"):
        return True
    from photoman.embedding.cached import gpu_possible
    from photoman.embedding.precision import cached_choice

    return (s.device == "auto" and gpu_possible()) or cached_choice(s.cache_dir, s.model) is not None


def _settle_removals(
    lib: Library, gone: list[Photo], report: IndexReport, placed: dict[str, list[str]] | None = None
) -> list[Photo]:
    """The rows to forget now. A mass deletion (more than MASS_SHARE of a root's photos and more than
    MASS_MIN, or every photo of a root, in one scan) is kept pending removal until a later scan still
    finds it gone: a glitch (a drive half there, a share that answers empty) must not cost the
    catalog and the store. A path whose bytes this run wrote at a new path (``placed``: a folder
    renamed or moved) is a move, forgotten at once: its caption went to the new path, its vector and
    tags stay with the bytes. Each new path ends one move (the same file name first): other copies
    of those bytes that vanished too still wait for the second scan."""
    if not gone:
        return []
    moved = _moves(gone, placed or {})
    with lib.catalog.session() as s:
        sizes = dict(s.execute(select(Photo.root_id, func.count()).group_by(Photo.root_id)).all())
    new_by_root: dict[int, list[Photo]] = {}
    now: list[Photo] = []
    for row in gone:
        if row.missing_since is not None or row.id in moved:
            now.append(row)  # gone on an earlier scan too, or moved (its bytes are at a new path)
        else:
            new_by_root.setdefault(row.root_id, []).append(row)
    pending: list[int] = []
    for root_id, rows in new_by_root.items():
        size = sizes.get(root_id, 0)
        if (len(rows) > MASS_MIN and len(rows) > MASS_SHARE * size) or len(rows) == size:
            pending.extend(r.id for r in rows)
        else:
            now.extend(rows)
    if pending:
        set_missing(lib, pending, datetime.now())
    report.pending_removal += len(pending)
    return now


def _moves(gone: list[Photo], placed: dict[str, list[str]]) -> set[int]:
    """The ids of gone rows that a new path of the same bytes accounts for, one row per new path:
    a row with the new path's file name first (a folder renamed), then any other."""
    left = {h: list(names) for h, names in placed.items()}
    fresh = [r for r in gone if r.missing_since is None and r.content_hash in left]
    moved: set[int] = set()
    for same_name in (True, False):
        for r in fresh:
            names = left[r.content_hash or ""]
            if r.id in moved or not names:
                continue
            name = os.path.basename(r.path)
            if not same_name:
                names.pop()
            elif name in names:
                names.remove(name)
            else:
                continue
            moved.add(r.id)
    return moved


def _back(lib: Library, ids: list[int]) -> None:
    """Rows pending removal whose file is there again: no longer pending."""
    set_missing(lib, ids, None)


def set_missing(lib: Library, ids: list[int], stamp: datetime | None) -> None:
    """Mark rows pending removal (or not any more), and rewrite their points' payloads: a copy still
    there is where the point is found (`--in` its folder, not the gone one's); a point with no copy
    left is hidden from search (search/engine.py)."""
    if not ids:
        return
    from photoman.catalog.roots import rewrite_payloads

    hashes: set[str] = set()
    token = new_token()
    try:
        with lib.catalog.session() as s:
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                found = s.scalars(select(Photo.content_hash).where(Photo.id.in_(chunk)))
                hashes.update(h for h in found if h)
                s.execute(update(Photo).where(Photo.id.in_(chunk)).values(missing_since=stamp))
            mark_in(s, hashes, lib.model_id, token)  # with the change: a crash before the rewrite is mended
        rewrite_payloads(lib, hashes, token)
    finally:
        release(token)


def _known_hashes(lib: Library, missing: set[int]) -> frozenset[str]:
    with lib.catalog.session() as s:
        return frozenset(
            h
            for h in s.scalars(
                select(Photo.content_hash).where(
                    Photo.indexed_with(lib.model_id),
                    Photo.content_hash.is_not(None),
                    Photo.id.not_in(missing) if missing else true(),
                )
            )
            if h is not None
        )


@dataclass
class _Todo:
    """The plans of every folder a run looks at, gathered (index and sync fill it the same way)."""

    work: list[FileStat] = field(default_factory=list)
    gone: list[Photo] = field(default_factory=list)
    paired: list[Photo] = field(default_factory=list)
    back: list[int] = field(default_factory=list)
    roots_of: dict[str, int] = field(default_factory=dict)  # each file to embed: its root's id

    def add(self, plan: Plan, root_id: int, scanned: int, report: IndexReport) -> None:
        report.scanned += scanned
        report.unchanged += plan.unchanged
        self.work.extend(plan.work)
        self.gone.extend(plan.gone)
        self.paired.extend(plan.paired)
        self.back.extend(plan.back)
        self.roots_of.update((f.path, root_id) for f in plan.work)


def _run(
    lib: Library,
    todo: _Todo,
    missing: set[int],
    report: IndexReport,
    progress: Progress | None,
    encode: Encode | None,
) -> None:
    work, gone, roots_of, paired = todo.work, todo.gone, todo.roots_of, todo.paired
    total = len(work)
    writer = _Writer(lib, roots_of, report, encode, _ModelLoader(lib, enabled=encode is None))
    try:
        known = _known_hashes(lib, missing) if work else frozenset()
        if len(work) > len(known):
            # more new files than contents the library knows: some of them need the model (a first index
            # always does), so it loads while the decode workers start rather than after their first photo
            writer.loader.need()
        if progress:
            progress(0, total)
        captions = tuple(c for c in lib.settings.caption_sources if c != "user")
        spec = checkpoint_spec(lib.settings.model)
        stream = decode_stream(work, spec, known, lib.settings.decode_workers, captions)
        try:
            for done, prep in enumerate(stream, 1):
                writer.add(prep)
                if progress:
                    progress(done, total)
        finally:
            stream.close()  # stops the decode workers now, whatever happened
        while writer.pending:
            writer.flush()
        writer.loader.join()  # a load started early for nothing is not left importing as the process exits
        report.new_hashes = sorted(writer.new_hashes)
        # a RAW file's own row goes at once when it becomes half of a pair: there, no mass deletion
        gone_now = _settle_removals(lib, gone, report, writer.placed) + list(paired)
        report.removed += forget(lib, gone_now, writer.stale_hashes, writer.token)
    finally:
        release(writer.token)  # stopped halfway: its records are the next replay's
        # and a model load still running is not left inside native code as the process exits (Ctrl-C:
        # ONNX Runtime's threads then aborted the interpreter's teardown, after the one-line message)
        writer.loader.join()
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
    A root whose drive is unmounted is skipped: its photos stay, marked offline (:func:`offline_roots`).
    A file that cannot be read costs its own error row, never the run; a mass deletion waits for a
    second scan to confirm it (:func:`_settle_removals`).
    """
    started = time.perf_counter()
    report = IndexReport()
    check_space(lib.settings)
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
    remember_roots(lib, root_ids, offline)
    rec = reconcile(lib)
    report.requeued, report.orphans_removed = len(rec.missing), rec.orphans_removed
    report.orphans_kept = rec.orphans_kept

    todo = _Todo()
    rules = IgnoreRules.for_library(lib.settings, list(root_ids))
    seen: set[tuple[int, int]] = set()  # one physical file is one photo, across every root
    for folder in paths:
        if folder in offline or folder not in root_ids:
            continue
        files = list(scan(folder, rules, seen))
        with lib.catalog.session() as s:
            rows = list(s.scalars(select(Photo).where(_under(folder))))
        todo.add(make_plan(files, rows, lib.model_id, rec.missing), root_ids[folder], len(files), report)
    _back(lib, todo.back)
    _run(lib, todo, rec.missing, report, progress, encode)
    report.seconds = time.perf_counter() - started
    return report


def _stat_file(path: str, rules: IgnoreRules) -> list[FileStat]:
    """The file itself as a one-element scan, or nothing if it is gone, not a photo, or excluded; with
    the other half of its RAW+JPEG pair, if it has one (:func:`photoman.indexing.pairs.same_shot`)."""
    stats = [stat_photo(p) for p in same_shot(path) if is_image_path(p) and not rules.ignored(p, False)]
    return fold_raw_pairs(s for s in stats if s)


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
    check_space(lib.settings)
    with lib.catalog.session() as s:
        roots = dict(s.execute(select(Root.path, Root.id)).all())
    offline = set(offline_roots(lib))
    rules = IgnoreRules.for_library(lib.settings, list(roots))
    now = time.time()
    todo = _Todo()
    postponed: list[str] = []
    handled: set[str] = set()  # files already planned (both halves of a pair may have changed)
    for folder in sorted(set(absolute(f) for f in folders)):
        root = max((r for r in roots if is_inside(folder, r)), key=len, default=None)
        if root is None or root in offline:
            continue
        files = list(scan(folder, rules)) if os.path.isdir(folder) else _stat_file(folder, rules)
        fresh = [f for f in files if now - f.mtime < settle]
        if fresh:
            postponed.append(folder)
            continue
        shot = [] if os.path.isdir(folder) else [p for p in same_shot(folder) if p != folder]
        with lib.catalog.session() as s:
            rows = list(s.scalars(select(Photo).where(_under(folder))))
            if shot:  # the other half of a RAW+JPEG pair: its row may change too
                rows += list(s.scalars(select(Photo).where(Photo.path.in_(shot))))
        files = [f for f in files if f.path not in handled]
        rows = [r for r in rows if r.path not in handled]
        handled.update([f.path for f in files] + [f.raw for f in files if f.raw] + [r.path for r in rows])
        todo.add(make_plan(files, rows, lib.model_id, set()), roots[root], len(files), report)
    _back(lib, todo.back)
    _run(lib, todo, set(), report, progress, encode)
    report.seconds = time.perf_counter() - started
    return report, postponed
