"""The CLI as a user drives it: real commands, real output, one-line errors for bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from photoman.cli import app
from photoman.config import Settings
from photoman.library import DataDirLock

runner = CliRunner()


def run(*args: str) -> Result:
    return runner.invoke(app, list(args))


def one_line_error(result: Result, code: int, words: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("photoman: ") and words in lines[0], result.stderr
    assert "Traceback" not in result.output


@pytest.fixture
def indexed(cli_env: Settings, library_dir: Path) -> Path:
    res = run("index", str(library_dir))
    assert res.exit_code == 0, res.output
    assert "Indexed 10 photos" in res.stdout and "10 embedded" in res.stdout
    return library_dir


def test_index_find_status_embed(indexed: Path) -> None:
    res = run("index", str(indexed), "--json")
    report = json.loads(res.stdout)
    assert report["embedded"] == 0 and report["unchanged"] == 10 and report["errors"] == 0

    res = run("find", "a tabby cat on a sofa", "--limit", "3", "--all")
    assert res.exit_code == 0
    assert res.stdout.splitlines()[0].split() == ["rank", "score", "path", "date"]
    assert len(res.stdout.splitlines()) == 4

    res = run(
        "find", "--image", str(indexed / "scikit-image--chelsea.png"), "--limit", "20", "--json", "--all"
    )
    data = json.loads(res.stdout)
    assert data[0]["path"] == str(indexed / "scikit-image--chelsea.png") and data[0]["rank"] == 1
    schema = "rank score path content_hash taken_at width height camera format caption duplicates raw"
    schema += " file_time"
    assert set(data[0]) == set(schema.split())
    assert len(data) == 10 and all(-1 <= d["score"] <= 1.0001 for d in data)
    dated = next(d for d in data if d["path"].endswith("exif--test1.jpg"))
    assert dated["taken_at"] == "2013-02-06T16:00:03" and dated["camera"] == "Apple iPhone 4S"

    res = run("status", "--json")
    info = json.loads(res.stdout)
    assert info["photos"] == {"indexed": 10, "indexed_with_model": 10, "unique": 10, "errors": 0}
    assert info["vectors"]["points"] == 10 and info["roots"][0] == {
        "path": str(indexed),
        "photos": 10,
        "online": True,
    }
    res = run("status")
    assert "10 indexed" in res.stdout and str(indexed) in res.stdout

    res = run("embed", str(indexed / "scikit-image--coffee.png"), "--text", "a cup of coffee", "--json")
    rows = json.loads(res.stdout)
    assert [r["kind"] for r in rows] == ["image", "text"] and all(r["dim"] == 16 for r in rows)
    assert all(abs(sum(x * x for x in r["vector"]) - 1) < 1e-4 for r in rows)


def test_bad_input_is_one_line_and_changes_nothing(indexed: Path, tmp_path: Path) -> None:
    one_line_error(run("index", str(tmp_path / "missing")), 2, "no such folder")
    one_line_error(run("find", "   "), 2, "empty query")
    one_line_error(run("find"), 2, "nothing to search for")
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"\xff\xd8\xff garbage")
    one_line_error(run("find", "--image", str(junk)), 2, "not a readable image")
    one_line_error(run("find", "--image", str(tmp_path / "nope.jpg")), 2, "no such image")
    one_line_error(
        run("--model", "nobody/no-such-model", "find", "cat"), 1, "not downloaded yet"
    )
    one_line_error(run("--model", "nobody/no-such-model", "index", str(indexed)), 1, "no-such-model")
    one_line_error(run("embed"), 2, "nothing to embed")
    one_line_error(run("find", "cat", "--limit", "0"), 2, "--limit")
    one_line_error(run("find", "cat", "--in", str(junk)), 2, "is a file, not a folder")
    one_line_error(run("watch", "--once", "--poll", str(tmp_path / "share")), 2, "no such folder")
    info = json.loads(run("status", "--json").stdout)
    assert info["photos"]["indexed"] == 10 and info["vectors"]["points"] == 10


def test_an_empty_path_is_refused_not_taken_for_the_current_folder(
    indexed: Path, cli_env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Path("") is ".": `roots relocate OLD ""` moved every photo to wherever the command ran, and
    `roots remove ""` from inside a root forgot it. Refused on the command line, in the Python API
    and in the requests the daemon takes."""
    from photoman.client import Client
    from photoman.errors import BadInputError

    monkeypatch.chdir(indexed)
    for args in (["roots", "relocate", str(indexed), ""], ["roots", "remove", ""], ["index", ""],
                 ["find", "--in", "", "cat"], ["find", "--image", "", "cat"], ["--data-dir", "", "status"],
                 ["locate", str(indexed / "scikit-image--chelsea.png"), "cat", "-o", ""]):  # fmt: skip
        res = run(*args)  # a usage error (main() makes it one line, as for every usage error)
        assert res.exit_code == 2 and "an empty path" in res.output, (args, res.output)
    from photoman import ops
    from photoman.library import Library

    with Client(cli_env, daemon=False) as pm:
        with pytest.raises(BadInputError, match="empty path"):
            pm.relocate_root(indexed, "")
        with pytest.raises(BadInputError, match="empty path"):
            pm.remove_root("")
    with Library(cli_env) as lib:  # what a raw socket request reaches
        for call in (lambda: ops.roots_relocate(lib, old=str(indexed), new=""),
                     lambda: ops.roots_remove(lib, path=""),
                     lambda: ops.index(lib, folders=[""])):  # fmt: skip
            with pytest.raises(BadInputError, match="empty|list of paths"):
                call()
    info = json.loads(run("status", "--json").stdout)
    assert info["photos"]["indexed"] == 10 and info["roots"][0]["path"] == str(indexed)


