"""The embedded store's shards: sealed by a child process, swapped in, merged, converted, crash-safe."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from photoman.errors import StoreBusyError
from photoman.vectors import CAPTION, IMAGE, SearchFilter, VectorPoint, point_id
from photoman.vectors.edge import EdgeStore
from photoman.vectors.shards import MANIFEST, ShardedStore

DIM = 16


def vectors(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def pts(v: np.ndarray, start: int, end: int) -> list[VectorPoint]:
    return [
        VectorPoint(
            point_id(f"h{i}", "m"),
            {IMAGE: v[i], **({CAPTION: v[(i + 7) % len(v)]} if i % 3 == 0 else {})},
            {"content_hash": f"h{i}", "folders": ["/lib", f"/lib/{i % 4}"], "roots": ["/lib"], "tags": []},
        )
        for i in range(start, end)
    ]


def fill(store: ShardedStore, v: np.ndarray, n: int, batch: int = 20) -> None:
    for start in range(0, n, batch):
        store.upsert(pts(v, start, min(n, start + batch)))
        store.optimize()


def top(v: np.ndarray, q: np.ndarray, alive: list[int], k: int = 10) -> list[str]:
    """The exact top k, scored as the store does: vectors stored as float16."""
    v = v.astype(np.float16).astype(np.float32)
    q = q.astype(np.float16).astype(np.float32)
    q = q / np.linalg.norm(q)
    order = sorted(alive, key=lambda i: -float(v[i] @ q))[:k]
    return [point_id(f"h{i}", "m") for i in order]


def one_home(store: ShardedStore) -> None:
    """Every point in exactly one shard."""
    shards = [store._members[n] for n in store._m.names()]
    assert sum(s.count() for s in shards) == len(store.all_ids()) == store.count()


def test_sealed_merged_shards_answer_exactly_what_one_shard_would(tmp_path: Path) -> None:
    v = vectors(200)
    store = ShardedStore.open(tmp_path / "s", "t", DIM, rotate_at=12)  # merged up to 96
    fill(store, v, 200, batch=40)
    dead = list(range(0, 200, 11))
    store.delete([point_id(f"h{i}", "m") for i in dead])
    store.set_payload([point_id("h5", "m")], {"tags": ["kept"]})
    store.settle()
    roles = store.shard_names()
    assert not roles["frozen"] and len(roles["sealed"]) >= 2 and store.builds >= 2, roles
    assert all(store._members[n].count() <= store.merge_at for n in roles["sealed"])
    one_home(store)
    alive = [i for i in range(200) if i not in dead]
    assert store.count() == len(alive)
    for qi in (3, 77, 150, 199):
        assert [h.id for h in store.search(v[qi], limit=10)] == top(v, v[qi], alive)
        # a longer list asks each shard for a quarter first, then again where more may rank
        assert [h.id for h in store.search(v[qi], limit=60)] == top(v, v[qi], alive, 60)
    in_folder = store.search(v[3], limit=300, flt=SearchFilter(folder="/lib/1"))
    assert {h.id for h in in_folder} == {point_id(f"h{i}", "m") for i in alive if i % 4 == 1}
    store.flush()
    store.close()
    again = ShardedStore.open(tmp_path / "s", "t", DIM, rotate_at=12)
    try:
        assert again.shard_names() == roles and again.count() == len(alive)
        assert again.retrieve([point_id("h5", "m")])[0].payload["tags"] == ["kept"]
        assert [h.id for h in again.search(v[77], limit=10)] == top(v, v[77], alive)
    finally:
        again.close()


def test_fusion_across_shards_ranks_as_qdrant_does_in_one(tmp_path: Path) -> None:
    v = vectors(150, seed=1)
    one = EdgeStore.open(tmp_path / "one", "t", DIM)
    many = ShardedStore.open(tmp_path / "many", "t", DIM, rotate_at=10)
    one.upsert(pts(v, 0, 150))
    fill(many, v, 150, batch=30)
    many.settle()
    assert len(many.shard_names()["sealed"]) >= 2
    try:
        for qi in (0, 9, 123):
            q = {IMAGE: v[qi], CAPTION: v[(qi + 50) % 150]}
            want = one.fused_search(q, limit=8, thresholds={CAPTION: 0.1})
            got = many.fused_search(q, limit=8, thresholds={CAPTION: 0.1})
            assert [round(h.score, 5) for h in got] == [round(h.score, 5) for h in want]
            assert {h.id for h in got} == {h.id for h in want}  # (equal scores may come in either order)
            assert all(h.payload["content_hash"] for h in got)
    finally:
        one.close()
        many.close()


def test_writes_while_a_shard_is_built_are_in_what_replaces_it(tmp_path: Path) -> None:
    """Deletes, payloads and caption vectors written to a frozen shard after its export began are
    carried into the sealed shard built from it."""
    v = vectors(100, seed=2)
    store = ShardedStore.open(tmp_path / "s", "t", DIM, rotate_at=60)
    try:
        store.upsert(pts(v, 0, 80))
        store.optimize()
        assert store.shard_names()["frozen"]
        deadline = time.monotonic() + 30
        while store._job is None or store._job.proc is None:  # exported: the child has started
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with store._lock:  # the swap-in waits here while the child builds
            assert store._job is not None and store._job.proc.poll() is None
            store.delete([point_id("h1", "m")])
            store.set_payload([point_id("h2", "m")], {"tags": ["late"]})
            store.update_vectors([VectorPoint(point_id("h4", "m"), {CAPTION: v[90]})])
            store.delete_vectors([point_id("h3", "m")], [CAPTION])
            assert store._job is not None and len(store._job.dirty) == 4
        store.settle()
        assert not store.shard_names()["frozen"] and store.builds == 1
        got = {p.id: p for p in store.retrieve([point_id(f"h{i}", "m") for i in range(5)], with_vectors=True)}
        assert point_id("h1", "m") not in got and len(got) == 4
        assert got[point_id("h2", "m")].payload["tags"] == ["late"]
        assert np.allclose(got[point_id("h4", "m")].vectors[CAPTION], v[90], atol=1e-3)
        assert CAPTION not in got[point_id("h3", "m")].vectors
        one_home(store)
    finally:
        store.close()


def test_closing_mid_build_abandons_it_and_the_next_open_builds_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    v = vectors(100, seed=3)
    store = ShardedStore.open(tmp_path / "s", "t", DIM, rotate_at=50)
    store.upsert(pts(v, 0, 60))
    store.optimize()
    deadline = time.monotonic() + 30
    while store._job is None or store._job.proc is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    store.close()
    # abandoned, not failed: a command that closes mid-build says nothing of it
    assert store.last_error is None and not [r for r in caplog.records if r.levelname == "WARNING"]
    folder = tmp_path / "s"
    (folder / "s-000999").mkdir()  # a build's output, and a job folder, a crash left behind
    (folder / "job-000998").mkdir()
    again = ShardedStore.open(folder, "t", DIM, rotate_at=50)
    try:
        assert not (folder / "s-000999").exists() and not (folder / "job-000998").exists()
        assert again.shard_names()["frozen"] and again.count() == 60
        again.settle()
        assert not again.shard_names()["frozen"] and again.count() == 60
        assert sorted(p.name for p in folder.iterdir()) == sorted([MANIFEST, *again._m.names()])
    finally:
        again.close()


def test_a_one_shard_store_is_converted_also_after_a_crash_part_way(tmp_path: Path) -> None:
    v = vectors(50, seed=4)
    for crashed in (False, True):
        path = tmp_path / f"store{crashed}"
        old = EdgeStore.open(path, "t", DIM)  # as photoman stored vectors before shards
        old.upsert(pts(v, 0, 50))
        old.close()
        if crashed:  # moved into the conversion folder, killed before its manifest was written
            tmp = path.with_name(path.name + ".sharding")
            tmp.mkdir()
            os.rename(path, tmp / "live-000000")
        store = ShardedStore.open(path, "t", DIM, rotate_at=1000)
        try:
            assert store.shard_names() == {"live": ["live-000001"], "frozen": ["live-000000"], "sealed": []}
            assert store.count() == 50
            store.settle()
            assert store.shard_names()["sealed"] and store.count() == 50
            assert [h.id for h in store.search(v[7], limit=5)] == top(v, v[7], list(range(50)), 5)
        finally:
            store.close()


def test_a_large_library_builds_graphs_and_still_finds_the_nearest(tmp_path: Path) -> None:
    v = vectors(400, seed=5)
    store = ShardedStore.open(tmp_path / "s", "t", DIM, rotate_at=50, approximate_from=150)
    try:
        fill(store, v, 400, batch=50)
        store.settle()
        sealed = [store._members[n] for n in store.shard_names()["sealed"]]
        assert any(s.approximate for s in sealed) and all(s.approximate for s in sealed if s.count() >= 100)
        hits = sum(
            len(set(h.id for h in store.search(v[q], limit=10)) & set(top(v, v[q], list(range(400)))))
            for q in range(0, 400, 20)
        )
        assert hits / 200 >= 0.95
        one_home(store)
    finally:
        store.close()


def test_one_process_at_a_time(tmp_path: Path) -> None:
    store = ShardedStore.open(tmp_path / "s", "t", DIM)
    try:
        with pytest.raises(StoreBusyError):
            ShardedStore.open(tmp_path / "s", "t", DIM)
    finally:
        store.close()


WRITER = """
import sys, numpy as np
sys.path.insert(0, {tests!r})
from test_shards import pts, vectors
from photoman.vectors.shards import ShardedStore
v = vectors(2000, seed=6)
store = ShardedStore.open({path!r}, "t", 16, rotate_at=30)
for start in range(0, 2000, 10):
    store.upsert(pts(v, start, start + 10))
    print(start + 10, flush=True)
    store.optimize()
