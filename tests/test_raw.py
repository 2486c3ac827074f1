"""Camera RAW files: DNGs made here (PiDNG, tests/dng.py) go through the same decode workers as any
photo: the embedded preview or a half-size demosaic, EXIF from the RAW, RAW+JPEG pairs as one photo,
a corrupt RAW as one error row, and `find` finding them."""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image
from typer.testing import CliRunner

from photoman.cli import app
from photoman.config import Settings
from photoman.dupes import find_duplicates, trash_plan
from photoman.errors import DecodeError
from photoman.indexing.pipeline import index, sync
from photoman.library import Library
from photoman.media import decode
from photoman.media.decode import image_size, is_image_path, load_image
from photoman.media.formats import is_raw_path
from photoman.media.raw import MIN_PREVIEW_SIDE, read_raw
from photoman.search.engine import find
from photoman.search.filters import build_filter
from tests.dng import Shot, write_dng

from .test_indexing import assert_consistent, rows

runner = CliRunner()
CAT = "scikit-image--chelsea.png"  # 451 x 300
COFFEE = "scikit-image--coffee.png"  # 600 x 400


def mean(img: Image.Image) -> float:
    return float(np.asarray(img.convert("RGB"), dtype=np.float32).mean())


def test_raw_names_are_photos() -> None:
    for name in ("IMG_0001.CR2", "a.cr3", "b.NEF", "c.arw", "d.RAF", "e.orf", "f.RW2", "g.dng", "h.pef"):
        assert is_image_path(name) and is_raw_path(name), name
    assert is_image_path("x.JPG") and not is_raw_path("x.JPG")
    assert not is_image_path("disk.raw")  # too often not a photo at all


def test_preview_when_large_enough_else_half_size_demosaic(tmp_path: Path, photos_src: Path) -> None:
    cat = Image.open(photos_src / CAT).convert("RGB")
    grey = Image.new("RGB", (320, 240), (90, 90, 90))
    assert MIN_PREVIEW_SIDE == 224
    # the camera's preview (the cat, 451 x 300) over grey sensor data: the preview is the photo
    big = write_dng(tmp_path / "big.dng", grey, preview=cat)
    got = read_raw(big.read_bytes(), "big.dng", min_side=224)
    assert got.source == "preview" and got.image is not None and got.image.size == cat.size
    assert abs(mean(got.image) - mean(cat)) < 3
    # a model with a larger input raises the bar: a 300 px preview for 336 px → demosaic
    got = read_raw(big.read_bytes(), "big.dng", min_side=336)
    assert got.source == "demosaic" and got.image is not None and got.image.size == (160, 120)
    assert abs(mean(got.image) - mean(grey)) > 10  # the sensor's grey, not the cat
    # a preview smaller than MIN_PREVIEW_SIDE → demosaic (half size: each 2x2 Bayer cell one pixel)
    small = write_dng(tmp_path / "small.dng", grey, preview=cat.resize((160, 106)))
    got = read_raw(small.read_bytes(), "small.dng", min_side=224)
    assert got.source == "demosaic" and got.image is not None and got.image.size == (160, 120)
    # no preview at all: demosaic, stood upright by the RAW's orientation (6: turned 90° clockwise)
    turned = write_dng(tmp_path / "turned.dng", cat, Shot(orientation=6))
    got = read_raw(turned.read_bytes(), "turned.dng", min_side=224)
    assert got.source == "demosaic" and got.image is not None and got.image.size == (150, 225)
    assert (got.meta.width, got.meta.height, got.meta.orientation) == (300, 450, 6)
    # a preview with no orientation of its own is turned by the RAW's
    both = write_dng(tmp_path / "both.dng", grey, Shot(orientation=6), preview=cat)
    got = read_raw(both.read_bytes(), "both.dng", min_side=224)
    assert got.source == "preview" and got.image is not None and got.image.size == (300, 451)
    # query by example, thumbnails, locate: load_image and image_size read RAW files the same way
    assert load_image(big, min_side=224).size == cat.size
    assert image_size(turned) == (300, 450) and image_size(big) == (320, 240)
    # metadata alone (a hash that already has its vector): nothing decoded
    assert read_raw(big.read_bytes(), "big.dng", decode=False).image is None


