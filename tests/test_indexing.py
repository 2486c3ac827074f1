"""Index real photos into a real catalog and embedded Qdrant: idempotence, moves, deletes, changes, errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pillow_heif
import pytest
from PIL import Image
from sqlalchemy import select

from photoman.catalog.models import Photo, Root
from photoman.config import Settings
from photoman.errors import BadInputError, StoreBusyError
from photoman.indexing.pipeline import index
from photoman.library import Library
from photoman.search.engine import find, join
from photoman.vectors import IMAGE, SearchFilter, point_id


def rows(lib: Library) -> dict[str, Photo]:
    with lib.catalog.session() as s:
        return {r.path: r for r in s.scalars(select(Photo))}


def assert_consistent(lib: Library) -> None:
    """Catalog ≡ vectors: every indexed hash has exactly one point, and no point lacks a row."""
    expected = {point_id(r.content_hash, lib.model_id) for r in rows(lib).values() if r.status == "ok"}
    assert lib.store.all_ids() == expected


def test_index_then_reindex_embeds_nothing(settings: Settings, library_dir: Path) -> None:
    seen: list[tuple[int, int]] = []
    with Library(settings) as lib:
        first = index(lib, [library_dir], progress=lambda d, t: seen.append((d, t)))
        assert first.scanned == 10 and first.embedded == 10 and not first.errors
        assert seen[0] == (0, 10) and seen[-1] == (10, 10)
        assert_consistent(lib)
        again = index(lib, [library_dir])
        assert (again.embedded, again.reused, again.unchanged, again.removed) == (0, 0, 10, 0)
        again = index(lib)  # no folders: every known root
        assert again.unchanged == 10 and again.embedded == 0
        r = rows(lib)[str(library_dir / "trips" / "exif--test1.jpg")]
        assert r.camera == "Apple iPhone 4S" and r.gps_lat == pytest.approx(37.885, abs=1e-3)
        assert r.taken_at is not None and r.taken_at.year == 2013 and r.model_id == lib.model_id


def test_image_query_ranks_the_photo_itself_first(settings: Settings, library_dir: Path) -> None:
    with Library(settings) as lib:
        index(lib, [library_dir])
        for name in (
            "scikit-image--chelsea.png",
            "trips/exif--test1.jpg",
            "trips/mate-backgrounds--Storm.jpg",
        ):
            res = find(lib, image=library_dir / name, limit=3)
            assert res[0].path == str(library_dir / name) and res[0].score > 0.99
        text = find(lib, text="a tabby cat", limit=20)
        assert len(text) == 10 and {r.path for r in text} == set(rows(lib))


def test_move_and_rename_keep_the_vector(settings: Settings, library_dir: Path) -> None:
    with Library(settings) as lib:
        index(lib, [library_dir])
        old = str(library_dir / "scikit-image--coffee.png")
        digest = rows(lib)[old].content_hash
        vec_before = lib.store.retrieve([point_id(digest, lib.model_id)], with_vectors=True)[0].vectors[IMAGE]
        (library_dir / "moved").mkdir()
        new = library_dir / "moved" / "morning-coffee.png"
        os.rename(old, new)
        shutil.move(str(library_dir / "trips"), str(library_dir / "journeys"))
        rep = index(lib, [library_dir])
        assert rep.embedded == 0 and rep.reused == 5 and rep.removed == 5
        r = rows(lib)
        assert old not in r and r[str(new)].content_hash == digest
        assert all("/trips/" not in p for p in r)
        point = lib.store.retrieve([point_id(digest, lib.model_id)], with_vectors=True)[0]
        assert np.allclose(point.vectors[IMAGE], vec_before)
        assert point.payload["paths"] == [str(new)] and str(library_dir / "moved") in point.payload["folders"]
        assert find(lib, image=new, limit=1)[0].path == str(new)
        assert_consistent(lib)


def test_delete_and_change(settings: Settings, library_dir: Path, photos_src: Path) -> None:
    with Library(settings) as lib:
        index(lib, [library_dir])
        gone = library_dir / "scikit-image--camera.png"
        gone_hash = rows(lib)[str(gone)].content_hash
        gone.unlink()
        changed = library_dir / "scikit-learn--china.jpg"
        old_hash = rows(lib)[str(changed)].content_hash
        shutil.copy(photos_src / "scikit-learn--flower.jpg", changed)  # new bytes, same name
        rep = index(lib, [library_dir])
        assert rep.removed == 1 and rep.embedded == 1
        r = rows(lib)
        assert str(gone) not in r and r[str(changed)].content_hash not in (None, old_hash)
        ids = lib.store.all_ids()
        assert point_id(gone_hash, lib.model_id) not in ids and point_id(old_hash, lib.model_id) not in ids
        assert all(res.path != str(gone) for res in find(lib, text="anything", limit=50))
        assert_consistent(lib)


def test_identical_copies_share_one_vector(settings: Settings, library_dir: Path) -> None:
    shutil.copy(library_dir / "scikit-image--chelsea.png", library_dir / "chelsea-copy.png")
    with Library(settings) as lib:
        rep = index(lib, [library_dir])
        assert rep.scanned == 11 and rep.embedded == 10 and lib.store.count() == 10
        res = find(lib, image=library_dir / "chelsea-copy.png", limit=1)[0]
        assert {res.path, *res.duplicates} == {
            str(library_dir / "chelsea-copy.png"),
            str(library_dir / "scikit-image--chelsea.png"),
        }
        (library_dir / "chelsea-copy.png").unlink()
        index(lib, [library_dir])  # the original still holds the vector
        assert (
            lib.store.count() == 10
            and find(lib, image=library_dir / "scikit-image--chelsea.png")[0].score > 0.99
        )


def test_bad_files_are_recorded_and_never_stop_a_run(
    settings: Settings, library_dir: Path, photos_src: Path
) -> None:
    (library_dir / "zero.jpg").write_bytes(b"")
    (library_dir / "junk.png").write_bytes(os.urandom(2000))
    data = (photos_src / "palapeli-data--citrus-fruits.jpg").read_bytes()
    (library_dir / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (library_dir / "notes.txt").write_text("not a photo")
    with Library(settings) as lib:
        rep = index(lib, [library_dir])
        assert rep.embedded == 10 and len(rep.errors) == 3
        errs = {Path(p).name: e for p, e in rep.errors}
        assert "empty file" in errs["zero.jpg"] and "not a readable image" in errs["junk.png"]
        assert "cannot decode" in errs["truncated.jpg"]
        r = rows(lib)
        assert r[str(library_dir / "zero.jpg")].status == "error" and "notes.txt" not in str(r)
        again = index(lib, [library_dir])  # unchanged bad files are not retried every run
        assert again.unchanged == 13 and not again.errors
        (library_dir / "zero.jpg").write_bytes((photos_src / "exif-js--DSCN0614_small.jpg").read_bytes())
        fixed = index(lib, [library_dir])
        assert fixed.embedded == 1 and rows(lib)[str(library_dir / "zero.jpg")].status == "ok"
        assert_consistent(lib)


def test_heic_and_avif_are_indexed(settings: Settings, tmp_path: Path, photos_src: Path) -> None:
    lib_dir = tmp_path / "phone"
    lib_dir.mkdir()
    src = Image.open(photos_src / "palapeli-data--european-honey-bee.jpg").convert("RGB")
    pillow_heif.from_pillow(src).save(lib_dir / "IMG_0001.HEIC", quality=70)
    src.save(lib_dir / "bee.avif", quality=70)
    with Library(settings) as lib:
        rep = index(lib, [lib_dir])
        assert rep.embedded == 2 and not rep.errors
        fmts = {r.format for r in rows(lib).values()}
        assert fmts == {"HEIF", "AVIF"}
        # HEIC and AVIF of the same picture land next to each other
        res = find(lib, image=lib_dir / "bee.avif", limit=2)
        assert res[1].score > 0.9


def test_crash_leftovers_are_reconciled(settings: Settings, library_dir: Path) -> None:
    """A vector without a row is deleted; a row without its vector is re-embedded; nothing doubles."""
    with Library(settings) as lib:
        index(lib, [library_dir])
        victim = rows(lib)[str(library_dir / "trips" / "scikit-image--rocket.jpg")]
        lib.store.delete([point_id(victim.content_hash, lib.model_id)])  # crash before upsert landed
        chelsea = rows(lib)[str(library_dir / "scikit-image--chelsea.png")].content_hash
        orphan = lib.store.retrieve([point_id(chelsea, lib.model_id)], with_vectors=True)[0]
        orphan.id = point_id("f" * 64, lib.model_id)  # crash after upsert, before catalog commit
        lib.store.upsert([orphan])
    with Library(settings) as lib:  # next start
        rep = index(lib, [library_dir])
        assert rep.requeued == 1 and rep.orphans_removed == 1 and rep.embedded == 1
        assert lib.store.count() == 10
        assert_consistent(lib)


def test_another_catalog_does_not_wipe_the_vector_store(
    settings: Settings, library_dir: Path, tmp_path: Path
) -> None:
    """Indexing with a catalog that is not the store's (another catalog_url, a new file) leaves the
    store's vectors alone: they are the library's photos, not a crash's leftovers."""
    with Library(settings) as lib:
        index(lib, [library_dir])
    other = replace(settings, catalog_url=f"sqlite:///{tmp_path / 'other.sqlite3'}")
    for _ in range(2):  # a new catalog, then one that knows two of the ten photos
        with Library(other) as lib:
            rep = index(lib, [library_dir / "trips"])
            assert rep.orphans_removed == 0 and rep.orphans_kept > 0
            assert lib.store.count() == 10
    with Library(settings) as lib:  # the library's own catalog: all there, nothing to redo
        rep = index(lib, [library_dir])
        assert rep.embedded == 0 and rep.orphans_removed == 0 and rep.orphans_kept == 0
        assert lib.store.count() == 10
        assert_consistent(lib)