"""


def test_kill_9_while_shards_rotate_build_and_swap_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """A writer killed at random moments (mid-export, mid-build, mid-swap): every point it was told
    was written is there once, nothing else is."""
    path = tmp_path / "s"
    script = WRITER.format(tests=str(Path(__file__).parent), path=str(path))
    rng = np.random.default_rng(7)
    written = 0
    for _ in range(3):
        cmd = [sys.executable, "-c", textwrap.dedent(script)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        wait = float(rng.uniform(0.5, 1.5))
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            written = max(written, int(line))
        os.kill(proc.pid, signal.SIGKILL)
        for line in proc.stdout:  # told before the kill
            written = max(written, int(line))
        proc.wait()
        store = ShardedStore.open(path, "t", DIM, rotate_at=30)
        try:
            ids = store.all_ids()
            assert {point_id(f"h{i}", "m") for i in range(written)} <= ids, written
            assert ids <= {point_id(f"h{i}", "m") for i in range(written + 10)}
            one_home(store)
            assert json.loads((path / MANIFEST).read_text())["live"] in os.listdir(path)
        finally:
            store.close()
    assert written > 60  # some rotations happened


def test_a_failed_build_is_said_retried_and_searches_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import photoman.vectors.shards as shards

    v = vectors(60, seed=8)
    store = ShardedStore.open(tmp_path / "s", "t", DIM, rotate_at=40)
    try:
        monkeypatch.setattr(shards.sys, "executable", "/bin/false")  # the child fails at once
        store.upsert(pts(v, 0, 50))
        with pytest.raises(RuntimeError, match="shard build exited with status 1"):
            store.settle(timeout=30)
        assert store.last_error and store.shard_names()["frozen"] and not store.shard_names()["sealed"]
        assert [h.id for h in store.search(v[3], limit=3)] == top(v, v[3], list(range(50)), 3)
        assert not [p for p in (tmp_path / "s").iterdir() if p.name.startswith(("job-", "s-"))]
        store.optimize()
        assert not store.building  # not before a minute has passed
        monkeypatch.undo()
        store._retry_at = 0.0  # (a minute later)
        store.settle(timeout=60)
        assert store.last_error is None and store.shard_names()["sealed"] and store.count() == 50
    finally:
        store.close()


def test_all_ids_sees_the_points_of_a_build_that_swaps_in_while_it_reads(tmp_path: Path) -> None:
    """Reconcile reads every id while builds may swap in: missing a moved shard's points had it
    embed them all again."""
    v = vectors(70, seed=9)
    store = ShardedStore.open(tmp_path / "s", "t", DIM, rotate_at=30)
    try:
        store.upsert(pts(v, 0, 30))
        store.settle()  # a sealed shard
        store.upsert(pts(v, 30, 60))
        store._rotate()  # a frozen shard, not built yet
        store.upsert(pts(v, 60, 70))
        real, entered = store._lock, [0]

        class SwapOnThirdRead:  # all_ids' read of the frozen shard comes after its build swapped in
            def __enter__(self) -> None:
                entered[0] += 1
                if entered[0] == 3:
                    store.settle()
                real.__enter__()

            def __exit__(self, *exc: object) -> None:
                real.__exit__(*exc)

        store._lock = SwapOnThirdRead()  # type: ignore[assignment]
        ids = store.all_ids()
        store._lock = real
        assert store.builds == 2 and len(ids) == store.count() == 70  # (the second build swapped in mid-read)
    finally:
        store.close()
