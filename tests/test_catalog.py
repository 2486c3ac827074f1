"""The catalog schema comes only from Alembic revisions, matches the models, and uses WAL on SQLite;
the same on PostgreSQL (one server per session, see conftest), where types round-trip unchanged."""

from __future__ import annotations

import random
import string
import threading
from datetime import datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import delete, inspect, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from photoman.catalog import Base, Catalog, Photo, Root, Tag
from photoman.catalog.db import head_revision


@pytest.fixture
def empty_catalog_url(catalog_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """An empty database: a SQLite file, or a new PostgreSQL database with no schema at all."""
    if catalog_backend == "sqlite":
        return f"sqlite:///{tmp_path / 'c.sqlite3'}"
    return request.getfixturevalue("pg_server").fresh_database(migrated=False)


def assert_model_schema(conn: Connection) -> None:
    """The database's schema is the models' (on PostgreSQL but for the one intended difference)."""
    diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    if conn.dialect.name == "sqlite":
        assert diff == [], diff
        return
    # 0005: paths are unique through hash exclusion constraints (a btree entry holds 2704 bytes at most)
    assert sorted((d[0], d[1].table.name, tuple(d[1].columns.keys())) for d in diff) == [
        ("add_constraint", "photos", ("path",)), ("add_constraint", "roots", ("path",))
    ], diff  # fmt: skip
    kinds = conn.execute(text("SELECT conname, contype FROM pg_constraint WHERE conname LIKE '%path_key'"))
    assert sorted(kinds) == [("photos_path_key", "x"), ("roots_path_key", "x")]


@pytest.mark.catalogs
def test_migrations_build_the_model_schema(empty_catalog_url: str, catalog_backend: str) -> None:
    cat = Catalog(empty_catalog_url)
    with cat.engine.connect() as conn:
        assert_model_schema(conn)
        if catalog_backend == "sqlite":
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head_revision()
    assert {"photos", "roots", "tags"} <= set(inspect(cat.engine).get_table_names())
    cat.close()
    Catalog(empty_catalog_url).close()  # re-open: upgrade is a no-op


def _alembic_config():  # noqa: ANN202 - alembic.config.Config
    """Alembic pointed at photoman's migrations (a test passes the connection in its attributes)."""
    from alembic.config import Config

    from photoman.catalog.db import _migrations_dir

    cfg = Config()
    cfg.set_main_option("script_location", str(_migrations_dir()))
    return cfg


@pytest.mark.catalogs
def test_migrations_go_down_and_up_again(empty_catalog_url: str) -> None:
    from alembic import command

    cat = Catalog(empty_catalog_url)
    cfg = _alembic_config()
    with cat.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    assert "photos" not in inspect(cat.engine).get_table_names()
    cat.close()
    cat = Catalog(empty_catalog_url)  # the next open builds it all again
    with cat.engine.connect() as conn:
        assert_model_schema(conn)
    cat.close()


@pytest.mark.catalogs
def test_0008_0009_rename_the_model_columns_to_model_id_keeping_the_values(empty_catalog_url: str) -> None:
    """A catalog an older photoman left at 0007 keeps which model embedded each photo and scored each
    tag through the columns' renames to photos.model_id (0008) and tags.model_id (0009), the tags'
    uniqueness included, and gets them back under the old names when downgraded."""
    from alembic import command

    cat = Catalog(empty_catalog_url)
    cfg = _alembic_config()
    with cat.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0007")
        conn.execute(text("INSERT INTO roots (id, path, added_at) VALUES (1, '/photos', '2020-01-01')"))
        conn.execute(text("INSERT INTO photos (root_id, path, size, mtime, caption, status, indexed_model) "
                          "VALUES (1, '/photos/a.jpg', 1, 0, '', 'ok', 'some/model')"))  # fmt: skip
        conn.execute(text("INSERT INTO tags (content_hash, model, label, score, source) "
                          "VALUES ('h', 'some/model', 'cat', 0.9, 'zeroshot')"))  # fmt: skip
    cat.close()
    cat = Catalog(empty_catalog_url)  # the open upgrades it
    with cat.session() as s:
        assert s.execute(select(Photo.path, Photo.model_id)).all() == [("/photos/a.jpg", "some/model")]
        assert s.execute(select(Tag.label, Tag.model_id)).all() == [("cat", "some/model")]
    with pytest.raises(IntegrityError), cat.session() as s:  # still one label per hash and model
        s.add(Tag(content_hash="h", model_id="some/model", label="cat", score=0.5))
    with cat.engine.connect() as conn:
        assert_model_schema(conn)
    with cat.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0007")
        assert conn.execute(text("SELECT indexed_model FROM photos")).scalars().all() == ["some/model"]
        assert conn.execute(text("SELECT model FROM tags")).scalars().all() == ["some/model"]
    cat.close()


@pytest.mark.catalogs
def test_values_round_trip(empty_catalog_url: str) -> None:
    """Paths (long, non-ASCII, private-use characters), datetimes, big sizes, float mtimes, captions."""
    cat = Catalog(empty_catalog_url)
    rng = random.Random(0)  # a long path that does not compress: 4000 bytes, past a btree entry's limit
    odd = "/photos/ünïcødé 🐈/\U00100080\U001000ff name/" + "".join(rng.choices(string.ascii_letters, k=3940))
    when = datetime(2013, 6, 1, 12, 30, 45, 123456)
    with cat.session() as s:
        root = Root(path="/photos", added_at=when)
        s.add(root)
        s.flush()
        s.add(Photo(root_id=root.id, path=odd, content_hash="a" * 64, size=2**40, mtime=1700000000.123456,
                    taken_at=when, caption="un chat 🐈 sur le toit", status="ok"))  # fmt: skip
        s.add(Tag(content_hash="a" * 64, model_id="m", label="cat", score=0.5))
    with cat.session() as s:
        p = s.scalars(select(Photo)).one()
        assert (p.path, p.size, p.taken_at, p.caption) == (odd, 2**40, when, "un chat 🐈 sur le toit")
        assert p.mtime == 1700000000.123456 and p.root.path == "/photos"
        assert s.scalars(select(Photo.path).where(Photo.path.startswith("/photos/ünïcødé"))).all() == [odd]
    with pytest.raises(IntegrityError), cat.session() as s:  # one label per hash and model
        s.add(Tag(content_hash="a" * 64, model_id="m", label="cat", score=0.9))
    with pytest.raises(IntegrityError), cat.session() as s:  # one row per path, however long
        s.add(Photo(root_id=root.id, path=odd, size=1, mtime=0.0))
    with cat.session() as s:  # a root's photos go with it (ON DELETE CASCADE, foreign keys on)
        s.execute(update(Photo).values(status="error"))
        s.execute(delete(Root))
    with cat.session() as s:
        assert s.scalars(select(Photo)).all() == []
    cat.close()


def test_machines_opening_a_new_shared_catalog_at_once_upgrade_it_once(pg_server) -> None:  # noqa: ANN001
    """Machines opening an empty shared catalog together (here threads): one migrates, all work."""
    empty_catalog_url = pg_server.fresh_database(migrated=False)
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            Catalog(empty_catalog_url).close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_bad_catalog_url_is_a_clear_error(tmp_path: Path) -> None:
    import pytest

    from photoman.errors import PhotomanError

    with pytest.raises(PhotomanError, match="cannot use catalog URL"):
        Catalog("nosuchdialect://x/y")
    with pytest.raises(PhotomanError, match="cannot use catalog URL") as bad:
        Catalog("not a url")
    assert bad.value.exit_code == 2  # a bad setting
    # the password never shows; a server that is not there is one clear line
    with pytest.raises(PhotomanError, match=r"cannot open catalog postgresql://me:\*\*\*@") as e:
        Catalog(f"postgresql://me:s3cret@/photoman?host={tmp_path}")  # plain postgresql:// means psycopg 3
    assert "s3cret" not in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(PhotomanError, match="cannot open catalog") as e:  # a password as a parameter too
        Catalog(f"postgresql://me@/photoman?host={tmp_path}&password=s3cret")
    assert "s3cret" not in str(e.value) and "password=***" in str(e.value)


def test_the_per_query_lookup_of_photos_gone_reads_an_index(tmp_path: Path) -> None:
    """Every `find` asks which photos a scan found gone; SQLite answered IS NOT NULL with a scan of the
    whole table (16 ms at 100k photos, ~150 ms at 1M), the range form reads the index."""
    from photoman.catalog.queries import _missing

    cat = Catalog(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    stmt = select(Photo.content_hash).where(_missing())
    with cat.session() as s:
        sql = str(stmt.compile(s.get_bind(), compile_kwargs={"literal_binds": True}))
        plan = " ".join(str(r[-1]) for r in s.execute(text("EXPLAIN QUERY PLAN " + sql)))
        assert "USING INDEX ix_photos_missing_since" in plan, plan
        root = Root(path="/p", added_at=datetime(2020, 1, 1))
        s.add(root)
        s.flush()
        s.add_all([Photo(root_id=root.id, path=f"/p/{i}", content_hash=f"{i:064x}", size=1, mtime=1.0,
                         status="ok", missing_since=datetime(2026, 1, 1) if i % 2 else None)
                   for i in range(4)])  # fmt: skip
    with cat.session() as s:
        assert sorted(s.scalars(stmt)) == [f"{1:064x}", f"{3:064x}"]
