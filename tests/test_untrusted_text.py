"""Untrusted names never drive the user's terminal (issue 19).

Real photos are copied under names that hold ESC/CSI/OSC sequences, a carriage return, backspaces,
Rich markup, emoji codes, bidi overrides, DEL and C1 controls; captions hold the same. Every human
output (find's table, status, dupes, caption, index's lines and progress bar, error messages, the
TUI, the daemon log) must show them escaped, checked on the exact bytes written; the machine
outputs (--json, --ndjson, -0) must carry them exactly."""

from __future__ import annotations

import html
import json
import logging
import os
import pty
import re
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from photoman.cli import app
from photoman.config import Settings
from photoman.textsafe import shown

runner = CliRunner()

CSI, MARKUP = b"csi\x1b[2Jclear.png", b"[bold]loud[link=http:evil]click.jpg"
# hostile name -> (the real photo copied under it, how every human output must show it)
HOSTILE = {
    CSI: ("scikit-image--chelsea.png", r"csi\x1b[2Jclear.png"),
    b"sgr\x1b[38;5;196mRED\x1b[0m.png": ("scikit-image--coffee.png", r"sgr\x1b[38;5;196mRED\x1b[0m.png"),
    b"osc\x1b]0;pwned\x07title.png": ("scikit-image--camera.png", r"osc\x1b]0;pwned\x07title.png"),
    b"osc8\x1b]8;;http:evil\x1b\\link.jpg": ("scikit-image--rocket.jpg", r"osc8\x1b]8;;http:evil\x1b\\link.jpg"),  # noqa: E501
    b"cr\rhidden.jpg": ("scikit-learn--china.jpg", r"cr\rhidden.jpg"),
    b"bs\x08\x08\x08x.jpg": ("exif--test1.jpg", r"bs\x08\x08\x08x.jpg"),
    MARKUP: ("exif-parser--starfish.jpg", MARKUP.decode()),
    b"emoji:dog:.jpg": ("exif-js--dsc_09827.jpg", "emoji:dog:.jpg"),
    b"bidi\xe2\x80\xaegpj.jpg": ("palapeli-data--castle-maintenon.jpg", r"bidi\u202egpj.jpg"),
    b"del\x7fc1\xc2\x9b31m.jpg": ("mate-backgrounds--Storm.jpg", r"del\x7fc1\u009b31m.jpg"),
}  # fmt: skip
DUP = (b"dup\x1b[8mconceal.png", "scikit-image--chelsea.png", r"dup\x1b[8mconceal.png")
JUNK = (b"junk\x1b[2Jbad.jpg", r"junk\x1b[2Jbad.jpg")
MORE_JUNK = 24  # with JUNK: 25 unreadable files, more than status lists
# what a hostile name or caption would do if it reached a terminal raw (Rich's own output on a real
# terminal uses ESC too, so on a pty these byte strings are looked for, not ESC itself)
RAW = [b"\x1b[2J", b"\x1b[38;5;196mRED", b"\x1b]0;pwned", b"\x1b]8;;", b"\x1b[8mconceal", b"\rhidden",
       b"\x08\x08\x08x", b"\x7fc1", b"\xc2\x9b", b"\xe2\x80\xae", b"\x1b[31mred", "🐶".encode()]  # fmt: skip
# (a caption's whitespace, \r included, is normalised when stored: no \r here)
CAPTION = "[bold]x[/] \x1b[31mred\x1b[0m\x1b[2Kback\x08\x08 :dog: \x1b]0;pwned\x07"
CAPTION_SHOWN = r"[bold]x[/] \x1b[31mred\x1b[0m\x1b[2Kback\x08\x08 :dog: \x1b]0;pwned\x07"
UNSAFE = "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ud800-\udfff]"


def run(*args: str) -> Any:
    return runner.invoke(app, list(args))


def assert_inert(data: bytes) -> str:
    """Bytes fit for a terminal: valid UTF-8 with no control character but newlines, no C1 or bidi
    control; returns the text."""
    text = data.decode("utf-8")  # raises on a raw non-UTF-8 byte
    assert not re.search(UNSAFE, text.replace("\n", "")), text
    return text


