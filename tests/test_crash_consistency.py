"""A process killed between writing the vector store and committing the catalog (or the other way
round) leaves the two in step again on the next open: the catalog is the truth, and payloads an
unfinished operation touched are rewritten from it (catalog/pending.py). Each test kills a real
`photoman` process at the worst moment of one operation."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from typer.testing import CliRunner

from photoman.catalog.payload import payloads_for_hashes
from photoman.cli import app
from photoman.config import Settings
from photoman.library import Library

runner = CliRunner()

# photoman, killed (os._exit, as kill -9) right after the first call of KILL that follows a call of ARM
_KILLED = """
import importlib, os, sys

def patch(spec, after):
    mod, attr = spec.split(":")
    owner = importlib.import_module(mod)
    *path, name = attr.split(".")
    for p in path:
        owner = getattr(owner, p)
    orig = getattr(owner, name)
    def wrapper(*a, **k):
        out = orig(*a, **k)
        after()
        return out
    setattr(owner, name, wrapper)

armed = []
patch(sys.argv[1], lambda: armed.append(True))
patch(sys.argv[2], lambda: armed and os._exit(137))
sys.argv = ["photoman", *sys.argv[3:]]
from photoman.cli import main
sys.exit(main())
"""


def killed(arm: str, kill: str, *args: str) -> None:
    res = subprocess.run([sys.executable, "-c", _KILLED, arm, kill, *args], capture_output=True, text=True)
    assert res.returncode == 137, res.stderr  # it really died at that moment


def run(*args: str):  # noqa: ANN201
    res = runner.invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res


def indexed_with_a_copy(library_dir: Path, folder: str, name: str | None = None) -> tuple[Path, Path]:
    """The library indexed with a copy of its first photo in a new subfolder (two paths, one point)."""
    sub = library_dir / folder
    sub.mkdir()
    first = sorted(p for p in library_dir.iterdir() if p.is_file())[0]
    shutil.copy(first, sub / (name or first.name))
    run("index", str(library_dir))
    return sub, first


def out_of_step(settings: Settings) -> dict[str, tuple[object, object]]:
    """Points whose payload in the store differs from what the catalog says it should be (looked at
    with the mending that opening the store does turned off: the user's own command must have done it)."""
    with mock.patch.object(Library, "_may_mend", return_value=False), Library(settings) as lib:
        points = {p.id: p.payload for p in lib.store.retrieve(sorted(lib.store.all_ids()))}
        with lib.catalog.session() as s:
            want = payloads_for_hashes(s, [str(p["content_hash"]) for p in points.values()], lib.model_id)
    return {
        pid: (payload, want.get(str(payload["content_hash"])))
        for pid, payload in points.items()
        if {k: payload.get(k) for k in want.get(str(payload["content_hash"]), {})}
        != want.get(str(payload["content_hash"]))
    }


def test_a_tag_run_killed_between_the_store_and_the_catalog_is_mended(
    cli_env: Settings, library_dir: Path
) -> None:
    run("index", str(library_dir))
    run("tag", "--min-prob", "0", "--top-k", "5")
    assert not out_of_step(cli_env)
    # a retag keeping one tag each: killed once the first photo's new tags are in the store, before
    # the catalog commits (the old code left that photo's payload with 1 tag, the catalog with 5, and
    # `find --tag` missing it for 4 labels until the next --retag)
    killed("photoman.catalog.payload:payloads_for_hashes", "photoman.vectors.edge:EdgeStore.set_payload",
           "--no-daemon", "tag", "--retag", "--min-prob", "0", "--top-k", "1")  # fmt: skip
    run("tag")  # what a user runs next: nothing to tag, but the store is mended on open
    assert not out_of_step(cli_env)
    tags = json.loads(run("tags", "--json").stdout)
    label = max(tags, key=lambda k: tags[k])
    found = json.loads(run("find", "a photo", "--all", "--json", "-n", "100", "--tag", label).stdout)
    assert len(found) + sum(len(f.get("duplicates") or []) for f in found) == tags[label]


def test_a_relocation_killed_after_the_store_moved_is_undone_in_the_store_too(
    cli_env: Settings, library_dir: Path, tmp_path: Path
) -> None:
    run("index", str(library_dir))
    moved = tmp_path / "moved"
    shutil.move(str(library_dir), str(moved))
    # killed after the store has flushed the new folders, before the catalog commits them
    killed("photoman.catalog.payload:payloads_for_hashes", "photoman.vectors.edge:EdgeStore.flush",
           "--no-daemon", "roots", "relocate", str(library_dir), str(moved))  # fmt: skip
    shutil.move(str(moved), str(library_dir))  # the user puts the folder back: the catalog's place
    found = json.loads(run("find", "a photo", "--all", "--in", str(library_dir), "--json").stdout)
    assert len(found) == 10  # the old code found none: the store had them in the other place
    assert not out_of_step(cli_env)


def test_photos_forgotten_by_a_run_killed_before_the_store_followed_leave_no_stale_folders(
    cli_env: Settings, library_dir: Path, tmp_path: Path
) -> None:
    copy, _ = indexed_with_a_copy(library_dir, "copies")
    shutil.rmtree(copy)
    # the catalog has dropped the copy; killed before the store drops its folder from the payload
    killed("photoman.catalog.payload:payloads_for_hashes", "photoman.catalog.payload:payloads_for_hashes",
           "--no-daemon", "index", str(library_dir))  # fmt: skip
    run("status")
    assert not out_of_step(cli_env)
    assert json.loads(run("find", "a photo", "--all", "--in", str(copy), "--json").stdout) == []


def test_a_changed_file_whose_run_was_killed_before_its_end_leaves_no_stale_copy(
    cli_env: Settings, library_dir: Path, photos_src: Path
) -> None:
    sub, first = indexed_with_a_copy(library_dir, "sub", "copy.jpg")
    other = next(p for p in sorted(photos_src.iterdir()) if p.suffix == ".jpg" and p.name != first.name)
    shutil.copy(other, sub / "copy.jpg")  # edited: new content; the old point keeps only `first`
    # killed after the batch committed, before the run's last step rewrote the old point's payload
    killed("photoman.catalog.payload:payloads_for_hashes", "photoman.indexing.pipeline:_settle_removals",
           "--no-daemon", "index", str(library_dir))  # fmt: skip
    found = json.loads(run("find", "a photo", "--all", "--in", str(sub), "--json").stdout)
    assert [r["path"] for r in found] == [str(sub / "copy.jpg")]  # not `first`, outside that folder
    assert not out_of_step(cli_env)


def test_records_an_operation_left_are_mended_by_a_process_that_keeps_the_store_open(
    cli_env: Settings, library_dir: Path
) -> None:
    """The daemon's case: an operation failed halfway (or a writer elsewhere died) while the store stays
    open; `mend` (idle loop, lease takeover) rewrites its points, never those of one still running."""
    from photoman.catalog import pending

    run("index", str(library_dir))
    with Library(cli_env) as lib:
        pid = sorted(lib.store.all_ids())[0]
        digest = lib.store.retrieve([pid])[0].payload["content_hash"]
        lib.store.set_payload([pid], {"folders": ["/elsewhere"]})  # written, then the operation failed
        dead = pending.new_token()
        pending.mark(lib.catalog, [digest], lib.model_id, dead)
        pending.release(dead)
        with pending.payload_writes(lib) as running:  # another operation is under way: left alone
            running.add(["f" * 64])
            lib.mend()
            assert lib.store.retrieve([pid])[0].payload["folders"] == ["/elsewhere"]
        lib.mend()
        assert lib.store.retrieve([pid])[0].payload["folders"] != ["/elsewhere"]
    assert not out_of_step(cli_env)
    with Library(cli_env) as lib, lib.catalog.session() as s:
        assert s.query(pending.PayloadPending).count() == 0


def test_a_copy_whose_run_was_killed_before_its_row_committed_leaves_no_stale_folder(
    cli_env: Settings, library_dir: Path
) -> None:
    run("index", str(library_dir))
    copy = library_dir / "copies"
    copy.mkdir()
    shutil.copy(sorted(p for p in library_dir.iterdir() if p.is_file())[0], copy)
    # a known content in a new place: the store's payload gains the folder, then a kill before the
    # catalog's row for the copy commits
    killed("photoman.catalog.payload:payloads_for_hashes", "photoman.vectors.edge:EdgeStore.set_payload",
           "--no-daemon", "index", str(library_dir))  # fmt: skip
    shutil.rmtree(copy)  # gone before the next run: the catalog never had it
    run("index", str(library_dir))
    # the old code found the photo there for good: nothing in the catalog named the point to rewrite
    assert json.loads(run("find", "a photo", "--all", "--in", str(copy), "--json").stdout) == []
    assert not out_of_step(cli_env)


def caption_cosine(settings: Settings, path: Path) -> float | None:
    """How close the point's caption vector is to the catalog's caption, embedded now (None: no vector),
    looked at with the store's mending turned off."""
    from sqlalchemy import select

    from photoman.catalog.models import Photo
    from photoman.vectors import CAPTION, point_id

    with mock.patch.object(Library, "_may_mend", return_value=False), Library(settings) as lib:
        with lib.catalog.session() as s:
            row = s.scalar(select(Photo).where(Photo.path == str(path)))
            digest, caption = row.content_hash, row.caption
        vectors = lib.store.retrieve([point_id(digest, lib.model_id)], with_vectors=True)[0].vectors
        if CAPTION not in vectors:
            return None
        want = lib.encoder.encode_texts([caption])[0]
    return float(vectors[CAPTION] @ want / (np.linalg.norm(vectors[CAPTION]) * np.linalg.norm(want)))


def test_a_caption_edit_killed_halfway_leaves_the_caption_vector_and_the_catalog_in_step(
    cli_env: Settings, library_dir: Path
) -> None:
    run("index", str(library_dir))
    photo = sorted(p for p in library_dir.iterdir() if p.is_file())[0]
    run("caption", str(photo), "a red bicycle leaning on a fence")
    assert caption_cosine(cli_env, photo) > 0.999
    # killed once the store has flushed the new caption's vector: the old code had not committed the
    # catalog yet, so the store searched a caption the catalog (and `caption`) never had
    killed("photoman.catalog.payload:caption_vectors", "photoman.vectors.edge:EdgeStore.flush",
           "--no-daemon", "caption", str(photo), "two dogs on a frosty field")  # fmt: skip
    run("status")  # any command that opens the store mends it
    assert caption_cosine(cli_env, photo) > 0.999
    # killed with the catalog committed and the store not yet told: the next open re-embeds it
    killed("photoman.catalog.payload:caption_vectors", "photoman.captions.edit:point_id",
           "--no-daemon", "caption", str(photo), "a lighthouse at dusk")  # fmt: skip
    assert caption_cosine(cli_env, photo) < 0.999  # (the kill really came between the two)
    run("status")
    assert caption_cosine(cli_env, photo) > 0.999
    assert json.loads(run("caption", str(photo), "--json").stdout)["caption"] == "a lighthouse at dusk"
    # and cleared: the vector goes with it
    killed("photoman.catalog.payload:caption_vectors", "photoman.captions.edit:point_id",
           "--no-daemon", "caption", str(photo), "--clear")  # fmt: skip
    run("status")
    assert caption_cosine(cli_env, photo) is None
    assert not out_of_step(cli_env)


def test_a_captioned_copy_whose_run_was_killed_leaves_no_caption_the_catalog_never_had(
    cli_env: Settings, library_dir: Path
) -> None:
    """From a review: a batch also rewrites a known content's caption vector before its rows commit."""
    run("index", str(library_dir))
    first = sorted(p for p in library_dir.iterdir() if p.is_file())[0]
    assert caption_cosine(cli_env, first) is None  # no caption of its own
    copy = library_dir / "copies"
    copy.mkdir()
    shutil.copy(first, copy)
    (copy / (first.name + ".txt")).write_text("a lighthouse at dusk")  # the copy's sidecar caption
    killed("photoman.catalog.payload:payloads_for_hashes", "photoman.vectors.edge:EdgeStore.update_vectors",
           "--no-daemon", "index", str(library_dir))  # fmt: skip
    shutil.rmtree(copy)
    run("index", str(library_dir))
    # the old code kept the copy's caption vector on the point for good (only the payload was mended)
    assert caption_cosine(cli_env, first) is None
    assert not out_of_step(cli_env)


def test_a_caption_record_waits_for_a_model_while_its_payload_is_mended_at_once(
    cli_env: Settings, library_dir: Path
) -> None:
    from photoman.catalog import pending
    from photoman.catalog.payload import caption_vectors

    run("index", str(library_dir))
    with Library(cli_env) as lib:
        pid = sorted(lib.store.all_ids())[0]
        digest = lib.store.retrieve([pid])[0].payload["content_hash"]
        lib.store.set_payload([pid], {"folders": ["/elsewhere"]})
        dead = pending.new_token()
        with lib.catalog.session() as s:
            pending.mark_in(s, [digest], lib.model_id, dead, caption=True)
        pending.release(dead)

        def no_model(*_: object) -> dict:
            raise OSError("no weights on this machine")

        pending.replay(lib.catalog, lib.store, lib.model_id, caption_vectors=no_model)
        assert lib.store.retrieve([pid])[0].payload["folders"] != ["/elsewhere"]  # mended anyway
        with lib.catalog.session() as s:
            assert s.query(pending.PayloadPending).filter_by(caption=True).count() == 1  # kept for later
        embed = lambda s, h: caption_vectors(lib, s, h)  # noqa: E731
        pending.replay(lib.catalog, lib.store, lib.model_id, caption_vectors=embed)
        with lib.catalog.session() as s:
            assert s.query(pending.PayloadPending).count() == 0


def test_a_caption_edited_after_a_killed_switch_reaches_the_new_collection(
    cli_env: Settings, library_dir: Path, wide_model: Path
) -> None:
    """From a crash hunt: the resumed switch kept the caption vector it had built before the edit."""
    run("index", str(library_dir))
    photo = sorted(p for p in library_dir.iterdir() if p.is_file())[0]
    # killed once a few batches are in the new collection (this photo, first by path, among them)
    killed("photoman.catalog.payload:payloads_for_hashes", "photoman.vectors.edge:EdgeStore.upsert",
           "--no-daemon", "models", "use", str(wide_model))  # fmt: skip
    run("caption", str(photo), "a cup of coffee on a saucer")
    assert f"switched to {wide_model}" in run("--no-daemon", "models", "use", str(wide_model)).stdout
    assert caption_cosine(cli_env, photo) > 0.999  # the old code: None, for good
    assert not out_of_step(cli_env)


def test_a_drop_killed_halfway_leaves_no_tags_to_come_back(
    cli_env: Settings, library_dir: Path, wide_model: Path
) -> None:
    """From a crash hunt: a drop killed after deleting the collection left the model's tags; a second
    drop refused ("no collection") and a switch back brought back the tags the drop was to remove."""
    from sqlalchemy import func, select

    from photoman.catalog.models import Tag

    old = cli_env.model
    run("index", str(library_dir))
    run("tag", "--min-prob", "0", "--top-k", "3")
    run("--no-daemon", "models", "use", str(wide_model))
    killed("photoman.vectors.base:drop_collections", "photoman.vectors.base:drop_collections",
           "--no-daemon", "models", "drop", old)  # fmt: skip
    with Library(cli_env) as lib, lib.catalog.session() as s:
        assert s.scalar(select(func.count()).select_from(Tag).where(Tag.model_id == old)) == 0
    run("--no-daemon", "models", "use", old)  # back to it: rebuilt, without the dropped tags
    assert json.loads(run("tags", "--json").stdout) == {}


def test_a_moved_photo_keeps_its_users_caption_and_a_gone_caption_leaves_the_store(
    cli_env: Settings, library_dir: Path
) -> None:
    """From a crash hunt (no crash needed): a photo the user captioned, moved, came back with no
    caption (what the user typed was lost with the old row) while its point kept the caption vector;
    a removed copy whose sidecar gave the point its caption left that vector behind too."""
    run("index", str(library_dir))
    photos = sorted(p for p in library_dir.iterdir() if p.is_file())
    run("caption", str(photos[0]), "a red bicycle leaning on a fence")
    (library_dir / "moved").mkdir()
    moved = library_dir / "moved" / photos[0].name
    photos[0].rename(moved)
    run("index", str(library_dir))
    info = json.loads(run("caption", str(moved), "--json").stdout)
    assert (info["caption"], info["source"]) == ("a red bicycle leaning on a fence", "user")  # old: ""
    assert caption_cosine(cli_env, moved) > 0.999
    copy = library_dir / "copies"
    copy.mkdir()
    shutil.copy(photos[1], copy)
    (copy / (photos[1].name + ".txt")).write_text("a lighthouse at dusk")  # the copy's sidecar caption
    run("index", str(library_dir))
    assert caption_cosine(cli_env, copy / photos[1].name) > 0.999  # the point: the copy's caption
    shutil.rmtree(copy)
    run("index", str(library_dir))
    assert caption_cosine(cli_env, photos[1]) is None  # old: the copy's caption stayed searchable
    assert not out_of_step(cli_env)


def test_a_switch_killed_before_its_auto_tagging_is_tagged_by_the_next_run(
    cli_env: Settings, library_dir: Path, wide_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From a crash hunt: the daemon tags with the new model right after a switch's commit; a kill in
    between left every photo untagged for good (the next runs tag only what they embed)."""
    from photoman.zeroshot import tagging

    real = tagging.tag_library
    # the tiny random models pass no label over the default threshold: every photo gets its top 2
    top2 = lambda lib, labels, **k: real(lib, labels, min_prob=0, top_k=2, **k)  # noqa: E731
    monkeypatch.setattr(tagging, "tag_library", top2)
    monkeypatch.setenv("PHOTOMAN_AUTO_TAG", "1")
    run("index", str(library_dir))
    assert json.loads(run("tags", "--json").stdout)  # auto-tagged with the first model
    killed("photoman.library:Library.adopt", "photoman.library:Library.adopt",
           "--no-daemon", "models", "use", str(wide_model))  # fmt: skip (killed right after the commit)
    run("index", str(library_dir))  # nothing new to embed: the old code tagged nothing
    tags = json.loads(run("tags", "--json").stdout)
    assert sum(tags.values()) == 2 * 10
    assert not (cli_env.data_dir / "auto-tag-owed").exists()


def test_a_moved_photo_with_its_own_caption_keeps_the_users_and_a_copy_does_not_take_it(
    cli_env: Settings, library_dir: Path
) -> None:
    """From a review: the user's caption beats the file's own (a sidecar) after a move as before it;
    a copy keeps its own, and the user's later edits of the original still reach the point."""
    photos = sorted(p for p in library_dir.iterdir() if p.is_file())
    side = Path(f"{photos[0]}.txt")
    side.write_text("a lighthouse at dusk")
    run("index", str(library_dir))
    run("caption", str(photos[0]), "a red bicycle leaning on a fence")
    (library_dir / "moved").mkdir()
    moved = library_dir / "moved" / photos[0].name
    photos[0].rename(moved)
    side.rename(f"{moved}.txt")
    run("index", str(library_dir))
    info = json.loads(run("caption", str(moved), "--json").stdout)
    assert (info["caption"], info["source"]) == ("a red bicycle leaning on a fence", "user")
    (library_dir / "Archive").mkdir()  # a copy that sorts before the original
    shutil.copy(photos[1], library_dir / "Archive")
    run("caption", str(photos[1]), "two dogs on a frosty field")
    run("index", str(library_dir))
    run("caption", str(photos[1]), "a cup of coffee")  # the user's edit of the original
    assert caption_cosine(cli_env, photos[1]) > 0.999


def test_a_root_removal_killed_before_the_store_followed_leaves_no_orphan_points(
    cli_env: Settings, library_dir: Path, tmp_path: Path, photos_src: Path
) -> None:
    """`roots remove` killed after the catalog dropped the root's photos (and recorded their points),
    before the store deleted them: the next command's mending deletes the points whose content no row
    holds any more (it cleared the records and left them, 11 orphans in the crash hunt)."""
    from tests.conftest import SMALL_SET

    other = tmp_path / "other"
    other.mkdir()
    for name in sorted(p.name for p in photos_src.glob("*.jpg") if p.name not in SMALL_SET)[:3]:
        shutil.copy(photos_src / name, other / name)
    run("index", str(library_dir))
    run("index", str(other))
    killed("photoman.catalog.roots:mark_in", "photoman.library:Library.captions_changed",
           "--no-daemon", "roots", "remove", str(other))  # fmt: skip
    run("find", "a photo")  # any command that opens the store mends what the kill left
    status = json.loads(run("status", "--json").stdout)  # (the root itself stays: the removal is run again)
    assert status["vectors"]["points"] == status["photos"]["unique"] == 10, status
    assert not out_of_step(cli_env)


def test_a_trash_run_killed_between_moves_hides_what_went_and_the_next_scan_settles_it(
    cli_env: Settings, library_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dupes --trash` killed after its first move, before the catalog heard of it: the moved file
    is no longer listed by `find` (it was, for good, and a second `dupes` only skipped it); the next
    scan forgets it and brings back the copies that never moved."""
    from tests.conftest import use_trash

    use_trash(monkeypatch, tmp_path / "xdg")
    copies = library_dir / "copies"
    copies.mkdir()
    for i in range(3):
        shutil.copy(library_dir / "scikit-image--coffee.png", copies / f"coffee-{i}.png")
    run("index", str(library_dir))
    killed("send2trash:send2trash", "send2trash:send2trash",
           "--no-daemon", "dupes", "--trash", "--yes", "--no-rotations", "--threshold", "0.9995")  # fmt: skip
    def listed() -> list[str]:
        found = json.loads(run("find", "a photo", "--all", "--json", "-n", "100").stdout)
        return [p for r in found for p in [r["path"], *r["duplicates"]]]

    on_disk = {str(p) for p in library_dir.rglob("*") if p.is_file()}
    assert len(on_disk) == 10 + 3 - 1  # one of the four coffees went to the trash
    assert set(listed()) <= on_disk  # nothing listed that is not there
    run("index")
    assert sorted(listed()) == sorted(on_disk)
    assert not out_of_step(cli_env)
