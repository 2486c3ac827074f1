"""The catalog schema comes only from Alembic revisions, matches the models, and uses WAL on SQLite."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from photoman.catalog import Base, Catalog


def test_migrations_build_the_model_schema(tmp_path: Path) -> None:
    cat = Catalog(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    with cat.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == [], diff
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0003"
    assert {"photos", "roots", "tags"} <= set(inspect(cat.engine).get_table_names())
    cat.close()
    Catalog(f"sqlite:///{tmp_path / 'c.sqlite3'}").close()  # re-open: upgrade is a no-op


def test_bad_catalog_url_is_a_clear_error(tmp_path: Path) -> None:
    import pytest

    from photoman.errors import PhotomanError

    with pytest.raises(PhotomanError, match="cannot use catalog URL"):
        Catalog("nosuchdialect://x/y")
