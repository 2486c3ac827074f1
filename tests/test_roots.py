"""Roots a user can see, remove and move; folders that must not become roots; one spelling per folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from photoman.catalog.models import Root
from photoman.cli import app
from photoman.config import Settings
from photoman.library import Library
from photoman.paths import check_new_root
from photoman.service.protocol import call

from .daemon_helpers import photoman, settings_of, start, wait_for

runner = CliRunner()


def run(*args: str):  # noqa: ANN201
    return runner.invoke(app, list(args))


def test_the_filesystem_system_folders_and_home_are_refused(
    cli_env: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for folder, why in (("/", "whole filesystem"), ("/etc", "system folder"), (str(tmp_path), "home folder"),
                        ("~", "home folder")):  # fmt: skip
        res = run("index", folder)
        assert res.exit_code == 2 and why in res.stderr and "--force" in res.stderr, (folder, res.output)
        assert res.stderr.count("\n") == 1
    assert check_new_root(tmp_path, force=True) == str(tmp_path.resolve())
    assert json.loads(run("roots", "--json").stdout) == []  # nothing was registered
    (cli_env.data_dir / "inside").mkdir(parents=True)  # photoman's own folders, even with --force
    for folder in (cli_env.data_dir, cli_env.data_dir / "inside", cli_env.state_dir):
        folder.mkdir(parents=True, exist_ok=True)
        res = run("index", str(folder), "--force")
        assert res.exit_code == 2 and "keeps its own files there" in res.stderr, res.output
    assert json.loads(run("roots", "--json").stdout) == []


def test_list_relocate_and_remove_roots(
    cli_env: Settings, library_dir: Path, tmp_path: Path, photos_src: Path
) -> None:
    (library_dir / "broken.jpg").write_bytes(b"not a photo")  # an unreadable file: moved, counted apart
    assert run("index", str(library_dir)).exit_code == 0
    other = tmp_path / "Phone"
    other.mkdir()
    shutil.copy(photos_src / "scikit-image--chelsea.png", other / "chelsea-again.png")  # same bytes
    assert run("index", str(other)).exit_code == 0
    found = {r["path"]: r for r in json.loads(run("roots", "--json").stdout)}
    assert found[str(library_dir)]["photos"] == 10 and found[str(other)]["photos"] == 1
    assert all(r["online"] for r in found.values())

    moved = tmp_path / "mnt" / "drive" / "Pictures"  # the drive mounted elsewhere
    moved.parent.mkdir(parents=True)
    shutil.move(str(library_dir), str(moved))
    res = run("roots", "relocate", str(library_dir), str(moved))
    assert res.exit_code == 0 and "(10 photos, 1 unreadable)" in res.stdout, res.stdout
    again = json.loads(run("index", "--json").stdout)
    assert (
        again["embedded"] == 0 and again["unchanged"] == 12 and again["removed"] == 0
    )  # nothing re-embedded (nor the unreadable file read again)
    hit = json.loads(
        run("find", "--image", str(moved / "scikit-image--coffee.png"), "--json", "-n", "1").stdout
    )
    assert hit[0]["path"] == str(moved / "scikit-image--coffee.png")

    res = run("roots", "remove", str(moved))
    assert res.exit_code == 0 and "(10 photos, 1 unreadable forgotten)" in res.stdout
    with Library(cli_env) as lib:
        assert lib.store.count() == 1  # chelsea's vector stays: the Phone root still has those bytes
    assert [r["path"] for r in json.loads(run("roots", "--json").stdout)] == [str(other)]
    assert (moved / "scikit-image--coffee.png").exists()  # the files are never touched
    bad = run("roots", "remove", str(tmp_path / "nowhere"))
    assert bad.exit_code == 2 and "not a library root" in bad.stderr


def test_a_root_given_through_a_symlink_is_one_library(
    cli_env: Settings, library_dir: Path, tmp_path: Path
) -> None:
    link = tmp_path / "link-to-pictures"
    link.symlink_to(library_dir, target_is_directory=True)
    assert run("index", str(link)).exit_code == 0
    assert [r["path"] for r in json.loads(run("roots", "--json").stdout)] == [str(library_dir.resolve())]
    res = run("index", str(library_dir), "--json")  # the real path as well: the same photos, not 20
    assert json.loads(res.stdout)["embedded"] == 0
    assert json.loads(run("status", "--json").stdout)["photos"]["indexed"] == 10
    cap = run("caption", str(link / "scikit-image--chelsea.png"), "a cat", "--json")  # any spelling works
    assert cap.exit_code == 0 and json.loads(cap.stdout)["caption"] == "a cat"


def test_watch_adopts_folders_and_the_daemon_follows_root_changes(
    env: dict[str, str], library_dir: Path, tmp_path: Path
) -> None:
    res = photoman(env, "watch", str(library_dir), "--once")
    assert res.returncode == 0 and "10 embedded" in res.stdout, res.stderr
    other = tmp_path / "more"
    other.mkdir()
    shutil.copy(library_dir / "scikit-image--coffee.png", other / "coffee.png")
    proc = start(env, tmp_path)
    try:
        sock = settings_of(env).socket_path
        res = photoman(env, "watch", str(other))  # a daemon runs: it adopts the folder
        assert res.returncode == 0 and "now watches" in res.stdout, res.stderr
        wait_for(
            lambda: str(other) in call(sock, "status")["daemon"]["watching"], 60, "watching the new root"
        )
        res = photoman(env, "roots", "remove", str(other))
        assert res.returncode == 0, res.stderr
        assert str(other) not in call(sock, "status")["daemon"]["watching"]  # followed live
        roots = json.loads(photoman(env, "roots", "--json").stdout)
        assert [r["path"] for r in roots] == [str(library_dir)] and roots[0]["watch"] == "native"
    finally:
        photoman(env, "stop")
        proc.wait(timeout=60)


def test_one_physical_file_reached_by_two_paths_is_one_photo(cli_env: Settings, library_dir: Path) -> None:
    import os

    os.link(library_dir / "scikit-image--chelsea.png", library_dir / "trips" / "chelsea-hardlink.png")
    (library_dir / "coffee-link.png").symlink_to(library_dir / "scikit-image--coffee.png")
    report = json.loads(run("index", str(library_dir), "--json").stdout)
    assert report["scanned"] == 10 and report["embedded"] == 10  # not 12
    assert json.loads(run("status", "--json").stdout)["photos"]["indexed"] == 10
    groups = json.loads(run("dupes", "--json", "--no-rotations", "--threshold", "0.9995").stdout)["groups"]
    assert groups == []  # never a duplicate of itself


def test_status_and_find_agree_on_offline_roots_and_relative_paths_work(
    cli_env: Settings, library_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run("index", str(library_dir)).exit_code == 0
    monkeypatch.chdir(library_dir / "trips")
    assert run("caption", "exif--test1.jpg", "a holiday", "--json").exit_code == 0  # relative, from inside
    inside = json.loads(run("find", "a photo", "--in", ".", "--all", "--json").stdout)
    assert inside and all("/trips/" in r["path"] for r in inside)
    with Library(cli_env) as lib, lib.catalog.session() as s:  # the library was a drive mounted there...
        s.execute(update(Root).values(mount=str(library_dir)))
    for p in library_dir.rglob("*"):  # ...now unmounted: its mount point is there but empty
        if p.is_file():
            p.unlink()
    for d in sorted(library_dir.rglob("*"), reverse=True):
        d.rmdir()
    status = json.loads(run("status", "--json").stdout)
    assert status["roots"][0]["online"] is False  # as find sees it: hidden, not deleted
    assert run("find", "cat", "--json").stdout.strip() in ("[]", "")
    assert status["photos"]["indexed"] == 10


def test_relocate_refuses_a_folder_that_does_not_hold_the_photos(
    cli_env: Settings, library_dir: Path, tmp_path: Path
) -> None:
    """A wrong new place (another folder, the root's own sub-folder) is refused: believed, every photo
    would go missing and be forgotten with its caption by the next scans."""
    assert run("index", str(library_dir)).exit_code == 0
    photo = library_dir / "scikit-image--chelsea.png"
    assert run("caption", str(photo), "my cat").exit_code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(photo, elsewhere / photo.name)  # one of ten is not enough
    for wrong in (elsewhere, library_dir / "trips"):
        res = run("roots", "relocate", str(library_dir), str(wrong))
        assert res.exit_code == 2 and "does not hold the photos" in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
    assert [r["path"] for r in json.loads(run("roots", "--json").stdout)] == [str(library_dir)]
    shutil.copytree(library_dir, tmp_path / "copy")  # a true copy on another drive: accepted
    assert run("roots", "relocate", str(library_dir), str(tmp_path / "copy")).exit_code == 0
    shown = json.loads(run("caption", str(tmp_path / "copy" / photo.name), "--json").stdout)
    assert shown["caption"] == "my cat"


def test_a_photo_with_a_copy_on_a_connected_root_is_found_there(
    settings: Settings, library_dir: Path, tmp_path: Path
) -> None:
    """One photo on two drives, one unplugged: it is found at the connected copy, which is its path,
    and the unplugged copy is not listed beside it (it is, with --include-offline)."""
    from photoman.indexing.pipeline import index
    from photoman.search.engine import find
    from photoman.vectors import SearchFilter

    other, third = tmp_path / "phone", tmp_path / "tablet"
    other.mkdir()
    third.mkdir()
    shutil.copy(library_dir / "scikit-image--chelsea.png", other / "chelsea-copy.png")
    shutil.copy(library_dir / "scikit-image--coffee.png", third / "coffee.png")
    with Library(settings) as lib:
        index(lib, [library_dir, other, third])
        library_dir.rename(tmp_path / "unplugged")
        assert index(lib).offline_roots == [str(library_dir)]
        query = other / "chelsea-copy.png"
        hits = find(lib, image=query, limit=5)
        assert (hits[0].path, hits[0].duplicates) == (str(query), [])  # the old code found nothing
        both = find(lib, image=query, limit=1, include_offline=True)[0]
        unplugged = str(library_dir / "scikit-image--chelsea.png")
        assert sorted([both.path, *both.duplicates]) == sorted([str(query), unplugged])
        shown = find(lib, "a photo", limit=50, cutoff="none")
        assert shown and all(not h.path.startswith(str(library_dir)) for h in shown)
        only = SearchFilter(roots=[str(third)])  # a caller's own roots filter still holds
        found = find(lib, "a photo", limit=50, cutoff="none", flt=only)
        assert [h.path for h in found] == [str(third / "coffee.png")]
        assert only.roots == [str(third)] and only.exclude_roots is None  # and is left as it was given


def test_a_photo_a_scan_found_gone_takes_no_caption(cli_env: Settings, library_dir: Path) -> None:
    """Deleted with every other photo of its root, then seen gone by a scan (a mass removal waits for a
    second scan to be forgotten): `caption` says it is not in the library, as for any other path,
    rather than showing or setting one."""
    assert run("index", str(library_dir)).exit_code == 0
    photo = library_dir / "scikit-image--chelsea.png"
    for f in [p for p in library_dir.rglob("*") if p.is_file()]:
        f.unlink()
    assert run("index").exit_code == 0
    assert json.loads(run("status", "--json").stdout)["pending_removal"]["photos"] == 10
    for args in ([str(photo)], [str(photo), "my cat"]):
        res = run("caption", *args)
        assert res.exit_code == 2 and "not in the library" in res.stderr, res.output