def test_files_named_as_input_are_read_safely(
    indexed: Path, cli_env: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A label file, caption table, config file or stdin image that is a FIFO (it hung the command,
    and in the daemon every later one), an endless device (it filled the memory), binary or absurd is
    a one-line error; nothing indexed changes."""
    import os

    from photoman import userfiles

    fifo = tmp_path / "fifo.txt"
    os.mkfifo(fifo)
    binary = tmp_path / "photo.jpg"
    binary.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    for source, words in ((fifo, "not a regular file"), ("/dev/zero", "not a regular file"),
                          (binary, "not UTF-8 text")):  # fmt: skip
        one_line_error(run("tag", "--labels", str(source)), 2, words)
        one_line_error(run("--config", str(source), "status"), 2, words)  # a bad setting: exit 2
    one_line_error(run("eval", str(binary)), 2, "not UTF-8 text")
    many = tmp_path / "labels.txt"
    many.write_text("".join(f"thing {i}\n" for i in range(5001)))
    one_line_error(run("tag", "--labels", str(many)), 2, "at most 5000")
    halves = [tmp_path / "a.txt", tmp_path / "b.txt"]  # each under the limit, together over it
    for n, half in enumerate(halves):
        half.write_text("".join(f"thing {n} {i}\n" for i in range(2600)))
    both = run("tag", "--labels", str(halves[0]), "--labels", str(halves[1]))
    one_line_error(both, 2, "5200 labels together")
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 100_000)
    one_line_error(run("--config", str(deep), "status"), 2, "nested too deeply")
    huge = tmp_path / "huge.toml"
    huge.write_text("batch_size = 1e400\n")
    one_line_error(run("--config", str(huge), "status"), 2, "batch_size")
    monkeypatch.setattr(userfiles, "MAX_STDIN_IMAGE_MB", 1)
    res = runner.invoke(app, ["find", "-"], input=b"\0" * (2 * 1024 * 1024))
    one_line_error(res, 2, "over 1 MB")
    info = json.loads(run("status", "--json").stdout)
    assert info["photos"]["indexed"] == 10 and info["vectors"]["points"] == 10


def test_impossible_names_are_one_line(indexed: Path, tmp_path: Path) -> None:
    """A name the system refuses (over 255 bytes), a model id the hub refuses, a catalog that is not
    a database: one line each, where they were tracebacks."""
    long = "a" * 300
    one_line_error(run("find", "--image", f"/{long}.jpg"), 2, "File name too long")
    one_line_error(run("find", f"{long}.jpg"), 2, "File name too long")
    one_line_error(run("embed", long), 2, "File name too long")
    one_line_error(run("--model", "bad id", "status"), 1, "neither a folder nor a Hugging Face model id")
    text = tmp_path / "notes.txt"
    text.write_text("not a database " * 100)
    one_line_error(run("--catalog-url", f"sqlite:///{text}", "status"), 1, "file is not a database")
    info = json.loads(run("status", "--json").stdout)
    assert info["photos"]["indexed"] == 10 and info["vectors"]["points"] == 10


def test_busy_store_says_why(indexed: Path, cli_env: Settings) -> None:
    lock = DataDirLock(cli_env.lock_file)
    lock.acquire("photoman index")
    try:
        one_line_error(run("index", str(indexed)), 3, "busy")
        one_line_error(run("find", "cat"), 3, "photoman index")
        res = run("status", "--json")  # the catalog stays readable
        assert res.exit_code == 0 and "busy" in json.loads(res.stdout)["vectors"]["error"]
    finally:
        lock.release()
    assert run("find", "cat").exit_code == 0


def test_config_file_and_env(tmp_path: Path, cli_env: Settings, library_dir: Path) -> None:
    cfg = tmp_path / "photoman.toml"
    other = tmp_path / "other-data"
    cfg.write_text(f'data_dir = "{other}"\nmodel = "{cli_env.model}"\nbatch_size = 3\n')
    res = runner.invoke(app, ["--config", str(cfg), "--data-dir", str(other), "index", str(library_dir)])
    assert res.exit_code == 0 and (other / "catalog.sqlite3").exists()
    cfg.write_text("batch_size = 'many'\n")
    one_line_error(runner.invoke(app, ["--config", str(cfg), "status"]), 2, "batch_size")


def test_console_script_runs_as_a_process(cli_env: Settings, library_dir: Path) -> None:
    """The installed entry point, in a real process: progress on stderr, never on stdout."""
    env = {
        **__import__("os").environ,
        "PHOTOMAN_DATA_DIR": str(cli_env.data_dir),
        "PHOTOMAN_MODEL": cli_env.model,
        "PHOTOMAN_PROGRESS": "1",
        "PHOTOMAN_CACHE_DIR": str(cli_env.data_dir.parent / "fresh-cache"),  # the text pack is built now
        "PHOTOMAN_PRECISION": "auto",  # and the runtime measured after it: a second notice
    }
    proc = subprocess.run(
        [sys.executable, "-m", "photoman", "index", str(library_dir), "--json"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["embedded"] == 10
    assert "indexing" in proc.stderr and "10/10" in proc.stderr
    # each notice once, as its own line: ONNX Runtime's quantiser (building the text pack) configures
    # the root logger when imported, which must not print photoman's notices a second time
    lines = proc.stderr.splitlines()
    assert lines.count("Preparing the fast text encoder for this model (once, a few seconds)…") == 1, lines
    measuring = "Measuring which runtime runs this model fastest on this CPU (once per machine and model)…"
    assert lines.count(measuring) == 1, lines
    assert not any(ln.startswith(("INFO:", "WARNING:")) or " [INFO] " in ln for ln in lines), lines
    proc = subprocess.run(
        [sys.executable, "-m", "photoman", "find", ""], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "empty query" in proc.stderr


def test_first_run_without_network_says_what_and_how(
    cli_env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No network: `find` names the model, its size and the ways out; `status` never tries the network."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: any request fails at once
    monkeypatch.setenv("HF_HUB_CACHE", str(cli_env.data_dir.parent / "empty-hf-cache"))
    model = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
    res = run("--model", model, "find", "cat")
    one_line_error(res, 1, f"cannot download the CLIP model {model} (about 605 MB)")
    assert "PHOTOMAN_MODEL" in res.stderr and "proxy" in res.stderr
    monkeypatch.setenv("HF_ENDPOINT", "http://192.0.2.1:9")  # would hang if status tried it
    res = run("--model", model, "status", "--json")
    assert res.exit_code == 0, res.output
    assert "not downloaded yet" in json.loads(res.stdout)["vectors"]["error"]


def test_a_device_that_is_not_there_is_one_line(cli_env: Settings, library_dir: Path) -> None:
    assert run("index", str(library_dir)).exit_code == 0
    one_line_error(run("--device", "mps", "find", "--image", str(library_dir / "scikit-image--chelsea.png")),
                   2, "'mps'")  # fmt: skip
    one_line_error(run("--device", "cuda:7", "embed", "--text", "x"), 2, "cuda")
    one_line_error(run("--device", "tpu", "embed", "--text", "x"), 2, "unknown device")


def test_help_reads_as_reference(cli_env: Settings) -> None:
    """Every command's --help renders: env hints print as written, flags show no type, nothing cut."""
    from photoman import __version__

    assert run("--version").stdout.strip() == f"photoman {__version__}"
    top = run("--help")
    assert top.exit_code == 0
    for var in (
        "PHOTOMAN_DATA_DIR",
        "PHOTOMAN_MODEL",
        "PHOTOMAN_DEVICE",
        "PHOTOMAN_CONFIG",
        "PHOTOMAN_QDRANT_URL",
    ):
        assert f"[env {var}]" in " ".join(top.stdout.split())
    assert "--install-completion" in top.stdout and "--show-completion" in top.stdout
    assert "--data-dir DIR" in top.stdout and "--config FILE" in top.stdout
    for cmd in app.registered_commands:
        name = cmd.name or cmd.callback.__name__.rstrip("_")
        res = run(name, "--help")
        assert res.exit_code == 0, (name, res.output)
        text = res.stdout
        # a hint swallowed as markup left "live ." behind; flags showed a "<bool>" type
        assert "<bool>" not in text and not re.search(r"\w \.(\s|$)", text), (name, text)
        assert not re.search(r"<_\w+>", text), (name, text)  # a parser's own name ("<_path>") as metavar
        assert text.lstrip().startswith(f"Usage: photoman {name}"), name


def test_find_preview_and_open(indexed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    res = run("find", "--image", str(indexed / "scikit-image--chelsea.png"), "-n", "2", "--preview")
    assert res.exit_code == 0, res.output
    assert f"1. {indexed / 'scikit-image--chelsea.png'}" in res.stdout and "2. " in res.stdout
    assert len(res.stdout.splitlines()) > 10  # the thumbnails, drawn in character cells when no protocol
    opened = tmp_path / "opened.txt"
    viewer = tmp_path / "viewer.sh"
    viewer.write_text(f'#!/bin/sh\necho "$1" >> {opened}\n')
    viewer.chmod(0o755)
    monkeypatch.setenv("PHOTOMAN_VIEWER", str(viewer))
    assert run("find", "--image", str(indexed / "scikit-image--chelsea.png"), "--open").exit_code == 0
    for _ in range(50):
        if opened.exists():
            break
        __import__("time").sleep(0.1)
    assert opened.read_text().splitlines() == [str(indexed / "scikit-image--chelsea.png")]  # the first only
    monkeypatch.setenv("PHOTOMAN_VIEWER", "no-such-viewer-here")
    res = run("find", "cat", "--open", "--all")
    one_line_error(res, 1, "copy the path")


def test_the_command_exits_without_walking_its_objects(tmp_path: Path) -> None:
    """The interpreter's last collection at exit walks every live object (with torch loaded, most of a
    second of an `index` run after its last line): the entry point freezes them first, on every exit."""
    probe = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0))\n"
        "from photoman.cli import main\n"
        "sys.argv = ['photoman', *sys.argv[1:]]\n"
        "main()\n"
    )
    for args in (["--version"], ["find"]):  # a normal exit and a usage error
        cmd = [sys.executable, "-c", probe, *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert proc.stdout.strip().endswith("frozen True"), (args, proc.stdout, proc.stderr)


def test_a_qdrant_server_not_there_is_one_line_and_a_clean_exit(
    env: dict[str, str], library_dir: Path
) -> None:
    """`qdrant_url` naming a port nobody listens on: one line, exit 1, every time (qdrant-client's
    version check, in a daemon thread, crashed the interpreter's exit: signal 11 or 7 in most runs)."""
    from .daemon_helpers import photoman

    env = {**env, "PHOTOMAN_QDRANT_URL": "http://127.0.0.1:1"}
    for _ in range(2):  # (the old code crashed 5 runs in 6)
        res = photoman(env, "--no-daemon", "index", str(library_dir))
        assert res.returncode == 1 and "cannot reach Qdrant" in res.stderr, (res.returncode, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1


def test_nothing_found_says_why_for_the_query_asked(indexed: Path) -> None:
    """Nothing above the cutoff suggests --all; nothing with --all (the filters left nothing) does not
    suggest it again."""
    res = run("find", "a photo", "--all", "--since", "1901", "--until", "1901")
    assert res.exit_code == 0 and "no photo matches these filters" in res.stderr and "--all" not in res.stderr
