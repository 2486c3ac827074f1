"""The Docker set-up, read rather than run (Docker cannot run here): docker-compose.yml parses, every
service keeps to localhost and named volumes with its secrets from the environment, the photoman
daemon's services mount what the Dockerfile expects where it expects it, the GPU one reserves the
NVIDIA devices, and the Dockerfile installs what the README says."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from photoman.cli import app
from photoman.config import Settings

ROOT = Path(__file__).resolve().parent.parent
DAEMONS = ("photoman", "photoman-gpu")
SECRET = re.compile(r"PASSWORD|API_KEY|SECRET|TOKEN")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def dockerfile() -> tuple[dict[str, str], dict[str, str], list[str], list[str]]:
    """(ARG defaults, ENV values, RUN commands with the ARG defaults filled in, [ENTRYPOINT + CMD])."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    args: dict[str, str] = {}
    env: dict[str, str] = {}
    runs: list[str] = []
    command: list[str] = []
    for line in text.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "ARG" and "=" in rest:
            name, value = rest.split("=", 1)
            args[name] = value
        elif word == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(rest))
        elif word == "RUN":
            runs.append(re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), rest))
        elif word in ("ENTRYPOINT", "CMD"):
            command += yaml.safe_load(rest)
    return args, env, runs, command


def readme_section(title: str) -> str:
    return (ROOT / "README.md").read_text().split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def mounts(svc: dict[str, Any]) -> list[dict[str, Any]]:
    """A service's volumes in the long form (the short "name:/path[:ro]" one converted)."""
    out = []
    for vol in svc.get("volumes", []):
        if isinstance(vol, str):
            source, target, *mode = vol.split(":")
            kind = "bind" if source.startswith((".", "/", "~", "$")) else "volume"
            vol = {"type": kind, "source": source, "target": target, "read_only": mode == ["ro"]}
        out.append(vol)
    return out


def test_every_service_binds_localhost_names_its_volumes_and_takes_secrets_from_the_env(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert {"qdrant", "postgres", *DAEMONS} <= set(services)
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)  # never on every interface
        assert svc.get("volumes"), name
        for vol in mounts(svc):
            if vol["type"] == "volume":
                assert vol["source"] in compose["volumes"], (name, vol)  # named volumes, declared
            else:  # host folders only for the daemon: its photos and its socket (below)
                assert vol["type"] == "bind" and name in DAEMONS, (name, vol)
        for key, value in (svc.get("environment") or {}).items():
            if SECRET.search(key):
                assert str(value).startswith("${"), (name, key)  # from the environment, never written here
    # plain `docker compose up -d` still starts just the servers; the daemons start when named
    assert "profiles" not in services["qdrant"] and "profiles" not in services["postgres"]
    assert services["photoman"]["profiles"] == ["cpu"] and services["photoman-gpu"]["profiles"] == ["gpu"]


def test_the_daemon_mounts_what_the_image_expects(compose: dict[str, Any]) -> None:
    args, env, _, command = dockerfile()
    for name in DAEMONS:
        svc = compose["services"][name]
        assert svc["command"][0] == "watch" and command == ["photoman", "watch"]  # the foreground daemon
        assert svc["user"] == f"{svc['build']['args']['UID']}:{svc['build']['args']['GID']}"
        assert svc["init"] is True and "ports" not in svc  # a Unix socket, no port
        by_target = {v["target"]: v for v in mounts(svc)}
        photos = next(v for v in by_target.values() if "PHOTOS" in v["source"])
        assert photos["target"] == photos["source"]  # the same path inside: printed paths are the host's
        assert photos["read_only"] == "${PHOTOS_READ_ONLY:-true}"  # read-only unless asked
        assert photos["source"] in svc["command"]  # the root it watches
        socket = by_target[env["PHOTOMAN_RUNTIME_DIR"]]
        assert socket["type"] == "bind" and socket["source"].startswith("${PHOTOMAN_SOCKET_DIR")
        for bind in (photos, socket):  # a missing host folder is an error, never created by root
            assert bind["bind"]["create_host_path"] is False
        data = by_target[env["PHOTOMAN_DATA_DIR"]]
        cache = by_target["/var/cache/photoman"]
        assert data["type"] == cache["type"] == "volume"
        assert env["PHOTOMAN_STATE_DIR"].startswith(data["target"] + "/")
        assert env["HF_HOME"].startswith(cache["target"] + "/")
        assert env["PHOTOMAN_CACHE_DIR"].startswith(cache["target"] + "/")
    assert args["UID"] == "1000" and env["PHOTOMAN_AUTOSTART"] == "0"


def test_the_gpu_variant_reserves_the_nvidia_devices_and_installs_cuda_torch(compose: dict[str, Any]) -> None:
    args, _, _, _ = dockerfile()
    gpu = compose["services"]["photoman-gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices), devices
    assert gpu["build"]["args"]["TORCH_INDEX_URL"] == "https://pypi.org/simple"  # PyPI's: the CUDA builds
    assert args["TORCH_INDEX_URL"].endswith("/whl/cpu")  # the default, the CPU service's
    assert "deploy" not in compose["services"]["photoman"]
    assert gpu["image"] != compose["services"]["photoman"]["image"]


def test_the_dockerfile_installs_what_the_readme_says() -> None:
    _, env, runs, _ = dockerfile()
    setup = re.findall(r"```bash\n(.+?)\n```", readme_section("Set-up"), flags=re.S)[0]
    pin = re.search(r"pip install (torch==\S+)", setup).group(1)  # type: ignore[union-attr]
    docker = readme_section("Docker")
    documented = re.search(r"^pip install torch\S* --index-url \S+$", docker, flags=re.M).group(0)  # type: ignore[union-attr]
    assert documented in runs and f"pip install {pin} " in documented  # the set-up's pin, the CPU index
    assert "download.pytorch.org/whl/cpu" in (ROOT / "README.md").read_text().split("## Set-up", 1)[1]
    project = next(r for r in runs if "/src" in r and "torch" not in r)
    assert project.split(" && ")[0] in docker  # then the project, as the README shows it
    assert runs.index(documented) < runs.index(project)
    # what the host's photoman needs to reach the container's socket, as the README tells it
    assert f"PHOTOMAN_DATA_DIR={env['PHOTOMAN_DATA_DIR']}" in docker and "PHOTOMAN_RUNTIME_DIR=" in docker
    compose_text = (ROOT / "docker-compose.yml").read_text()
    for var in sorted(set(re.findall(r"\$\{(\w+)", compose_text)) - {"QDRANT_API_KEY", "POSTGRES_PASSWORD"}):
        assert var in docker, var  # every setting of the daemon's services is documented


def test_the_build_context_leaves_out_what_the_image_does_not_need() -> None:
    ignored = {ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln.strip()}
    assert {"bench-data", ".git", "tests", ".env"} <= ignored
    copied = re.findall(r"^COPY (.+) /src/", (ROOT / "Dockerfile").read_text(), flags=re.M)
    for name in " ".join(copied).split():
        assert name not in ignored and (ROOT / name).exists(), name


def test_a_data_dir_that_cannot_be_made_is_one_line(cli_env: Settings, tmp_path: Path) -> None:
    """The host's photoman with the container stopped: its data dir (the container's path) is not
    there to make. One line, not a traceback."""
    (tmp_path / "a-file").write_text("")
    res = CliRunner().invoke(app, ["--data-dir", str(tmp_path / "a-file" / "data"), "status"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("photoman: cannot use the data dir"), res.stderr
