"""`photoman models` (what a user needs to choose) and `photoman eval` (which model finds their photos)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from photoman.cli import app
from photoman.config import Settings
from photoman.embedding.known_models import DEFAULT, KNOWN_MODELS
from photoman.evaluation import EvalSet, load_set, recall_at
from tests.checkpoints import build_random_clip

from .conftest import BPE_DIR

runner = CliRunner()


def test_known_models_cover_the_families_users_ask_for() -> None:
    from photoman.config import DEFAULT_MODEL

    assert DEFAULT == DEFAULT_MODEL
    names = {m.name for m in KNOWN_MODELS}
    assert {"openai/clip-vit-base-patch32", "openai/clip-vit-base-patch16", "openai/clip-vit-large-patch14",
            "google/siglip2-base-patch16-224"} <= names  # fmt: skip
    for m in KNOWN_MODELS:  # every figure says where it comes from
        assert m.source and (m.coco_t2i_r5 is None or 0 < m.coco_t2i_r5 < 1)
    assert [m.languages for m in KNOWN_MODELS if "siglip2" in m.name] == ["multilingual"]


def test_models_lists_this_library(cli_env: Settings, library_dir: Path) -> None:
    assert runner.invoke(app, ["index", str(library_dir)]).exit_code == 0
    info = json.loads(runner.invoke(app, ["models", "--json"]).stdout)
    current = [m for m in info["models"] if m["current"]]
    assert len(current) == 1 and current[0]["name"] == info["current"]
    assert current[0]["photos"] == 10 and current[0]["downloaded"] and current[0]["collection"]
    default = next(m for m in info["models"] if m["name"] == DEFAULT)
    assert default["photos"] == 0 and not default["collection"]
    table = runner.invoke(app, ["models"])
    assert (
        table.exit_code == 0 and "openai/clip-vit-large-patch14" in table.stdout and "0.654" in table.stdout
    )


def test_recall_counts_relevant_photos_in_the_first_k() -> None:
    ranking = [[2, 0, 1], [1, 2, 0]]
    import numpy as np

    rel = [{0}, {0, 2}]
    assert recall_at(np.array(ranking), rel, 1) == pytest.approx((0 + 0) / 2)
    assert recall_at(np.array(ranking), rel, 2) == pytest.approx((1 + 0.5) / 2)
    assert recall_at(np.array(ranking), rel, 3) == pytest.approx(1.0)


def test_eval_folders_and_captions_for_two_models(
    cli_env: Settings, photos_src: Path, tmp_path: Path
) -> None:
    folders = tmp_path / "labelled"
    for label, names in (("cat", ["scikit-image--chelsea.png"]), ("coffee cup", ["scikit-image--coffee.png"]),
                         ("rocket", ["scikit-image--rocket.jpg", "exif--test1.jpg"])):  # fmt: skip
        (folders / label).mkdir(parents=True)
        for n in names:
            shutil.copy(photos_src / n, folders / label / n)
    data = load_set(folders)
    assert (
        isinstance(data, EvalSet)
        and data.queries == ["cat", "coffee cup", "rocket"]
        and len(data.images) == 4
    )
    other = build_random_clip(tmp_path / "other-clip", BPE_DIR, shape="tiny", seed=1)
    res = runner.invoke(
        app, ["eval", str(folders), "--model", cli_env.model, "--model", str(other), "--json"]
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert [r["model"] for r in report["results"]] == [cli_env.model, str(other)]
    for r in report["results"]:
        assert r["recall@10"] == 1.0 and 0 <= r["recall@1"] <= r["recall@5"] <= 1  # 4 photos: all within 10
        assert 0 <= r["zero_shot_accuracy"] <= 1
    tsv = tmp_path / "captions.tsv"
    tsv.write_text(
        "labelled/cat/scikit-image--chelsea.png\ta tabby cat\nlabelled/rocket/exif--test1.jpg\ta car\n"
    )
    res = runner.invoke(app, ["eval", str(tsv)])
    assert res.exit_code == 0 and "captions set: 2 photos, 2 queries" in res.stdout
    bad = runner.invoke(app, ["eval", str(tmp_path / "nope")])
    assert bad.exit_code == 2 and "no such folder" in bad.stderr
    # an unreadable photo costs its own place, not the evaluation (it stopped the whole run); a label
    # left with no readable photo leaves the queries
    (folders / "rocket" / "broken.jpg").write_bytes(b"not a jpeg")
    (folders / "empty label").mkdir()
    (folders / "empty label" / "also-broken.png").write_bytes(b"nope")
    res = runner.invoke(app, ["eval", str(folders), "--json"])
    assert res.exit_code == 0, res.output
    (r,) = json.loads(res.stdout)["results"]
    assert r["images"] == 4 and r["queries"] == 3 and r["recall@10"] == 1.0
    assert sorted(Path(s["path"]).name for s in r["skipped"]) == ["also-broken.png", "broken.jpg"]
