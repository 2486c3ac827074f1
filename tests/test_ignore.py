"""What is not part of the library: the `exclude` setting's defaults and patterns, `.photomanignore`
files (gitignore syntax) in any folder, and photoman's own folders."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

from photoman.catalog.models import Photo
from photoman.config import Settings
from photoman.indexing.pipeline import index, sync
from photoman.library import Library


def _paths(lib: Library) -> set[str]:
    with lib.catalog.session() as s:
        return set(s.scalars(select(Photo.path)))


def test_excluded_folders_ignore_files_and_own_dirs_stay_out(
    settings: Settings, library_dir: Path, photos_src: Path
) -> None:
    jpg, png = photos_src / "scikit-image--rocket.jpg", photos_src / "scikit-image--coins.png"
    extra = {
        "node_modules/pkg/logo.jpg": jpg,
        "venv/lib/python3.11/site-packages/skimage/data/coins.png": png,
        "trips/private/secret.jpg": jpg,
        "trips/scan.png": png,
        "trips/deep/keep.jpg": jpg,
        "Camera/IMG_1.heat.png": png,  # a heat map someone wrote beside a photo
        "Camera/IMG_1.jpg": jpg,
    }
    for rel, src in extra.items():
        (library_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, library_dir / rel)
    (library_dir / "trips" / ".photomanignore").write_text("# not for the library\nprivate/\n*.png\n")
    own = replace(settings, data_dir=library_dir / "photoman-data")  # the data dir inside the library
    (own.thumbs_dir).mkdir(parents=True)
    shutil.copy(jpg, own.thumbs_dir / "thumb.jpg")
    with Library(own) as lib:
        index(lib, [library_dir])
        got = {str(Path(p).relative_to(library_dir)) for p in _paths(lib)}
    assert "Camera/IMG_1.jpg" in got and "trips/deep/keep.jpg" in got
    left_out = {"node_modules/pkg/logo.jpg", "venv/lib/python3.11/site-packages/skimage/data/coins.png",
                "trips/private/secret.jpg", "trips/scan.png", "Camera/IMG_1.heat.png",
                "photoman-data/thumbs/thumb.jpg"}  # fmt: skip
    assert not got & left_out, got & left_out
    assert len(got) == 10 + 2  # the ten photos, plus Camera/IMG_1.jpg and trips/deep/keep.jpg

    # the watcher's unit of work applies the same rules; a new ignore rule takes photos out
    with Library(own) as lib:
        shutil.copy(jpg, library_dir / "trips" / "private" / "later.jpg")
        (library_dir / "Camera" / ".photomanignore").write_text("IMG_*.jpg\n")
        sync(lib, [str(library_dir / "trips" / "private"), str(library_dir / "Camera")])
        got = {str(Path(p).relative_to(library_dir)) for p in _paths(lib)}
    assert "trips/private/later.jpg" not in got and "Camera/IMG_1.jpg" not in got


def test_the_exclude_setting_replaces_the_defaults(
    settings: Settings, library_dir: Path, photos_src: Path
) -> None:
    (library_dir / "node_modules").mkdir()
    shutil.copy(photos_src / "scikit-image--rocket.jpg", library_dir / "node_modules" / "a.jpg")
    with Library(replace(settings, exclude=["trips/"])) as lib:
        index(lib, [library_dir])
        got = {str(Path(p).relative_to(library_dir)) for p in _paths(lib)}
    assert "node_modules/a.jpg" in got and not any(p.startswith("trips/") for p in got)


def test_paths_below_a_folder_are_what_relpath_gives() -> None:
    import os

    from photoman.indexing.ignore import _below

    for path, folder in (("/a/b/c.jpg", "/a"), ("/a/b/c.jpg", "/a/b"), ("/x.jpg", "/"), ("/a/é b/c", "/a")):
        assert _below(path, folder) == os.path.relpath(path, folder)


def test_a_bad_pattern_is_a_setting_error_or_a_skipped_line(
    settings: Settings, library_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the `exclude` setting, a pattern that is not one (`[z-a]`) is refused when the settings are
    read (it was a traceback at `index`, and a daemon stuck in error); in a `.photomanignore` in the
    library, that line is left out and the rest of the file still applies."""
    from typer.testing import CliRunner

    from photoman.cli import app
    from photoman.errors import SettingValueError

    with pytest.raises(SettingValueError, match=r"exclude: not a gitignore pattern: '\*\*/\[z-a\]'"):
        replace(settings, exclude=["**/[z-a]"])
    monkeypatch.setenv("PHOTOMAN_EXCLUDE", "[z-a]")
    res = CliRunner().invoke(app, ["config"])
    assert res.exit_code == 2 and "exclude" in res.stderr and res.stderr.count("\n") == 1, res.output
    shutil.copy(library_dir / "scikit-image--chelsea.png", library_dir / "trips" / "cat.png")
    (library_dir / "trips" / ".photomanignore").write_text("[z-a]\n*.png\n")
    with Library(settings) as lib:
        rep = index(lib, [library_dir])
        got = _paths(lib)
    assert not rep.errors and str(library_dir / "trips" / "cat.png") not in got  # the good line applies
    assert str(library_dir / "trips" / "scikit-image--rocket.jpg") in got