def make_library(root: Path, photos_src: Path) -> Path:
    lib = root / "Pictures"
    lib.mkdir(parents=True)
    folder = os.fsencode(lib)
    for name, (src, _) in HOSTILE.items():
        shutil.copyfile(photos_src / src, os.path.join(folder, name))
    shutil.copyfile(photos_src / DUP[1], os.path.join(folder, DUP[0]))
    with open(os.path.join(folder, JUNK[0]), "wb") as f:
        f.write(b"\xff\xd8\xff not a photo")
    return lib


def add_more_junk(lib: Path) -> None:
    for i in range(MORE_JUNK):
        (lib / f"junk-{i:02d}.jpg").write_bytes(b"\xff\xd8\xff not a photo either")


def path_of(lib: Path, name: bytes) -> str:
    return os.fsdecode(os.path.join(os.fsencode(lib), name))


@pytest.fixture
def hostile(cli_env: Settings, tmp_path: Path, photos_src: Path) -> Path:
    """A library of hostile names, indexed through the CLI (whose output is checked on the way)."""
    lib = make_library(tmp_path, photos_src)
    res = run("index", str(lib))
    assert res.exit_code == 0, res.output
    out, err = assert_inert(res.stdout_bytes), assert_inert(res.stderr_bytes)
    assert "Indexed 12 photos" in out and "1 unreadable" in out
    assert f"  skipped {lib}/{JUNK[1]}: not a readable image (UnidentifiedImageError)" in err.splitlines()
    add_more_junk(lib)
    res = run("index", str(lib))
    out, err = assert_inert(res.stdout_bytes), assert_inert(res.stderr_bytes)
    assert "Indexed 36 photos" in out and "24 unreadable" in out and "… and 14 more" in err
    return lib


# ---- the one escaping function ----
def test_shown_escapes_visibly_and_losslessly() -> None:
    cases = {
        "plain name.jpg": "plain name.jpg",
        "café 😀 日本.jpg": "café 😀 日本.jpg",  # printable Unicode stays as it is
        "a\x1b[31mred": r"a\x1b[31mred",
        "\x1b]0;t\x07": r"\x1b]0;t\x07",
        "line\nfeed\rret\ttab": r"line\nfeed\rret\ttab",
        "\x00\x08\x7f": r"\x00\x08\x7f",
        "c1\x85\x9b": r"c1\u0085\u009b",
        "\u2028\u2029\u202e\u2066\u200f": r"\u2028\u2029\u202e\u2066\u200f",
        os.fsdecode(b"caf\xe9\xff.jpg"): r"caf\xe9\xff.jpg",  # non-UTF-8 bytes, as bytes
        "back\\slash": r"back\\slash",
        "[bold]x[/]": "[bold]x[/]",  # markup is not the escaper's business: Text / markup=False is
    }
    for raw, want in cases.items():
        assert shown(raw) == want, raw
    # lossless: texts that differ are shown differently, however they try to look alike
    lookalikes = {"\x1b", r"\x1b", "\\\x1b", "\x85", os.fsdecode(b"\x85"), "\n", r"\n", "\\\n", r"\\n"}
    assert len(lookalikes) == 9 and len({shown(t) for t in lookalikes}) == 9
    # nothing unsafe survives, over every code point
    everything = shown("".join(map(chr, range(0x110000))))
    assert not re.search(UNSAFE, everything)


# ---- the CLI on a library of hostile names ----
def test_find_table_json_ndjson_and_nul(hostile: Path) -> None:
    real = {path_of(hostile, n) for n in [*HOSTILE, DUP[0]]}

    res = run("find", "a photo", "--all", "--limit", "50")
    assert res.exit_code == 0, res.output
    table = assert_inert(res.stdout_bytes)
    for _, want in HOSTILE.values():
        assert f"{hostile}/{want}" in table, want  # escaped, and markup / emoji codes as written
    assert "(+1 copies)" in table and len(table.splitlines()) == 1 + len(HOSTILE)

    res = run("find", "a photo", "--all", "--limit", "50", "--preview")
    assert res.exit_code == 0, res.output
    text = assert_inert(res.stdout_bytes + res.stderr_bytes)
    for _, want in HOSTILE.values():
        assert re.search(rf"^\d+\. {re.escape(f'{hostile}/{want}')}$", text, re.M), want

    res = run("find", "a photo", "--all", "--limit", "50", "--json")
    data = json.loads(res.stdout_bytes)
    assert b"\x1b" not in res.stdout_bytes and b"\\u001b" in res.stdout_bytes  # JSON escapes
    assert {d["path"] for d in data} | {p for d in data for p in d["duplicates"]} == real

    res = run("find", "a photo", "--all", "--limit", "50", "--ndjson")
    rows = [json.loads(line) for line in res.stdout_bytes.splitlines()]
    assert rows == data

    res = run("find", "a photo", "--all", "--limit", "50", "-0")
    assert res.stdout_bytes.endswith(b"\0")
    assert res.stdout_bytes.split(b"\0")[:-1] == [os.fsencode(d["path"]) for d in data]  # raw, exact


