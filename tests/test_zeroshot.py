"""Zero-shot tagging, classification, localisation and duplicates: mechanics with controlled vectors
and real photos (the tiny model's semantics are random, so no test relies on them)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select
from typer.testing import CliRunner

from photoman.catalog.models import Photo, Tag
from photoman.catalog.queries import tag_counts
from photoman.cli import app
from photoman.config import Settings
from photoman.dupes import find_duplicates, trash_duplicates
from photoman.embedding.model import ClipEncoder, load_encoder
from photoman.indexing.pipeline import index
from photoman.library import Library
from photoman.media.decode import load_image
from photoman.search.engine import search
from photoman.search.filters import build_filter
from photoman.search.query import Query, parse_query
from photoman.vectors import IMAGE, VectorPoint, point_id
from photoman.zeroshot.labels import (
    TEMPLATES,
    choose_tags,
    ensemble,
    label_vectors,
    parse_labels,
    softmax_probs,
)
from photoman.zeroshot.locate import locate, overlay, windows
from photoman.zeroshot.tagging import label_set, tag_library

from .conftest import use_trash


@pytest.fixture(scope="module")
def encoder(tiny_model: Path) -> ClipEncoder:
    return load_encoder(str(tiny_model), device="cpu", precision="fp32")


def test_prompt_ensemble_is_the_normalised_mean_of_template_embeddings(
    encoder: ClipEncoder, tmp_path: Path
) -> None:
    names = ["dog", "red car"]
    vecs = label_vectors(encoder, names, tmp_path)
    for i, name in enumerate(names):
        prompts = encoder.encode_texts([t.format(name) for t in TEMPLATES])
        mean = prompts.mean(axis=0)
        assert np.allclose(vecs[i], mean / np.linalg.norm(mean), atol=1e-5)
    assert len(list(tmp_path.glob("labels-*.npy"))) == 1  # cached per model and label set
    assert np.array_equal(label_vectors(encoder, names, tmp_path), vecs)
    flat = np.random.default_rng(0).standard_normal((2 * len(TEMPLATES), 4)).astype(np.float32)
    assert np.allclose(np.linalg.norm(ensemble(flat, 2), axis=1), 1)


def test_probabilities_and_thresholds() -> None:
    labels = [("dog", None), ("cat", 0.5), ("car", None)]
    img = np.array([[1.0, 0, 0], [0, 1.0, 0]], dtype=np.float32)
    lv = np.eye(3, dtype=np.float32)
    probs = softmax_probs(img, lv, 100.0)
    assert np.allclose(probs.sum(axis=1), 1) and probs[0, 0] > 0.99
    picks = choose_tags(np.array([[0.6, 0.3, 0.1], [0.2, 0.45, 0.35]]), labels, min_prob=0.25, top_k=2)
    assert picks[0] == [("dog", 0.6)]  # cat's own threshold 0.5 keeps it off
    assert picks[1] == [("car", 0.35)]  # cat (0.45) is under its 0.5; car passes the default 0.25
    assert parse_labels("# c\nDog\t0.3\n  red   car \ndog\n") == [("dog", 0.3), ("red car", None)]
    assert len(label_set()) > 300


def test_tags_are_stored_mirrored_to_the_payload_and_filterable(
    settings: Settings, library_dir: Path, tmp_path: Path
) -> None:
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text("dog\ncat\nred car\n")
    labels = label_set([labels_file], builtin=False)
    with Library(settings) as lib:
        index(lib, [library_dir])
        # give two photos exactly the "dog" label's vector, as if CLIP had seen a dog in them
        dog = label_vectors(lib.encoder, ["dog"], None)[0]
        with lib.catalog.session() as s:
            rows = {Path(r.path).name: r for r in s.scalars(select(Photo))}
        dogs = [rows["scikit-image--chelsea.png"], rows["scikit-image--coffee.png"]]
        lib.store.update_vectors(
            [VectorPoint(point_id(r.content_hash, lib.model_id), {IMAGE: dog}) for r in dogs]
        )
        report = tag_library(lib, labels, min_prob=0.0, top_k=1)
        assert report.considered == 10 and report.tagged == 10
        with lib.catalog.session() as s:
            joined = select(Photo).join(Tag, Tag.content_hash == Photo.content_hash)
            tagged = {r.path for r in s.scalars(joined.where(Tag.label == "dog"))}
        assert {r.path for r in dogs} <= tagged
        counts = dict(tag_counts(lib))
        assert sum(counts.values()) == 10 and counts["dog"] == len(tagged)
        res = search(
            lib, Query(parse_query(["anything"]), limit=50, filters=build_filter(tags=["dog"]), cutoff="none")
        )
        assert {r.path for r in res} == tagged
        assert tag_library(lib, labels).considered == 0  # already tagged: nothing to do
        assert tag_library(lib, labels, retag=True, min_prob=0.0, top_k=1).considered == 10


def test_windows_cover_the_image_and_stay_inside() -> None:
    for w, h in ((1024, 683), (300, 800), (224, 224)):
        wins = windows(w, h)
        covered = np.zeros((h, w), bool)
        for x0, y0, x1, y1 in wins:
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h and (x1 - x0) == (y1 - y0)
            covered[y0:y1, x0:x1] = True
        assert covered.all()
        sizes = sorted({x1 - x0 for x0, _, x1, _ in wins})
        assert len(sizes) == 3
    assert len(windows(1024, 683)) < 100  # bounded work per photo


def test_locate_finds_the_window_a_query_was_built_from(
    encoder: ClipEncoder, photos_src: Path, tmp_path: Path
) -> None:
    image = load_image(photos_src / "palapeli-data--castle-maintenon.jpg")
    wins = windows(image.width, image.height)
    target = wins[len(wins) // 3]
    query = encoder.encode_images([image.crop(target)])[0]  # a "text" that describes exactly that window
    result = locate(encoder, image, query)
    assert result.box == target and result.score == pytest.approx(1.0, abs=1e-4)
    assert (
        result.heat.shape == (image.height, image.width) and result.heat.min() == 0 and result.heat.max() == 1
    )
    out = overlay(image, result.heat, result.box)
    assert out.size == image.size and np.abs(np.asarray(out, int) - np.asarray(image, int)).mean() > 1
    big = load_image(photos_src / "exif--sony-alpha-6000.jpg", min_side=1024)  # 24 MP: bounded by MAX_SIDE
    r = locate(encoder, big, query)
    assert r.windows < 100 and r.heat.shape[1] <= 1024


def rotated_copy(src: Path, dest: Path) -> None:
    Image.open(src).convert("RGB").transpose(Image.Transpose.ROTATE_90).save(dest)


def test_duplicates_exact_rotated_and_trash(
    settings: Settings, library_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_trash(monkeypatch, tmp_path / "xdg")  # the trash lives here for the test
    chelsea = library_dir / "scikit-image--chelsea.png"
    shutil.copy(chelsea, library_dir / "trips" / "chelsea-copy.png")  # exact copy
    rotated_copy(library_dir / "scikit-image--coffee.png", library_dir / "coffee-turned.png")
    im = Image.open(chelsea)  # a smaller, cropped version: similar (cos ≈ 0.995) but not a copy
    small = im.crop((40, 20, im.width - 20, im.height - 10)).resize((225, 150))
    small.save(library_dir / "chelsea-small.png")
    with Library(replace(settings, batch_size=32)) as lib:
        index(lib, [library_dir])
        # thresholds stay below 1 - 1e-4: the store keeps float16 vectors (scores exact to ~1e-4)
        strict = find_duplicates(lib, threshold=0.9995, rotations=False)
        exact = [g for g in strict if g.kind == "exact"]
        assert [sorted(p["path"] for p in g.photos) for g in exact] == [
            sorted([str(chelsea), str(library_dir / "trips" / "chelsea-copy.png")])
        ]
        assert not any(
            str(library_dir / "coffee-turned.png") in [p["path"] for p in g.photos] for g in strict
        )
        groups = find_duplicates(lib, threshold=0.9995, rotations=True)
        turned = next(g for g in groups if any(p["path"].endswith("coffee-turned.png") for p in g.photos))
        pair = {str(library_dir / "coffee-turned.png"), str(library_dir / "scikit-image--coffee.png")}
        assert {p["path"] for p in turned.photos} == pair
        # the keeper: largest resolution, then oldest; equal pixels here, so the older file wins
        assert turned.keeper in {p["path"] for p in turned.photos}
        chelsea_group = next(g for g in groups if str(chelsea) in [p["path"] for p in g.photos])
        assert chelsea_group.keeper != str(library_dir / "chelsea-small.png")

        before_points = lib.store.count()
        moved = trash_duplicates(lib, [chelsea_group, turned])
        assert moved and all(not Path(p).exists() for p in moved)
        trash = tmp_path / "xdg" / "Trash" / "files"
        assert sorted(p.name for p in trash.iterdir()) == sorted(
            Path(p).name for p in moved
        )  # nothing deleted
        with lib.catalog.session() as s:
            left = set(s.scalars(select(Photo.path)))
        assert not (set(moved) & left) and chelsea_group.keeper in left and turned.keeper in left
        expected = {point_id(h, lib.model_id) for h in {r.content_hash for r in _rows(lib)}}
        assert lib.store.all_ids() == expected and lib.store.count() < before_points


def _rows(lib: Library) -> list[Photo]:
    with lib.catalog.session() as s:
        return list(s.scalars(select(Photo)))


def test_cli_commands(cli_env: Settings, library_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["index", str(library_dir)]).exit_code == 0
    res = runner.invoke(
        app, ["classify", str(library_dir / "scikit-image--chelsea.png"), "-l", "cat,dog,car", "--json"]
    )
    probs = json.loads(res.stdout)
    assert set(probs) == {"cat", "dog", "car"} and sum(probs.values()) == pytest.approx(1, abs=1e-4)
    out = tmp_path / "heat.png"
    res = runner.invoke(
        app, ["locate", str(library_dir / "scikit-learn--china.jpg"), "a pagoda", "-o", str(out), "--json"]
    )
    info = json.loads(res.stdout)
    assert Image.open(out).size == (640, 427) and len(info["box"]) == 4 and info["windows"] > 10
    x0, y0, x1, y1 = info["box"]
    assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 427
    china = library_dir / "scikit-learn--china.jpg"
    again = runner.invoke(app, ["locate", str(china), "a temple", "-o", str(out)])
    assert again.exit_code == 0, again.output  # its own heat map: written over
    photo = library_dir / "scikit-image--chelsea.png"
    before = photo.read_bytes()
    for target, words in ((photo, "not a heat map photoman wrote"), (tmp_path / "h.txt", "ending in .png"),
                          (tmp_path, "ending in .png")):  # fmt: skip
        res = runner.invoke(app, ["locate", str(china), "a pagoda", "-o", str(target)])
        assert res.exit_code == 2 and words in res.stderr, res.output
    assert photo.read_bytes() == before  # `-o` naming a photo replaced it
    res = runner.invoke(app, ["tag"])
    assert res.exit_code == 0 and "of 10 photos" in res.stdout
    labels = library_dir.parent / "labels.txt"
    labels.write_text("cat\ndog\n")  # two labels: even the random model gives each photo one
    res = runner.invoke(app, ["tag", "--labels", str(labels), "--no-builtin", "--retag"])
    assert res.exit_code == 0, res.output
    counts = json.loads(runner.invoke(app, ["tags", "--json"]).stdout)
    assert set(counts) <= {"cat", "dog"} and sum(counts.values()) >= 10, counts  # each photo has one at least
    table = runner.invoke(app, ["tags"]).stdout  # the human listing says the same
    assert all(tag in table for tag in counts)
    res = runner.invoke(app, ["dupes", "--json", "--threshold", "0.9995", "--no-rotations"])
    assert json.loads(res.stdout) == {"groups": [], "trashed": []}
    for labels in ("cat", "cat,cat", "cat, cat "):  # one label, however often (it answered "50% cat")
        bad = runner.invoke(app, ["classify", str(library_dir / "scikit-image--chelsea.png"), "-l", labels])
        assert bad.exit_code == 2 and "at least two different labels" in bad.stderr, (labels, bad.output)


def test_trash_never_removes_the_last_physical_copy(cli_env: Settings, library_dir: Path, tmp_path: Path,
                                                    monkeypatch) -> None:  # noqa: ANN001  # fmt: skip
    """One folder indexed as `real/` and through a symlink `link/`, plus a hard link and a true copy:
    only the true copy may go to the trash; every photo keeps a physical file; asked first."""
    import os

    use_trash(monkeypatch, tmp_path / "xdg")
    real = tmp_path / "photos" / "real"
    real.mkdir(parents=True)
    for name in ("scikit-image--chelsea.png", "scikit-image--coffee.png"):
        shutil.copy(library_dir / name, real / name)
    os.link(real / "scikit-image--chelsea.png", real / "chelsea-hardlink.png")
    (tmp_path / "photos" / "link").symlink_to(real, target_is_directory=True)
    copies = tmp_path / "photos" / "copies"
    copies.mkdir()
    shutil.copy(real / "scikit-image--coffee.png", copies / "coffee-copy.png")
    runner = CliRunner()
    for folder in (real, tmp_path / "photos" / "link", copies):
        runner.invoke(app, ["index", str(folder)])

    res = runner.invoke(app, ["dupes", "--trash", "--no-rotations", "--threshold", "0.9995"])
    assert res.exit_code == 2 and "--yes" in res.stderr  # not a terminal: it will not ask, so it refuses
    plan = json.loads(
        runner.invoke(app, ["dupes", "--dry-run", "--json", "--no-rotations", "--threshold", "0.9995"]).stdout
    )["plan"]
    marked = sorted(s["path"] for s in plan if s["action"] == "trash")
    assert len(marked) <= 1 and all("link" not in Path(p).parts and "hardlink" not in p for p in marked)
    assert all(Path(s["path"]).exists() for s in plan)  # a dry run changes nothing

    (copies / "coffee-copy.png").write_bytes(b"changed after indexing")  # a re-check must catch this
    res = runner.invoke(
        app, ["dupes", "--trash", "--yes", "--json", "--no-rotations", "--threshold", "0.9995"]
    )
    assert res.exit_code == 0 and json.loads(res.stdout)["trashed"] == []
    shutil.copy(real / "scikit-image--coffee.png", copies / "coffee-copy.png")  # the true copy again
    runner.invoke(app, ["index", str(copies)])
    res = runner.invoke(
        app, ["dupes", "--trash", "--yes", "--json", "--no-rotations", "--threshold", "0.9995"]
    )
    trashed = json.loads(res.stdout)["trashed"]
    assert len(trashed) == 1 and trashed[0] in (
        str(copies / "coffee-copy.png"),
        str(real / "scikit-image--coffee.png"),
    )
    for name in ("scikit-image--chelsea.png", "chelsea-hardlink.png"):
        assert (real / name).exists() and (tmp_path / "photos" / "link" / name).exists()
    kept_coffee = [p for p in (real / "scikit-image--coffee.png", copies / "coffee-copy.png") if p.exists()]
    assert len(kept_coffee) == 1  # one physical coffee left, one in the trash


def test_trash_moves_nothing_when_the_keeper_no_longer_holds_the_photo(
    cli_env: Settings, library_dir: Path, tmp_path: Path, monkeypatch  # noqa: ANN001
) -> None:
    """Two copies of one photo, then the kept one overwritten with another picture before any
    re-index: the other copy is now the photo's last one, so `--trash` must leave it."""
    use_trash(monkeypatch, tmp_path / "xdg")
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a-coffee.png", "b-coffee.png"):
        shutil.copy(library_dir / "scikit-image--coffee.png", folder / name)
    runner = CliRunner()
    assert runner.invoke(app, ["index", str(folder)]).exit_code == 0
    args = ["--json", "--no-rotations", "--threshold", "0.9995"]
    plan = json.loads(runner.invoke(app, ["dupes", "--dry-run", *args]).stdout)["plan"]
    keeper = next(Path(s["path"]) for s in plan if s["action"] == "keep")
    shutil.copy(library_dir / "scikit-image--chelsea.png", keeper)  # another picture, not re-indexed
    plan = json.loads(runner.invoke(app, ["dupes", "--dry-run", *args]).stdout)["plan"]
    assert [s["action"] for s in plan] == ["skip", "skip"] and "keeper" in plan[0]["reason"], plan
    res = runner.invoke(app, ["dupes", "--trash", "--yes", *args])
    assert res.exit_code == 0 and json.loads(res.stdout)["trashed"] == [], res.stdout
    assert (folder / "a-coffee.png").exists() and (folder / "b-coffee.png").exists()


