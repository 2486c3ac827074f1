"""One client API over the daemon or the library: thin processes, the daemon on demand, cold text
queries without torch, and the Python API for scripts."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

import photoman
from photoman.config import Settings
from photoman.service.protocol import call, daemon_running

from .daemon_helpers import base_env, index_here, settings_of, start, wait_for
from .daemon_helpers import photoman as run

HEAVY = ("torch", "transformers", "numpy", "sqlalchemy", "qdrant_edge", "qdrant_client", "PIL", "textual",
         "onnxruntime", "tokenizers", "alembic")  # fmt: skip


def imported(stderr: str) -> set[str]:
    """Top-level modules a `python -X importtime` run imported, from its stderr."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


def run_timed(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "photoman", *args], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    mods = imported(proc.stderr)
    proc.stderr = "\n".join(ln for ln in proc.stderr.splitlines() if not ln.startswith("import time:"))
    return proc, mods


def stop_daemon(env: dict[str, str]) -> None:
    sock = settings_of(env).socket_path
    if daemon_running(sock):
        res = run(env, "stop")
        assert res.returncode == 0, res.stderr


def test_a_live_daemon_answers_thin_processes(
    env: dict[str, str], library_dir: Path, tmp_path: Path, wide_model: Path
) -> None:
    """With a daemon answering, find/caption/status/tags/tag/dupes/index/stop import nothing heavy;
    `--model OTHER embed` is answered with that model, here, not with the daemon's."""
    index_here(env, library_dir)
    proc = start(env, tmp_path)
    try:
        chelsea = str(library_dir / "scikit-image--chelsea.png")
        for args in (
            ("find", "a cat", "--json", "--all", "-n", "3"),
            ("find", "--image", chelsea, "--json"),
            ("caption", chelsea, "a tabby cat"),
            ("caption", chelsea, "--json"),
            ("status", "--json"),
            ("status",),
            ("tags", "--json"),
            ("tag",),
            ("dupes", "--json"),
            ("index", str(library_dir)),
        ):
            res, mods = run_timed(env, *args)
            assert res.returncode == 0, (args, res.stderr)
            assert not mods & set(HEAVY), (args, sorted(mods & set(HEAVY)))
            if args[0] == "find":  # nor what only the in-process library needs (notices, TOML)
                assert not mods & {"logging", "tomllib"}, (args, sorted(mods & {"logging", "tomllib"}))
        res, _ = run_timed(env, "caption", chelsea, "--json")
        assert json.loads(res.stdout)["caption"] == "a tabby cat"
        # the daemon itself embedded the image query and indexed without torch: its encoders came
        # from the cache the set-up's first load filled (embedding/cached.py)
        runtime = json.loads(run_timed(env, "status", "--json")[0].stdout)["runtime"]
        assert runtime["runtime"] == "onnx-fp32" and "not loaded" in runtime["torch"], runtime
        res, _ = run_timed(env, "find", "a cat", "--json", "--all", "-n", "3")
        assert len(json.loads(res.stdout)) == 3
        # errors keep their one line and exit code through the socket (validation lives in the library)
        res, mods = run_timed(env, "find", "cat", "--limit", "99999999999999999999")
        assert res.returncode == 2 and res.stderr.count("\n") == 0 and "--limit" in res.stderr
        assert not mods & set(HEAVY)
        res, _ = run_timed(env, "find", "--image", str(tmp_path / "nope.jpg"))
        assert res.returncode == 2 and "no such image" in res.stderr
        res, _ = run_timed(env, "--model", str(wide_model), "embed", "--text", "a cat", "--json")
        assert res.returncode == 0 and json.loads(res.stdout)[0]["dim"] == 24, res.stdout  # (it said 16)
        res, mods = run_timed(env, "stop")
        assert res.returncode == 0 and "stopped daemon" in res.stdout and not mods & set(HEAVY)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_socket_clients_get_the_library_checks(
    env: dict[str, str], library_dir: Path, tmp_path: Path
) -> None:
    """A raw socket request is checked by the library: a wrong type is a bad request, not a crash."""
    index_here(env, library_dir)
    proc = start(env, tmp_path)
    try:
        sock = settings_of(env).socket_path
        good = {"terms": [{"kind": "text", "value": "a cat"}], "limit": 3, "cutoff": "none"}
        assert len(call(sock, "find", {"query": good})) == 3
        for bad, words in (
            ({**good, "limit": "ten"}, "--limit"),
            ({**good, "limit": 0}, "--limit"),
            ({**good, "terms": [{"kind": "text", "value": 123}]}, "term"),
            ({**good, "terms": [{"kind": "text", "value": "x", "weight": float("inf")}]}, "finite"),
            ({**good, "filters": {"folder": 5}}, "folder"),
            ({**good, "mode": "sideways"}, "unknown mode"),
            ({**good, "threshold": 0.2}, "contradict"),
        ):
            with pytest.raises(Exception, match=words) as info:
                call(sock, "find", {"query": bad})
            assert getattr(info.value, "exit_code", 0) == 2
        # many clients at once are answered together (one pass of the shared work), each exactly as
        # it would be alone, a bad request failing only itself
        texts = [f"a {w} in the {p}" for w in ("cat", "dog", "bridge", "rocket") for p in ("snow", "dark")]

        def query(text: str) -> dict[str, object]:
            return {**good, "terms": [{"kind": "text", "value": text}]}

        alone = {t: call(sock, "find", {"query": query(t)}) for t in texts}
        before = call(sock, "status")["daemon"]["finds"]
        answers: dict[int, object] = {}

        def client(i: int) -> None:
            q = query(texts[i % len(texts)])
            if i % 5 == 4:
                q["limit"] = "ten"
            try:
                answers[i] = call(sock, "find", {"query": q})
            except Exception as exc:  # noqa: BLE001 - the answer under test
                answers[i] = exc

        threads = [threading.Thread(target=client, args=(i,)) for i in range(60)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for i in range(60):
            if i % 5 == 4:
                assert "--limit" in str(answers[i]) and getattr(answers[i], "exit_code", 0) == 2
            else:
                assert answers[i] == alone[texts[i % len(texts)]]
        after = call(sock, "status")["daemon"]["finds"]
        assert after["answered"] - before["answered"] == 60
        assert after["batches"] - before["batches"] < 60  # some were answered together
        with pytest.raises(Exception, match="bad arguments for tags"):
            call(sock, "tags", {"bogus": 1})
        with pytest.raises(Exception, match="unknown request"):
            call(sock, "format_disk", {})
        assert len(call(sock, "find", {"query": good})) == 3  # still answering
    finally:
        stop_daemon(env)
        proc.wait(timeout=60)


def test_commands_start_one_daemon_on_demand(env: dict[str, str], library_dir: Path, tmp_path: Path) -> None:
    """Two `find`s at the same moment start one daemon; the next call just uses it."""
    index_here(env, library_dir)
    env = {**env, "PHOTOMAN_AUTOSTART": "1"}
    sock = settings_of(env).socket_path
    assert not daemon_running(sock)
    try:
        cmd = [sys.executable, "-m", "photoman", "find", "a cat", "--json", "--all", "-n", "2"]
        procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]  # fmt: skip
        outs = [p.communicate(timeout=300) for p in procs]
        assert all(p.returncode == 0 for p in procs), outs
        assert all(len(json.loads(o)) == 2 for o, _ in outs)
        notices = [e for _, e in outs if "started the photoman daemon" in e]
        assert len(notices) == 1, outs  # one started it; the other waited and used it
        assert notices[0].strip().count("\n") == 0 and "photoman stop" in notices[0]
        pid = call(sock, "status")["daemon"]["pid"]
        assert f"pid {pid}" in notices[0]
        again = run(env, "find", "a cat", "--json")
        assert again.returncode == 0 and "started" not in again.stderr
        wait_for(lambda: "model_ready_s" in call(sock, "status")["daemon"]["timings"], 120, "image model")
        timings = call(sock, "status")["daemon"]["timings"]
        assert 0 < timings["text_ready_s"] <= timings["model_ready_s"]  # text answered before the model
        # PHOTOMAN_AUTOSTART=0 and --no-daemon keep a command in-process
        assert (
            run({**env, "PHOTOMAN_AUTOSTART": "0"}, "find", "a cat").returncode == 0
        )  # uses the running one
    finally:
        stop_daemon(env)
    res = run({**env, "PHOTOMAN_AUTOSTART": "0"}, "find", "a cat", "--json")
    assert res.returncode == 0 and "started" not in res.stderr and not daemon_running(sock)
    res = run(env, "--no-daemon", "find", "a cat", "--json")
    assert res.returncode == 0 and "started" not in res.stderr and not daemon_running(sock)


