"""Several machines, one library: the writer lease of a shared PostgreSQL catalog (named holder,
read-only standbys, takeover when the writer is killed, a lost lease noticed before writing), the
per-machine mount mapping, and the docker-compose set-up the README documents.

"Machines" here are processes with their own data dirs sharing one PostgreSQL database; each keeps
its own embedded vector store (qdrant-client's in-process mode is per process too), so only the
catalog side is shared, which is where the lease lives.
"""

from __future__ import annotations

import contextlib
import os
import re
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
from photoman.config import Settings
from photoman.errors import ConfigError, StoreBusyError
from photoman.library import Library
from photoman.pathmap import PathMap, parse_path_map

from .conftest import use_trash

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


def test_a_pure_query_answers_while_another_machine_writes(
    tmp_path: Path, pg_url: str, tiny_model: Path, library_dir: Path
) -> None:
    """Showing a caption or listing duplicates only reads: a laptop answers them in-process while the
    GPU box holds the writer lease; only the requests that change something are refused, by name."""
    from photoman import ops
    from photoman.client import Client

    kw = {"model": str(tiny_model), "precision": "onnx", "workers": 1, "batch_size": 4}
    gpu_box = Library(machine(tmp_path, "gpu-box", pg_url, **kw), "photoman watch")
    try:
        assert ops.index(gpu_box, folders=[str(library_dir)])["embedded"] == 10
        photo = str(library_dir / "scikit-image--chelsea.png")
        ops.caption(gpu_box, path=photo, text="a tabby cat")
        writer = gpu_box.lease.name  # type: ignore[union-attr]
        with Client(machine(tmp_path, "laptop", pg_url, **kw), daemon=False) as laptop:
            assert laptop.connect() == "direct"  # what the TUI does first: read-only here, not refused
            assert laptop.caption(photo)["caption"] == "a tabby cat"
            assert laptop.photo(photo)["caption"] == "a tabby cat"
            assert laptop.dupes(threshold=0.9995, rotations=False)["trashed"] == []
            assert laptop.status()["catalog"]["lease"] == {"holder": writer}
            for change in (lambda: laptop.caption(photo, "a dog"), lambda: laptop.dupes(trash=True)):
                with pytest.raises(StoreBusyError, match=f"busy: {re.escape(writer)} holds its writer lease"):
                    change()
        assert ops.caption(gpu_box, path=photo)["caption"] == "a tabby cat"
    finally:
        gpu_box.close()


SPINNER = """
import sys, time
from photoman.catalog.lease import WriterLease

lease = WriterLease(sys.argv[1], "photoman watch")
while not lease.try_acquire():
    time.sleep(0.005)
print("holding", flush=True)
time.sleep(600)
"""


def lease_holder(url: str) -> subprocess.Popen[str]:
    """Another machine's writer: a process that takes the writer lease as soon as it is free."""
    return subprocess.Popen([sys.executable, "-c", SPINNER, url], stdout=subprocess.PIPE, text=True)


def holds(proc: subprocess.Popen[str], timeout: float) -> bool:
    """Whether the lease_holder process says it holds the lease within ``timeout`` seconds."""
    import select

    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return bool(ready) and proc.stdout.readline().strip() == "holding"


