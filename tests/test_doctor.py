"""`photoman doctor`: says what works and what to fix, and exits non-zero when something needs fixing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from photoman.cli import app
from photoman.config import Settings

runner = CliRunner()


def test_doctor_on_a_healthy_library_and_on_problems(
    cli_env: Settings, library_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert runner.invoke(app, ["index", str(library_dir)]).exit_code == 0
    assert runner.invoke(app, ["find", "cat"]).exit_code == 0  # builds the query encoder cache
    res = runner.invoke(app, ["doctor", "--json"])
    report = json.loads(res.stdout)
    checks = {f["check"] for f in report["findings"]}
    assert {"model", "device", "query encoder", "disk", "socket dir", "daemon", "catalog", "vectors", "root",
            "inotify"} <= checks  # fmt: skip
    assert res.exit_code == 0 and report["ok"], [f for f in report["findings"] if not f["ok"]]

    # problems: a world-writable socket dir, and a root whose drive is gone
    run_dir = Path(os.environ["PHOTOMAN_RUNTIME_DIR"])
    run_dir.mkdir(parents=True, exist_ok=True)
    run_dir.chmod(0o777)
    gone = tmp_path / "gone-drive"
    gone.mkdir()
    (gone / "x.jpg").write_bytes((library_dir / "trips" / "exif--test1.jpg").read_bytes())
    assert runner.invoke(app, ["index", str(gone)]).exit_code == 0
    (gone / "x.jpg").unlink()
    gone.rmdir()
    res = runner.invoke(app, ["doctor"])
    assert res.exit_code == 1 and "FIX" in res.stdout
    assert "not private" in res.stdout and "rm -r" in res.stdout
    assert "offline" in res.stdout and "roots relocate" in res.stdout
    run_dir.chmod(0o700)


def test_doctor_names_a_missing_model_and_its_size(
    cli_env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(cli_env.data_dir.parent / "empty-hf"))
    res = runner.invoke(app, ["--model", "openai/clip-vit-base-patch32", "doctor", "--json"])
    model = next(f for f in json.loads(res.stdout)["findings"] if f["check"] == "model")
    assert (
        res.exit_code == 1
        and not model["ok"]
        and "605 MB" in model["detail"]
        and "PHOTOMAN_MODEL" in model["fix"]
    )