def test_exif_from_the_raw_then_from_its_preview(tmp_path: Path, photos_src: Path) -> None:
    cat = Image.open(photos_src / CAT)
    shot = Shot("NIKON CORPORATION", "NIKON Z 9", "2020:02:03 04:05:06", gps=(-33.8568, 151.2153))
    meta = read_raw(write_dng(tmp_path / "a.dng", cat, shot).read_bytes(), "a.dng", decode=False).meta
    assert (meta.camera_make, meta.camera_model, meta.format) == ("NIKON CORPORATION", "NIKON Z 9", "DNG")
    assert meta.taken_at == datetime(2020, 2, 3, 4, 5, 6)
    assert (meta.gps_lat, meta.gps_lon) == pytest.approx((-33.8568, 151.2153), abs=1e-4)
    # what the RAW's own tags lack (date, GPS) comes from the preview's EXIF, as in a Fujifilm RAF
    exif = Image.Exif()
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = "2019:07:08 09:10:11"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps.update({1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)})
    bare = write_dng(tmp_path / "b.dng", cat, Shot(date=None), preview=cat, preview_exif=exif)
    meta = read_raw(bare.read_bytes(), "b.dng", decode=False).meta
    assert meta.camera_model == "Canon EOS R5" and meta.taken_at == datetime(2019, 7, 8, 9, 10, 11)
    assert meta.gps_lat == pytest.approx(52.52, abs=1e-4) and meta.gps_lon == pytest.approx(13.41, abs=1e-4)
    # no date anywhere: unknown (not LibRaw's 1970-01-01, written into the EXIF it gives a bare preview)
    bare = write_dng(tmp_path / "c.dng", cat, Shot(date=None), preview=cat)
    meta = read_raw(bare.read_bytes(), "c.dng", decode=False).meta
    assert meta.taken_at is None and meta.camera_model == "Canon EOS R5"


def test_raw_bounds_are_the_decode_bounds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    strip = write_dng(tmp_path / "strip.dng", Image.new("RGB", (6000, 24)))  # 250:1
    with pytest.raises(DecodeError, match="absurd aspect ratio"):
        read_raw(strip.read_bytes(), "strip.dng")
    ok = write_dng(tmp_path / "ok.dng", Image.new("RGB", (320, 240)))
    monkeypatch.setattr(decode, "MAX_DECODE_PIXELS", 50_000)  # checked before LibRaw unpacks
    with pytest.raises(DecodeError, match="too many pixels to decode"):
        read_raw(ok.read_bytes(), "ok.dng")


def test_raw_files_are_indexed_and_found(settings: Settings, tmp_path: Path, photos_src: Path) -> None:
    shots = tmp_path / "raw"
    shots.mkdir()
    cat = write_dng(shots / "cat.dng", Image.open(photos_src / CAT), Shot(gps=(48.8584, 2.2945)))
    black = Image.new("RGB", (320, 240))
    coffee = write_dng(shots / "coffee.dng", black, preview=Image.open(photos_src / COFFEE))
    shutil.copy(photos_src / "scikit-learn--china.jpg", shots)
    with Library(settings) as lib:
        rep = index(lib, [shots])
        assert (rep.scanned, rep.embedded, rep.errors) == (3, 3, [])
        r = rows(lib)[str(cat)]
        assert (r.status, r.format, r.camera, r.width, r.height) == ("ok", "DNG", "Canon EOS R5", 450, 300)
        assert r.taken_at == datetime(2021, 6, 5, 14, 3, 2) and r.gps_lat == pytest.approx(48.8584, abs=1e-4)
        # query by example with a RAW file: the same decode, so the photo itself first
        res = find(lib, image=cat, limit=3)
        assert res[0].path == str(cat) and res[0].score > 0.99 and res[0].raw is None
        # the embedded preview is what was indexed: the original photo finds its RAW first
        assert find(lib, image=photos_src / COFFEE, limit=1)[0].path == str(coffee)
        # --format raw (any RAW extension) or --format dng
        for fmt in ("raw", "dng"):
            found = find(lib, image=photos_src / COFFEE, limit=5, flt=build_filter(formats=[fmt]))
            assert {r.path for r in found} == {str(cat), str(coffee)}
        assert index(lib, [shots]).unchanged == 3  # nothing read again


