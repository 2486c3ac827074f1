"""One suite, both backends: embedded Qdrant Edge and qdrant-client (the calls a server receives)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from photoman.errors import StoreBusyError
from photoman.vectors import IMAGE, SearchFilter, VectorPoint, collection_name, point_id
from photoman.vectors.edge import EdgeStore
from photoman.vectors.server import ServerStore

DIM = 8


@pytest.fixture(params=["edge", "server"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EdgeStore | ServerStore]:
    if request.param == "edge":
        s = EdgeStore.open(tmp_path / "shard", "test", DIM)
    else:
        s = ServerStore.connect(":memory:", "test", DIM)
    yield s
    s.close()


def unit(i: int) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[i] = 1
    v[(i + 1) % DIM] = 0.2
    return v / np.linalg.norm(v)


def points() -> list[VectorPoint]:
    out = []
    for i in range(6):
        out.append(
            VectorPoint(
                point_id(f"hash{i}", "m"),
                {IMAGE: unit(i)},
                {
                    "content_hash": f"hash{i}",
                    "roots": ["/lib"],
                    "folders": ["/lib", f"/lib/{'a' if i % 2 else 'b'}"],
                    "taken_at": f"201{i}-06-01T12:00:00Z",
                    "camera_terms": ["canon", "s40"] if i < 3 else ["d50", "nikon"],
                    "tags": ["dog", "beach"] if i % 3 == 0 else ["cat"],
                    "location": {"lat": 48.85 + i, "lon": 2.35} if i < 5 else None,
                    "format": "jpeg" if i < 4 else "png",
                },
            )
        )
    return out


def test_upsert_search_count_ids(store: EdgeStore | ServerStore) -> None:
    pts = points()
    store.upsert(pts)
    store.upsert(pts)  # idempotent
    assert store.count() == 6
    assert store.all_ids() == {p.id for p in pts}
    # the stores keep float16 vectors: scores and returned vectors are exact to ~1e-4
    hits = store.search(unit(2), limit=3)
    assert hits[0].id == pts[2].id and hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert hits[0].payload["content_hash"] == "hash2"
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all(-1.0 <= h.score <= 1.0 for h in store.search(unit(0), limit=6))  # clamped cosines
    bare = store.search(unit(2), limit=3, with_payload=False)  # the cheap form the cutoff pool uses
    assert [(h.id, h.score) for h in bare] == [(h.id, h.score) for h in hits]
    assert all(h.payload == {} for h in bare)


@pytest.mark.parametrize(
    "flt, expected",
    [
        (SearchFilter(folder="/lib/a"), {1, 3, 5}),
        (SearchFilter(camera=["nikon", "d50"]), {3, 4, 5}),
        (SearchFilter(camera=["canon", "d50"]), set()),
        (SearchFilter(tags=["dog"]), {0, 3}),
        (SearchFilter(tags=["dog", "cat"]), set()),
        (SearchFilter(near=(49.85, 2.35, 20.0)), {1}),
        (SearchFilter(near=(49.85, 2.35, 120.0)), {0, 1, 2}),
        (SearchFilter(exclude_roots=["/lib"]), set()),
        (SearchFilter(formats=["png"]), {4, 5}),
        (SearchFilter(since=datetime(2012, 1, 1), until=datetime(2014, 12, 31)), {2, 3, 4}),
        (SearchFilter(roots=["/elsewhere"]), set()),
        (SearchFilter(ids=[point_id("hash0", "m")]), {0}),
    ],
)
def test_filters_run_inside_qdrant(
    store: EdgeStore | ServerStore, flt: SearchFilter, expected: set[int]
) -> None:
    pts = points()
    store.upsert(pts)
    hits = store.search(unit(0), limit=10, flt=flt)
    assert {h.id for h in hits} == {pts[i].id for i in expected}


def test_set_payload_retrieve_delete(store: EdgeStore | ServerStore) -> None:
    pts = points()
    store.upsert(pts)
    store.set_payload([pts[0].id], {"folders": ["/moved"]})
    got = store.retrieve([pts[0].id, point_id("nope", "m")], with_vectors=True)
    assert len(got) == 1 and got[0].payload["folders"] == ["/moved"]
    assert got[0].payload["content_hash"] == "hash0"
    assert np.allclose(got[0].vectors[IMAGE], unit(0), atol=1e-3)
    store.delete([pts[0].id, pts[1].id, point_id("unknown", "m")])
    assert store.count() == 4 and pts[0].id not in store.all_ids()


def test_edge_persists_and_admits_one_opener(tmp_path: Path) -> None:
    s = EdgeStore.open(tmp_path / "shard", "test", DIM)
    s.upsert(points())
    with pytest.raises(StoreBusyError, match="in use by another process"):
        EdgeStore.open(tmp_path / "shard", "test", DIM)
    s.close()
    again = EdgeStore.open(tmp_path / "shard", "test", DIM)
    assert again.count() == 6
    config = json.loads((tmp_path / "shard" / "edge_config.json").read_text())
    assert {v["datatype"] for v in config["vectors"].values()} == {"float16"}  # half the bytes to scan
    assert again.disk_bytes() < 20_000_000  # real blocks, not the WAL's sparse preallocation
    again.close()


def test_payload_indexes_live_on_disk_and_older_ones_are_rebuilt(tmp_path: Path) -> None:
    """In-memory payload indexes are rebuilt at every load (seconds at a million photos); photoman's are
    on disk, and a store made with in-memory ones gets them rebuilt on disk once, filters intact."""
    import qdrant_edge as qe

    from photoman.vectors.base import INDEXED_FIELDS

    s = EdgeStore.open(tmp_path / "shard", "test", DIM)
    s.upsert(points())
    s._shard.update(qe.UpdateOperation.delete_field_index("folders"))  # as an older photoman made it
    s._shard.update(qe.UpdateOperation.create_field_index("folders", qe.PayloadSchemaType.Keyword))
    assert s._shard.info().payload_schema["folders"].params is None
    s.close()
    again = EdgeStore.open(tmp_path / "shard", "test", DIM)
    schema = again._shard.info().payload_schema
    assert set(schema) == set(INDEXED_FIELDS) and all(i.params.on_disk for i in schema.values())
    hits = again.search(unit(0), IMAGE, 10, SearchFilter(folder="/lib/a"))
    assert len(hits) == 3 and all("/lib/a" in h.payload["folders"] for h in hits)
    again.close()


def old_points() -> list[VectorPoint]:
    """points() as a photoman before payload format 2 wrote them: the content hash under "hash"."""
    out = points()
    for p in out:
        p.payload = {("hash" if k == "content_hash" else k): v for k, v in p.payload.items()}
    return out


def write_format_1_store(kind: str, where: Path) -> None:
    """A store as an older photoman left it: its payloads written through the store API with the old
    key, and no payload format recorded (it wrote none)."""
    from photoman.vectors.edge import FORMAT_FILE

    if kind == "edge":
        s = EdgeStore.open(where, "test", DIM)
        s.upsert(old_points())
        s.close()
        (where / FORMAT_FILE).unlink()
        return
    from qdrant_client import QdrantClient, models

    client = QdrantClient(path=str(where))  # qdrant-client's local mode, on disk: reopened below
    params = models.VectorParams(size=DIM, distance=models.Distance.COSINE)
    client.create_collection("test", vectors_config={IMAGE: params, "caption": params})  # no metadata
    ServerStore(client, "test", DIM).upsert(old_points())
    client.close()


def open_store_at(kind: str, where: Path) -> EdgeStore | ServerStore:
    if kind == "edge":
        return EdgeStore.open(where, "test", DIM)
    return ServerStore.connect(str(where), "test", DIM)


@pytest.mark.parametrize("kind", ["edge", "server"])
def test_a_store_with_the_old_hash_key_is_upgraded_once(kind: str, tmp_path: Path) -> None:
    """An older photoman kept the content hash under "hash": the first open renames it "content_hash"
    on every point (ids, vectors, filters untouched) and records the payload format, so later opens
    rewrite nothing."""
    where = tmp_path / "store"
    write_format_1_store(kind, where)
    s = open_store_at(kind, where)
    pts = points()
    assert s.count() == 6 and s.all_ids() == {p.id for p in pts}
    stored = {p.id: p for p in s.retrieve([p.id for p in pts], with_vectors=True)}
    assert {i: p.payload for i, p in stored.items()} == {p.id: p.payload for p in pts}  # today's payloads
    assert all(np.allclose(stored[p.id].vectors[IMAGE], unit(i), atol=1e-3) for i, p in enumerate(pts))
    hits = s.search(unit(1), limit=10, flt=SearchFilter(folder="/lib/a"))
    assert {h.id for h in hits} == {pts[i].id for i in (1, 3, 5)}
    assert hits[0].payload["content_hash"] == "hash1" and "hash" not in hits[0].payload
    s.set_payload([pts[0].id], {"hash": "left alone"})  # recorded: a later open does not look again
    s.close()
    again = open_store_at(kind, where)
    assert again.retrieve([pts[0].id])[0].payload["hash"] == "left alone"
    again.close()


_UPGRADE_KILLED = """
import os, sys
from pathlib import Path
from photoman.vectors import edge
edge.UPGRADE_BATCH = 2
real, calls = edge.EdgeStore._update, [0]
def dying(self, op):
    real(self, op)
    calls[0] += 1
    if calls[0] == 4:  # batch 1 done (2 sets, 1 delete), batch 2: one point set, not yet deleted
        os._exit(9)