def test_interrupted_run_loses_at_most_the_batch_in_flight(settings: Settings, library_dir: Path) -> None:
    class Stop(Exception):
        pass

    def stop_after_five(done: int, total: int) -> None:
        if done == 5:
            raise Stop

    with Library(replace(settings, workers=1, batch_size=2)) as lib:
        with pytest.raises(Stop):
            index(lib, [library_dir], progress=stop_after_five)
        kept = len([r for r in rows(lib).values() if r.status == "ok"])
        assert 2 <= kept <= 5
        rep = index(lib, [library_dir])
        assert rep.embedded == 10 - kept and rep.unchanged == kept
        assert_consistent(lib)


def test_roots_nest_and_missing_folders_fail_before_writing(settings: Settings, library_dir: Path) -> None:
    with Library(settings) as lib:
        index(lib, [library_dir / "trips"])
        index(lib, [library_dir])  # the parent adopts the inner root
        with lib.catalog.session() as s:
            assert list(s.scalars(select(Root.path))) == [str(library_dir)]
        # the adopted photos' search data names the new root and its folders (before, `find --in` the
        # parent missed every photo of the inner root, and an offline parent still showed them)
        trip = str(library_dir / "trips" / "exif--test1.jpg")
        for flt in (SearchFilter(folder=str(library_dir)), SearchFilter(roots=[str(library_dir)])):
            assert trip in {r.path for r in find(lib, text="a photo", limit=20, flt=flt)}
        before = rows(lib)
        with pytest.raises(BadInputError, match="no such folder"):
            index(lib, [library_dir / "nope"])
        with pytest.raises(BadInputError, match="not a folder"):
            index(lib, [library_dir / "scikit-image--coffee.png"])
        assert rows(lib).keys() == before.keys()