def test_status_caption_dupes_and_errors(hostile: Path) -> None:
    res = run("status")
    assert res.exit_code == 0, res.output
    text = assert_inert(res.stdout_bytes)
    assert "11 indexed" in text and "25 unreadable" in text
    error_lines = [ln for ln in text.splitlines() if ln.startswith("error ")]
    assert len(error_lines) == 20 and error_lines[0].startswith(f"error     {hostile}/{JUNK[1]}: ")
    assert "… the first 20 of 25 unreadable files (by path); `photoman status --all-errors`" in text
    info = json.loads(run("status", "--json").stdout_bytes)
    assert info["photos"]["errors"] == 25 and info["errors"][0]["path"] == path_of(hostile, JUNK[0])
    every = json.loads(run("status", "--json", "--all-errors").stdout_bytes)
    assert len(every["errors"]) == 25
    listed = run("status", "--all-errors").stdout.splitlines()
    assert len([ln for ln in listed if ln.startswith("error ")]) == 25

    target = path_of(hostile, MARKUP)
    res = run("caption", target, CAPTION)
    assert res.exit_code == 0, res.output
    assert assert_inert(res.stdout_bytes) == f"{CAPTION_SHOWN}  [user]\n"
    assert assert_inert(run("caption", target).stdout_bytes) == f"{CAPTION_SHOWN}  [user]\n"
    assert json.loads(run("caption", target, "--json").stdout_bytes)["caption"] == CAPTION

    res = run("dupes")  # the tiny random model finds every photo near every other: one group of all
    text = assert_inert(res.stdout_bytes)
    for want in [*(w for _, w in HOSTILE.values()), DUP[2]]:
        assert re.search(rf"^  (keep|) +{re.escape(f'{hostile}/{want}')}  \d+x\d+$", text, re.M), want
    groups = json.loads(run("dupes", "--json").stdout_bytes)["groups"]
    listed = {p["path"] for g in groups for p in g["photos"]}
    assert {path_of(hostile, DUP[0]), path_of(hostile, CSI)} <= listed

    # an error message quoting a name: one escaped line on stderr
    res = run("caption", str(hostile / "missing\x1b[2J[bold]x.jpg"))
    assert res.exit_code != 0
    err = assert_inert(res.stderr_bytes)
    assert err.count("\n") == 1 and err.startswith("photoman: ") and r"missing\x1b[2J[bold]x.jpg" in err


