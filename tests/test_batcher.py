"""The daemon's batcher: requests waiting together are answered in one pass, each with its own answer."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from photoman.service.batcher import Batcher


def test_waiting_requests_share_a_pass_and_keep_their_own_answers() -> None:
    passes: list[list[int]] = []
    gate = threading.Event()

    def run(batch: list[dict[str, Any]]) -> list[Any]:
        gate.wait(5)  # the first pass is slow: the others pile up meanwhile
        passes.append([a["n"] for a in batch])
        return [ValueError(f"bad {a['n']}") if a["n"] % 4 == 3 else a["n"] * 10 for a in batch]

    pool = ThreadPoolExecutor(max_workers=1)
    batcher = Batcher(pool, run, max_batch=8)
    answers: dict[int, Any] = {}

    def client(n: int) -> None:
        try:
            answers[n] = batcher.submit({"n": n})
        except ValueError as exc:
            answers[n] = str(exc)

    threads = [threading.Thread(target=client, args=(0,))]
    threads[0].start()
    time.sleep(0.2)  # the first request alone is taken at once
    threads += [threading.Thread(target=client, args=(n,)) for n in range(1, 20)]
    for t in threads[1:]:
        t.start()
    time.sleep(0.3)
    gate.set()
    for t in threads:
        t.join(10)
    pool.shutdown()
    assert passes[0] == [0] and sum(len(p) for p in passes) == 20
    assert all(len(p) <= 8 for p in passes) and len(passes) <= 4  # 19 waiting: at most 8 per pass
    assert answers == {n: f"bad {n}" if n % 4 == 3 else n * 10 for n in range(20)}
    assert (batcher.batches, batcher.answered) == (len(passes), 20)


def test_a_stopped_executor_fails_the_request_instead_of_hanging() -> None:
    pool = ThreadPoolExecutor(max_workers=1)
    pool.shutdown()
    batcher = Batcher(pool, lambda batch: [1 for _ in batch])
    with pytest.raises(RuntimeError):
        batcher.submit({})
    with pytest.raises(RuntimeError):  # and the next one too: nothing is left waiting for a drain
        batcher.submit({})