def test_raw_and_jpeg_of_one_shot_are_one_photo(cli_env: Settings, tmp_path: Path, photos_src: Path) -> None:
    shots = tmp_path / "shots"
    (shots / "copy").mkdir(parents=True)
    cat = Image.open(photos_src / CAT).convert("RGB")
    jpg = shots / "IMG_0001.JPG"
    cat.save(jpg, quality=90)
    dng = write_dng(shots / "IMG_0001.DNG", cat, preview=cat)
    alone = write_dng(shots / "IMG_0002.DNG", Image.open(photos_src / COFFEE))  # a RAW with no JPEG
    copy = shots / "copy" / "IMG_0001.JPG"
    shutil.copy(jpg, copy)  # an identical copy of the pair's JPEG, with no RAW beside it
    with Library(cli_env) as lib:
        rep = index(lib, [shots])
        assert (rep.scanned, rep.embedded, rep.errors) == (3, 2, [])  # the copy shares the JPEG's vector
        r = rows(lib)
        assert str(dng) not in r and r[str(jpg)].raw_path == str(dng) and r[str(alone)].raw_path is None
        assert r[str(copy)].raw_path is None and lib.store.count() == 2
        # dupes: the copy is a duplicate of the pair's JPEG, which is kept; the RAW is in no group
        groups = find_duplicates(lib, threshold=0.9995, rotations=False)
        assert [(g.keeper, sorted(p["path"] for p in g.photos)) for g in groups] == [
            (str(jpg), sorted([str(jpg), str(copy)]))
        ]
        assert {s.path: s.action for s in trash_plan(groups)} == {str(jpg): "keep", str(copy): "trash"}
        # a JPEG that is half of a pair is never trashed alone, even one whose RAW is not indexed yet
        shutil.copy(dng, shots / "copy" / "IMG_0001.DNG")
        step = next(s for s in trash_plan(groups) if s.path == str(copy))
        assert step.action == "skip" and "RAW+JPEG pair" in step.reason
        os.unlink(shots / "copy" / "IMG_0001.DNG")

    res = runner.invoke(app, ["find", "--image", str(jpg), "--limit", "1", "--json", "--all"])
    top = json.loads(res.stdout)[0]
    assert (top["path"], top["raw"], top["duplicates"]) == (str(jpg), str(dng), [str(copy)])
    res = runner.invoke(app, ["find", "--image", str(jpg), "--limit", "1", "--all"])
    assert "(+RAW IMG_0001.DNG)" in res.stdout
    res = runner.invoke(app, ["dupes", "--json", "--no-rotations"])
    listed = {p["path"]: p for g in json.loads(res.stdout)["groups"] for p in g["photos"]}
    assert str(dng) not in listed and listed[str(jpg)]["raw"] == str(dng)

    with Library(cli_env) as lib:
        jpg.unlink()  # the JPEG goes: the RAW is a photo of its own again
        rep = index(lib, [shots])
        assert rep.embedded == 1 and rows(lib)[str(dng)].status == "ok"
        cat.save(jpg, quality=90)  # and back: the RAW's own row goes (the file stays, of course)
        rep = index(lib, [shots])
        r = rows(lib)
        assert str(dng) not in r and r[str(jpg)].raw_path == str(dng) and dng.exists()
        assert rep.pending_removal == 0
        assert_consistent(lib)
        dng.unlink()  # the RAW goes: the JPEG forgets it, nothing embedded again
        rep = index(lib, [shots])
        assert rows(lib)[str(jpg)].raw_path is None and rep.embedded == 0
        # the watcher's unit of work: one changed file brings the other half of its pair along
        write_dng(dng, cat, preview=cat)
        sync(lib, [str(dng)])
        assert rows(lib)[str(jpg)].raw_path == str(dng) and str(dng) not in rows(lib)
        jpg.unlink()
        sync(lib, [str(jpg)])
        r = rows(lib)
        assert str(jpg) not in r and r[str(dng)].status == "ok" and r[str(dng)].raw_path is None
        sync(lib, [str(jpg), str(dng)])  # both halves at once: planned once
        assert_consistent(lib)


def test_a_corrupt_raw_is_one_error_row(
    cli_env: Settings, tmp_path: Path, photos_src: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    shots = tmp_path / "raw"
    shots.mkdir()
    good = write_dng(shots / "good.dng", Image.open(photos_src / CAT))
    data = good.read_bytes()
    (shots / "truncated.dng").write_bytes(data[: len(data) // 2])
    (shots / "junk.NEF").write_bytes(os.urandom(5000))
    (shots / "empty.CR2").write_bytes(b"")
    res = runner.invoke(app, ["index", str(shots), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["embedded"] == 1 and report["errors"] == 3
    with Library(cli_env) as lib:
        errors = {Path(p).name: r.error or "" for p, r in rows(lib).items() if r.status == "error"}
    assert "cannot decode RAW data" in errors["truncated.dng"]
    assert "not a readable RAW file" in errors["junk.NEF"] and "empty file" in errors["empty.CR2"]
    assert all("\n" not in e and not e.startswith("file") for e in errors.values()), errors
    assert "Unexpected end of file" not in capfd.readouterr().err  # LibRaw's own chatter stays out