def _in_a_terminal(args: list[str], env: dict[str, str]) -> bytes:
    """Run `photoman ARGS` with stdout and stderr on a pseudo-terminal; everything it wrote."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "photoman", *args], stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave, env=env, close_fds=True)  # fmt: skip
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=300) == 0, b"".join(chunks)
    return b"".join(chunks)


def test_a_real_terminal_sees_no_raw_sequence(cli_env: Settings, tmp_path: Path, photos_src: Path) -> None:
    """On a terminal Rich colours and draws the progress bar (ESC of its own); none from a name."""
    lib = make_library(tmp_path, photos_src)
    env = {**os.environ, "COLUMNS": "400", "LINES": "50", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    seen = _in_a_terminal(["index", str(lib)], env)
    assert b"\x1b[" in seen and b"indexing" in seen  # a real terminal: styled, with the progress bar
    for raw in RAW:
        assert raw not in seen, raw
    assert rf"skipped {lib}/{JUNK[1]}".encode() in seen
    seen = _in_a_terminal(["find", "a photo", "--all", "--limit", "50"], env)
    for raw in RAW:
        assert raw not in seen, raw
    for _, want in HOSTILE.values():
        assert f"{lib}/{want}".encode() in seen, want
    # --json on a terminal is coloured by Rich: still ASCII escapes only (DEL, C1, bidi included)
    seen = _in_a_terminal(["find", "a photo", "--all", "--limit", "50", "--json"], env)
    for raw in RAW:
        assert raw not in seen, raw
    assert b"\\u202e" in seen and b"\\u009b" in seen and b"\\u007f" in seen


# ---- names that are not UTF-8 ----
BAD = b"caf\xe9 \xff\x1b[2J.jpg"  # Latin-1 and a stray byte: not UTF-8, and an ESC
BAD_SHOWN = r"caf\xe9 \xff\x1b[2J.jpg"


def _result(path: str, rank: int = 1) -> dict[str, Any]:
    return {"rank": rank, "score": 0.5, "path": path, "content_hash": "0" * 16, "taken_at": None,
            "width": 4, "height": 3, "camera": None, "format": "JPEG", "caption": None, "duplicates": [],
            "file_time": "2024-05-01T10:00:00"}  # fmt: skip


def test_non_utf8_names_through_every_output(
    cli_env: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The catalog cannot hold such a name yet (indexing one fails), so the client's answers are
    stood in for: each command's own printing is what is checked, on its exact bytes."""
    from photoman.client import Client

    bad = os.fsdecode(os.path.join(os.fsencode(tmp_path), BAD))
    plain = str(tmp_path / "plain.jpg")
    monkeypatch.setattr(Client, "search", lambda self, q: [_result(bad), _result(plain, 2)])

    res = run("find", "anything")
    table = assert_inert(res.stdout_bytes)
    assert f"{tmp_path}/{BAD_SHOWN}" in table and "2024-05-01 (file)" in table
    res = run("find", "anything", "--json")
    assert b"\\udce9 \\udcff\\u001b[2J.jpg" in res.stdout_bytes  # JSON's lossless form, ASCII
    assert os.fsencode(json.loads(res.stdout_bytes)[0]["path"]) == os.path.join(os.fsencode(tmp_path), BAD)
    res = run("find", "anything", "--ndjson")
    assert os.fsencode(json.loads(res.stdout_bytes.splitlines()[0])["path"]).endswith(BAD)
    res = run("find", "anything", "-0")
    assert res.stdout_bytes == os.path.join(os.fsencode(tmp_path), BAD) + b"\0" + os.fsencode(plain) + b"\0"

    status = {
        "data_dir": str(tmp_path), "model": "m", "catalog": {"url": "sqlite:///x", "bytes": 1},
        "vectors": {"backend": "qdrant-edge", "collection": "c", "points": 1, "disk_bytes": 1},
        "roots": [{"path": os.fsdecode(os.fsencode(tmp_path) + b"/r\xe9"), "photos": 1, "online": True}],
        "photos": {"indexed": 1, "indexed_with_model": 1, "unique": 1, "errors": 1},
        "errors": [{"path": bad, "error": f"cannot identify image file {bad!r}"}],
        "daemon": {"pid": 1, "uptime_s": 1.0, "state": "idle", "queue": 0, "rate": 0.0,
                   "indexed_since_start": 0, "errors_since_start": 0,
                   "watching": {os.fsdecode(os.fsencode(tmp_path) + b"/r\xe9"): "inotify"}},
    }  # fmt: skip
    monkeypatch.setattr(Client, "status", lambda self, **kw: status)
    text = assert_inert(run("status").stdout_bytes)
    assert f"root      {tmp_path}/r\\xe9: 1 photos" in text
    assert f"watching  {tmp_path}/r\\xe9 (inotify)" in text
    assert f"error     {tmp_path}/{BAD_SHOWN}: cannot identify image file '" in text
    assert "first" not in text  # every unreadable file listed: no "first N of M" line

    photos = [{"path": plain, "width": 4, "height": 3}, {"path": bad, "width": 4, "height": 3}]
    dupes = {"groups": [{"kind": "exact", "keeper": plain, "photos": photos}], "trashed": []}
    monkeypatch.setattr(Client, "dupes", lambda self, **kw: dupes)
    text = assert_inert(run("dupes").stdout_bytes)
    assert f"          {tmp_path}/{BAD_SHOWN}  4x3" in text and f"keep    {plain}  4x3" in text

    monkeypatch.setattr(
        Client, "caption", lambda self, p, t, clear: {"path": bad, "caption": bad, "source": "xmp"}
    )
    assert assert_inert(run("caption", "x.jpg").stdout_bytes) == f"{tmp_path}/{BAD_SHOWN}  [xmp]\n"


