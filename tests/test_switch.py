"""Switching model in the background (`photoman models use`, `models drop`): two tiny CLIPs whose
vectors differ in size (16 and 24), a real SQLite catalog and real Qdrant Edge collections."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from photoman import ops
from photoman.catalog.models import Photo
from photoman.cli import app
from photoman.config import Settings
from photoman.errors import BadInputError, PhotomanError
from photoman.indexing import switch
from photoman.indexing.pipeline import index, sync
from photoman.library import Library
from photoman.service.protocol import DaemonError, call
from photoman.vectors import collection_name, open_store, point_id

from .daemon_helpers import settings_of, start, wait_for
from .test_crash_consistency import caption_cosine

runner = CliRunner()


def models_of(lib: Library) -> dict[str, str | None]:
    with lib.catalog.session() as s:
        return dict(s.execute(select(Photo.path, Photo.model_id)).all())  # type: ignore[arg-type]


def ids_in(settings: Settings, model: str, dim: int) -> set[str]:
    store = open_store(settings, model, dim)
    try:
        return store.all_ids()
    finally:
        store.close()


def test_switch_in_steps_while_the_old_model_answers_then_atomically(
    cli_env: Settings, library_dir: Path, wide_model: Path, photos_src: Path
) -> None:
    old, new = cli_env.model, str(wide_model)
    with Library(cli_env) as lib:
        index(lib, [library_dir])
        assert switch.start(lib, new)["target"] == new
        assert switch.build(lib, limit=4) == 4
        info = switch.progress(lib)
        assert info is not None
        assert (info["from"], info["to"], info["done"], info["total"]) == (old, new, 4, 10)
        assert info["rate"] > 0 and info["eta_s"] > 0  # measured since this process started building
        # searches still answer from the old collection, with the old model's 16-d vectors
        hits = ops.find(lib, text="a cat", limit=20)
        assert len(hits) == 10 and lib.model_id == old and lib.store.dim == 16
        assert set(models_of(lib).values()) == {old}
        # a photo arriving during the switch: searchable with the old model at once, then built with both
        shutil.copy(photos_src / "scikit-image--astronaut.png", library_dir / "astronaut.png")
        sync(lib, [str(library_dir / "astronaut.png")])
        assert len(ops.find(lib, text="a cat", limit=20)) == 11
        assert switch.progress(lib)["total"] == 11  # type: ignore[index]
        assert not switch.complete(lib)  # 7 photos are not in the new collection yet: no switch
    # stopped half-way: a new process resumes where it was (status shows it), the bar runs to the end
    status = json.loads(runner.invoke(app, ["status", "--json"]).stdout)["switch"]
    assert (status["to"], status["done"], status["total"], status["rate"]) == (new, 4, 11, None)
    res = runner.invoke(app, ["--no-daemon", "models", "use", new])
    assert res.exit_code == 0, res.output
    assert f"switched to {new}" in res.stdout and f"models drop {old}" in res.stdout
    with Library(cli_env) as lib:  # the setting still says the old model: the library's choice holds
        assert lib.model_id == new and lib.target_name is None and lib.store.dim == 24
        assert set(models_of(lib).values()) == {new}
        with lib.catalog.session() as s:
            hashes = set(s.scalars(select(Photo.content_hash)))
        assert lib.store.all_ids() == {point_id(h, new) for h in hashes}  # 11: the new photo too
        assert len(ops.find(lib, text="a cat", limit=20)) == 11
    assert ids_in(cli_env, old, 16) == {point_id(h, old) for h in hashes}  # the old one stays, whole
    listed = json.loads(runner.invoke(app, ["models", "--json"]).stdout)
    assert listed["current"] == new and listed["target"] is None
    # the active model cannot be dropped; the old one can
    refused = runner.invoke(app, ["models", "drop", new])
    assert refused.exit_code == 2 and "searches with" in refused.stderr and "Traceback" not in refused.output
    dropped = runner.invoke(app, ["models", "drop", old])
    assert dropped.exit_code == 0 and collection_name(old, 16) in dropped.stdout
    assert not (cli_env.vectors_dir / collection_name(old, 16)).exists()
    again = runner.invoke(app, ["models", "drop", old])
    assert again.exit_code == 2 and "no collection" in again.stderr
    typo = runner.invoke(app, ["--no-daemon", "models", "use", "nobody/no-such-model"])
    assert typo.exit_code == 1 and typo.stderr.count("\n") == 1 and "Traceback" not in typo.output


def test_a_changed_model_setting_starts_a_switch_once(settings: Settings, wide_model: Path) -> None:
    old, new = settings.model, str(wide_model)
    Library(settings).close()  # a new library records its model
    with pytest.raises(PhotomanError, match="not downloaded yet"):  # a typo starts no switch
        Library(settings.with_overrides(model="nobody/no-such-model"))
    with Library(settings.with_overrides(model=new)) as lib:
        assert lib.model_id == old and lib.target_name == new  # searches with the old until it is built
        assert switch.run(lib)  # no photos: complete at once
        assert lib.model_id == new
    with Library(settings.with_overrides(model=new)) as lib:
        assert lib.model_id == new and lib.target_name is None
    with Library(settings) as lib:  # the setting goes back: that is a switch back
        assert lib.model_id == new and lib.target_name == old
        with pytest.raises(BadInputError, match="no collection for"):
            switch.drop(lib, str(settings.data_dir))
        assert switch.drop(lib, old)["cancelled_switch"] and lib.target_name is None
        with pytest.raises(PhotomanError):
            switch.start(lib, "nobody/no-such-model")
        assert lib.target_name is None


KILLED_MIDWAY = """
import sys, time
from photoman.config import load_settings
from photoman.indexing import switch
from photoman.library import Library
lib = Library(load_settings())
switch.start(lib, sys.argv[1])
switch.build(lib, limit=3)
print("built", flush=True)
time.sleep(60)
"""


def test_kill_9_mid_switch_then_the_daemon_resumes_and_switches(
    env: dict[str, str], library_dir: Path, wide_model: Path, tmp_path: Path
) -> None:
    old, new = env["PHOTOMAN_MODEL"], str(wide_model)
    with Library(settings_of(env)) as lib:
        index(lib, [library_dir])
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(KILLED_MIDWAY), new], env=env,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "built"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    daemon = start(env, tmp_path)  # the recorded switch goes on in the background
    try:

        def switched() -> bool:
            info = call(settings_of(env).socket_path, "status")
            return info["model"] == new and info["switch"] is None

        wait_for(switched, 25, "the daemon to finish the switch")
        sock = settings_of(env).socket_path
        assert len(call(sock, "find", {"text": "a cat", "limit": 20})) == 10
        with pytest.raises(DaemonError, match="searches with"):
            call(sock, "models_drop", {"name": new})
        assert call(sock, "models_drop", {"name": old})["collections"] == [collection_name(old, 16)]
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
    with Library(settings_of(env)) as lib:
        assert lib.model_id == new and set(models_of(lib).values()) == {new}


def test_switching_back_to_a_model_finds_its_tags_again(
    cli_env: Settings, library_dir: Path, wide_model: Path
) -> None:
    """Tags are per model: a switch back to the first model (its collection kept whole) used to write
    `tags: []` into every point, so `find --tag` found nothing while `photoman tags` listed them."""
    old, new = cli_env.model, str(wide_model)
    assert runner.invoke(app, ["index", str(library_dir)]).exit_code == 0
    assert runner.invoke(app, ["tag", "--min-prob", "0", "--top-k", "3"]).exit_code == 0
    for model in (new, old):
        res = runner.invoke(app, ["--no-daemon", "models", "use", model])
        assert res.exit_code == 0 and f"switched to {model}" in res.stdout, res.output
    tags = json.loads(runner.invoke(app, ["tags", "--json"]).stdout)
    label = max(tags, key=lambda k: tags[k])
    found = json.loads(runner.invoke(app, ["find", "a photo", "--all", "--json", "--tag", label]).stdout)
    assert len(found) + sum(len(f["duplicates"]) for f in found) == tags[label] > 0


def test_a_caption_edited_under_another_model_reaches_the_kept_collection_on_a_switch_back(
    cli_env: Settings, library_dir: Path, wide_model: Path
) -> None:
    """From a crash hunt: a switch back reused the kept collection's caption vectors, embedded from the
    captions as they were when the model was left: searching captions missed every edit made since."""
    old, new = cli_env.model, str(wide_model)
    photos = sorted(p for p in library_dir.iterdir() if p.is_file())
    assert runner.invoke(app, ["index", str(library_dir)]).exit_code == 0
    assert runner.invoke(app, ["caption", str(photos[1]), "a red bicycle"]).exit_code == 0
    assert runner.invoke(app, ["--no-daemon", "models", "use", new]).exit_code == 0
    assert runner.invoke(app, ["caption", str(photos[0]), "two dogs on a frosty field"]).exit_code == 0
    assert runner.invoke(app, ["caption", str(photos[1]), "--clear"]).exit_code == 0
    res = runner.invoke(app, ["--no-daemon", "models", "use", old])
    assert res.exit_code == 0 and f"switched to {old}" in res.stdout, res.output
    assert caption_cosine(cli_env, photos[0]) > 0.999  # the old code: None (no caption when it was left)
    assert caption_cosine(cli_env, photos[1]) is None  # and the cleared one's vector is gone


def test_a_caption_edited_while_a_switch_builds_reaches_the_new_collection(
    cli_env: Settings, library_dir: Path, wide_model: Path
) -> None:
    """The daemon's case: the edit lands after the photo was built into the target, in the same process."""
    photo = sorted(p for p in library_dir.iterdir() if p.is_file())[0]
    with Library(cli_env) as lib:
        index(lib, [library_dir])
        switch.start(lib, str(wide_model))
        while switch.build(lib):
            pass
        ops.caption(lib, path=str(photo), text="a lighthouse at dusk")  # what the daemon runs
        assert switch.complete(lib)
    assert caption_cosine(cli_env, photo) > 0.999  # the old code: None (built before the edit)