def test_second_writer_is_refused(settings: Settings, library_dir: Path) -> None:
    with Library(settings, "photoman index") as lib:
        index(lib, [library_dir])
        with pytest.raises(StoreBusyError, match=r"busy: pid \d+ \(photoman index\)"):
            Library(settings, "photoman index")
        reader = Library(settings, "photoman status", write=False, allow_busy=True)
        assert reader.busy is not None
        with pytest.raises(StoreBusyError):
            reader.store  # noqa: B018
        reader.close()


def test_a_refused_open_leaves_no_thread_behind(settings: Settings, library_dir: Path) -> None:
    """`photoman --no-daemon find` against a busy library: the text-encoder prefetch thread is done
    when the refusal is raised (the process exiting while it was inside ONNX Runtime crashed, SIGSEGV)."""
    import threading

    with Library(settings, "photoman index") as lib:
        index(lib, [library_dir])
        lib.encoder  # noqa: B018 - builds the cached text encoder the prefetch opens
    with Library(settings, "photoman watch"):
        for _ in range(3):
            with pytest.raises(StoreBusyError):
                Library(settings, "photoman find", prefetch_text=True)
            assert not [t for t in threading.enumerate() if t.name == "photoman-text-pack"]


def test_server_backend_runs_the_same_pipeline(settings: Settings, library_dir: Path, tmp_path: Path) -> None:
    cfg = replace(settings, qdrant_url=str(tmp_path / "qdrant-local"))  # qdrant-client local mode
    with Library(cfg) as lib:
        rep = index(lib, [library_dir])
        assert rep.embedded == 10 and type(lib.store).__name__ == "ServerStore"
        chelsea = library_dir / "scikit-image--chelsea.png"
        q = lib.encoder.encode_images([Image.open(chelsea).convert("RGB")])[0]
        assert join(lib, lib.store.search(q, limit=1))[0].path == str(chelsea)
        assert_consistent(lib)