def test_non_utf8_name_indexed_end_to_end(cli_env: Settings, tmp_path: Path, photos_src: Path) -> None:
    lib = tmp_path / "Pictures"
    lib.mkdir()
    raw = os.path.join(os.fsencode(lib), BAD)
    shutil.copyfile(photos_src / "scikit-image--chelsea.png", raw)
    res = run("index", str(lib))
    assert res.exit_code == 0, res.output
    assert f"{lib}/{BAD_SHOWN}" in assert_inert(run("find", "cat", "--all").stdout_bytes)
    assert run("find", "cat", "--all", "-0").stdout_bytes == raw + b"\0"
    assert os.fsencode(json.loads(run("find", "cat", "--all", "--json").stdout_bytes)[0]["path"]) == raw
    sub = os.path.join(os.fsencode(lib), BAD + b".d")  # a folder whose name is not UTF-8, as a filter
    os.mkdir(sub)
    shutil.copyfile(photos_src / "scikit-image--coffee.png", os.path.join(sub, b"coffee.png"))
    assert run("index").exit_code == 0
    res = run("find", "a photo", "--all", "--json", "--in", os.fsdecode(sub))
    assert res.exit_code == 0, res.output
    found = [os.fsencode(r["path"]) for r in json.loads(res.stdout_bytes)]
    assert found == [os.path.join(sub, b"coffee.png")]