def test_a_caption_edited_just_before_the_switch_commits_reaches_the_new_collection(
    cli_env: Settings, library_dir: Path, wide_model: Path
) -> None:
    """From a review: the daemon hands the commit to its query thread, where an edit queued first runs
    after the captions were embedded again and before the library searches with the new model."""
    photo = sorted(p for p in library_dir.iterdir() if p.is_file())[0]
    with Library(cli_env) as lib:
        index(lib, [library_dir])
        switch.start(lib, str(wide_model))
        while switch.build(lib):  # images, then the captions it did not embed itself
            pass

        def swap(commit: Any) -> None:  # the query thread: the edit it was serving, then the commit
            ops.caption(lib, path=str(photo), text="a lighthouse at dusk")
            commit()

        assert switch.complete(lib, swap=swap)
    assert caption_cosine(cli_env, photo) > 0.999


def test_a_file_removed_while_a_switch_builds_takes_its_caption_out_of_the_new_collection(
    cli_env: Settings, library_dir: Path, wide_model: Path
) -> None:
    """From a review: a removed copy that gave its point a caption (sidecar) left that caption vector
    in the collection being built."""
    photos = sorted(p for p in library_dir.iterdir() if p.is_file())
    copy = library_dir / "copies"
    copy.mkdir()
    shutil.copy(photos[1], copy)
    (copy / (photos[1].name + ".txt")).write_text("a lighthouse at dusk")
    with Library(cli_env) as lib:
        index(lib, [library_dir])
        switch.start(lib, str(wide_model))
        while switch.build(lib):
            pass
        shutil.rmtree(copy)
        index(lib, None)
        assert switch.complete(lib)
    assert caption_cosine(cli_env, photos[1]) is None


