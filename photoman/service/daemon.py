"""`photoman watch`: the single writer. Owns the stores, keeps the model warm, indexes as files change,
and answers queries over the Unix socket while it does.

On a shared library (PostgreSQL catalog) whose writer lease another process holds, possibly on
another machine, the daemon runs as a standby: it answers every query read-only, watches and indexes
nothing, and tries for the lease every few seconds; once it has it, it is the writer (watches,
catches up, indexes). A writer that loses its lease goes back to being a standby."""

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
from dataclasses import dataclass, field
from logging.handlers import RotatingFileHandler
from typing import Any

import numpy as np
from sqlalchemy import select

from photoman import ops
from photoman.catalog.models import Root
from photoman.catalog.roots import offline_roots, register_roots
from photoman.config import Settings
from photoman.diskspace import as_disk_full, is_disk_full, space_ok
from photoman.embedding import threads
from photoman.errors import BadInputError, DiskFullError, PhotomanError
from photoman.indexing.pipeline import IndexReport, index, sync
from photoman.indexing.watcher import DirtyPaths, Watcher
from photoman.library import Library
from photoman.service.batcher import Batcher
from photoman.service.server import SocketServer
from photoman.textsafe import shown

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


def use_threads(n: int, lib: Library | None, force: bool = False) -> None:
    """Size the calling thread's encodings: its ONNX Runtime sessions and, when the loaded model runs
    in torch, its OpenMP team (torch applies its setting per calling thread). Only a loaded torch
    model says torch is usable: another thread may be importing it right now."""
    threads.use(n)
    if lib is not None and lib.torch_loaded:
        import torch

        if force or torch.get_num_threads() != n:
            torch.set_num_threads(n)


