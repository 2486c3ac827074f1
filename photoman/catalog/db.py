"""Open the catalog database, bring its schema up to date with Alembic, hand out sessions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from photoman.errors import ConfigError, PhotomanError


def _migrations_dir() -> Path:
    import migrations

    return Path(migrations.__file__).resolve().parent


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001 - DBAPI connection
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def make_engine(url: str) -> Engine:
    """Engine for any SQLAlchemy URL; SQLite files get WAL mode and their folder created."""
    try:
        engine = create_engine(url, future=True)
    except (ArgumentError, ImportError) as exc:
        raise ConfigError(f"cannot use catalog URL {url!r}: {exc}") from None
    if engine.dialect.name == "sqlite":
        db = engine.url.database
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def upgrade_schema(engine: Engine) -> None:
    """Apply every pending Alembic revision (the only way the schema is created or changed)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def head_revision() -> str | None:
    """The newest revision in migrations/versions, read from the files (no Alembic import: it costs
    ~0.3 s, and almost every open finds the schema already current)."""
    import re

    revisions: dict[str, str | None] = {}
    for f in (_migrations_dir() / "versions").glob("*.py"):
        text = f.read_text()
        rev = re.search(r'^revision\s*=\s*["\']([^"\']+)', text, re.M)
        down = re.search(r'^down_revision\s*=\s*(?:["\']([^"\']+)|None)', text, re.M)
        if rev:
            revisions[rev.group(1)] = down.group(1) if down else None
    heads = set(revisions) - {d for d in revisions.values() if d}
    return heads.pop() if len(heads) == 1 else None


def schema_current(engine: Engine) -> bool:
    """Whether the database is already at the head revision (then there is nothing to migrate)."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    head = head_revision()
    if head is None:
        return False
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except SQLAlchemyError:
        return False
    return rows == [head]


class Catalog:
    """The catalog database: an engine plus a session factory, schema upgraded on open."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        try:
            if not schema_current(self.engine):
                upgrade_schema(self.engine)
        except OperationalError as exc:
            raise PhotomanError(f"cannot open catalog {url}: {exc.orig}") from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any error."""
        with self._sessions() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    def close(self) -> None:
        self.engine.dispose()