def test_a_root_removed_while_a_switch_builds_takes_its_captions_out_of_the_new_collection(
    cli_env: Settings, library_dir: Path, wide_model: Path, tmp_path: Path
) -> None:
    photo = sorted(p for p in library_dir.iterdir() if p.is_file())[1]
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(photo, other)
    (other / (photo.name + ".txt")).write_text("a lighthouse at dusk")  # the point's caption comes from here
    with Library(cli_env) as lib:
        index(lib, [library_dir, other])
        switch.start(lib, str(wide_model))
        while switch.build(lib):
            pass
        ops.roots_remove(lib, path=str(other))
        assert switch.complete(lib)
    assert caption_cosine(cli_env, photo) is None


def test_queries_after_a_switch_use_the_librarys_model_not_the_setting(
    cli_env: Settings, library_dir: Path, wide_model: Path
) -> None:
    """`models use` done in-process while the setting still names the old model: a `--no-daemon` query
    encodes with the library's model (it encoded with the setting's, prefetched: no results for a text,
    a traceback for an image, and a stray collection of the wrong size)."""
    runner = CliRunner()
    assert runner.invoke(app, ["--no-daemon", "index", str(library_dir)]).exit_code == 0
    assert runner.invoke(app, ["--no-daemon", "models", "use", str(wide_model)]).exit_code == 0
    text = runner.invoke(app, ["--no-daemon", "find", "a cat", "--all", "--json"])
    assert text.exit_code == 0 and len(json.loads(text.stdout)) == 10, text.output
    chelsea = str(library_dir / "scikit-image--chelsea.png")
    image = runner.invoke(app, ["--no-daemon", "find", "--image", chelsea, "--json", "-n", "1"])
    assert image.exit_code == 0 and json.loads(image.stdout)[0]["path"].endswith("chelsea.png"), image.output
    collections = sorted(p.name for p in (cli_env.data_dir / "vectors").iterdir() if p.is_dir())
    assert not [c for c in collections if "tiny-clip-24" in c and not c.endswith("-24")], collections


def test_using_the_active_model_during_a_switch_says_it_cancelled_it(
    cli_env: Settings, library_dir: Path, wide_model: Path
) -> None:
    """`models use ACTIVE` while a switch builds cancels it, and says so (it said "already using")."""
    runner = CliRunner()
    assert runner.invoke(app, ["--no-daemon", "index", str(library_dir)]).exit_code == 0
    with Library(cli_env) as lib:
        switch.start(lib, str(wide_model))  # recorded, not built: as a daemon stopped half-way leaves it
        active = lib.model_id
    res = runner.invoke(app, ["--no-daemon", "models", "use", active])
    assert res.exit_code == 0 and "cancelled the switch to" in res.stdout, res.output
    with Library(cli_env) as lib:
        assert lib.target_name is None
