"""Several machines, one library: the writer lease of a shared PostgreSQL catalog (named holder,
read-only standbys, takeover when the writer is killed, a lost lease noticed before writing), the
per-machine mount mapping, and the docker-compose set-up the README documents.

"Machines" here are processes with their own data dirs sharing one PostgreSQL database; each keeps
its own embedded vector store (qdrant-client's in-process mode is per process too), so only the
catalog side is shared, which is where the lease lives.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from photoman.catalog import Root
from photoman.catalog.lease import LeaseLost
from photoman.catalog.pathmap import PathMap, parse_path_map
from photoman.config import Settings
from photoman.errors import ConfigError, StoreBusyError
from photoman.library import Library

ROOT = Path(__file__).resolve().parents[1]

HOLDER = """
import sys, time
from datetime import datetime
from pathlib import Path
from photoman.catalog import Root
from photoman.config import Settings
from photoman.library import Library

lib = Library(Settings(data_dir=Path(sys.argv[1]), catalog_url=sys.argv[2]), "photoman watch")
with lib.catalog.session() as s:
    s.add(Root(path="/mnt/nas/photos", added_at=datetime.now()))
print("holding", flush=True)
time.sleep(600)
"""


def machine(tmp_path: Path, name: str, url: str, **kw: object) -> Settings:
    base = tmp_path / name
    return Settings(data_dir=base / "data", runtime_dir=base / "run", state_dir=base / "state",
                    catalog_url=url, autostart=0, **kw)  # type: ignore[arg-type]  # fmt: skip


def add_root(lib: Library, path: str) -> None:
    with lib.catalog.session() as s:
        s.add(Root(path=path, added_at=datetime.now()))


def root_paths(lib: Library) -> list[str]:
    with lib.catalog.session() as s:
        return sorted(s.scalars(select(Root.path)))


def test_a_killed_writer_is_taken_over_by_a_standby_within_seconds(tmp_path: Path, pg_url: str) -> None:
    """Process A writes (and is killed -9); B on another data dir serves reads, then takes over."""
    a = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "a" / "data"), pg_url],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert a.stdout is not None and a.stdout.readline().strip() == "holding", a.stderr and a.stderr.read()
        holder = f"pid {a.pid} on {socket.gethostname()} (photoman watch)"

        # a plain writer anywhere is refused, with who holds the library
        with pytest.raises(StoreBusyError, match="busy: " + holder.replace("(", r"\(").replace(")", r"\)")):
            Library(machine(tmp_path, "c", pg_url), "photoman index")

        b = Library(machine(tmp_path, "b", pg_url), "photoman watch", standby=True)
        try:
            assert not b.write and b.writer_busy is not None and holder in str(b.writer_busy)
            assert root_paths(b) == ["/mnt/nas/photos"]  # reads work
            with pytest.raises(StoreBusyError, match="holds its writer lease"):
                add_root(b, "/elsewhere")  # writes are refused before they reach the database
            assert root_paths(b) == ["/mnt/nas/photos"]
            assert not b.take_over()  # the writer is alive

            a.send_signal(signal.SIGKILL)
            a.wait()
            killed = time.monotonic()
            while not b.take_over():
                assert time.monotonic() - killed < 5, "the lease was not freed within 5 s of the kill"
                time.sleep(0.1)
            assert b.write and b.writer_busy is None
            add_root(b, "/srv/photos")
            assert root_paths(b) == ["/mnt/nas/photos", "/srv/photos"]
            mine = f"pid {os.getpid()} on {socket.gethostname()} (photoman watch)"
            with pytest.raises(StoreBusyError, match=mine.replace("(", r"\(").replace(")", r"\)")):
                Library(machine(tmp_path, "c", pg_url), "photoman index")
        finally:
            b.close()
        with Library(machine(tmp_path, "c", pg_url), "photoman index") as c:  # a clean close frees it
            assert c.write and c.lease is not None and c.lease.held
    finally:
        if a.poll() is None:
            a.kill()
            a.wait()


def test_a_lost_lease_is_noticed_before_the_next_write(tmp_path: Path, pg_url: str, pg_server) -> None:  # noqa: ANN001
    """The writer's lease session dies (database restart, network cut): free, it is taken again; taken
    by another process meanwhile, the old writer's next write fails instead of two writers."""
    a = Library(machine(tmp_path, "a", pg_url), "photoman watch")
    assert a.lease is not None
    cut = f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{a.lease.name}'"
    try:
        pg_server.admin(cut)
        add_root(a, "/one")  # nobody took it: the writer takes it again and writes
        assert a.lease.held and root_paths(a) == ["/one"]

        pg_server.admin(cut)
        with Library(machine(tmp_path, "b", pg_url), "photoman watch", standby=True) as b:
            assert b.take_over()
            with pytest.raises(LeaseLost, match=f"pid {os.getpid()} on .* holds its writer lease"):
                add_root(a, "/two")
            assert not a.write and not a.take_over()  # a is a standby now
            add_root(b, "/three")
            assert root_paths(a) == ["/one", "/three"]  # a still reads
        assert a.take_over() and a.write  # b has gone: a writes again
        add_root(a, "/four")
    finally:
        a.close()