edge.EdgeStore._update = dying
edge.EdgeStore.open(Path(sys.argv[1]), "test", int(sys.argv[2]))
"""


def test_edge_upgrade_killed_part_way_upgrades_again_and_loses_no_hash(tmp_path: Path) -> None:
    """A process killed in the middle of the upgrade leaves points of both formats (and one with both
    keys) and no format record: every point still yields its hash to readers (payload_hash), and the
    next open finishes the upgrade."""
    import subprocess
    import sys

    import qdrant_edge as qe

    from photoman.vectors import payload_hash
    from photoman.vectors.edge import FORMAT_FILE

    where = tmp_path / "store"
    write_format_1_store("edge", where)
    killed = subprocess.run([sys.executable, "-c", _UPGRADE_KILLED, str(where), str(DIM)], check=False)
    assert killed.returncode == 9 and not (where / FORMAT_FILE).exists()
    shard = qe.EdgeShard.load(str(where))  # as it was left, without photoman's open (which upgrades)
    recs, _ = shard.scroll(qe.ScrollRequest(limit=100, with_payload=True, with_vector=False))
    shard.close()
    keys = sorted(tuple(sorted({"hash", "content_hash"} & set(r.payload))) for r in recs)
    assert keys == [("content_hash",)] * 2 + [("content_hash", "hash")] + [("hash",)] * 3
    assert sorted(payload_hash(r.payload) for r in recs) == [f"hash{i}" for i in range(6)]
    s = EdgeStore.open(where, "test", DIM)
    assert {p.id: p.payload for p in s.retrieve(s.all_ids())} == {p.id: p.payload for p in points()}
    s.close()
    assert (where / FORMAT_FILE).exists()


def test_edge_upgrade_waits_while_the_disk_is_nearly_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rewriting payloads writes new pages, which a nearly full disk may not back (SIGBUS under a memory
    map): the upgrade is put off, readers take the old key meanwhile, and it runs once there is room."""
    from photoman import diskspace
    from photoman.vectors import payload_hash
    from photoman.vectors.edge import BACK_WHEN_FREE_BELOW_MB

    where = tmp_path / "store"
    write_format_1_store("edge", where)
    monkeypatch.setattr(diskspace, "free_mb", lambda _path: BACK_WHEN_FREE_BELOW_MB - 1.0)
    s = EdgeStore.open(where, "test", DIM)
    hits = s.search(unit(2), limit=1)
    assert "hash" in hits[0].payload and payload_hash(hits[0].payload) == "hash2"
    s.close()
    monkeypatch.undo()
    s = EdgeStore.open(where, "test", DIM)
    assert s.search(unit(2), limit=1)[0].payload["content_hash"] == "hash2"
    s.close()