def test_the_heat_map_never_lands_in_the_library(cli_env: Settings, library_dir: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["index", str(library_dir)]).exit_code == 0
    res = runner.invoke(app, ["locate", str(library_dir / "scikit-learn--china.jpg"), "a pagoda", "--json"])
    heat = Path(json.loads(res.stdout)["heatmap"])
    assert heat.exists() and library_dir not in heat.parents
    assert not list(library_dir.rglob("*.heat.png"))
    assert json.loads(runner.invoke(app, ["index", "--json"]).stdout)["embedded"] == 0


def test_near_copies_are_trashed_only_when_close_to_the_keeper_itself(
    cli_env: Settings, library_dir: Path
) -> None:
    """Near groups are chains of close pairs (a~b, b~c): at a threshold where the chain reaches photos
    that look nothing like the keeper, those are skipped, never trashed (the whole library once went)."""
    import numpy as np

    from photoman.catalog.models import Photo
    from photoman.library import Library
    from photoman.vectors import IMAGE, point_id

    runner = CliRunner()
    assert runner.invoke(app, ["index", str(library_dir)]).exit_code == 0
    with Library(cli_env) as lib, lib.catalog.session() as s:
        rows = {r.path: r.content_hash for r in s.query(Photo)}
        vec = {p.id: p.vectors[IMAGE] for p in lib.store.retrieve(
            [point_id(h, lib.model_id) for h in set(rows.values())], with_vectors=True)}  # fmt: skip
        model = lib.model_id
    of = {path: vec[point_id(h, model)] for path, h in rows.items()}
    vs = list(vec.values())
    sims = sorted(float(np.dot(a, b)) for i, a in enumerate(vs) for b in vs[i + 1 :])
    threshold = sims[len(sims) // 2]  # half the pairs close: groups chain through middling pairs
    args = ["dupes", "--dry-run", "--json", "--no-rotations", "--threshold", f"{threshold:.6f}"]
    res = runner.invoke(app, args)
    found = json.loads(res.stdout)
    keepers = {g["keeper"]: g for g in found["groups"]}
    keeper_of = {p["path"]: g["keeper"] for g in found["groups"] for p in g["photos"]}
    plan = found["plan"]
    trashed = [s["path"] for s in plan if s["action"] == "trash"]
    assert keepers and all(float(np.dot(of[p], of[keeper_of[p]])) >= threshold - 1e-4 for p in trashed)
    far = [s for s in plan if s["action"] == "skip" and "near copy of a near copy" in s["reason"]]
    assert far  # the chain did reach such photos here: the old code marked them for the trash