def test_readers_take_no_lock_and_never_write(tmp_path: Path, pg_url: str) -> None:
    """With a Qdrant server and a shared catalog, a reader holds nothing: any number run beside the writer."""
    cfg = machine(tmp_path, "laptop", pg_url, qdrant_url=str(tmp_path / "qdrant-local"))
    with Library(cfg, "photoman index") as writer:
        add_root(writer, "/mnt/nas/photos")
        # the writer holds this data dir's lock too: a reader that wanted it would raise here
        readers = [Library(cfg, "photoman find", write=False) for _ in range(2)]
        try:
            assert all(root_paths(r) == ["/mnt/nas/photos"] for r in readers)
            with pytest.raises(StoreBusyError, match="writer lease"):
                add_root(readers[0], "/x")
        finally:
            for r in readers:
                r.close()
        assert "photoman index" in cfg.lock_file.read_text()


def test_sqlite_catalog_keeps_the_data_dir_lock(tmp_path: Path) -> None:
    cfg = Settings(data_dir=tmp_path / "data", runtime_dir=tmp_path / "run", state_dir=tmp_path / "state")
    with Library(cfg, "photoman index") as lib:
        assert lib.lease is None and lib.take_over()
        with pytest.raises(StoreBusyError, match=r"busy: pid \d+ \(photoman index\)"):
            Library(cfg, "photoman watch", standby=True)  # standby concerns shared catalogs only


# ---------- per-machine mount mapping ----------


def test_path_map_turns_stored_paths_into_local_ones_and_back(tmp_path: Path) -> None:
    pm = PathMap({"/mnt/nas/photos": "/Volumes/photos/", "/mnt/nas/photos/raw": "/Volumes/raw"})
    assert pm.to_local("/mnt/nas/photos/2024/a.jpg") == "/Volumes/photos/2024/a.jpg"
    assert pm.to_local("/mnt/nas/photos") == "/Volumes/photos"
    assert pm.to_local("/mnt/nas/photos/raw/b.cr2") == "/Volumes/raw/b.cr2"  # the longest prefix wins
    assert pm.to_local("/mnt/nas/photos-old/c.jpg") == "/mnt/nas/photos-old/c.jpg"  # whole names only
    assert pm.to_local("/home/me/d.jpg") == "/home/me/d.jpg"
    assert pm.to_stored("/Volumes/photos/2024/a.jpg") == "/mnt/nas/photos/2024/a.jpg"
    assert pm.to_stored("/Volumes/raw/b.cr2") == "/mnt/nas/photos/raw/b.cr2"
    assert not PathMap(None) and PathMap(None).to_local("/a") == "/a"
    env = parse_path_map(f"/mnt/nas/photos=/Volumes/photos{os.pathsep}/srv/x=/x")
    assert env == {"/mnt/nas/photos": "/Volumes/photos", "/srv/x": "/x"}
    for bad in ("/mnt/nas/photos", {"relative": "/x"}, {"/a": 3}):
        with pytest.raises(ConfigError, match="path_map"):
            parse_path_map(bad)  # type: ignore[arg-type]
    # the laptop mounts the NAS elsewhere: a stored row leads to the file through its own mount
    nas = tmp_path / "nas" / "photos"
    nas.mkdir(parents=True)
    (nas / "a.jpg").write_bytes(b"x")
    (tmp_path / "Volumes").mkdir()
    (tmp_path / "Volumes" / "photos").symlink_to(nas)
    laptop = PathMap({"/mnt/nas/photos": str(tmp_path / "Volumes" / "photos")})
    assert Path(laptop.to_local("/mnt/nas/photos/a.jpg")).read_bytes() == b"x"


# ---------- the documented server set-up ----------


def test_compose_file_binds_localhost_keeps_data_in_volumes_and_secrets_in_env() -> None:
    import yaml

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"qdrant", "postgres"} <= set(services)
    for name in ("qdrant", "postgres"):  # the photoman daemon's services: tests/test_docker.py
        svc = services[name]
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)  # never on every interface
        for vol in svc.get("volumes", []):
            assert vol.split(":")[0] in compose["volumes"], (name, vol)  # named volumes, declared
        assert svc.get("volumes"), name
    env = services["postgres"]["environment"]
    assert env["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")  # required, from the env
    assert services["qdrant"]["environment"]["QDRANT__SERVICE__API_KEY"].startswith("${QDRANT_API_KEY")
