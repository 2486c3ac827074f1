"""Requests that arrive together are answered together: a burst of `find`s from many clients costs
one pass of the work they share (offline roots, text encoding, payload fetch, catalog join) instead
of one pass each, on the daemon's one query thread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

RunBatch = Callable[[list[dict[str, Any]]], list[Any]]


class Batcher:
    """Queue requests for one executor (the query thread); whenever it is free it takes every request
    waiting, up to ``max_batch``, and answers them in one call of ``run_batch``.

    ``run_batch`` returns one answer per request, an exception being that request's own error. A lone
    request waits for nothing: it is taken as soon as the thread is free."""

    def __init__(self, executor: Executor, run_batch: RunBatch, max_batch: int = 64) -> None:
        self.executor = executor
        self.run_batch = run_batch
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._waiting: list[tuple[dict[str, Any], Future[Any]]] = []
        self.batches = 0  # how many run_batch calls, and how many requests they answered (status)
        self.answered = 0

    def submit(self, args: dict[str, Any]) -> Any:
        """Answer one request (blocking this caller's thread until its batch has run)."""
        future: Future[Any] = Future()
        with self._lock:
            self._waiting.append((args, future))
            first = len(self._waiting) == 1
        if first:  # otherwise a drain is already queued and will take this one too
            try:
                self.executor.submit(self._drain)
            except BaseException:  # a stopping daemon's executor: nothing will drain, leave no one waiting
                with self._lock:
                    waiting, self._waiting = self._waiting, []
                for _, other in waiting:
                    if other is not future:
                        other.set_exception(RuntimeError("the daemon is stopping"))
                raise
        return future.result()

    def _drain(self) -> None:
        with self._lock:
            batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
            if self._waiting:
                self.executor.submit(self._drain)
        try:
            answers = self.run_batch([args for args, _ in batch])
        except BaseException as exc:  # noqa: BLE001 - handed to every waiting caller, never lost
            for _, future in batch:
                future.set_exception(exc)
            return
        self.batches += 1
        self.answered += len(batch)
        for (_, future), answer in zip(batch, answers, strict=True):
            if isinstance(answer, BaseException):
                future.set_exception(answer)
            else:
                future.set_result(answer)