def test_ctrl_c_during_index_is_one_line(cli_env: Settings, photos_src: Path, tmp_path: Path) -> None:
    """Ctrl-C signals the whole process group: the workers stay quiet, the command says one line."""
    import os
    import signal
    import subprocess
    import sys
    import time

    lib = tmp_path / "many"
    lib.mkdir()
    # enough distinct photos (bytes after a JPEG's end change its hash, not its picture) that the run
    # is still going when the signal comes, however fast the encoder opens
    for i, src in enumerate(sorted(photos_src.glob("*.jpg")) * 8):
        (lib / f"{i:03d}.jpg").write_bytes(src.read_bytes() + i.to_bytes(4, "big"))
    cmd = [sys.executable, "-m", "photoman", "index", str(lib)]
    pipe = subprocess.PIPE
    env = dict(os.environ)
    # as from a terminal: Ctrl-C acts (a pytest-xdist worker ignores SIGINT, and children inherit that)
    proc = subprocess.Popen(cmd, env=env, stdout=pipe, stderr=pipe, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait for the decode workers (children of the command)
        kids = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        if kids:
            break
        time.sleep(0.1)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert proc.returncode == 130, (proc.returncode, err)
    assert "Traceback" not in err and len(lines) == 1 and "interrupted" in lines[0], err


def test_pillow_warnings_about_a_file_stay_out_of_the_terminal(cli_env: Settings, tmp_path: Path) -> None:
    """A photo with a broken EXIF block: Pillow warns; the user sees the run's summary, not the warning."""
    import io
    import os
    import subprocess
    import sys

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(buf, "JPEG")
    # one IFD entry (Make) claiming 65535 bytes at an offset past the end of the block
    app1 = (
        b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x01\x00" + b"\x0f\x01\x02\x00\xff\xff\x00\x00\x40\x00\x00\x00"
    )
    app1 += b"\x00\x00\x00\x00"
    data = buf.getvalue()
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "bad-exif.jpg").write_bytes(
        data[:2] + b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1 + data[2:]
    )
    proc = subprocess.run([sys.executable, "-m", "photoman", "index", str(folder)], env=dict(os.environ),
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0 and "Indexed 1 photos" in proc.stdout, proc.stderr
    assert "Warning" not in proc.stderr and "Skipping tag" not in proc.stderr, proc.stderr


def test_photos_decode_while_the_model_loads(settings: Settings, library_dir: Path) -> None:
    """The model loads in a thread while the decode workers run: every photo is decoded before a
    slow load ends (the library's own model lock held meanwhile stands for a slow load), nothing is
    written before the model is there, and then everything is."""
    import threading

    count = sum(1 for p in library_dir.rglob("*") if p.is_file())
    with Library(settings) as lib:
        lib.store  # noqa: B018 - opened first, as index() does
        assert not lib.encoder_loaded
        held, release = threading.Event(), threading.Event()

        def slow_load() -> None:
            with lib._model_lock:
                held.set()
                release.wait(60)

        holder = threading.Thread(target=slow_load)
        holder.start()
        held.wait(10)
        seen: list[tuple[int, bool, int]] = []
        loading: list[bool] = []

        def progress(done: int, total: int) -> None:
            if done == 0:  # a first index: the load starts with the workers, not after their first photo
                loading.append(any(t.name == "photoman-model-load" for t in threading.enumerate()))
            with lib.catalog.session() as s:
                rows = len(s.scalars(select(Photo.id)).all())
            seen.append((done, lib.encoder_loaded, rows))
            if done == total:
                release.set()

        try:
            report = index(lib, [library_dir], progress=progress)
        finally:
            release.set()
            holder.join()
        assert loading == [True]
        assert seen[-1] == (count, False, 0)  # all decoded, the model still loading, nothing written
        assert report.embedded == count and not report.errors
        assert lib.encoder_loaded and len(find(lib, "a photo", limit=count)) == count


def test_a_model_that_fails_to_load_mid_index_says_why(
    settings: Settings, library_dir: Path, tmp_path: Path
) -> None:
    """The load in the background fails (a weights file cut short): the run stops with the load's
    own one-line reason, and nothing half-written is left."""
    from photoman.embedding.model import ModelError

    broken = tmp_path / "broken-model"
    shutil.copytree(settings.model, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:4096])
    bad = replace(settings, model=str(broken), cache_dir=tmp_path / "empty-cache")
    with Library(bad) as lib:
        with pytest.raises(ModelError, match="cannot load the CLIP model .*: Error while deserializing"):
            index(lib, [library_dir])
        with lib.catalog.session() as s:
            assert s.scalars(select(Photo.id)).all() == []
        assert lib.store.count() == 0