# ---- library notices on the CLI's stderr ----
def test_cli_prints_a_notice_as_one_escaped_line(
    cli_env: Settings, tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A notice (here the text encoder's fallback, quoting the model folder) reaches stderr through
    the CLI's handler on the `photoman` logger: one line each, the name escaped, no level prefix."""
    from photoman.embedding import onnx_text

    model = tmp_path / "csi\x1b[2Jmodel\u202eos"
    shutil.copytree(tiny_model, model)

    def broken(*_a: object, **_k: object) -> None:
        raise OSError(f"cannot write {model}/text.onnx")

    monkeypatch.setattr(onnx_text, "load", broken)
    monkeypatch.setenv("PHOTOMAN_CACHE_DIR", str(tmp_path / "fresh-cache"))  # the text pack is built here
    res = run("--no-daemon", "--model", str(model), "embed", "--text", "a cat", "--json")
    assert res.exit_code == 0, res.output
    json.loads(res.stdout)  # the notices never mix into machine output
    err = assert_inert(res.stderr_bytes)
    lines = err.splitlines()
    escaped = shown(str(model))
    assert escaped.endswith(r"csi\x1b[2Jmodel\u202eos")
    assert f"fast text encoder unavailable (cannot write {escaped}/text.onnx); using the torch one" in lines
    assert "Preparing the fast text encoder for this model (once, a few seconds)…" in lines
    assert not any(ln.startswith(("INFO", "WARNING")) for ln in lines), err
    assert not logging.getLogger("photoman").handlers  # the command's handler went with it


# ---- the daemon log ----
def test_daemon_log_escapes_names(settings: Settings) -> None:
    from photoman.service.daemon import setup_logging

    logger = logging.getLogger("photoman")
    before, level, propagate = list(logger.handlers), logger.level, logger.propagate
    setup_logging(settings, foreground=False)
    try:
        log = logging.getLogger("photoman.daemon")
        name = os.fsdecode(b"/photos/csi\x1b[2J\r\xe9.jpg")
        log.info("watching %s (%s)", name, "inotify")
        try:
            open(name)  # noqa: SIM115
        except OSError:
            log.exception("cannot read %s", name)
        for h in logger.handlers:
            h.flush()
    finally:
        for h in logger.handlers[len(before) :]:
            logger.removeHandler(h)
            h.close()
        logger.setLevel(level)
        logger.propagate = propagate  # the daemon's set-up is for its own process, not the tests'
    text = assert_inert(settings.log_file.read_bytes())
    assert r"watching /photos/csi\x1b[2J\r\xe9.jpg (inotify)" in text
    assert r"cannot read /photos/csi\x1b[2J\r\xe9.jpg" in text
    # the traceback quotes the name's repr (escaped once already): its backslashes are doubled
    assert r"No such file or directory: '/photos/csi\\x1b[2J\\r\\udce9.jpg'" in text


# ---- the TUI ----
async def test_tui_shows_names_and_captions_as_text(
    settings: Settings, tmp_path: Path, photos_src: Path
) -> None:
    from textual.widgets import Checkbox, Input, Static

    from photoman.client import Client
    from photoman.indexing.pipeline import index
    from photoman.library import Library
    from photoman.tui.app import PhotomanApp, image_widget_class
    from photoman.tui.widgets import LABEL_WIDTH, DetailPane, ResultsGrid, fit

    lib = make_library(tmp_path, photos_src)
    with Library(settings) as library:
        index(library, [lib])
    target = path_of(lib, MARKUP)
    with Client(settings, daemon=False) as pm:
        pm.caption(target, CAPTION)
    app = PhotomanApp(replace(settings, tui_images="halfcell"), image_cls=image_widget_class("halfcell"))

    async def until(pilot: Any, cond: Any) -> None:
        deadline = time.monotonic() + 60
        while not cond():
            assert time.monotonic() < deadline, "timed out"
            await pilot.pause(0.05)

    async with app.run_test(size=(160, 50), notifications=True) as pilot:
        await until(pilot, lambda: "11 photos" in app.status_text)
        app.query_one("#all", Checkbox).value = True
        app.query_one("#query", Input).value = "a photo"
        app.query_one("#query", Input).focus()
        await pilot.press("enter")
        grid = app.query_one(ResultsGrid)
        await until(pilot, lambda: len(grid.results) == len(HOSTILE))
        labels = [str(t.query_one(".label", Static).render()) for t in grid.query("Tile")]
        # tile labels: the escaped name, cut in the middle to the tile's width (score in the border)
        assert sorted(labels) == sorted(fit(w, LABEL_WIDTH) for _, w in HOSTILE.values())
        # the detail pane of the photo whose name and caption hold markup and escapes
        grid.selected = next(i for i, r in enumerate(grid.results) if r["path"] == target)
        pane = app.query_one(DetailPane)
        await until(pilot, lambda: pane.photo is not None and pane.photo["path"] == target)
        facts = str(app.query_one("#facts", Static).render())
        assert facts.splitlines()[0] == f"{lib}/[bold]loud[link=http:evil]click.jpg"
        box = app.query_one("#caption", Input)
        assert box.value == CAPTION_SHOWN
        # Enter on the caption as shown keeps the real caption (not its escaped form)
        said: list[str] = []
        say = app.say
        app.say = lambda text, severity="information": (said.append(text), say(text, severity))  # type: ignore[method-assign]
        box.focus()
        await pilot.press("enter")
        await until(pilot, lambda: "caption saved (user)" in said)
        assert app.client is not None and app.client.caption(target)["caption"] == CAPTION
        # more like this: the search box shows the path escaped, and Enter there still finds the file
        csi = path_of(lib, CSI)
        grid.selected = next(i for i, r in enumerate(grid.results) if r["path"] == csi)
        grid.focus()
        await pilot.press("m")
        query = app.query_one("#query", Input)
        assert query.value == f"{lib}/{HOSTILE[CSI][1]}"
        copies = {csi, path_of(lib, DUP[0])}
        await until(pilot, lambda: bool(grid.results) and grid.results[0]["path"] in copies)
        before = app.last_query
        query.focus()
        await pilot.press("enter")
        await until(pilot, lambda: app.last_query is not before)
        assert app.last_query is not None and app.last_query.resolved_mode() == "image-image"
        assert [(t.kind, t.value) for t in app.last_query.terms] == [("image", csi)]
        await until(pilot, lambda: bool(grid.results) and grid.results[0]["path"] in copies)
        # messages, toasts and the status line quote names escaped, never as markup
        app._message("no such image: \x1b[2J[bold]x[/]")
        app.say("copied \x1b]0;pwned\x07[link=http:evil]y")
        app._set_status("status \x1b[31m[bold]z")  # (checked at once: a refresh replaces it every 2 s)
        assert str(app.query_one("#status", Static).render()) == r"status \x1b[31m[bold]z"
        await pilot.pause(0.3)
        message = str(grid.query_one(".message", Static).render())
        assert message == r"no such image: \x1b[2J[bold]x[/]"
        await until(pilot, lambda: len(app.screen.query("Toast")) >= 2)  # "caption saved", then this
        toasts = [str(t.render()) for t in app.screen.query("Toast")]
        assert r"copied \x1b]0;pwned\x07[link=http:evil]y" in toasts, toasts
        # the whole screen as exported: no control character anywhere, the texts as written
        screen = app.export_screenshot()
        assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]", screen)
        flat = html.unescape(screen).replace("\xa0", " ")
        assert message in flat and f"{HOSTILE[CSI][1][:12]}" in flat  # (the toast wraps: checked above)
