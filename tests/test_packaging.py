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


# Which packages may import which (one way): the stores and the model at the bottom, indexing and
# search beside each other on top of them, features (zeroshot, dupes) above, front ends last.
FORBIDDEN = {
    "media": {"catalog", "vectors", "embedding", "indexing", "search", "zeroshot", "service", "tui"},
    "embedding": {"catalog", "vectors", "indexing", "search", "zeroshot", "service", "tui"},
    "catalog": {"indexing", "search", "zeroshot", "service", "tui"},
    "vectors": {"indexing", "search", "zeroshot", "service", "tui"},
    "captions": {"indexing", "search", "zeroshot", "service", "tui"},
    "indexing": {"search", "zeroshot", "service", "tui"},
    "search": {"indexing", "zeroshot", "service", "tui"},
    "zeroshot": {"indexing", "search", "service", "tui"},
}


def test_layers_import_one_way() -> None:
    """No back-edges: e.g. search and zeroshot never reach into the indexing pipeline, and indexing
    never calls zeroshot (auto-tagging is run by whoever ran the indexing)."""
    import ast

    root = Path(__file__).resolve().parent.parent / "photoman"
    found = []
    for package, banned in FORBIDDEN.items():
        for source in (root / package).rglob("*.py"):
            for node in ast.walk(ast.parse(source.read_text())):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
                    [a.name for a in node.names] if isinstance(node, ast.Import) else [])  # fmt: skip
                for name in names:
                    parts = name.split(".")
                    if parts[0] == "photoman" and len(parts) > 1 and parts[1] in banned:
                        found.append(f"{source.relative_to(root)} imports {name}")
    assert not found, found


def test_every_benchmark_imports_what_photoman_still_has() -> None:
    """Benchmarks run by hand, not by the suite: a photoman name they import that was moved or renamed
    would only show when someone next measures (it did: scale.py kept an old module path)."""
    import ast
    import importlib

    checked = 0
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        for node in ast.walk(ast.parse(script.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("photoman"):
                module = importlib.import_module(node.module or "")
                for alias in node.names:
                    assert hasattr(module, alias.name) or importlib.util.find_spec(
                        f"{node.module}.{alias.name}"
                    ), f"{script.name}: from {node.module} import {alias.name}"
                    checked += 1
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("photoman"):
                        importlib.import_module(alias.name)
                        checked += 1
    assert checked > 20


def test_the_benchmarks_synthetic_library_is_searchable(settings: object) -> None:
    """The benchmarks write rows and points directly, as the pipeline would; a renamed column or
    payload key there is silently ignored by SQLAlchemy and makes a library nothing can find (it
    happened). A small fill must be found like an indexed one."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from query_latency import fill

    from photoman.catalog.models import Photo
    from photoman.library import Library
    from photoman.ops import find

    with Library(settings) as lib:  # type: ignore[arg-type]
        fill(lib, 30, np.random.default_rng(0))
        with lib.catalog.session() as s:
            assert s.query(Photo).filter(Photo.indexed_with(lib.model_id)).count() == 30
        hits = find(lib, text="a dog", limit=5, include_offline=True)
        assert len(hits) == 5 and all(h["content_hash"] for h in hits)