def test_the_model_loads_only_when_a_photo_needs_it(settings: Settings, library_dir: Path) -> None:
    """A moved folder is all known content: the run re-points rows and loads no model (seconds and
    half a GB saved); the first run, with photos to embed, does."""
    with Library(settings) as lib:
        assert index(lib, [library_dir]).embedded == 10 and lib.encoder_loaded
    (library_dir / "trips").rename(library_dir / "journeys")
    with Library(settings) as lib:
        report = index(lib, [library_dir])
        assert report.embedded == 0 and report.reused > 0 and not report.errors
        assert not lib.encoder_loaded


def test_a_first_auto_measurement_is_not_overlapped_with_decoding(
    settings: Settings, tiny_model_auto: Path, tmp_path: Path
) -> None:
    """`precision = "auto"` times the runtimes on the first load on a machine: the pipeline's loader
    then stays off (the first batch loads the model while the decode workers rest) instead of loading
    beside them; once measured, or with a runtime named in the settings, it overlaps the decoding."""
    from photoman.indexing.pipeline import _ModelLoader

    fresh = replace(settings, precision="auto", device="cpu", cache_dir=tmp_path / "empty-cache")
    measured = replace(fresh, cache_dir=tiny_model_auto)  # the run's cache: measured once already
    with Library(fresh) as a, Library(replace(measured, data_dir=tmp_path / "b")) as b:
        assert not _ModelLoader(a, enabled=True).enabled and _ModelLoader(b, enabled=True).enabled
    with Library(replace(fresh, precision="onnx", data_dir=tmp_path / "c")) as c:
        assert _ModelLoader(c, enabled=True).enabled