def test_a_standby_daemon_answers_takes_over_and_steps_back(
    tmp_path: Path,
    pg_url: str,
    pg_server,  # noqa: ANN001
    tiny_model: Path,
    library_dir: Path,
    env: dict[str, str],
) -> None:
    """The laptop's first query starts its daemon while the GPU box writes: it comes up as a standby
    (answers, refuses writes, watches nothing), becomes the writer within seconds of the GPU box's
    death (watches the roots, catches up its own vectors), and steps back when its lease is lost."""
    import json

    from photoman import ops
    from photoman.client import Client
    from photoman.errors import PhotomanError
    from photoman.service.protocol import call

    from .daemon_helpers import photoman, settings_of, wait_for

    kw = {"model": str(tiny_model), "precision": "onnx", "workers": 1, "batch_size": 4}
    with Library(machine(tmp_path, "gpu-box", pg_url, **kw), "photoman index") as lib:
        ops.index(lib, folders=[str(library_dir)])
    gpu_box = lease_holder(pg_url)
    assert holds(gpu_box, 30)
    gpu_name = f"pid {gpu_box.pid} on {socket.gethostname()} (photoman watch)"
    laptop = {**env, "PHOTOMAN_CATALOG_URL": pg_url, "PHOTOMAN_AUTOSTART": "1"}
    sock = settings_of(laptop).socket_path
    daemon = lambda: call(sock, "status")["daemon"]  # noqa: E731
    others: list[subprocess.Popen[str]] = [gpu_box]
    try:
        res = photoman(laptop, "find", "a cat", "--all", "--json")  # starts the daemon: a standby
        assert res.returncode == 0 and json.loads(res.stdout) == [], res.stderr  # its own vectors: none yet
        assert "started the photoman daemon" in res.stderr
        d = daemon()
        assert (d["role"], d["state"], d["writer"], d["watching"]) == ("standby", "standby", gpu_name, {})
        text = photoman(laptop, "status").stdout
        assert f"writer    {gpu_name} holds the writer lease" in text and "standby: answers queries" in text
        photo = str(library_dir / "scikit-image--chelsea.png")
        assert call(sock, "caption", {"path": photo})["caption"] == ""
        refused = photoman(laptop, "caption", photo, "a dog")
        assert refused.returncode != 0 and len(refused.stderr.strip().splitlines()) == 1
        assert f"busy: {gpu_name} holds its writer lease" in refused.stderr

        gpu_box.kill()  # the writer dies: the standby takes over and catches up
        gpu_box.wait()
        wait_for(lambda: daemon()["role"] == "writer", 15, "the standby to take the lease over")
        wait_for(lambda: len(call(sock, "find", {"text": "a cat", "limit": 20})) == 10, 60, "its catch-up")
        d = daemon()
        mine = f"pid {d['pid']} on {socket.gethostname()} (photoman watch)"
        assert d["writer"] == mine and list(d["watching"]) == [str(library_dir)]
        call(sock, "caption", {"path": photo, "text": "a tabby cat"})

        # its lease session is cut and another machine takes the lease meanwhile: back to standby
        thief = lease_holder(pg_url)
        others.append(thief)
        cut = f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{mine}'"
        deadline = time.monotonic() + 20
        while True:
            pg_server.admin(cut)
            if holds(thief, 0.5):
                break
            assert time.monotonic() < deadline, "the other process never got the lease"
        thief_name = f"pid {thief.pid} on {socket.gethostname()} (photoman watch)"
        wait_for(lambda: daemon()["role"] == "standby", 15, "the daemon to step back")
        d = daemon()
        assert (d["state"], d["writer"], d["watching"]) == ("standby", thief_name, {})
        assert len(call(sock, "find", {"text": "a cat", "limit": 20})) == 10  # still answering
        assert call(sock, "caption", {"path": photo})["caption"] == "a tabby cat"
    finally:
        with contextlib.suppress(PhotomanError):  # none if it never started
            Client(settings_of(laptop)).stop()
        for proc in others:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


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


def test_path_map_setting_from_the_file_the_env_and_to_a_started_daemon(tmp_path: Path) -> None:
    """config.toml's table, the env form, one-line errors, and the launcher hands it on unchanged."""
    from typer.testing import CliRunner

    from photoman.cli import app
    from photoman.config import load_settings
    from photoman.service.launcher import settings_env

    cfg = tmp_path / "config.toml"
    cfg.write_text('[path_map]\n"/mnt/nas/photos/" = "/Volumes/photos"\n')
    assert load_settings(cfg, env={}).path_map == {"/mnt/nas/photos": "/Volumes/photos"}
    env = {"PHOTOMAN_PATH_MAP": f"/mnt/nas/photos=/Volumes/photos{os.pathsep}/srv/raw=/Volumes/raw"}
    both = load_settings(cfg, env=env)  # the env wins over the file, as for every setting
    assert both.path_map == {"/mnt/nas/photos": "/Volumes/photos", "/srv/raw": "/Volumes/raw"}
    odd = both.with_overrides(path_map={"/srv/a=b:c": "/Volumes/x:y"})  # not expressible as pairs
    for settings in (both, odd):
        child = load_settings(cfg, env=settings_env(settings, base={}))
        assert child.path_map == settings.path_map
    for bad, words in [('path_map = "/mnt/nas/photos"', "is not STORED=LOCAL"),
                       ("path_map = 3", "must be a table"),
                       ('path_map = { photos = "/Volumes/photos" }', "both must be absolute"),
                       ('path_map = { "/a" = "/x", "/b" = "/x" }', "both map to '/x'")]:  # fmt: skip
        cfg.write_text(bad + "\n")
        with pytest.raises(ConfigError, match=words):
            load_settings(cfg, env={})
        res = CliRunner().invoke(app, ["--config", str(cfg), "config"])
        lines = res.stderr.strip().splitlines()
        assert res.exit_code == 2 and len(lines) == 1 and "path_map" in lines[0]
        assert "Traceback" not in res.output