def test_config_file_survives_detach(tiny_model: Path, library_dir: Path, tmp_path: Path) -> None:
    """Every setting of the starting command reaches the detached daemon, `--config FILE` included."""
    data = tmp_path / "from-config"
    cfg = tmp_path / "photoman.toml"
    cfg.write_text(f'data_dir = "{data}"\nmodel = "{tiny_model}"\nprecision = "onnx"\nsettle = 1.25\n'
                   f'runtime_dir = "{tmp_path / "run"}"\nstate_dir = "{tmp_path / "state"}"\n')  # fmt: skip
    env = base_env()
    env.update(HF_HUB_OFFLINE="1", PHOTOMAN_CONFIG=str(tmp_path / "unused.toml"))
    (tmp_path / "unused.toml").write_text("")
    res = subprocess.run([sys.executable, "-m", "photoman", "--config", str(cfg), "watch", "--detach"],
                         env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr
    try:
        sock = Settings(data_dir=data, runtime_dir=tmp_path / "run").socket_path
        info = call(sock, "status")
        assert info["data_dir"] == str(data) and info["model"] == str(tiny_model)
        cmd = [sys.executable, "-m", "photoman", "--config", str(cfg), "index", str(library_dir)]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0 and "daemon is indexing" in res.stdout, res.stderr
        wait_for(lambda: call(sock, "status")["photos"]["indexed"] == 10, 120, "daemon indexing")
    finally:
        subprocess.run([sys.executable, "-m", "photoman", "--config", str(cfg), "stop"], env=env, timeout=120)


def test_cold_query_without_a_daemon_never_imports_torch(
    cli_env: Settings, library_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process, a text query needs the tokenizer and the cached ONNX tower only; a missing cache
    is built once (torch imported, one notice), and from then on torch stays out."""
    import os
    import shutil

    from photoman.cli import app

    shutil.copytree(os.environ["PHOTOMAN_CACHE_DIR"], tmp_path / "fresh-cache")  # the run's, built once
    monkeypatch.setenv("PHOTOMAN_CACHE_DIR", str(tmp_path / "fresh-cache"))
    env = dict(os.environ)
    res = CliRunner().invoke(app, ["--no-daemon", "index", str(library_dir)])  # (torch: in-process)
    assert res.exit_code == 0, res.output
    res, mods = run_timed(env, "--no-daemon", "find", "a red car", "--json", "--all", "-n", "3")
    assert res.returncode == 0 and len(json.loads(res.stdout)) == 3, res.stderr
    assert "torch" not in mods, "index built the text encoder cache already"
    # with the cache gone, the first query builds it (and says so); the next one is torch-free again
    shutil.rmtree(tmp_path / "fresh-cache")
    res, mods = run_timed(env, "--no-daemon", "find", "a red car", "--json", "--all", "-n", "3")
    assert res.returncode == 0 and "torch" in mods and "fast text encoder" in res.stderr
    first = json.loads(res.stdout)
    res, mods = run_timed(env, "--no-daemon", "find", "a red car", "--json", "--all", "-n", "3")
    assert res.returncode == 0 and not mods & {"torch", "transformers"}, sorted(mods & set(HEAVY))
    assert json.loads(res.stdout) == first  # the same answer either way


def test_python_api(cli_env: Settings, library_dir: Path) -> None:
    """`photoman.open()` for scripts: the same results as the CLI, in-process here."""
    with photoman.open(daemon=False) as pm:
        report = pm.index([library_dir])
        assert report["embedded"] == 10
        results = pm.find("a tabby cat", limit=3, all=True)
        assert len(results) == 3 and {"rank", "score", "path"} <= set(results[0])
        same = pm.find(image=library_dir / "scikit-image--chelsea.png", limit=1)
        assert same[0]["path"] == str(library_dir / "scikit-image--chelsea.png")
        assert pm.caption(library_dir / "scikit-image--chelsea.png", "a cat")["caption"] == "a cat"
        # one photo, one JSON shape: a result's photo fields are the details' fields, spelled alike
        found = pm.find(image=library_dir / "scikit-image--chelsea.png", limit=1)[0]
        details = pm.photo(found["path"])
        shared = set(found) - {"rank", "score", "duplicates"}
        assert shared == {"path", "content_hash", "taken_at", "width", "height", "camera", "format",
                          "caption", "raw", "file_time"}  # fmt: skip
        assert {k: details[k] for k in shared} == {k: found[k] for k in shared}
        assert pm.status()["photos"]["indexed"] == 10 and pm.status()["daemon"] is None
        assert pm.roots()[0]["path"] == str(library_dir)
        assert set(pm.classify(library_dir / "scikit-image--chelsea.png", ["cat", "dog"])) == {"cat", "dog"}
        assert pm.mode == "direct"
        with pytest.raises(photoman.errors.BadInputError, match="limit"):
            pm.find("cat", limit=0)
        # one string where a list goes is a list of one (it was split into characters); a value of the
        # wrong kind is the caller's mistake, a PhotomanError like any other (it was a TypeError)
        chelsea = library_dir / "scikit-image--chelsea.png"
        assert set(pm.classify(chelsea, "cat,dog")) == {"cat", "dog"}
        assert pm.index(str(library_dir))["unchanged"] == 10
        assert len(pm.embed(str(chelsea))["vectors"]) == 1
        for call in (lambda: pm.find(5), lambda: pm.find("x", since=2020), lambda: pm.caption(5, "x"),
                     lambda: pm.find(image=b"\x89PNG"), lambda: pm.embed(texts=[1])):  # fmt: skip
            with pytest.raises(photoman.errors.BadInputError, match="must be"):
                call()
    with pytest.raises(photoman.errors.PhotomanError, match="client is closed"):
        pm.find("cat")  # (it reopened the library and kept it locked, so the next client found it busy)
    with photoman.open(daemon=False) as again:
        assert again.status()["photos"]["indexed"] == 10


def test_the_tui_no_longer_locks_the_cli_out(env: dict[str, str], library_dir: Path) -> None:
    """An open TUI starts (or uses) the daemon, so `photoman find` in another shell still answers."""
    import asyncio

    from photoman.tui.app import PhotomanApp, image_widget_class

    index_here(env, library_dir)
    env = {**env, "PHOTOMAN_AUTOSTART": "1"}
    cfg = settings_of(env)
    done = threading.Event()

    async def drive() -> None:
        app = PhotomanApp(cfg, image_cls=image_widget_class("halfcell"))
        async with app.run_test(size=(100, 30)) as pilot:
            for _ in range(600):
                await pilot.pause(0.1)
                if app.client is not None:
                    break
            assert app.client is not None and app.client.mode == "daemon"
            res = await asyncio.to_thread(run, env, "find", "a cat", "--json")
            assert res.returncode == 0 and json.loads(res.stdout), res.stderr
            done.set()

    try:
        asyncio.run(drive())
    finally:
        stop_daemon(env)
    assert done.is_set()


def test_a_daemon_that_cannot_start_passes_on_its_error_and_status(
    env: dict[str, str], library_dir: Path
) -> None:
    """The library held by another process (an `index` run in its own process): the daemon a query
    starts exits with "busy" (3), and the query says so once, with that status."""
    from photoman.library import Library

    index_here(env, library_dir)
    with Library(settings_of(env)):  # holds the library, as a running `photoman --no-daemon index` does
        res = run({**env, "PHOTOMAN_AUTOSTART": "1"}, "find", "a cat")
    assert res.returncode == 3, res.stderr
    line = res.stderr.strip()
    assert len(line.splitlines()) == 1 and line.count("photoman:") == 1 and "busy" in line, line
