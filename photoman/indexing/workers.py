"""Decode worker processes that one file cannot take down with the run.

Each worker has its own pipe and at most :data:`PREFETCH` files in flight, so the parent always
knows which file a worker was on: when a worker dies (a decoder segfault, the OOM killer) or takes
longer than the timeout on one file, that file is recorded with the reason, the worker is replaced,
and the files queued behind it go to the next one. (A ``ProcessPoolExecutor`` turns one dead worker
into ``BrokenProcessPool`` for every file in flight, and its workers, started by the fork server,
outlived a ``kill -9`` of the command: they waited forever on a queue their siblings kept open.)

A worker also dies with the process that started it (:func:`photoman.indexing.prepare.die_with`),
and its pipe closes when that process goes, so nothing outlives ``kill -9`` of ``photoman index``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from photoman.errors import PhotomanError
from photoman.indexing.prepare import Prepared, init_worker
from photoman.indexing.scanner import TRANSIENT_ERRORS, FileStat

PREFETCH = 2  # files sent ahead to each worker: one decoding, one waiting
MAX_DEATHS_IN_A_ROW = 16  # workers dying with no file done in between: the machine, not the files
_READY = "ready"

Prepare = Callable[..., Prepared]


def _worker_main(conn: Connection, fn: Prepare, init_args: tuple[Any, ...], parent_pid: int) -> None:
    """A worker's life: initialise, say ready, then answer one file at a time until told to stop."""
    init_worker(*init_args, parent_pid=parent_pid)  # type: ignore[misc]  # init_args: the leading three
    conn.send(_READY)
    while True:
        try:
            item = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if item is None:
            return
        try:
            result = fn(item)
        except MemoryError:
            result = Prepared(
                item, error="out of memory while reading it (a decode worker's memory is capped)"
            )
        except BaseException as exc:  # noqa: BLE001 - whatever it is: the file's line, not the worker
            result = Prepared(item, error=f"cannot read ({exc.__class__.__name__}: {exc})")
        try:
            conn.send(result)
        except (BrokenPipeError, EOFError, OSError):
            return
        except Exception as exc:  # noqa: BLE001 - a result that does not pickle
            conn.send(Prepared(item, error=f"cannot read ({exc.__class__.__name__}: {exc})"))


@dataclass
class _Worker:
    proc: Any  # multiprocessing Process
    conn: Connection
    inflight: deque[FileStat] = field(default_factory=deque)
    ready: bool = False
    since: float | None = None  # when the file at the head of inflight started (as far as we know)
    stopped: bool = False


def death_reason(exitcode: int | None) -> str:
    """Why a worker died, for the file it was on (starts with a TRANSIENT_ERRORS prefix: retried)."""
    if exitcode is not None and exitcode < 0:
        try:
            sig = signal.Signals(-exitcode).name
        except ValueError:
            sig = f"signal {-exitcode}"
        how = f"{sig}: out of memory?" if -exitcode == signal.SIGKILL else sig
    else:
        how = f"exit code {exitcode}"
    return f"{TRANSIENT_ERRORS[0]} while reading it ({how})"


class DecodePool:
    """Worker processes that decode files; :meth:`run` yields each file's result in completion order."""

    def __init__(
        self, ctx: Any, workers: int, init_args: tuple[Any, ...], fn: Prepare, timeout: float
    ) -> None:
        self.ctx, self.init_args, self.fn, self.timeout = ctx, init_args, fn, timeout
        self.todo: deque[FileStat] = deque()
        self.deaths_in_a_row = 0
        self.last_death = ""
        self.workers: list[_Worker] = []
        for _ in range(max(1, workers)):
            self.workers.append(self._start())

    def _start(self) -> _Worker:
        parent, child = self.ctx.Pipe(duplex=True)
        proc = self.ctx.Process(
            target=_worker_main,
            args=(child, self.fn, self.init_args, os.getpid()),
            name="photoman-decode",
            daemon=True,
        )
        proc.start()
        child.close()
        return _Worker(proc, parent)

    def run(self, files: Iterable[FileStat]) -> Iterator[Prepared]:
        """Decode every file; a file whose worker dies or hangs comes back with that as its error."""
        self.todo.extend(files)
        while self.todo or any(w.inflight for w in self.workers):
            self._feed()
            wait([w.conn for w in self.workers] + [w.proc.sentinel for w in self.workers], timeout=0.5)
            for i in range(len(self.workers)):
                w = self.workers[i]
                dead = False
                try:
                    while w.conn.poll():
                        msg = w.conn.recv()
                        now = time.monotonic()
                        if isinstance(msg, str) and msg == _READY:
                            w.ready = True
                            w.since = now if w.inflight else None
                            continue
                        w.inflight.popleft()
                        w.since = now if w.inflight else None
                        self.deaths_in_a_row = 0
                        started = time.monotonic()
                        yield msg
                        self._pause(time.monotonic() - started)  # the consumer's time is no worker's
                except (EOFError, OSError):
                    dead = True
                if dead or not w.proc.is_alive():
                    w.proc.join(1.0)
                    yield from self._replace(i, death_reason(w.proc.exitcode))
                elif w.since is not None and time.monotonic() - w.since > self.timeout:
                    yield from self._replace(i, f"{TRANSIENT_ERRORS[1]} {self.timeout:g} s; stopped")

    def _feed(self) -> None:
        for w in self.workers:
            while self.todo and len(w.inflight) < PREFETCH:
                f = self.todo.popleft()
                try:
                    w.conn.send(f)
                except OSError:  # died: noticed by run()
                    self.todo.appendleft(f)
                    break
                w.inflight.append(f)
                if w.ready and w.since is None:
                    w.since = time.monotonic()

    def _pause(self, seconds: float) -> None:
        for w in self.workers:
            if w.since is not None:
                w.since += seconds

    def _replace(self, i: int, reason: str) -> Iterator[Prepared]:
        """Stop worker i, blame the file it was on (if it had started on one), start another."""
        w = self.workers[i]
        _stop(w, graceful=False)
        culprit = w.inflight.popleft() if w.ready and w.inflight else None
        self.todo.extendleft(reversed(w.inflight))
        w.inflight.clear()
        self.deaths_in_a_row += 1
        self.last_death = reason
        if self.deaths_in_a_row > MAX_DEATHS_IN_A_ROW:
            raise PhotomanError(
                f"decode workers keep dying ({self.deaths_in_a_row} in a row, last: {reason}); "
                "is the machine out of memory?"
            )
        self.workers[i] = self._start()
        if culprit is not None:
            yield Prepared(culprit, error=reason)

    def close(self, graceful: bool = True) -> None:
        """Stop every worker: asked to finish when all went well, killed otherwise (Ctrl-C, an error)."""
        for w in self.workers:
            _stop(w, graceful)
        self.workers = []


def _stop(w: _Worker, graceful: bool) -> None:
    if w.stopped:
        return
    w.stopped = True
    if graceful and w.proc.is_alive():
        with contextlib.suppress(OSError):
            w.conn.send(None)
        w.proc.join(2.0)
    if w.proc.is_alive():
        w.proc.kill()
        w.proc.join(2.0)
    w.conn.close()
    with contextlib.suppress(ValueError):
        w.proc.close()
