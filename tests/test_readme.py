"""The README's two set-up commands stay true: CI runs the test one verbatim."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    setup = readme.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.+?)\n```", setup, flags=re.S)
    assert len(commands) == 2, commands
    assert commands[0].startswith("pip install") and "photoman index" in commands[0]
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci == commands[1]


def test_readme_documents_every_command() -> None:
    from photoman.cli import app

    readme = (ROOT / "README.md").read_text()
    for cmd in app.registered_commands:
        name = cmd.name or cmd.callback.__name__
        assert f"### `photoman {name}" in readme, name


def test_the_python_example_runs(cli_env, library_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    """The README's script example, run as written against a test library."""
    import os
    import shutil
    import subprocess
    import sys

    readme = (ROOT / "README.md").read_text()
    section = readme.split("### From Python", 1)[1]
    code = re.search(r"```python\n(.+?)\n```", section, flags=re.S).group(1)
    work = tmp_path / "script"
    shutil.copytree(library_dir, work / "tests-library")
    proc = subprocess.run([sys.executable, "-c", code], cwd=work, env=dict(os.environ), capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [ln.split()[0] for ln in lines[:3]] == ["1", "2", "3"]
    assert "'indexed': 10" in lines[3]