def test_decode_workers_fork_with_their_modules_imported(tmp_path: Path) -> None:
    """The fork server is started with the decode modules and the CLI preloaded: a process forked from
    it has them before its own code imports anything (each worker used to import Pillow, numpy and
    the rest itself, after the server had started only when the first worker was asked for; and each
    imports the main script again, which for the `photoman` command is the CLI)."""
    (tmp_path / "probe_target.py").write_text(
        "import sys\n\ndef report(conn):\n"
        "    conn.send(all(m in sys.modules for m in ('photoman.indexing.prepare', 'photoman.cli')))\n"
    )
    script = (
        "from photoman.indexing.forkserver import start\n"
        "from probe_target import report\n"
        "ctx = start()\n"
        "parent, child = ctx.Pipe()\n"
        "p = ctx.Process(target=report, args=(child,)); p.start()\n"
        "print('preloaded', parent.recv()); p.join()\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    cmd = [sys.executable, "-c", script]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.stdout.strip() == "preloaded True", proc.stderr


def test_a_load_started_for_nothing_is_waited_for(settings: Settings, tmp_path: Path) -> None:
    """A first index starts loading the model before any photo is decoded; when no photo needed it
    (here every file is unreadable), the run still waits for that load rather than return (and let the
    process exit) with a thread inside torch's or ONNX Runtime's imports."""
    import threading

    folder = tmp_path / "broken"
    folder.mkdir()
    for i in range(3):
        (folder / f"bad{i}.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG" * (i + 1))
    with Library(settings) as lib:
        lib.store  # noqa: B018
        held, release = threading.Event(), threading.Event()

        def slow_load() -> None:
            with lib._model_lock:  # stands for a slow load, as in the test above
                held.set()
                release.wait(60)

        holder = threading.Thread(target=slow_load)
        holder.start()
        held.wait(10)
        reports: list[object] = []
        run = threading.Thread(target=lambda: reports.append(index(lib, [folder])))
        run.start()
        run.join(3)
        still_running = run.is_alive()
        release.set()
        run.join(60)
        holder.join()
        assert still_running and len(reports) == 1
        assert not any(t.name == "photoman-model-load" for t in threading.enumerate())


def test_a_root_removed_while_a_run_indexes_it_is_not_added_back(
    settings: Settings, library_dir: Path, tmp_path: Path
) -> None:
    """`roots remove` served by the daemon while its indexer works through that root: the run goes
    on with the other roots and adds none of the removed root's photos back (it failed on the
    catalog's foreign key, and the daemon stayed in error until its next scan)."""
    from photoman.catalog.roots import remove_root

    other = tmp_path / "other"
    other.mkdir()
    for i, name in enumerate(sorted(os.listdir(library_dir))[:6]):
        if (library_dir / name).is_file():
            shutil.copy(library_dir / name, other / f"{i}-{name}")
    with Library(replace(settings, batch_size=1)) as lib:
        removed: list[int] = []

        def progress(done: int, total: int) -> None:
            if done == 2 and not removed:  # part way: the other root's photos are still to come
                removed.append(remove_root(lib, str(other))["photos_removed"])

        rep = index(lib, [library_dir, other], progress=progress)
        assert removed and not rep.errors
        with lib.catalog.session() as s:
            assert [r for r in s.scalars(select(Root.path))] == [str(library_dir)]
            paths = list(s.scalars(select(Photo.path)))
            contents = set(s.scalars(select(Photo.content_hash)))
        assert paths and not [p for p in paths if p.startswith(str(other))]
        assert len(paths) == len([p for p in library_dir.rglob("*") if p.is_file()])
        rep = index(lib)  # and the next run finds everything in order: no orphan vector kept
        assert rep.embedded == 0 and lib.store.count() == len(contents)


def test_a_first_run_counts_every_file_once(settings: Settings, library_dir: Path) -> None:
    """Two identical copies new in one batch: one embedded, one reused (the copy was counted nowhere,
    so the summary's parts did not add up to the photos indexed)."""
    shutil.copy(library_dir / "scikit-image--chelsea.png", library_dir / "chelsea-copy.png")
    with Library(replace(settings, batch_size=64)) as lib:
        rep = index(lib, [library_dir])
    files = len([p for p in library_dir.rglob("*") if p.is_file()])
    assert rep.scanned == files and rep.embedded + rep.reused + len(rep.errors) == files
    assert rep.reused == 1


def test_a_renamed_folder_is_a_move_not_a_mass_deletion(
    settings: Settings, library_dir: Path, photos_src: Path
) -> None:
    """A folder of 12 photos renamed (with a photo deleted beside it) is found at its new paths in
    the same scan: the old paths are forgotten at once, not kept pending removal as a mass deletion
    (they were counted as photos, and shown as missing, until the next scan)."""
    family = library_dir / "family"
    family.mkdir()
    for name in sorted(p.name for p in photos_src.iterdir() if p.suffix.lower() in (".jpg", ".png"))[:12]:
        shutil.copy(photos_src / name, family / name)
    with Library(settings) as lib:
        index(lib, [library_dir])
        family.rename(library_dir / "family2")
        (library_dir / "scikit-image--coffee.png").unlink()
        rep = index(lib)
        assert rep.pending_removal == 0 and rep.removed >= 12 and rep.embedded == 0, rep
        with lib.catalog.session() as s:
            paths = set(s.scalars(select(Photo.path)))
    assert paths == {str(p) for p in library_dir.rglob("*") if p.is_file()}


def test_a_rename_does_not_excuse_a_vanished_twin_folder(
    settings: Settings, library_dir: Path, photos_src: Path
) -> None:
    """Two folders with the same 12 photos; one renamed while the other vanishes (a share that
    answered empty): the rename's old paths go at once, the vanished twin waits for a second scan (each
    new path accounts for one old path, not for every copy of its bytes)."""
    names = sorted(p.name for p in photos_src.iterdir() if p.suffix.lower() in (".jpg", ".png"))[:12]
    for folder in ("zz_a", "zz_b"):
        (library_dir / folder).mkdir()
        for name in names:
            shutil.copy(photos_src / name, library_dir / folder / name)
    with Library(settings) as lib:
        index(lib, [library_dir])
        (library_dir / "zz_a").rename(library_dir / "zz_a2")
        shutil.move(str(library_dir / "zz_b"), str(library_dir.parent / "zz_b-away"))
        rep = index(lib)
        assert rep.pending_removal == 12 and rep.removed == 12, rep
        with lib.catalog.session() as s:
            waiting = set(s.scalars(select(Photo.path).where(Photo.missing_since.is_not(None))))
        assert waiting == {str(library_dir / "zz_b" / n) for n in names}