class SafeFormatter(logging.Formatter):
    """Log lines that are safe to `tail -f`: file names in messages and tracebacks are escaped
    (`photoman.textsafe.shown`), so a crafted name cannot drive the terminal of whoever reads the log."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = shown(record.message)  # format() sets it afresh from msg % args each time
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        return "\n".join(shown(line) for line in super().formatException(ei).split("\n"))

    def formatStack(self, stack_info: str) -> str:
        return "\n".join(shown(line) for line in super().formatStack(stack_info).split("\n"))


def setup_logging(settings: Settings, foreground: bool) -> None:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger("photoman")
    root.setLevel(logging.INFO)
    root.propagate = False  # its records go to its log once, whatever handlers a library gave the root
    fmt = SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
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
    SPACE_POLL = 5.0  # seconds between free-space checks while indexing is paused on a full disk
    LEASE_POLL = 2.0  # seconds between a standby's tries for the writer lease (and a writer's checks)
    SWITCH_STEP = 256  # photos per step of a model switch, between the indexer's other work

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop_event = threading.Event()
        self.writing = threading.Event()  # set while this daemon is the writer and its indexer runs
        self.full_scan = threading.Event()
        self.gate = QueryGate()
        self.dirty = DirtyPaths()
        self.activity = Activity()
        self.watcher = Watcher(self.dirty, settings.poll_roots)
        self.lib: Library | None = None
        self.server: SocketServer | None = None
        self.query_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="query")
        self.finds = Batcher(self.query_pool, self._find_batch)  # a burst of clients: one pass
        self.index_threads = max(1, (os.cpu_count() or 1) // 2)
        self.own_ops: dict[str, Any] = {
            "ping": lambda: "pong",
            "status": self._status,
            "index": self._index,
            "stop": self._stop,
            "roots": lambda: ops.roots(self.library, watching=dict(self.watcher.kinds)),
            "roots_remove": lambda path: self._then_rewatch(ops.roots_remove, path=path),
            "roots_relocate": lambda old, new: self._then_rewatch(ops.roots_relocate, old=old, new=new),
            "models_use": self._models_use,
            "models_drop": lambda name: ops.models_drop(self.library, name=name),
        }
        # own ops a standby refuses
        self.writer_ops = {"index", "roots_remove", "roots_relocate", "models_use", "models_drop"}
        self.timings: dict[str, float] = {}
        self._shutdown = threading.Lock()  # held by whichever shutdown path runs

    @property
    def library(self) -> Library:
        """The open library: requests are served only once it is (the socket opens after it)."""
        assert self.lib is not None
        return self.lib

    # ---- requests (socket threads) ----
    def dispatch(self, op: str, args: dict[str, Any]) -> Any:
        """One request: the daemon's own ops here, the library's from photoman.ops.OPS.

        Model work runs on one long-lived query thread (not a fresh thread per connection) and
        goes before indexing (the gate); catalog-only requests answer on the connection's thread.
        """
        own = self.own_ops.get(op)
        if own is not None:
            if not isinstance(args, dict):
                raise BadInputError("request arguments must be an object")
            if op in self.writer_ops and not self.library.write:
                raise self.library.read_only_error()
            return own(**args)
        entry = ops.OPS.get(op)
        if entry is None:
            raise BadInputError(f"unknown request {op!r}")
        if isinstance(args, dict) and entry.changes(args) and not self.library.write:
            raise self.library.read_only_error()  # a standby: refused before anything is written
        try:
            if op == "find":
                return self.finds.submit(args)
            if entry.model:
                return self.query_pool.submit(self._model_op, op, args).result()
            return ops.run(self.library, op, args)
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            raise as_disk_full(exc, self.settings) from None

    def _model_op(self, op: str, args: dict[str, Any]) -> Any:
        self._query_threads()
        with self.gate.query():
            return ops.run(self.library, op, args)

    def _find_batch(self, requests: list[dict[str, Any]]) -> list[Any]:
        self._query_threads()
        with self.gate.query():
            return ops.find_many(self.library, requests)

    def _query_threads(self) -> None:
        # all cores while the indexer rests; during indexing the indexer's share is taken, and an
        # oversubscribed thread team makes a query several times slower
        cores = os.cpu_count() or 1
        n = cores if self.activity.state in ("idle", "standby") else max(1, cores - self.index_threads)
        use_threads(n, self.lib)

    def _status(self, errors_limit: int = 20) -> dict[str, Any]:
        info = ops.status(self.library, errors_limit=errors_limit)
        info["daemon"] = self.daemon_status()
        return info

    def _then_rewatch(self, fn: Any, **args: Any) -> Any:
        """A change of roots, then the watches follow it at once (not at the next periodic check)."""
        with self.gate.query():
            result = fn(self.lib, **args)
        self._watch_roots()
        return result

    def _index(self, folders: list[str] | None = None, force: bool = False) -> dict[str, Any]:
        if folders is not None and not all(isinstance(f, str) and f for f in folders):
            raise BadInputError("folders must be a list of paths")
        return self.add_roots(folders or [], force=bool(force))

    def _models_use(self, name: str) -> dict[str, Any]:
        """Record the switch and answer at once: the indexer thread builds the new collection between
        its other work, and switches once it is complete (indexing/switch.py)."""
        from photoman.indexing import switch

        started = switch.start(self.library, ops._str(name, "name").strip())
        self.dirty.changed.set()  # wake the indexer
        return {**started, "switched": False, "background": started["target"] is not None}

    def _stop(self) -> str:
        self.request_stop()
        return "stopping"

    def request_stop(self) -> None:
        """Stop now. While the image model still loads (seconds of torch import on the main thread,
        which cannot be interrupted) nothing is being written: close the stores and exit at once
        rather than make `photoman stop` wait for a model that would only be thrown away."""
        self.stop_event.set()
        if "model_ready_s" not in self.timings and self.lib is not None:
            threading.Thread(target=self._exit_while_loading, name="quick-exit", daemon=True).start()

    def _exit_while_loading(self) -> None:
        time.sleep(0.2)  # a model that was just finishing shuts down the ordinary way
        if "model_ready_s" in self.timings or not self._shutdown.acquire(blocking=False):
            return
        log.info("shutting down (the image model was still loading)")
        self.watcher.stop()
        if self.server is not None:
            self.server.close()
        if self.lib is not None:
            self.lib.close()
        log.info("stopped")
        logging.shutdown()
        os._exit(0)

    def daemon_status(self) -> dict[str, Any]:
        a = self.activity
        lib = self.library
        elapsed = time.time() - a.run_started if a.state == "indexing" and a.run_started else 0.0
        rate = a.run_done / elapsed if elapsed > 0 and a.run_done else a.last_rate
        # the embedded store seals shards in the background (photoman.vectors.shards)
        building = a.state == "idle" and getattr(lib._store, "building", False)
        return {
            "pid": os.getpid(),
            "uptime_s": round(time.time() - a.started, 1),
            "state": "optimising" if building else a.state,
            "role": "writer" if lib.write else "standby",
            "writer": lib.writer_name(),  # a shared catalog's lease holder: this daemon or another
            "queue": len(self.dirty) + max(0, a.run_total - a.run_done),
            "rate": round(rate, 2),
            "indexed_since_start": a.indexed,
            "embedded_since_start": a.embedded,
            "errors_since_start": a.errors,
            "last_error": a.last_error,
            # a shard build that failed (retried every minute; searches go on meanwhile)
            "store_error": getattr(lib._store, "last_error", None),
            "watching": dict(self.watcher.kinds),
            "socket": str(self.settings.socket_path),
            "log": str(self.settings.log_file),
            "timings": dict(self.timings),
            # finds answered together: a burst of clients shares one pass (answered / batches)
            "finds": {"answered": self.finds.answered, "batches": self.finds.batches},
        }

    def add_roots(self, folders: list[str], force: bool = False) -> dict[str, Any]:
        """`photoman index FOLDER` while the daemon runs: adopt the roots, watch them, scan them."""
        from photoman.paths import check_new_root

        assert self.lib is not None
        paths = [check_new_root(f, force=force, own=self.settings.own_folders) for f in folders]
        register_roots(self.lib, paths)
        self._watch_roots()
        self.full_scan.set()
        return {"queued": paths}

    # ---- indexing (one thread) ----
    def _encode(self, pixels: np.ndarray, encoder: Any = None) -> np.ndarray:
        assert self.lib is not None
        encoder = encoder or self.lib.encoder
        parts = []
        for i in range(0, len(pixels), self.CHUNK):
            self.gate.wait_idle()
            if self.stop_event.is_set() or not self.writing.is_set():
                raise Abandon
            use_threads(self.index_threads, self.lib, force=True)  # MKL: one global count (queries move it)
            parts.append(encoder.encode_pixels(pixels[i : i + self.CHUNK]))
        return np.concatenate(parts) if parts else np.zeros((0, encoder.dim), dtype=np.float32)

    def _switch_step(self) -> None:
        """One step of a model switch (a few batches), or the switch itself once the new collection is
        complete; the indexer's own work (new and changed photos) goes first."""
        from photoman.indexing import switch
        from photoman.zeroshot.tagging import auto_tag, owe_auto_tag

        lib = self.library
        target = lib.target_name
        self.activity.state = "switching"
        tried = switch.build(lib, limit=self.SWITCH_STEP, progress=self._check_stop,
                             encode=lambda enc, px: self._encode(px, enc))  # fmt: skip
        if not tried:
            owe_auto_tag(lib)  # the new model's tags: a kill after the commit leaves them owed
            if switch.complete(lib, swap=lambda commit: self.query_pool.submit(commit).result()):
                log.info("switched model to %s (the old collection stays until `models drop`)", target)
                auto_tag(lib, [], everything=True)
            else:
                log.warning("model switch to %s: photos still to embed (retrying)", target)
                self.stop_event.wait(1.0)
        self.activity.state = "idle"

    def _check_stop(self, done: int, total: int) -> None:
        if self.stop_event.is_set() or not self.writing.is_set():
            raise Abandon

    def _progress(self, done: int, total: int) -> None:
        if self.stop_event.is_set() or not self.writing.is_set():
            raise Abandon
        a = self.activity
        if done == 0:
            a.run_total, a.run_started, a.state = total, time.time(), "indexing"
        a.run_done = done

    def _finish_run(self, report: IndexReport, owed: bool = False) -> None:
        from photoman.zeroshot.tagging import auto_tag

        auto_tag(self.library, report.new_hashes, everything=owed)  # (owed: a killed run's photos too)
        a = self.activity
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
        roots = self._roots()
        for gone in set(self.watcher.observers) - set(roots):  # removed or relocated roots
            log.info("no longer watching %s (not a root any more)", gone)
            self.watcher.unwatch(gone)
        for root in roots:
            if root in offline:
                if root in self.watcher.observers:
                    log.warning("root %s is offline; its photos are kept and hidden until it returns", root)
                    self.watcher.unwatch(root)
            elif root not in self.watcher.observers:
                kind = self.watcher.watch(root)
                log.info("watching %s (%s)", root, kind)
                self.full_scan.set()  # new or returning root: catch up on what happened meanwhile

    MEND_EVERY = 60.0  # seconds between looks for payloads a failed operation left out of step
    RETRY_AFTER = 60  # seconds from a failed indexing run to the scan that retries it

    def _index_loop(self) -> None:
        from photoman.zeroshot.tagging import owe_auto_tag

        assert self.lib is not None
        s = self.settings
        next_full = 0.0
        next_roots_check = 0.0
        next_mend = time.monotonic() + self.MEND_EVERY
        failures = 0  # indexing runs failed in a row: each retry waits twice as long as the last
        while not self.stop_event.is_set() and self.writing.is_set():
            indexing = False  # whether what runs now is an indexing run (a scan, or changed paths)
            try:
                now = time.monotonic()
                if now >= next_roots_check:
                    self._watch_roots()
                    next_roots_check = now + 5.0
                if self.full_scan.is_set() or now >= next_full:
                    self.full_scan.clear()
                    self.activity.state = "scanning"
                    if self._roots():
                        indexing = True
                        owed = owe_auto_tag(self.lib)
                        report = index(self.lib, None, progress=self._progress, encode=self._encode)
                        self._finish_run(report, owed)
                    failures = 0
                    self.activity.state = "idle"
                    next_full = time.monotonic() + s.rescan_interval
                    continue
                paths = self.dirty.take_quiet(s.debounce)
                if paths:
                    indexing = True
                    owed = owe_auto_tag(self.lib)
                    report, postponed = sync(
                        self.lib, paths, settle=s.settle, progress=self._progress, encode=self._encode
                    )
                    for p in postponed:  # still being written: look again after the settle time
                        self.dirty.add(p)
                    self._finish_run(report, owed)
                    continue
                if len(self.dirty):
                    self.stop_event.wait(min(0.1, s.debounce))  # events pending: wait for them to go quiet
                elif self.lib.target_name is not None:
                    self._switch_step()
                elif now >= next_mend:  # records an operation that failed halfway left (catalog/pending.py)
                    self.lib.mend()
                    self.lib.store.optimize()  # a shard build that failed is tried again (vectors/shards.py)
                    next_mend = now + self.MEND_EVERY
                else:
                    self.dirty.changed.wait(timeout=1.0)
            except Abandon:
                log.info("stopping: batch in flight abandoned (it is redone on the next start)")
                return
            except Exception as exc:
                if not self.library.write:  # the writer lease went elsewhere mid-run: stop writing
                    log.warning("indexing stopped: %s", exc)
                    return
                if not is_disk_full(exc):
                    first = str(exc).splitlines()[0] if str(exc) else repr(exc)
                    self.activity.state = "error"
                    if indexing:  # what the run had taken is looked at again by a scan, backing off
                        failures += 1
                        delay = min(self.RETRY_AFTER * 2 ** (failures - 1), s.rescan_interval)
                        next_full = time.monotonic() + delay
                        log.exception("indexing failed; retrying with a scan in %d s", delay)
                        self.activity.last_error = f"indexing failed: {first}"
                    else:  # a switch step or the store's optimising: tried again by the loop itself
                        log.exception("background work failed; trying again")
                        self.activity.last_error = f"background work failed: {first}"
                    # a pause before trying anything again, which a stop or an `index` request ends
                    pause_end = time.monotonic() + min(5.0, self.RETRY_AFTER)
                    while time.monotonic() < pause_end and not self.full_scan.is_set():
                        if self.stop_event.wait(0.1):
                            break
                    continue
                self._wait_for_space(as_disk_full(exc, s))

    def _wait_for_space(self, full: DiskFullError) -> None:
        """Indexing pauses on a full disk (queries go on), and resumes by itself once space returns."""
        a = self.activity
        a.state, a.last_error = "disk full", str(full)
        self.activity.run_total = self.activity.run_done = 0
        log.warning("%s", full)
        while not self.stop_event.is_set() and not space_ok(self.settings):
            self.stop_event.wait(self.SPACE_POLL)
        if not self.stop_event.is_set():
            log.info("space is back in %s: indexing resumes", self.settings.data_dir)
            a.state = "idle"
            self.full_scan.set()  # what happened meanwhile, including the paths the failed run had taken

    # ---- lifecycle ----
    def run(self) -> int:
        """Serve until SIGINT/SIGTERM or a stop request; returns the exit code (0 on a clean stop).

        Text queries are answered as soon as the stores and the cached text encoder are open; the
        image model (torch) loads after that, and indexing starts once it is there.
        """
        s = self.settings
        started = time.monotonic()
        try:
            # standby: on a shared catalog whose writer lease another process holds, open read-only
            self.lib = Library(s, "photoman watch", standby=True)
        except PhotomanError as exc:
            log.error("cannot start: %s", exc)
            raise
        held = False
        try:
            log.info("starting (pid %d), data dir %s, model %s", os.getpid(), s.data_dir, s.model)
            cores = os.cpu_count() or 1
            try:
                text = self.lib._text_pack()
                if text is not None:  # the query sessions for both of _model_op's thread counts
                    text.warm(sorted({cores, max(1, cores - self.index_threads)}))
                else:  # no cached text encoder yet: the model builds it, so it loads first
                    self._load_model()
                self.lib.store  # noqa: B018
            except PhotomanError as exc:
                log.error("cannot start: %s", exc)
                raise
            self.server = SocketServer(s.socket_path, self.dispatch)
            self.server.serve_in_thread()
            self.timings["text_ready_s"] = round(time.monotonic() - started, 3)
            log.info(
                "answering text queries on %s (%.1fs after start)",
                s.socket_path,
                self.timings["text_ready_s"],
            )
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: self.request_stop())
            if self.lib.write:
                self._watch_roots()  # events that happen while the model loads are kept for the indexer
            else:
                self.activity.state = "standby"
                log.info("standby: %s", self.lib.writer_busy)
            try:
                self._load_model()
            except PhotomanError as exc:
                log.error("cannot start: %s", exc)
                raise
            self.timings["model_ready_s"] = round(time.monotonic() - started, 3)
            log.info("image model ready (%.1fs after start)", self.timings["model_ready_s"])
            indexer = self._serve()
            self._shutdown.acquire()  # not while a quick exit (request_stop) is closing the stores
            held = True
            log.info("shutting down")
            self.writing.clear()
            self.watcher.stop()
            if indexer is not None:
                indexer.join(timeout=60)
            self.query_pool.shutdown(wait=True)
            return 0
        finally:
            if not held:  # an error path; a quick exit in progress ends the process while this waits
                self._shutdown.acquire()
            if self.server is not None:
                self.server.close()
            self.lib.close()
            log.info("stopped")

    def _serve(self) -> threading.Thread | None:
        """Until a stop: as the writer, index (checking the lease now and then); as a standby, try for
        the lease every LEASE_POLL seconds. Returns the indexer thread still to join, if any."""
        lib = self.library
        indexer: threading.Thread | None = None
        next_check = 0.0  # a writer from the start takes over at once (take_over is True for it)
        while not self.stop_event.is_set():
            if indexer is not None and not indexer.is_alive():
                indexer = None
                if self.stop_event.is_set():
                    break
                self._to_standby()  # the indexer gave up: its writes were refused (the lease is gone)
            now = time.monotonic()
            if now >= next_check:
                next_check = now + self.LEASE_POLL
                try:
                    if indexer is None and lib.take_over():
                        indexer = self._to_writer()
                    elif indexer is not None and not lib.check_lease():
                        self._to_standby()  # the indexer stops at its next step and is joined below
                except Exception as exc:  # noqa: BLE001 - the catalog out of reach: answer queries, retry
                    log.warning(
                        "cannot check the writer lease (retrying in %.0f s): %s", self.LEASE_POLL, exc
                    )
            self.stop_event.wait(min(1.0, self.LEASE_POLL))
        return indexer

    def _to_writer(self) -> threading.Thread:
        """This daemon holds the writer lease (from the start, or taken over): watch, catch up, index."""
        if self.activity.state == "standby":
            log.info("took over the writer lease: watching and indexing from now on")
        self.activity.state = "idle"
        self.writing.set()
        self.full_scan.set()  # the indexer watches the roots first, then catches up with a full scan
        indexer = threading.Thread(target=self._index_loop, name="indexer", daemon=True)
        indexer.start()
        return indexer

    def _to_standby(self) -> None:
        """The lease went to another process: stop writing (the batch in flight is dropped: its catalog
        rows are refused, which the next writer's reconcile repairs) and answer read-only."""
        if not self.writing.is_set() and self.activity.state == "standby":
            return
        self.writing.clear()
        self.watcher.stop()
        a = self.activity
        a.state, a.run_total, a.run_done = "standby", 0, 0
        log.warning("standby from now on (answering queries read-only): %s", self.library.read_only_error())

    def _load_model(self) -> None:
        """The full CLIP model, loaded on this (main) thread, which never forms a thread team."""
        assert self.lib is not None
        if self.lib.encoder_loaded:
            return
        # OpenMP keeps one thread team per calling thread, and once the process has more team
        # threads than cores every team stops spinning between parallel regions, so each of a
        # query's ~100 small ops pays a wake-up (measured: a 2-thread query went 15 → 40 ms).
        # So the main thread never forms a team (it only loads the model); the query thread
        # uses every core while the indexer rests; the indexer takes half the cores (the rest
        # decode) and queries during indexing get what is left. (Opened from the cache: ONNX
        # Runtime forms no team, and the torch image tower runs nothing here: its first forward
        # pass is a query's or the indexer's, on threads sized by use_threads.)
        if not self.lib.encoder_from_cache():
            import torch

            torch.set_num_threads(1)
        enc = self.lib.encoder
        if enc.query_text is not None:
            cores = os.cpu_count() or 1
            enc.query_text.warm(sorted({cores, max(1, cores - self.index_threads)}))
        # the model and libraries are ~400k long-lived objects: a full garbage collection would
        # walk them all (~240 ms here) in the middle of some query; frozen, they are skipped
        gc.collect()
        gc.freeze()


def run_once(settings: Settings) -> IndexReport:
    """`photoman watch --once`: reconcile and index every root, then exit (for cron)."""
    from photoman.zeroshot.tagging import auto_tag, owe_auto_tag

    with Library(settings, "photoman watch --once") as lib:
        owed = owe_auto_tag(lib)
        report = index(lib)
        auto_tag(lib, report.new_hashes, everything=owed)
        return report
