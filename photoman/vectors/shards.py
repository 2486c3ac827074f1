"""The embedded vector store: Qdrant Edge shards sealed in a child process, so a query never waits on one.

Qdrant Edge (0.9.0) holds the Python interpreter for the whole of a seal (0.4-0.8 s per 16k photos)
or graph build (seconds to minutes): inside the daemon every query arriving meanwhile waited that
long. So no shard is ever optimised in the process that owns the store. New points go to a *live*
shard (with a WAL, never sealed); once it holds ``rotate_at`` points (16k at 512-d) a new live shard
takes over and the full one is *frozen*: still searched and written, while a background thread
exports its points and a child process (:mod:`photoman.vectors.shard_build`, lowest CPU priority)
builds them into a *sealed* shard: no WAL, every point in sealed segments, an HNSW graph once the
library is large. The daemon then only loads it (50-90 ms, measured), writes into it what changed in
the frozen shard meanwhile, and swaps it in. Small sealed shards are merged the same way, up to
``merge_at`` points (128k), so a million photos is ~8 shards that a search visits one after the
other.

Layout, in the store's folder (one per model): ``photoman_shards.json`` (the manifest: which shard
folders make the store and their roles), ``live-N/`` (the live and frozen shards), ``s-N/`` (sealed
shards) and ``job-N/`` (a build under way). A point lives in exactly one shard; a write goes to the
shard holding the point, a new point to the live shard.

Crash safety: the manifest is the truth, written aside and renamed over; a folder it does not name
(a build's output, a shard just replaced, a live shard created just before a crash) is deleted on the
next open. Sealed shards have no WAL, so their writes (deletes, payloads, caption vectors) last once
flushed; what a crash loses before that is what the catalog's crash records and reconcile already
mend (photoman.catalog.pending: payloads are marked before they are written and cleared only after
:meth:`ShardedStore.flush`; a delete lost leaves an orphan point, which reconcile deletes).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from photoman.errors import PhotomanError
from photoman.vectors.base import CAPTION, IMAGE, RRF_K, Hit, SearchFilter, VectorPoint, fusion_plan
from photoman.vectors.edge import APPROXIMATE_FROM, SEGMENT_KB, EdgeStore

log = logging.getLogger(__name__)

MANIFEST = "photoman_shards.json"
MIGRATING = ".sharding"  # suffix of the folder a one-shard store is moved into (see _migrate)
FIRST_ASK_FROM = 20  # a search for more than this asks each shard for a quarter first (ShardedStore.search)
EXPORT_PAGE = 256  # points per read while exporting: each read holds the interpreter a few ms
# Sealed shards grow to this many live shards' worth of points (128k at 512-d). A graph search costs
# about the same in a shard of 64k points as in one of 128k (~1 ms for a top 10, ~4 ms for the top
# 100 the cutoff looks at), and the shards are searched one after the other: at 1M, 16 shards of 64k
# made `find` p50 44 ms. Loading a 128k shard holds the process ~120 ms (64k: ~86 ms), once per
# merge.
MERGE_FACTOR = 8
RETRY_AFTER = 60.0  # seconds before a failed build is tried again
# A shard's flush (and close, which flushes) holds the interpreter ~22 ms plus the time to write what
# changed since the last one: 16k points written unflushed, ~105 ms. So the live shard is flushed as it
# fills, and closing it once its build has replaced it costs ~16 ms, not ~120.
FLUSHES_PER_SHARD = 8


class _Stopped(Exception):
    """The store is closing: the build in progress is abandoned (the next open starts it again)."""


@dataclass
class Manifest:
    live: str
    frozen: list[str] = field(default_factory=list)
    sealed: list[str] = field(default_factory=list)
    next: int = 1

    def names(self) -> list[str]:
        """Every shard, sealed first (the order searches visit them in)."""
        return [*self.sealed, *self.frozen, self.live]

    def new_name(self, prefix: str) -> str:
        name = f"{prefix}-{self.next:06d}"
        self.next += 1
        return name


def _read_manifest(path: Path) -> Manifest | None:
    try:
        raw = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError:
        return None
    return Manifest(raw["live"], list(raw["frozen"]), list(raw["sealed"]), int(raw["next"]))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_manifest(path: Path, m: Manifest) -> None:
    """Written aside, synced and renamed over: a crash leaves the old manifest or the new, whole."""
    tmp = path / (MANIFEST + ".tmp")
    with open(tmp, "w") as f:
        json.dump({"version": 1, "live": m.live, "frozen": m.frozen, "sealed": m.sealed, "next": m.next}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path / MANIFEST)  # the commit: from here the new list is the store
    try:
        _fsync_dir(path)
    except OSError as exc:  # (durable at the next sync: undoing the swap now would lose the build)
        log.warning("could not sync %s: %s", path, exc)


def _migrate(path: Path, dim: int) -> None:
    """A store written before shards (one Qdrant Edge shard in ``path`` itself) becomes the first
    frozen shard of a sharded store, rebuilt in the background like any other. Done by moving it
    into a new folder that is renamed to ``path`` once its manifest is written; a crash part way is
    finished by :func:`_finish_migration`."""
    tmp = path.with_name(path.name + MIGRATING)
    EdgeStore.open(path, path.name, 1).close()  # StoreBusyError while an older photoman has it open
    if tmp.exists():  # an attempt that died before moving the shard: nothing of it is needed
        shutil.rmtree(tmp)
    tmp.mkdir()
    os.rename(path, tmp / "live-000000")
    _finish_migration(path, dim)


def _finish_migration(path: Path, dim: int) -> None:
    tmp = path.with_name(path.name + MIGRATING)
    if path.exists() or not (tmp / "live-000000").is_dir():
        return
    if _read_manifest(tmp) is None:
        shutil.rmtree(tmp / "live-000001", ignore_errors=True)  # (half made by a crash)
        EdgeStore.open(tmp / "live-000001", path.name, dim).close()  # a manifest names only shards that exist
        _write_manifest(tmp, Manifest(live="live-000001", frozen=["live-000000"], next=2))
    os.rename(tmp, path)
    _fsync_dir(path.parent)


def _allocate(path: Path) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # (a filesystem without fallocate)
            raise
    finally:
        os.close(fd)


@dataclass
class _Job:
    """One build: ``sources`` (shard names) exported into ``dir`` and built into new sealed shards."""

    sources: list[str]
    dir: Path
    approximate: bool
    dirty: set[str] = field(default_factory=set)  # points written in the sources since the export began
    placed: dict[str, int] = field(default_factory=dict)  # point id: which output holds it
    outputs: list[tuple[str, int, int]] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None


class ShardedStore:
    """The embedded store: a live shard, frozen ones awaiting their build, and sealed shards."""

    def __init__(
        self,
        path: Path,
        name: str,
        dim: int,
        manifest: Manifest,
        members: dict[str, EdgeStore],
        segment_kb: int,
        rotate_at: int,
        approximate_from: int,
        ballast_dir: Path | None,
    ) -> None:
        self.path, self.name, self.dim = path, name, dim
        self._m = manifest
        self._members = members
        self.segment_kb = segment_kb
        self.rotate_at = rotate_at
        self.merge_at = MERGE_FACTOR * rotate_at
        self.approximate_from = approximate_from
        self.ballast_dir = ballast_dir
        # _lock: held by every read, and for the moment the shards change (a swap-in, a new live
        # shard): never while anything slow (a flush, an fsync, a load) runs. _write_lock: held by
        # writes and by whatever changes the manifest (it goes first): a query never waits on it.
        self._lock = threading.RLock()
        self._write_lock = threading.RLock()
        self._job: _Job | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._retry_at = 0.0
        self.last_error: str | None = None  # why the last build failed (it is tried again later)
        self.builds = 0  # builds swapped in by this process (tests, benchmarks)
        self._since_flush = 0  # points written to the live shard since it was last flushed

    @classmethod
    def open(
        cls,
        path: Path,
        name: str,
        dim: int,
        segment_kb: int = SEGMENT_KB,
        ballast_dir: Path | None = None,
        approximate_from: int | None = None,
        rotate_at: int | None = None,
    ) -> ShardedStore:
        """Open the store at ``path``, creating it on first use and converting a one-shard store.

        ``rotate_at``: points after which the live shard is frozen and sealed (default: ``segment_kb``
        of float16 vectors); ``approximate_from``: library size past which shards of 2x that get a
        graph (default :data:`photoman.vectors.edge.APPROXIMATE_FROM`).
        """
        path = Path(path)
        _finish_migration(path, dim)
        if (path / "edge_config.json").exists() and _read_manifest(path) is None:
            _migrate(path, dim)
        path.mkdir(parents=True, exist_ok=True)
        m = _read_manifest(path)
        fresh = m is None
        if m is None:
            m = Manifest(live="live-000000")
        members: dict[str, EdgeStore] = {}

        def member(shard: str, sealed: bool) -> EdgeStore:
            if not fresh and not (path / shard / "edge_config.json").exists():  # never made empty anew
                raise PhotomanError(f"vector store {path}: shard {shard} named in {MANIFEST} is missing")
            return EdgeStore.open(path / shard, name, dim, segment_kb, ballast_dir, keep_config=sealed)

        try:
            members[m.live] = member(m.live, False)  # first: its WAL lock says whether another process has it
            if fresh:
                _write_manifest(path, m)
            for shard in m.frozen:
                members[shard] = member(shard, False)
            for shard in m.sealed:
                members[shard] = member(shard, True)
        except BaseException:
            for s in members.values():
                s.close()
            raise
        known = set(m.names())
        for leftover in path.iterdir():  # outputs and sources of a build a crash interrupted
            ours = leftover.name.split("-")[0] in ("live", "s", "job")
            if ours and leftover.is_dir() and leftover.name not in known:
                shutil.rmtree(leftover, ignore_errors=True)
        default_rotate = segment_kb * 1024 // (2 * dim)
        return cls(
            path, name, dim, m, members, segment_kb, rotate_at or default_rotate,
            APPROXIMATE_FROM if approximate_from is None else approximate_from, ballast_dir,
        )  # fmt: skip

    # -- reads ---------------------------------------------------------------------------------

    def _shards(self) -> list[EdgeStore]:
        return [self._members[n] for n in self._m.names()]

    @property
    def live(self) -> EdgeStore:
        return self._members[self._m.live]

    def shard_names(self) -> dict[str, list[str]]:
        """The shards by role (doctor, tests)."""
        with self._lock:
            return {"live": [self._m.live], "frozen": list(self._m.frozen), "sealed": list(self._m.sealed)}

    def search(
        self,
        vector: np.ndarray,
        using: str = IMAGE,
        limit: int = 10,
        flt: SearchFilter | None = None,
        with_payload: bool = True,
        score_threshold: float | None = None,
    ) -> list[Hit]:
        with self._lock:
            shards = self._shards()
            if len(shards) == 1:
                return shards[0].search(vector, using, limit, flt, with_payload, score_threshold)
            # Each shard is asked for a quarter of the limit first (a graph search for 100 costs ~4x
            # one for 25); a shard whose last answer still ranks in the merged top ``limit`` may hold
            # more, and is asked again for the whole limit. Same result as asking all for the limit.
            first = limit if limit <= FIRST_ASK_FROM else max(FIRST_ASK_FROM, limit // 4)
            answers = [s.search(vector, using, first, flt, with_payload, score_threshold) for s in shards]
            if first < limit:
                merged = sorted((h.score for a in answers for h in a), reverse=True)
                cutoff = merged[limit - 1] if len(merged) >= limit else float("-inf")
                for i, (s, a) in enumerate(zip(shards, answers, strict=True)):
                    if len(a) == first and a[-1].score >= cutoff:
                        answers[i] = s.search(vector, using, limit, flt, with_payload, score_threshold)
        hits, seen = [], set()
        for h in sorted((h for a in answers for h in a), key=lambda h: -h.score):
            if h.id not in seen:  # (one point is in one shard; a crash must not show it twice either)
                seen.add(h.id)
                hits.append(h)
        return hits[:limit]

    def fused_search(
        self,
        queries: dict[str, np.ndarray],
        limit: int = 10,
        flt: SearchFilter | None = None,
        thresholds: dict[str, float] | None = None,
    ) -> list[Hit]:
        """Reciprocal rank fusion over each named vector's best matches in the whole store (Qdrant's
        formula, 1 / (k + rank from 0)); with one shard, Qdrant fuses them itself."""
        with self._lock:
            if len(self._members) == 1:
                return self.live.fused_search(queries, limit, flt, thresholds)
            depth, cut = fusion_plan(limit, thresholds)
            scores: dict[str, float] = {}
            for name, v in queries.items():
                ranked = self.search(v, name, depth, flt, with_payload=False, score_threshold=cut.get(name))
                for pos, h in enumerate(ranked):
                    scores[h.id] = scores.get(h.id, 0.0) + 1.0 / (RRF_K + pos)
            best = sorted(scores.items(), key=lambda kv: -kv[1])[:limit]
            payloads = {p.id: p.payload for p in self.retrieve([pid for pid, _ in best])}
        return [Hit(pid, score, payloads.get(pid, {})) for pid, score in best]

    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[VectorPoint]:
        found: dict[str, VectorPoint] = {}
        with self._lock:
            for s in self._shards():
                if left := [i for i in ids if i not in found]:
                    found.update((p.id, p) for p in s.retrieve(left, with_vectors))
        return [found[i] for i in dict.fromkeys(ids) if i in found]

    def all_ids(self) -> set[str]:
        """Shard by shard (each under the lock, queries go between them); a build that swaps in
        meanwhile put its sources' points in shards not yet visited, which are visited too."""
        ids: set[str] = set()
        seen: set[str] = set()
        while True:
            with self._lock:
                todo = [n for n in self._m.names() if n not in seen]
                if not todo:
                    return ids
                seen.add(todo[0])
                ids |= self._members[todo[0]].all_ids()

    def count(self) -> int:
        with self._lock:
            return sum(s.count() for s in self._shards())

    def disk_bytes(self) -> int | None:
        total = 0
        for root, _, files in os.walk(self.path):  # (a build creates and removes files meanwhile)
            for f in files:
                with contextlib.suppress(FileNotFoundError):
                    total += os.stat(os.path.join(root, f)).st_blocks * 512
        return total

    # -- writes --------------------------------------------------------------------------------

    def _holders(self, ids: Sequence[str]) -> tuple[dict[str, list[str]], list[str]]:
        """Which shard holds each point, and the points none holds."""
        if len(self._members) == 1:
            return {self._m.live: list(ids)}, []
        left = list(dict.fromkeys(ids))
        held: dict[str, list[str]] = {}
        for name in reversed(self._m.names()):  # live first: a point just written is most likely there
            if not left:
                break
            if present := self._members[name].present(left):
                held[name] = [i for i in left if i in present]
                left = [i for i in left if i not in present]
        return held, left

    def _written(self, shard: str, ids: Sequence[str]) -> None:
        """Points written in a shard a build is copying: the build's result gets them again."""
        if self._job is not None and shard in self._job.sources:
            self._job.dirty.update(ids)

    def upsert(self, points: Sequence[VectorPoint]) -> None:
        if not points:
            return
        with self._write_lock:
            held, _ = self._holders([p.id for p in points])
            where = {pid: name for name, pids in held.items() for pid in pids}
            groups: dict[str, list[VectorPoint]] = {}
            for p in points:
                groups.setdefault(where.get(p.id, self._m.live), []).append(p)
            for name, pts in groups.items():
                self._written(name, [p.id for p in pts])  # (first: a write failing part way is copied too)
                self._members[name].upsert(pts)
            self._since_flush += len(groups.get(self._m.live, ()))
            if self._since_flush >= self.rotate_at // FLUSHES_PER_SHARD:
                self.live.flush()
                self._since_flush = 0

    def _routed(self, ids: Sequence[str], missing_to_live: bool, call: Any) -> None:
        """``call(shard, ids)`` for each shard holding some of ``ids``; points no shard holds go to the
        live shard when ``missing_to_live`` (Qdrant then says what it says of a missing point)."""
        if not ids:
            return
        with self._write_lock:
            held, missing = self._holders(ids)
            if missing and missing_to_live:
                held.setdefault(self._m.live, []).extend(missing)
            for name, pids in held.items():
                self._written(name, pids)
                call(self._members[name], pids)

    def set_payload(self, ids: Sequence[str], payload: dict[str, Any]) -> None:
        self._routed(ids, True, lambda s, pids: s.set_payload(pids, payload))

    def delete(self, ids: Sequence[str]) -> None:
        """A delete in a sealed shard (no WAL) is flushed at once: lost in a crash, the point would
        stay there while the same content written again went to the live shard, found twice."""

        def delete(shard: EdgeStore, pids: list[str]) -> None:
            shard.delete(pids)
            if shard.path.name.startswith("s-"):
                shard.flush()

        self._routed(ids, False, delete)

    def update_vectors(self, points: Sequence[VectorPoint]) -> None:
        by_id = {p.id: p for p in points}
        self._routed(list(by_id), True, lambda s, pids: s.update_vectors([by_id[i] for i in pids]))

    def delete_vectors(self, ids: Sequence[str], names: Sequence[str]) -> None:
        self._routed(ids, True, lambda s, pids: s.delete_vectors(pids, names))

    def flush(self) -> None:
        with self._write_lock:
            for s in self._shards():
                if s.unflushed:  # (each flush holds the interpreter ~20 ms, written or not)
                    s.flush()

    # -- sealing, in the background ----------------------------------------------------------------

    def optimize(self, idle: bool = False) -> None:
        """Freeze the live shard once full, and start the next build if none runs. Cheap (a count)
        and never blocking: the building is done by a thread of this process (the export, in short
        steps) and a child process (the seal and graph)."""
        if self.live.count() >= self.rotate_at:  # (only the writer's thread writes: it stays so)
            self._rotate()
        self._start()

    def _rotate(self) -> None:
        """A new, empty live shard takes the new points; the full one waits for its build, searched.
        The new shard is made before taking the lock (~60 ms: queries go on meanwhile)."""
        with self._write_lock:
            name = self._m.new_name("live")
        shard = EdgeStore.open(self.path / name, self.name, self.dim, self.segment_kb, self.ballast_dir)
        with self._write_lock:
            old = self._m
            m = Manifest(name, [*old.frozen, old.live], list(old.sealed), old.next)
            _write_manifest(self.path, m)
            with self._lock:
                self._members[name] = shard
                self._m = m

    def _start(self) -> None:
        with self._write_lock:  # (one caller at a time, and not once close() has begun)
            if self._stop.is_set() or (self._thread is not None and self._thread.is_alive()):
                return
            if time.monotonic() < self._retry_at:
                return
            job = self._next_job()
            if job is None:
                return
            self._job = job
            self._thread = threading.Thread(target=self._work, args=(job,), name="photoman-shards")
            self._thread.daemon = True
            self._thread.start()

    def _next_job(self) -> _Job | None:
        plan = self._plan()
        return None if plan is None else _Job(plan[0], self.path / self._m.new_name("job"), plan[1])

    def _plan(self) -> tuple[list[str], bool] | None:
        """The next build's sources, and whether the library is large enough for graphs: the frozen
        shards; else small sealed shards merged; else, once the library is large, a sealed shard
        without a graph that should have one."""
        m = self._m
        counts = {n: self._members[n].count() for n in m.sealed}
        total = sum(counts.values()) + sum(self._members[n].count() for n in [*m.frozen, m.live])
        approximate = total >= self.approximate_from
        sources: list[str] = []
        if m.frozen:
            sources = list(m.frozen)
        else:
            take, size = [], 0
            for n in sorted((n for n in m.sealed if counts[n] < self.merge_at), key=counts.__getitem__):
                if size + counts[n] > self.merge_at:
                    break
                take.append(n)
                size += counts[n]
            if len(take) >= 2 and (size >= self.merge_at * 3 // 4 or len(take) >= MERGE_FACTOR):
                sources = take
            elif approximate:
                sources = [
                    n for n in m.sealed if counts[n] >= self.graph_from and not self._members[n].approximate
                ][:1]
        if not sources:
            return None
        return sources, approximate

    @property
    def graph_from(self) -> int:
        """A shard this large (once the library is past ``approximate_from``) is built with a graph."""
        return 2 * self.rotate_at

    def _work(self, job: _Job) -> None:
        while job is not None:
            try:
                self._export(job)
                self._build(job)
                self._swap_in(job)
                self.builds += 1
                self.last_error = None
            except _Stopped:
                return
            except Exception as exc:  # noqa: BLE001 - logged, and tried again later
                self.last_error = str(exc).splitlines()[0] if str(exc) else repr(exc)
                log.warning("building vector shards failed (tried again in %d s): %s", RETRY_AFTER, exc)
                self._retry_at = time.monotonic() + RETRY_AFTER
                return
            finally:
                with self._write_lock:
                    self._job = None
                shutil.rmtree(job.dir, ignore_errors=True)
            with self._write_lock:
                if self._stop.is_set():
                    return
                job = self._next_job()  # type: ignore[assignment]
                self._job = job

    def _export(self, job: _Job) -> None:
        """The sources' points into the job folder, a page at a time (each read holds the interpreter
        a few ms; queries go between them)."""
        job.dir.mkdir()
        with self._lock:
            sources = [self._members[n] for n in job.sources]
            room = sum(s.count() for s in sources)  # sources take no new points: only fewer
        shape = (max(room, 1), self.dim)
        image = np.lib.format.open_memmap(job.dir / "image.npy", "w+", np.float16, shape)
        caption = np.lib.format.open_memmap(job.dir / "caption.npy", "w+", np.float16, shape)
        for f in ("image.npy", "caption.npy"):  # blocks now: a write into a hole of a memory map on a
            _allocate(job.dir / f)  # full disk is SIGBUS (the process dies); this is ENOSPC, an error
        ids: list[str] = []
        rows: list[int] = []
        with open(job.dir / "payloads.jsonl", "w") as payloads:
            for src in sources:
                offset = None
                while True:
                    if self._stop.is_set():
                        raise _Stopped
                    page, offset = src.page(offset, EXPORT_PAGE)
                    for p in page:
                        if len(ids) >= room:
                            raise RuntimeError("a frozen shard grew while it was exported")
                        image[len(ids)] = p.vectors[IMAGE]
                        if CAPTION in p.vectors:
                            caption[len(ids)] = p.vectors[CAPTION]
                            rows.append(len(ids))
                        ids.append(p.id)
                        payloads.write(json.dumps(p.payload, default=str) + "\n")
                    if offset is None:
                        break
                    time.sleep(0)  # let a waiting query in
        image.flush()
        caption.flush()
        del image, caption
        np.save(job.dir / "caption_rows.npy", np.asarray(rows, dtype=np.int64))
        (job.dir / "ids.json").write_text(json.dumps(ids))
        n = len(ids)
        parts = -(-n // self.merge_at)  # (none: every point of the sources was deleted meanwhile)
        bounds = [round(i * n / parts) for i in range(parts + 1)] if parts else []
        with self._write_lock:
            job.outputs = [(self._m.new_name("s"), bounds[i], bounds[i + 1]) for i in range(parts)]
        job.placed = {pid: k for k, (_, a, b) in enumerate(job.outputs) for pid in ids[a:b]}
        graph = job.approximate and parts > 0 and n // parts >= self.graph_from
        spec = {"dim": self.dim, "approximate": graph, "segment_kb": self.segment_kb, "outputs": job.outputs}
        (job.dir / "spec.json").write_text(json.dumps(spec))

    def _build(self, job: _Job) -> None:
        """The child process's part; abandoned (killed) if the store closes meanwhile."""
        with open(job.dir / "build.log", "wb") as err:
            job.proc = subprocess.Popen(
                [sys.executable, "-m", "photoman.vectors.shard_build", str(job.dir), str(os.getpid())],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            )  # fmt: skip
            while True:
                try:
                    rc = job.proc.wait(timeout=0.1)
                    break
                except subprocess.TimeoutExpired:
                    if self._stop.is_set():
                        job.proc.kill()
                        job.proc.wait()
                        raise _Stopped from None
        if self._stop.is_set():  # killed by close(): abandoned, not failed
            raise _Stopped
        if rc != 0 or not (job.dir / "done.json").exists():
            lines = (job.dir / "build.log").read_text(errors="replace").strip().splitlines()
            raise RuntimeError(f"shard build exited with status {rc}: {lines[-1] if lines else 'no message'}")

    def _swap_in(self, job: _Job) -> None:
        """Load the built shards (outside the lock: tens of ms each), write into them what changed in
        the sources meanwhile, then name them in the manifest in the sources' place."""
        built: list[EdgeStore] = []
        committed = False
        try:
            for name, _, _ in job.outputs:
                os.rename(job.dir / name, self.path / name)
            _fsync_dir(self.path)  # the renames are on disk before a manifest names them
            for name, _, _ in job.outputs:
                if self._stop.is_set():
                    raise _Stopped
                built.append(EdgeStore.open(self.path / name, self.name, self.dim, self.segment_kb,
                                            self.ballast_dir, keep_config=True))  # fmt: skip
            with self._write_lock:  # writes wait (they would miss the copy); queries go on
                sources = [self._members[n] for n in job.sources]
                if dirty := sorted(job.dirty):
                    now: dict[str, VectorPoint] = {}
                    for src in sources:
                        now.update((p.id, p) for p in src.retrieve([i for i in dirty if i not in now], True))
                    for out in built:
                        out.delete([i for i in dirty if i not in now])
                    for k, out in enumerate(built):
                        out.upsert([p for pid, p in now.items() if job.placed.get(pid) == k])
                    for out in built:
                        out.flush()
                    # (a point the export did not see: none, as sources only lose points; kept anyway)
                    self.live.upsert([p for pid, p in now.items() if pid not in job.placed])
                old = self._m
                frozen = [n for n in old.frozen if n not in job.sources]
                sealed = [n for n in old.sealed if n not in job.sources] + [o[0] for o in job.outputs]
                m = Manifest(old.live, frozen, sealed, old.next)
                _write_manifest(self.path, m)
                committed = True
                with self._lock:  # (waits for the searches under way: they may be reading a source)
                    for name, out in zip([o[0] for o in job.outputs], built, strict=True):
                        self._members[name] = out
                    for n in job.sources:
                        del self._members[n]
                    self._m = m
                built = []
        finally:
            for out in built:  # not swapped in (the store is closing, or an error): thrown away
                out.close()
            if not committed:
                for name, _, _ in job.outputs:
                    shutil.rmtree(self.path / name, ignore_errors=True)
        for n, src in zip(job.sources, sources, strict=True):
            src.close()
            shutil.rmtree(self.path / n, ignore_errors=True)

    def settle(self, timeout: float = 600.0) -> None:
        """Wait until no build is due or running (tests, benchmarks, a model switch's last step)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._stop.is_set():
                raise RuntimeError("the vector store is closed")
            self.optimize()
            thread = self._thread
            if thread is None or not thread.is_alive():
                with self._write_lock:
                    if self._plan() is None:
                        return
                if self.last_error is not None:
                    raise RuntimeError(self.last_error)
            else:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
        raise TimeoutError("vector shards still building")

    @property
    def building(self) -> bool:
        """Whether a build is under way (``status`` shows "optimising")."""
        return self._thread is not None and self._thread.is_alive()

    def close(self) -> None:
        """Abandon a build under way (the next open starts it again) and close every shard, the live
        one last: its WAL lock is what keeps another process out of the store."""
        with self._write_lock:
            self._stop.set()
            thread, job = self._thread, self._job
        if thread is not None:
            if job is not None and job.proc is not None and job.proc.poll() is None:
                job.proc.kill()
            thread.join()
        with self._lock:
            for name in [*self._m.sealed, *self._m.frozen, self._m.live]:
                if name in self._members:
                    self._members[name].close()
            self._members = {}
