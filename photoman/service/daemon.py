"""`photoman watch`: the single writer. Owns the stores, keeps the model warm, indexes as files change,
and answers queries over the Unix socket while it does."""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from photoman.catalog.models import Root
from photoman.catalog.queries import lookup_photo
from photoman.config import Settings
from photoman.errors import BadInputError, PhotomanError
from photoman.indexing.captions import get_caption, set_caption
from photoman.indexing.pipeline import IndexReport, index, offline_roots, register_roots, sync
from photoman.indexing.scanner import normalise
from photoman.indexing.watcher import DirtyPaths, Watcher
from photoman.library import Library
from photoman.search.engine import Query, find, search
from photoman.service.server import SocketServer
from photoman.status import library_status

log = logging.getLogger("photoman.daemon")


class Abandon(Exception):
    """Raised inside an index run to drop the batch in flight at shutdown."""


class QueryGate:
    """Queries go first: the indexer starts no new model chunk while a query is being answered."""

    def __init__(self) -> None:
        self._active = 0
        self._cv = threading.Condition()

    @contextmanager
    def query(self) -> Iterator[None]:
        with self._cv:
            self._active += 1
        try:
            yield
        finally:
            with self._cv:
                self._active -= 1
                self._cv.notify_all()

    def wait_idle(self, timeout: float = 5.0) -> None:
        with self._cv:
            self._cv.wait_for(lambda: self._active == 0, timeout=timeout)


@dataclass
class Activity:
    """What `status` shows about the indexer."""

    started: float = field(default_factory=time.time)
    state: str = "starting"
    run_total: int = 0
    run_done: int = 0
    run_started: float = 0.0
    indexed: int = 0
    embedded: int = 0
    errors: int = 0
    last_error: str | None = None
    last_rate: float = 0.0
    runs: int = 0


def torch_threads(n: int, force: bool = False) -> None:
    """Size the calling thread's OpenMP team (torch applies its setting per calling thread)."""
    import torch

    if force or torch.get_num_threads() != n:
        torch.set_num_threads(n)


