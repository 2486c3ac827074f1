"""Open the catalog database, bring its schema up to date with Alembic, hand out sessions."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from photoman.catalog.paths import bind_path_map
from photoman.errors import ConfigError, DiskFullError, PhotomanError, SettingValueError

if TYPE_CHECKING:
    from photoman.pathmap import PathMap


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


# a secret given as a query parameter (`?password=…`, libpq's `sslpassword`, a token): masked too
_SECRET_PARAM = re.compile(r"([?&](?:password|passwd|pwd|sslpassword|api_?key|token)=)[^&#]*", re.IGNORECASE)


def mask_secrets(text: str) -> str:
    """A URL (or any text holding one) with its password, in the user part or the query, masked."""
    return _SECRET_PARAM.sub(r"\1***", re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", text))


def shown_url(url: str | URL) -> str:
    """The URL as messages show it: the password masked, wherever it was given."""
    try:
        text = (url if isinstance(url, URL) else make_url(url)).render_as_string(hide_password=True)
    except ArgumentError:
        text = str(url)
    return mask_secrets(text)


def make_engine(url: str) -> Engine:
    """Engine for any SQLAlchemy URL; SQLite files get WAL mode and their folder created.

    A plain ``postgresql://`` URL means psycopg 3 (``pip install 'photoman[postgres]'``), not
    SQLAlchemy's default psycopg2.
    """
    try:
        parsed = make_url(url)
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        engine = create_engine(parsed, future=True, pool_pre_ping=parsed.get_backend_name() != "sqlite")
    except ImportError as exc:
        hint = " (pip install 'photoman[postgres]')" if url.startswith("postgres") else ""
        raise ConfigError(f"cannot use catalog URL {shown_url(url)!r}: {exc}{hint}") from None
    except ArgumentError as exc:  # not a URL at all: a bad setting (exit 2)
        raise SettingValueError(f"cannot use catalog URL {shown_url(url)!r}: {exc}") from None
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
    # configparser reads % as interpolation: escape it (a socket dir or password in the URL has them)
    url = engine.url.render_as_string(hide_password=False).replace("%", "%%")
    cfg.set_main_option("sqlalchemy.url", url)
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn, _sqlite_ddl_transaction(conn):
            _drop_unfinished_schema(conn)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        return
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":  # machines sharing the catalog upgrade one at a time
            from photoman.catalog.lease import MIGRATE_KEY

            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATE_KEY})")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


@contextmanager
def _sqlite_ddl_transaction(conn: Connection) -> Iterator[None]:
    """Run the migrations in one real SQLite transaction, so a crash halfway leaves the schema as it was.

    Python's sqlite3 opens transactions only before INSERT/UPDATE/DELETE: each CREATE or ALTER of a
    migration otherwise commits on its own, and a process killed while the first open created the
    tables left a catalog Alembic could never upgrade ("table roots already exists"). With the
    driver's own transaction handling off, an explicit BEGIN IMMEDIATE covers every statement (and
    makes a second process that opens the same new catalog wait its turn)."""
    raw = conn.connection.driver_connection
    level = raw.isolation_level  # type: ignore[union-attr]
    raw.isolation_level = None  # type: ignore[union-attr]
    try:
        # foreign keys off for the migration (only possible outside a transaction): a batch migration
        # that recreates a table drops the old one, and with them on, dropping `roots` would delete
        # every photo (ON DELETE CASCADE); checked before the commit instead
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        yield
        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").first()
        if broken is not None:
            raise PhotomanError(f"a catalog migration broke a reference in table {broken[0]}: not applied")
        conn.commit()  # the driver's commit() sends COMMIT: a transaction is open
    finally:
        if raw.in_transaction:  # type: ignore[union-attr]
            raw.rollback()  # type: ignore[union-attr]
        conn.exec_driver_sql("PRAGMA foreign_keys=ON")
        raw.isolation_level = level  # type: ignore[union-attr]


def _drop_unfinished_schema(conn: Connection) -> None:
    """Drop what a crashed first open of an older photoman left: tables with no Alembic revision
    recorded and no rows in any of them (so nothing of the user's can be in them); the migrations then
    create the schema from the start. A catalog with any row is left for Alembic to report."""
    from sqlalchemy import inspect

    tables = [t for t in inspect(conn).get_table_names() if not t.startswith("sqlite_")]
    if not tables:
        return
    if "alembic_version" in tables and conn.exec_driver_sql("SELECT 1 FROM alembic_version").first():
        return
    if any(conn.exec_driver_sql(f'SELECT 1 FROM "{t}" LIMIT 1').first() for t in tables):
        return
    for t in tables:
        conn.exec_driver_sql(f'DROP TABLE "{t}"')


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
    """The catalog database: an engine plus a session factory, schema upgraded on open.

    ``path_map``: this machine's mount mapping of a shared library (its path columns read and
    compare in this machine's paths; see catalog/paths.py)."""

    def __init__(self, url: str, path_map: PathMap | None = None) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.read_only = False  # opened read-only because its disk is full (see _read_only_when_full)
        self._guard: Callable[[], None] | None = None
        try:
            if not schema_current(self.engine):
                upgrade_schema(self.engine)
        except DatabaseError as exc:  # OperationalError, or a file that is not a database at all
            if not isinstance(exc, OperationalError) or not self._read_only_when_full():
                reason = " ".join(str(exc.orig).split())  # one line (libpq's messages have several)
                raise PhotomanError(f"cannot open catalog {shown_url(url)}: {reason}") from None
        bind_path_map(self.engine, path_map)  # after the migrations: they work in stored paths
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def _read_only_when_full(self) -> bool:
        """On a full disk SQLite cannot even open a WAL database (its shared-memory file needs a page).

        Reading must go on, so the file is opened immutable and read-only instead, which needs no
        space; that is exact only when no write-ahead log is left over (the last writer closed
        cleanly), so with one there this refuses. Writes then fail with the disk-full line.
        """
        from photoman.diskspace import free_mb, message

        db = self.engine.url.database if self.engine.dialect.name == "sqlite" else None
        if not db or db == ":memory:" or not Path(db).is_file():
            return False
        folder = Path(db).parent
        if free_mb(folder) >= 1.0:
            return False
        wal = Path(f"{db}-wal")
        if wal.exists() and wal.stat().st_size > 0:
            what = "the catalog needs a little room even to open after an unclean stop"
            raise DiskFullError(message(folder, free_mb(folder), what=what))
        self.engine.dispose()
        self.engine = create_engine(f"sqlite:///file:{db}?mode=ro&immutable=1&uri=true", future=True)
        if not schema_current(self.engine):
            raise DiskFullError(message(folder, free_mb(folder)) + " (the catalog needs an upgrade first)")
        self.read_only = True

        def refuse() -> None:
            raise DiskFullError(message(folder, free_mb(folder)))

        self.guard_writes(refuse)
        return True

    def guard_writes(self, check: Callable[[], None] | None) -> None:
        """Call ``check`` before the first INSERT, UPDATE or DELETE of every transaction (it raises to
        refuse the write): the fence of a shared catalog's writer lease. None removes it."""
        if self._guard is None and check is not None:
            event.listen(self.engine, "begin", _unfenced)
            event.listen(self.engine, "before_cursor_execute", self._fence)
        elif self._guard is not None and check is None:
            event.remove(self.engine, "begin", _unfenced)
            event.remove(self.engine, "before_cursor_execute", self._fence)
        self._guard = check

    def _fence(self, conn, _cursor, _statement, _params, context, _many) -> None:  # noqa: ANN001
        check = self._guard
        if check is None or context is None or conn.info.get("photoman_fenced"):
            return
        if context.isinsert or context.isupdate or context.isdelete:
            check()
            conn.info["photoman_fenced"] = True

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
        self.guard_writes(None)
        self.engine.dispose()


def _unfenced(conn, *_: object) -> None:  # noqa: ANN001 - each transaction's first write is checked
    conn.info["photoman_fenced"] = False