@pytest.mark.catalogs
def test_a_machine_that_mounts_the_share_elsewhere_works_in_its_own_paths(
    cli_env: Settings, library_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The GPU box indexes the share at mnt-a/photos; the laptop mounts the same files at mnt-b/photos
    and maps one to the other: every path it prints, takes, lists, indexes and trashes is its own,
    while the catalog and the vector payloads keep the stored spelling."""
    import json
    import shutil

    from typer.testing import CliRunner

    from photoman.catalog import Catalog, Photo
    from photoman.client import open_client
    from photoman.config import load_settings

    run = lambda *args: CliRunner().invoke(app, [str(a) for a in args])  # noqa: E731
    from photoman.cli import app

    def ok(*args: object) -> str:
        res = run(*args)
        assert res.exit_code == 0, res.output
        return res.stdout

    def stored_rows() -> list[str]:
        """Photo paths as the catalog holds them (read with no mapping), after checking its roots."""
        raw = Catalog(cli_env.catalog)
        try:
            with raw.session() as s:
                assert sorted(s.scalars(select(Root.path))) == sorted([str(stored), str(local_only)])
                return list(s.scalars(select(Photo.path)))
        finally:
            raw.close()

    stored = tmp_path / "mnt-a" / "photos"
    stored.parent.mkdir()
    library_dir.rename(stored)
    shutil.copy2(stored / "scikit-image--coffee.png", stored / "trips" / "coffee-copy.png")  # an exact copy
    local_only = tmp_path / "local"  # a root no mapping covers
    local_only.mkdir()
    shutil.copy2(stored / "scikit-image--camera.png", local_only / "camera.png")
    ok("index", stored, local_only)

    # the laptop: the share is mounted elsewhere (the GPU box's path does not exist here)
    here = tmp_path / "mnt-b" / "photos"
    here.parent.mkdir()
    stored.rename(here)
    offline = json.loads(ok("status", "--json"))["roots"]
    assert {r["path"]: r["online"] for r in offline} == {str(stored): False, str(local_only): True}
    config = cli_env.data_dir.parent / "no-config.toml"
    config.write_text(f'[path_map]\n"{stored}" = "{here}"\n')

    roots = {r["path"]: r for r in json.loads(ok("status", "--json"))["roots"]}
    assert set(roots) == {str(here), str(local_only)} and all(r["online"] for r in roots.values())
    assert roots[str(here)]["photos"] == 11
    listed = json.loads(ok("roots", "--json"))
    assert [r["path"] for r in listed] == sorted([str(here), str(local_only)])
    assert all(r["online"] for r in listed)

    found = json.loads(ok("find", "a cup of coffee", "--all", "--json"))
    paths = [f["path"] for f in found] + [d for f in found for d in f["duplicates"]]
    assert len(paths) == 12 and all(os.path.isfile(p) for p in paths)
    assert {os.path.dirname(p) for p in paths} == {str(here), str(here / "trips"), str(local_only)}
    assert ok("find", "a cup of coffee", "--all", "-0").split("\0")[:-1] == [f["path"] for f in found]
    trips = json.loads(ok("find", "a rocket", "--all", "--json", "--in", here / "trips"))
    assert len(trips) == 5 and all(f["path"].startswith(f"{here}/trips/") for f in trips)

    rocket = here / "trips" / "scikit-image--rocket.jpg"
    ok("caption", rocket, "a rocket on its launch pad")
    assert "a rocket on its launch pad" in ok("caption", rocket)
    with open_client(load_settings(), daemon=False) as pm:
        assert pm.photo(rocket)["caption"] == "a rocket on its launch pad"

    report = json.loads(ok("index", here, "--json"))  # the same root, named by this machine's path
    assert (report["embedded"], report["removed"], report["unchanged"]) == (0, 0, 11)
    shutil.copy2(local_only / "camera.png", here / "camera-new.png")
    assert json.loads(ok("index", "--json"))["reused"] == 1
    rows = stored_rows()  # indexed here, stored in the GPU box's spelling
    assert str(stored / "camera-new.png") in rows
    assert str(stored / "trips" / "scikit-image--rocket.jpg") in rows

    dupes = json.loads(ok("dupes", "--json", "--no-rotations", "--threshold", "0.9995"))
    group_paths = {p["path"] for g in dupes["groups"] for p in g["photos"]}
    assert str(here / "trips" / "coffee-copy.png") in group_paths
    assert all(os.path.isfile(p) for p in group_paths)
    use_trash(monkeypatch, tmp_path / "xdg")  # the trash lives here for the test
    trashed = json.loads(ok("dupes", "--trash", "--yes", "--json", "--no-rotations", "--threshold", "0.9995"))
    assert trashed["trashed"] and all(p.startswith(f"{here}/") for p in trashed["trashed"])
    assert not any(os.path.exists(p) for p in trashed["trashed"])

    # what the stores hold is still the GPU box's spelling (as any other machine expects it)
    rows = stored_rows()
    assert not any(p.startswith(str(here)) for p in rows) and len(rows) == 13 - len(trashed["trashed"])
    with Library(load_settings(), "test") as lib:
        payloads = [p.payload for p in lib.store.retrieve(list(lib.store.all_ids()))]
    assert all(r == str(local_only) or r == str(stored) for p in payloads for r in p["roots"])
    spelt = [x for p in payloads for x in p["paths"] + p["folders"]]
    assert spelt and all(x.startswith((str(stored), str(local_only))) for x in spelt)


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
