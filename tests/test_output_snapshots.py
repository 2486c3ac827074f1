"""What `find`, `status`, `tags` and `dupes` print, kept as reviewed snapshots (rclip's output_snapshots).

A change to what a user reads shows up as a diff of ``tests/snapshots/*.txt`` in review, never by
accident. Paths under the test's temp folder print as ``<tmp>``; scores and sizes, which move with
the CPU's float rounding, print as ``#``; file dates (the checkout's) as ``<mtime>``; runs of spaces
(column widths follow the temp path's length) as two. After a deliberate change,
``PHOTOMAN_UPDATE_SNAPSHOTS=1 python -m pytest tests/test_output_snapshots.py`` rewrites them.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from typer.testing import CliRunner

from photoman.cli import app
from photoman.config import Settings

SNAPSHOTS = Path(__file__).parent / "snapshots"


def normalised(text: str, tmp: Path, model: str) -> str:
    text = text.replace(model, "<model>").replace(str(tmp), "<tmp>")
    text = re.sub(r"photoman-[\w.-]+-[0-9a-f]{8}-(\d+)", r"<collection>-\1", text)  # names the checkpoint
    text = re.sub(r"-?\d+\.\d+", "#", text)  # scores, sizes, rates
    text = re.sub(r"\d{4}-\d\d-\d\d \(file\)", "<mtime> (file)", text)  # when the checkout was made
    return "\n".join(re.sub(r"  +", "  ", line.rstrip()) for line in text.splitlines()) + "\n"


def check(name: str, text: str) -> None:
    path = SNAPSHOTS / f"{name}.txt"
    if os.environ.get("PHOTOMAN_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no snapshot {path}: run with PHOTOMAN_UPDATE_SNAPSHOTS=1 and review it"
    assert text == path.read_text(), f"output of {name} changed; review it and update the snapshot"


def test_what_find_status_tags_and_dupes_print(cli_env: Settings, library_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()

    def out(*args: str) -> str:
        res = runner.invoke(app, list(args))
        assert res.exit_code == 0, res.output
        return normalised(res.stdout, tmp_path, cli_env.model)

    shutil.copy2(library_dir / "scikit-image--coffee.png", library_dir / "trips" / "coffee copy.png")
    assert runner.invoke(app, ["index", str(library_dir)]).exit_code == 0
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\ncoffee\n")
    tagged = runner.invoke(app, ["tag", "--labels", str(labels), "--no-builtin", "--min-prob", "0.01"])
    assert tagged.exit_code == 0, tagged.output  # every photo gets all three: no count hangs on rounding
    check("find", out("find", "a cat", "--all", "-n", "5"))
    check("find-image", out("find", "--image", str(library_dir / "scikit-image--chelsea.png"), "-n", "3"))
    check("status", out("status"))
    check("tags", out("tags"))
    check("dupes", out("dupes", "--threshold", "0.9995", "--no-rotations", "--dry-run"))
