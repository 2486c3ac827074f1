"""The writer lease of a shared catalog: who may write a library that several machines use.

On PostgreSQL it is a session-level advisory lock held on a dedicated connection. The server drops
it the moment that session ends, whether the writer exits, crashes, is killed -9 or its machine
vanishes (then after the TCP keepalive timeout, ~30 s), so a crashed writer never leaves a stale lease
and a standby takes over by simply trying again. The lock carries no data; the holder is named by the
lease connection's ``application_name`` ("pid 4242 on gpu-box (photoman watch)").

SQLite catalogs are local files: their writer lock stays the data-dir lock (library.DataDirLock).
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from photoman.errors import StoreBusyError

log = logging.getLogger(__name__)

LEASE_KEY = int.from_bytes(b"photoman", "big")  # the advisory lock key (per database: one library)
MIGRATE_KEY = LEASE_KEY + 1  # transaction lock held while Alembic upgrades the schema

# libpq settings for the lease connection: notice a dead server within ~30 s instead of 2 hours
_CLIENT_KEEPALIVE = {
    "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
    "connect_timeout": 10,
}  # fmt: skip
# and the server side, so it ends a vanished writer's session (and frees its lease) as soon
_SESSION_SETTINGS = (
    "SET tcp_keepalives_idle = 10",
    "SET tcp_keepalives_interval = 5",
    "SET tcp_keepalives_count = 3",
    "SET idle_session_timeout = 0",  # a server-wide idle timeout must not end the lease
    "SET idle_in_transaction_session_timeout = 0",
)


class LeaseLost(StoreBusyError):
    """This process held the writer lease and lost it (database restarted, network gone): stop writing."""


def is_shared(url: str | URL) -> bool:
    """Whether a catalog URL names a server database that other machines may share (PostgreSQL)."""
    return make_url(url).get_backend_name() == "postgresql"


def holder_name(purpose: str) -> str:
    """How this process names itself as the holder: pid, host and what it is doing."""
    return f"pid {os.getpid()} on {socket.gethostname()} ({purpose})"


class WriterLease:
    """The single-writer lease of one PostgreSQL catalog database.

    ``try_acquire()`` is cheap (one query) and never blocks: a standby polls it every few seconds.
    ``verify()`` is the fence: the catalog calls it before each writing transaction of the holder.
    """

    def __init__(self, url: str | URL, purpose: str = "photoman") -> None:
        self.url = make_url(url)
        self.purpose = purpose
        self.name = _ascii(holder_name(purpose))[:63]  # application_name: ASCII, 63 bytes at most
        args: dict[str, object] = {"application_name": self.name}
        if self.url.get_driver_name() in ("psycopg", "psycopg2"):  # libpq underneath
            args.update(_CLIENT_KEEPALIVE)
        self._engine = create_engine(self.url, poolclass=NullPool, isolation_level="AUTOCOMMIT",
                                     connect_args=args)  # fmt: skip
        self._conn: Connection | None = None
        self._lock = threading.RLock()

    @property
    def held(self) -> bool:
        return self._conn is not None

    def try_acquire(self) -> bool:
        """Take the lease if nobody holds it; True when this process now holds it."""
        with self._lock:
            if self._conn is not None:
                return True
            conn = self._engine.connect()
            try:
                for sql in _SESSION_SETTINGS:
                    conn.exec_driver_sql(sql)
                got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LEASE_KEY}).scalar()
            except BaseException:
                conn.close()
                raise
            if not got:
                conn.close()
                return False
            self._conn = conn
            return True

    def acquire(self) -> None:
        """Take the lease or raise StoreBusyError naming its holder."""
        if not self.try_acquire():
            raise self.busy_error()

    def holder(self) -> str | None:
        """Who holds the lease now (None when nobody does): their pid, host and purpose."""
        hi, lo = LEASE_KEY >> 32, LEASE_KEY & 0xFFFFFFFF
        query = text(
            "SELECT a.application_name, l.pid FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :hi AND l.objid = :lo "
            "AND l.objsubid = 1 "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        with self._engine.connect() as conn:
            row = conn.execute(query, {"hi": hi, "lo": lo}).first()
        if row is None:
            return None
        return row[0] or f"another photoman process (server session {row[1]})"

    def busy_error(self, error: type[StoreBusyError] = StoreBusyError) -> StoreBusyError:
        """The error to show when someone else holds the lease, naming them."""
        try:
            who = self.holder() or "another photoman process"
        except DBAPIError:  # the catalog is out of reach: the refusal still says why, without a name
            who = "another photoman process"
        from photoman.catalog.db import shown_url

        where = shown_url(self.url)
        return error(
            f"the library in {where} is busy: {who} holds its writer lease; this process may read "
            "it but not write it (stop that process, or wait: the lease is free once it exits)"
        )

    def verify(self) -> None:
        """Raise LeaseLost unless this process still holds the lease (one round trip).

        A dead lease connection (database restarted, network cut) is replaced and the lease taken
        again if it is free; if another process got it meanwhile, that process is the writer now.
        """
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.exec_driver_sql("SELECT 1")
                    return
                except DBAPIError:
                    log.warning("the writer lease connection died; taking the lease again")
                    self._drop()
            try:
                if self.try_acquire():
                    return
            except DBAPIError as exc:
                raise LeaseLost(f"lost the writer lease: cannot reach the catalog ({exc.orig})") from None
            raise self.busy_error(LeaseLost)

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.invalidate()
                conn.close()
            except DBAPIError:
                pass

    def release(self) -> None:
        """Give the lease up (closing the session releases it; the unlock is for tidiness)."""
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LEASE_KEY})
                    self._conn.close()
                except DBAPIError:
                    pass
                self._conn = None

    def close(self) -> None:
        self.release()
        self._engine.dispose()

    def __enter__(self) -> WriterLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ascii(s: str) -> str:
    return s.encode("ascii", "replace").decode()