def setup_logging(settings: Settings, foreground: bool) -> None:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger("photoman")
    root.setLevel(logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler = RotatingFileHandler(settings.log_file, maxBytes=5_000_000, backupCount=3)
    handler.setFormatter(fmt)
    root.addHandler(handler)
    if foreground:
        console = logging.StreamHandler()
        console.setFormatter(fmt)
        root.addHandler(console)


class Daemon:
    """Lifecycle: lock and open the stores, warm the model, serve, index; stop cleanly on a signal."""

    CHUNK = 8  # images per model call while indexing, so a query never waits behind a long batch

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop_event = threading.Event()
        self.full_scan = threading.Event()
        self.gate = QueryGate()
        self.dirty = DirtyPaths()
        self.activity = Activity()
        self.watcher = Watcher(self.dirty, settings.poll_roots)
        self.lib: Library | None = None
        self.server: SocketServer | None = None
        self.query_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="query")
        self.index_threads = max(1, (os.cpu_count() or 1) // 2)

    # ---- requests (socket threads) ----
    def dispatch(self, op: str, args: dict[str, Any]) -> Any:
        """Queries' model work runs on one long-lived thread (not a fresh thread per connection)."""
        if op in ("find", "heatmap", "caption", "tag", "dupes"):
            return self.query_pool.submit(self._model_op, op, args).result()
        return self._dispatch(op, args)

    def _model_op(self, op: str, args: dict[str, Any]) -> Any:
        # all cores while the indexer rests; during indexing the indexer's share is taken, and an
        # oversubscribed OpenMP team makes a query several times slower
        cores = os.cpu_count() or 1
        torch_threads(cores if self.activity.state == "idle" else max(1, cores - self.index_threads))
        return self._dispatch(op, args)

    def _dispatch(self, op: str, args: dict[str, Any]) -> Any:
        assert self.lib is not None
        if op == "ping":
            return "pong"
        if op == "find":
            with self.gate.query():
                if "query" in args:
                    results = search(self.lib, Query.from_json(args["query"]))
                else:  # the simple form: {"text": ...} or {"image": ...}
                    results = find(
                        self.lib,
                        text=args.get("text"),
                        image=args.get("image"),
                        limit=int(args.get("limit", 10)),
                        include_offline=bool(args.get("include_offline", False)),
                    )
            return [r.to_json() for r in results]
        if op == "heatmap":
            from photoman.zeroshot.locate import heatmap_png

            with self.gate.query():
                return heatmap_png(self.lib.encoder, self.settings.thumbs_dir, str(args["path"]),
                                   str(args["content_hash"]), str(args["text"]))[0]  # fmt: skip
        if op == "photo":
            return lookup_photo(self.lib, str(args["path"]))
        if op == "tags":
            from photoman.zeroshot.tagging import tag_counts

            return tag_counts(self.lib)
        if op == "tag":
            from photoman.zeroshot.tagging import label_set, tag_library

            labels = label_set(
                [Path(f) for f in args.get("labels") or []], builtin=not args.get("no_builtin")
            )
            min_prob, top_k = float(args.get("min_prob", 0.1)), int(args.get("top_k", 5))
            retag = bool(args.get("retag"))
            report = tag_library(self.lib, labels, retag=retag, min_prob=min_prob, top_k=top_k)
            return asdict(report)
        if op == "dupes":
            from photoman.zeroshot.dupes import find_duplicates, trash_duplicates

            groups = find_duplicates(self.lib, threshold=float(args.get("threshold", 0.95)),
                                     rotations=bool(args.get("rotations", True)))  # fmt: skip
            moved = trash_duplicates(self.lib, groups) if args.get("trash") else []
            return {"groups": [g.to_json() for g in groups], "trashed": moved}
        if op == "caption":
            path = str(args["path"])
            if args.get("clear") or args.get("text") is not None:
                with self.gate.query():
                    return asdict(set_caption(self.lib, path, None if args.get("clear") else args["text"]))
            return asdict(get_caption(self.lib, path))
        if op == "status":
            info = library_status(self.lib)
            info["daemon"] = self.daemon_status()
            return info
        if op == "index":
            return self.add_roots([str(f) for f in args.get("folders") or []])
        if op == "stop":
            self.stop_event.set()
            return "stopping"
        raise BadInputError(f"unknown request {op!r}")

    def daemon_status(self) -> dict[str, Any]:
        a = self.activity
        elapsed = time.time() - a.run_started if a.state == "indexing" and a.run_started else 0.0
        rate = a.run_done / elapsed if elapsed > 0 and a.run_done else a.last_rate
        return {
            "pid": os.getpid(),
            "uptime_s": round(time.time() - a.started, 1),
            "state": a.state,
            "queue": len(self.dirty) + max(0, a.run_total - a.run_done),
            "rate": round(rate, 2),
            "indexed_since_start": a.indexed,
            "embedded_since_start": a.embedded,
            "errors_since_start": a.errors,
            "last_error": a.last_error,
            "watching": dict(self.watcher.kinds),
            "socket": str(self.settings.socket_path),
            "log": str(self.settings.log_file),
        }

    def add_roots(self, folders: list[str]) -> dict[str, Any]:
        """`photoman index FOLDER` while the daemon runs: adopt the roots, watch them, scan them."""
        assert self.lib is not None
        paths = []
        for f in folders:
            p = normalise(f)
            if not os.path.isdir(p):
                raise BadInputError(f"no such folder: {f}")
            paths.append(p)
        register_roots(self.lib, paths)
        self._watch_roots()
        self.full_scan.set()
        return {"queued": paths}

    # ---- indexing (one thread) ----
    def _encode(self, pixels: np.ndarray) -> np.ndarray:
        assert self.lib is not None
        parts = []
        for i in range(0, len(pixels), self.CHUNK):
            self.gate.wait_idle()
            if self.stop_event.is_set():
                raise Abandon
            torch_threads(self.index_threads, force=True)  # MKL's count is global: a query may have moved it
            parts.append(self.lib.encoder.encode_pixels(pixels[i : i + self.CHUNK]))
        return np.concatenate(parts) if parts else np.zeros((0, self.lib.encoder.dim), dtype=np.float32)

    def _progress(self, done: int, total: int) -> None:
        if self.stop_event.is_set():
            raise Abandon
        a = self.activity
        if done == 0:
            a.run_total, a.run_started, a.state = total, time.time(), "indexing"
        a.run_done = done

    def _finish_run(self, report: IndexReport) -> None:
        a = self.activity
        a.runs += 1
        a.indexed += report.embedded + report.reused
        a.embedded += report.embedded
        a.errors += len(report.errors)
        if report.errors:
            a.last_error = f"{report.errors[-1][0]}: {report.errors[-1][1]}"
        if report.processed and report.seconds > 0:
            a.last_rate = report.processed / report.seconds
        a.run_total = a.run_done = 0
        a.state = "idle"
        if report.processed or report.removed:
            log.info(
                "indexed: %d embedded, %d reused, %d removed, %d errors in %.1fs",
                report.embedded, report.reused, report.removed, len(report.errors), report.seconds,
            )  # fmt: skip

    def _roots(self) -> list[str]:
        assert self.lib is not None
        with self.lib.catalog.session() as s:
            return list(s.scalars(select(Root.path)))

    def _watch_roots(self) -> None:
        """Watch online roots; stop watching roots that went offline (they come back on a later check)."""
        assert self.lib is not None
        offline = set(offline_roots(self.lib))
        for root in self._roots():
            if root in offline:
                if root in self.watcher.observers:
                    log.warning("root %s is offline; its photos are kept and hidden until it returns", root)
                    self.watcher.unwatch(root)
            elif root not in self.watcher.observers:
                kind = self.watcher.watch(root)
                log.info("watching %s (%s)", root, kind)
                self.full_scan.set()  # new or returning root: catch up on what happened meanwhile

    def _index_loop(self) -> None:
        assert self.lib is not None
        s = self.settings
        next_full = 0.0
        next_roots_check = time.monotonic() + 5.0
        while not self.stop_event.is_set():
            try:
                now = time.monotonic()
                if now >= next_roots_check:
                    self._watch_roots()
                    next_roots_check = now + 5.0
                if self.full_scan.is_set() or now >= next_full:
                    self.full_scan.clear()
                    self.activity.state = "scanning"
                    if self._roots():
                        self._finish_run(index(self.lib, None, progress=self._progress, encode=self._encode))
                    self.activity.state = "idle"
                    next_full = time.monotonic() + s.rescan_interval
                    continue
                paths = self.dirty.take_quiet(s.debounce)
                if paths:
                    report, postponed = sync(
                        self.lib, paths, settle=s.settle, progress=self._progress, encode=self._encode
                    )
                    for p in postponed:  # still being written: look again after the settle time
                        self.dirty.add(p)
                    self._finish_run(report)
                    continue
                if len(self.dirty):
                    self.stop_event.wait(min(0.1, s.debounce))  # events pending: wait for them to go quiet
                else:
                    self.dirty.changed.wait(timeout=1.0)
            except Abandon:
                log.info("stopping: batch in flight abandoned (it is redone on the next start)")
                return
            except Exception:  # noqa: BLE001 - keep the daemon alive; the next scan retries
                log.exception("indexing failed; retrying on the next scan")
                self.activity.state = "error"
                self.stop_event.wait(5.0)

    # ---- lifecycle ----
    def run(self) -> int:
        """Serve until SIGINT/SIGTERM or a stop request; returns the exit code (0 on a clean stop)."""
        s = self.settings
        try:
            self.lib = Library(s, "photoman watch")
        except PhotomanError as exc:
            log.error("cannot start: %s", exc)
            raise
        try:
            log.info("starting (pid %d), data dir %s, model %s", os.getpid(), s.data_dir, s.model)
            import torch

            # OpenMP keeps one thread team per calling thread, and once the process has more team
            # threads than cores every team stops spinning between parallel regions, so each of a
            # query's ~100 small ops pays a wake-up (measured: a 2-thread query went 15 → 40 ms).
            # So the main thread never forms a team (it only loads the model); the query thread
            # uses every core while the indexer rests; the indexer takes half the cores (the rest
            # decode) and queries during indexing get what is left.
            torch.set_num_threads(1)
            try:
                self.lib.store  # noqa: B018
                self.lib.encoder  # noqa: B018 - warm: queries never pay the model load
                warm = getattr(self.lib.encoder.lean_text, "warm", None)
                if warm is not None:  # the query text sessions for both of _model_op's thread counts
                    cores = os.cpu_count() or 1
                    warm(sorted({cores, max(1, cores - self.index_threads)}))
            except PhotomanError as exc:
                log.error("cannot start: %s", exc)
                raise
            # the model and libraries are ~400k long-lived objects: a full garbage collection would
            # walk them all (~240 ms here) in the middle of some query; frozen, they are skipped
            gc.collect()
            gc.freeze()
            self.server = SocketServer(s.socket_path, self.dispatch)
            self.server.serve_in_thread()
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: self.stop_event.set())
            self._watch_roots()
            self.full_scan.set()
            indexer = threading.Thread(target=self._index_loop, name="indexer", daemon=True)
            indexer.start()
            log.info("ready on %s", s.socket_path)
            while not self.stop_event.wait(1.0):
                if not indexer.is_alive():
                    break
            log.info("shutting down")
            self.watcher.stop()
            indexer.join(timeout=60)
            self.query_pool.shutdown(wait=True)
            return 0
        finally:
            if self.server is not None:
                self.server.close()
            self.lib.close()
            log.info("stopped")


def run_once(settings: Settings) -> IndexReport:
    """`photoman watch --once`: reconcile and index every root, then exit (for cron)."""
    with Library(settings, "photoman watch --once") as lib:
        return index(lib)


def log_tail(path: Path, lines: int = 5) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