def test_names_carry_model_and_size() -> None:
    assert point_id("h", "a") == point_id("h", "a") != point_id("h", "b")
    name = collection_name("laion/CLIP-ViT-B-32-laion2B-s34B-b79K", 512)
    assert name.startswith("photoman-clip-vit-b-32-laion2b-s34b-b79k-") and name.endswith("-512")
    assert collection_name("openai/clip-vit-base-patch32", 512) != name


def test_caption_vectors_update_alone_and_fuse_by_rank(store: EdgeStore | ServerStore) -> None:
    from photoman.vectors import CAPTION

    pts = points()
    for i, p in enumerate(pts[:3]):
        p.vectors[CAPTION] = unit((i + 3) % DIM)  # three points have captions
    store.upsert(pts)
    assert [h.id for h in store.search(unit(3), using=CAPTION, limit=10)][0] == pts[0].id
    assert len(store.search(unit(3), using=CAPTION, limit=10)) == 3  # points without captions are absent
    # re-embedding only the caption leaves the image vector as it was
    store.update_vectors([VectorPoint(pts[5].id, {CAPTION: unit(3)})])
    got = store.retrieve([pts[5].id], with_vectors=True)[0]
    assert np.allclose(got.vectors[IMAGE], unit(5), atol=1e-3)
    assert np.allclose(got.vectors[CAPTION], unit(3), atol=1e-3)
    store.delete_vectors([pts[0].id], [CAPTION])
    assert pts[0].id not in {h.id for h in store.search(unit(3), using=CAPTION, limit=10)}
    # RRF: point 3 is first by image, point 5 first by caption; each ranks second in the other
    fused = store.fused_search({IMAGE: unit(3), CAPTION: unit(3)}, limit=3)
    ranks_img = [h.id for h in store.search(unit(3), limit=20)]
    ranks_cap = [h.id for h in store.search(unit(3), using=CAPTION, limit=20)]

    def rrf(pid: str) -> float:
        return sum(1 / (60 + r.index(pid) + 1) for r in (ranks_img, ranks_cap) if pid in r)

    expected = sorted(set(ranks_img) | set(ranks_cap), key=rrf, reverse=True)[:3]
    assert [h.id for h in fused] == expected
    assert [h.score for h in fused] == sorted((h.score for h in fused), reverse=True)


