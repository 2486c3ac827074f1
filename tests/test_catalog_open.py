"""Opening a current catalog skips Alembic (the cold query's budget); an older one is still upgraded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from photoman.catalog import Catalog
from photoman.catalog.db import head_revision, schema_current

ROOT = Path(__file__).resolve().parent.parent


def test_a_current_catalog_opens_without_alembic_and_an_old_one_upgrades(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.sqlite3'}"
    cat = Catalog(url)  # new: created by Alembic
    versions = sorted(p.name.split("_")[0] for p in (ROOT / "migrations" / "versions").glob("0*.py"))
    assert schema_current(cat.engine) and head_revision() == versions[-1]
    cat.close()
    from alembic import command
    from alembic.config import Config

    from photoman.catalog.db import _migrations_dir, make_engine

    cfg = Config()  # take it back to 0002, as an older photoman left it
    cfg.set_main_option("script_location", str(_migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", url)
    command.downgrade(cfg, "0002")
    assert not schema_current(make_engine(url))
    code = ("import sys; from photoman.catalog import Catalog; "
            f"Catalog({url!r}).close(); print('alembic' in sys.modules)")  # fmt: skip
    upgraded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert upgraded.stdout.strip() == "True"  # behind head: Alembic ran and brought it up
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert again.stdout.strip() == "False"  # at head: no Alembic at all
    cat = Catalog(url)
    with cat.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM tags")).scalar() == 0
    cat.close()
