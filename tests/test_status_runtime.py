"""`photoman status` says what runs the image model and why, without loading it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from photoman.cli import app
from photoman.config import Settings
from photoman.indexing.pipeline import index
from photoman.library import Library


def status() -> dict:
    res = CliRunner().invoke(app, ["status", "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_status_names_the_image_runtime_and_why(
    cli_env: Settings, library_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fixed = status()["runtime"]
    assert fixed["runtime"] == "onnx" and "precision = 'onnx'" in fixed["line"]  # cli_env sets onnx
    monkeypatch.setenv("PHOTOMAN_PRECISION", "auto")
    monkeypatch.setenv("PHOTOMAN_CACHE_DIR", str(tmp_path / "fresh-cache"))  # no earlier test's measurement
    assert "not measured yet" in status()["runtime"]["line"]
    auto = replace(cli_env, precision="auto", cache_dir=tmp_path / "fresh-cache")
    with Library(auto) as lib:  # the first model load measures, once
        index(lib, [library_dir])
    measured = status()["runtime"]
    assert measured["runtime"].startswith(("onnx-", "torch-")) and "parity" in measured["line"]
    assert measured["measured"], measured  # per runtime: images/s and parity, as measured
    shown = CliRunner().invoke(app, ["status"]).stdout
    assert f"runtime   {measured['line']}" in shown