def test_edge_seals_segments_and_still_searches_exactly(tmp_path: Path) -> None:
    """optimize() cuts the shard into segments scanned in parallel; results stay those of a full scan."""
    dim, n = 64, 3000
    rng = np.random.default_rng(7)
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = [point_id(f"h{i}", "m") for i in range(n)]
    # segment_kb=64: ~500 float16 vectors of 64 dims per sealed segment
    s = EdgeStore.open(tmp_path / "shard", "test", dim, segment_kb=64)
    for start in range(0, n, 250):  # as the pipeline does: a batch written, then optimize()
        s.upsert([VectorPoint(ids[i], {IMAGE: vecs[i]},
                              {"content_hash": f"h{i}", "roots": ["/a" if i % 2 else "/b"]})
                  for i in range(start, start + 250)])  # fmt: skip
        s.optimize()
    s.delete(ids[:10])
    s.optimize()
    assert s._shard.info().segments_count >= 4
    stored = vecs.astype(np.float16).astype(np.float32)
    for q in rng.standard_normal((5, dim)).astype(np.float32):
        q /= np.linalg.norm(q)
        order = [i for i in np.argsort(-(stored @ q)) if i >= 10]
        assert [h.id for h in s.search(q, limit=20)] == [ids[i] for i in order[:20]]
        odd = [i for i in order if i % 2][:5]
        assert [h.id for h in s.search(q, limit=5, flt=SearchFilter(roots=["/a"]))] == [ids[i] for i in odd]
    s.close()
    again = EdgeStore.open(tmp_path / "shard", "test", dim, segment_kb=64)
    assert again.count() == n - 10 and again.all_ids() == set(ids[10:])
    again.close()


def test_edge_opens_a_float32_shard_made_before_the_segment_policy(tmp_path: Path) -> None:
    import qdrant_edge as qe

    def params() -> qe.EdgeVectorParams:
        return qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Cosine)

    config = qe.EdgeConfig(vectors={IMAGE: params(), "caption": params()})
    qe.EdgeShard.create(str(tmp_path / "shard"), config).close()
    s = EdgeStore.open(tmp_path / "shard", "test", DIM)
    s.upsert(points())
    s.optimize()
    assert s.search(unit(2), limit=1)[0].id == point_id("hash2", "m")
    s.close()
    config = json.loads((tmp_path / "shard" / "edge_config.json").read_text())
    assert "datatype" not in config["vectors"][IMAGE]  # its vectors stay float32
    assert config["optimizers"]["indexing_threshold"] > 0 and config["hnsw_config"]["m"] == 0
