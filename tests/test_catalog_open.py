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


_KILL_MID_CREATE = """
import os, sys
from sqlalchemy import event
import photoman.catalog.db as db
made = db.make_engine
def make_engine(url):
    engine = made(url)
    seen = []
    @event.listens_for(engine, "after_cursor_execute")
    def after(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("CREATE TABLE"):
            seen.append(statement)
            if len(seen) == 3:  # two migrations' tables made, a third on its way: killed
                os._exit(137)
    return engine
db.make_engine = make_engine
db.Catalog(sys.argv[1])
"""


def _tables(url: str) -> set[str]:
    from photoman.catalog.db import make_engine

    engine = make_engine(url)
    with engine.connect() as conn:
        names = {r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='table'")}
    engine.dispose()
    return names


def test_a_process_killed_while_creating_the_catalog_leaves_it_openable(tmp_path: Path) -> None:
    # Each CREATE used to commit on its own: the killed first open left tables without an Alembic
    # revision, and every later open failed with "table roots already exists"
    url = f"sqlite:///{tmp_path / 'c.sqlite3'}"
    killed = subprocess.run([sys.executable, "-c", _KILL_MID_CREATE, url], capture_output=True, text=True)
    assert killed.returncode == 137, killed.stderr
    assert _tables(url) <= {"alembic_version"}  # nothing half-made is left behind
    cat = Catalog(url)
    assert schema_current(cat.engine)
    with cat.session() as s:
        s.execute(text("INSERT INTO roots (path, added_at) VALUES ('/p', '2026-01-01')"))
    cat.close()


def test_a_catalog_an_older_crash_left_half_made_is_rebuilt_but_one_with_rows_is_never_dropped(
    tmp_path: Path,
) -> None:
    import pytest

    from photoman.catalog.db import make_engine
    from photoman.errors import PhotomanError

    url = f"sqlite:///{tmp_path / 'c.sqlite3'}"
    Catalog(url).close()
    engine = make_engine(url)
    with engine.begin() as conn:  # as the old code left it: tables made, no revision recorded
        conn.exec_driver_sql("DELETE FROM alembic_version")
        conn.exec_driver_sql("DROP TABLE model_state")
    engine.dispose()
    cat = Catalog(url)  # empty tables only: dropped and made again
    assert schema_current(cat.engine)
    with cat.session() as s:
        s.execute(text("INSERT INTO roots (path, added_at) VALUES ('/p', '2026-01-01')"))
    cat.close()
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM alembic_version")
    engine.dispose()
    with pytest.raises(PhotomanError, match="cannot open catalog"):  # a row of the user's: not touched
        Catalog(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT path FROM roots").scalars().all() == ["/p"]
    engine.dispose()


def test_a_migration_that_recreates_the_roots_table_keeps_every_photo(tmp_path: Path) -> None:
    # what Alembic's batch mode does to change a SQLite table: copy, drop, rename. With foreign keys on,
    # the drop deleted every photo (ON DELETE CASCADE); migrations run with them off, checked at the end
    from photoman.catalog.db import _sqlite_ddl_transaction

    url = f"sqlite:///{tmp_path / 'c.sqlite3'}"
    cat = Catalog(url)
    with cat.session() as s:
        s.execute(text("INSERT INTO roots (id, path, added_at) VALUES (1, '/p', '2026-01-01')"))
        s.execute(text("INSERT INTO photos (path, root_id, size, mtime, caption, status) "
                       "VALUES ('/p/a.jpg', 1, 1, 0, '', 'ok')"))  # fmt: skip
    with cat.engine.connect() as conn, _sqlite_ddl_transaction(conn):
        made = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'roots'").scalar_one()
        conn.exec_driver_sql(made.replace("roots", "_tmp_roots", 1))
        conn.exec_driver_sql("INSERT INTO _tmp_roots SELECT * FROM roots")
        conn.exec_driver_sql("DROP TABLE roots")
        conn.exec_driver_sql("ALTER TABLE _tmp_roots RENAME TO roots")
    with cat.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM photos").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1  # on again for everything else
    cat.close()
