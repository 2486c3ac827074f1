"""A wheel builds with every file photoman needs at run time, and works from where it is unpacked."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_carries_migrations_vocabulary_and_the_entry_point(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=300)  # fmt: skip
    wheel = next(tmp_path.glob("photoman-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("migrations/alembic.ini", "migrations/script.py.mako", "migrations/env.py",
                   "migrations/versions/0001_initial.py", "photoman/zeroshot/vocabulary.txt",
                   "photoman/tui/photoman.tcss",
                   "photoman/cli.py", "photoman/client.py"):  # fmt: skip
        assert needed in names, needed
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "photoman = photoman.cli:main" in entry
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "import photoman.catalog.db as db, photoman.zeroshot.labels as lb; "
        "assert db.__file__.startswith(sys.argv[1]); print(db.head_revision(), len(lb.builtin_labels()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(unpacked)], capture_output=True, text=True, check=True
    )
    head, labels = out.stdout.split()
    assert head == sorted(p.stem.split("_")[0] for p in (ROOT / "migrations" / "versions").glob("0*.py"))[-1]
    assert int(labels) > 300
