"""The Textual UI driven by its Pilot on a real library (tiny model), half-block thumbnails forced."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import textual_image.widget  # noqa: F401 - probes the terminal once, before any app runs
from textual.widgets import Checkbox, Input, Select, Static

from photoman.client import Client
from photoman.config import Settings
from photoman.indexing.pipeline import index
from photoman.library import Library
from photoman.tui.app import PhotomanApp, image_widget_class
from photoman.tui.widgets import DetailPane, HelpScreen, ResultsGrid

from .daemon_helpers import base_env

SIZE = (130, 42)


@pytest.fixture
def tui_settings(settings: Settings, library_dir: Path, tmp_path: Path) -> Settings:
    with Library(settings) as lib:
        index(lib, [library_dir])
    opened = tmp_path / "opened.txt"
    viewer = f"{sys.executable} -c \"import sys; open({str(opened)!r}, 'a').write(sys.argv[1] + chr(10))\""
    return replace(settings, viewer=viewer, tui_images="halfcell", runtime_dir=tmp_path / "run")


def make_app(settings: Settings) -> PhotomanApp:
    return PhotomanApp(settings, image_cls=image_widget_class("halfcell"))


async def wait_until(pilot, cond, timeout: float = 60.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await pilot.pause(0.05)
        if cond():
            return
    raise AssertionError("timed out")


async def test_search_navigate_details_caption_more_like_this(
    tui_settings: Settings, library_dir: Path
) -> None:
    app = make_app(tui_settings)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: "10 photos" in app.status_text)
        assert "no daemon: direct access" in app.status_text
        app.query_one("#all", Checkbox).value = True
        await pilot.click("#query")
        await pilot.press(*"a cat on a sofa", "enter")
        grid = app.query_one(ResultsGrid)
        await wait_until(pilot, lambda: len(grid.results) == 10)
        assert grid.selected == 0 and app.focused is grid
        # keyboard navigation: right/left, down by a row, end/home
        cols = grid.columns
        await pilot.press("l")
        assert grid.selected == 1
        await pilot.press("left")
        assert grid.selected == 0
        await pilot.press("j")
        assert grid.selected == min(cols, 9)
        await pilot.press("end")
        assert grid.selected == 9
        await pilot.press("home")
        assert grid.selected == 0
        # mouse: click the third tile
        await pilot.click("#tile-2")
        assert grid.selected == 2
        # details of the selection, with the thumbnail cache filled off the UI thread
        pane = app.query_one(DetailPane)
        await wait_until(pilot, lambda: pane.photo is not None and pane.photo["path"] == grid.current["path"])
        facts = str(app.query_one("#facts", Static).render())
        assert grid.current["path"] in facts and "taken" in facts
        await wait_until(pilot, lambda: len(list(tui_settings.thumbs_dir.rglob("*.webp"))) >= 10)
        # heat map of the query's words over the detail preview, toggled
        await wait_until(pilot, lambda: pane.preview_path and "/512/" in pane.preview_path)
        await pilot.press("t")
        await wait_until(pilot, lambda: pane.preview_path and "/heat/" in pane.preview_path)
        assert pane.heatmap_shown
        await pilot.press("t")
        await wait_until(pilot, lambda: pane.preview_path and "/512/" in pane.preview_path)
        # edit the caption inline: saved, and searchable by caption
        target = grid.current["path"]
        await pilot.press("e")
        assert app.focused is app.query_one("#caption", Input)
        app.query_one("#caption", Input).value = "a red kite over the dunes"
        await pilot.press("enter")
        await wait_until(
            pilot, lambda: pane.photo and pane.photo.get("caption") == "a red kite over the dunes"
        )
        assert pane.photo["caption_source"] == "user"
        # more like this: image→image from the selection ranks the photo itself first
        grid.focus()
        await pilot.press("m")
        await wait_until(pilot, lambda: grid.results and grid.results[0]["path"] == target)
        assert app.last_query.resolved_mode() == "image-image"
        assert app.query_one("#mode", Select).value == "auto"  # the user's choice stays theirs
        assert grid.results[0]["score"] > 0.99
        # caption search through the mode switch
        app.query_one("#mode", Select).value = "text-caption"
        app.query_one("#query", Input).value = "a red kite over the dunes"
        app.query_one("#query", Input).focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: len(grid.results) == 1 and grid.results[0]["path"] == target)
        # open, reveal, copy
        await pilot.press("o", "r", "c")
        assert app.clipboard == target
        opened = Path(tui_settings.viewer.split("open(")[1].split(",")[0].strip("'\""))
        await wait_until(pilot, lambda: opened.exists() and len(opened.read_text().splitlines()) == 2)
        # each runs the viewer as its own process, started without waiting: either may write first
        assert sorted(opened.read_text().splitlines()) == sorted([target, os.path.dirname(target)])


async def test_filters_help_and_messages(tui_settings: Settings, library_dir: Path) -> None:
    app = make_app(tui_settings)
    async with app.run_test(size=SIZE) as pilot:
        grid = app.query_one(ResultsGrid)
        await wait_until(pilot, lambda: app.client is not None)
        app.query_one("#all", Checkbox).value = True
        app.query_one("#folder", Input).value = str(library_dir / "trips")
        app.query_one("#query", Input).value = "a photo"
        app.query_one("#query", Input).focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: len(grid.results) == 4)
        assert all("/trips/" in r["path"] for r in grid.results)
        app.query_one("#camera", Input).value = "iphone"
        app.query_one("#camera", Input).focus()
        await pilot.press("enter")
        await wait_until(
            pilot, lambda: [r["path"] for r in grid.results] == [str(library_dir / "trips/exif--test1.jpg")]
        )
        app.query_one("#since", Input).value = "2023-02-30"
        app.query_one("#since", Input).focus()
        await pilot.press("enter")
        message = grid.query_one(".message", Static)
        await wait_until(pilot, lambda: "not a real date" in str(message.render()))
        app.query_one("#since", Input).value = "2030"
        app.query_one("#since", Input).focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: "No results" in str(message.render()))
        grid.focus()
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_empty_library_and_busy_library(settings: Settings, tmp_path: Path) -> None:
    app = make_app(replace(settings, runtime_dir=tmp_path / "run"))
    async with app.run_test(size=SIZE) as pilot:
        message = app.query_one(ResultsGrid).query_one(".message", Static)
        await wait_until(pilot, lambda: "library is empty" in str(message.render()))
    from photoman.library import DataDirLock

    lock = DataDirLock(settings.lock_file)
    lock.acquire("photoman index")
    try:
        app = make_app(replace(settings, runtime_dir=tmp_path / "run"))
        async with app.run_test(size=SIZE) as pilot:
            message = app.query_one(ResultsGrid).query_one(".message", Static)
            await wait_until(pilot, lambda: "library is busy" in str(message.render()))
            assert "photoman index" in str(message.render())
    finally:
        lock.release()


async def test_library_notices_are_toasts(settings: Settings, tmp_path: Path) -> None:
    """While the app runs, records of the `photoman` loggers (from its own thread or a worker's) become
    toasts, escaped and never markup; when it exits, its handler goes."""
    import logging
    import threading

    log = logging.getLogger("photoman.embedding.model")
    app = make_app(replace(settings, runtime_dir=tmp_path / "run"))
    async with app.run_test(size=SIZE) as pilot:
        log.info("Downloading model csi\x1b[2J[bold]x (first use only)…")
        worker = threading.Thread(target=log.warning, args=("fast text encoder unavailable (boom)",))
        worker.start()
        while worker.is_alive():
            await pilot.pause(0.05)
        worker.join()

        def toasts() -> dict[str, str]:
            return {str(n.message): n.severity for n in app._notifications}

        await wait_until(pilot, lambda: len(toasts()) >= 2, timeout=10)
        assert toasts()[r"Downloading model csi\x1b[2J[bold]x (first use only)…"] == "information"
        assert toasts()["fast text encoder unavailable (boom)"] == "warning"
        assert all(not n.markup for n in app._notifications)
    assert not logging.getLogger("photoman").handlers
    app._message("Your library is empty")  # a worker's answer arriving once the app has exited: dropped
    app.watch_status_text("0 photos")


SNAPSHOTS = Path(__file__).parent / "snapshots"
PLACE = "/tmp/photoman-tui-XXXXXXXX"  # where the snapshot's library lies, as the reference shows it


@pytest.fixture
def snapshot_settings(
    settings: Settings, library_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Settings, Path]]:
    """The library copied to /tmp/photoman-tui-<8 random characters>/Pictures and indexed there.

    The screen shows its paths (the search box, the details), and a pytest temp folder's length (user
    name, run number, xdist worker) would move what fits on screen; here only the 8 characters vary,
    normalised at the same length. The status line's model, a folder in the run's temp folder, reads
    ``<model>``. Nothing else on the screen is a temp path, a time or a timing."""
    place = Path(tempfile.mkdtemp(prefix="photoman-tui-", dir="/tmp"))
    try:
        if os.path.realpath(place) != str(place) or len(str(place)) != len(PLACE):
            pytest.skip(f"the reference shows the library under {PLACE}, here {os.path.realpath(place)}")
        shutil.copytree(library_dir, place / "Pictures")
        with Library(settings) as lib:
            index(lib, [place / "Pictures"])
        # the status line stays as the app draws it: it redraws it every 2 s (set_interval), and the test
        # that overwrote it with a fixed word saw the real line back whenever that tick fell between
        # its overwrite and its screenshot (3 runs in 20): the cell that "differed now and then"
        status = Client.status
        monkeypatch.setattr(Client, "status", lambda self, *a: {**status(self, *a), "model": "<model>"})
        yield replace(settings, tui_images="halfcell"), place
    finally:
        shutil.rmtree(place)


def first_difference(expected: str, got: str) -> str | None:
    """Where two SVGs part: the line, and each side's text around the first differing character
    (pytest's own diff of two large SVGs takes minutes; a screen row is one long line of the SVG)."""
    a, b = expected.splitlines(), got.splitlines()
    for n, (x, y) in enumerate(zip(a, b, strict=False), 1):
        if x != y:
            i = next((i for i, (p, q) in enumerate(zip(x, y, strict=False)) if p != q), min(len(x), len(y)))
            around = slice(max(0, i - 160), i + 80)
            return f"line {n}, column {i + 1}:\n  expected {x[around]!r}\n  got      {y[around]!r}"
    return None if len(a) == len(b) else f"line {min(len(a), len(b)) + 1}: one of them ends there"


async def screenshot(settings: Settings, place: Path) -> str:
    """The screen once an image search has settled: results, their thumbnails, the details and the
    preview all drawn, no worker running; as SVG, normalised (see below)."""
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: "10 photos" in app.status_text)
        app.query_one("#all", Checkbox).value = True
        chelsea = str(place / "Pictures/scikit-image--chelsea.png")
        app.query_one("#query", Input).value = chelsea
        app.query_one("#query", Input).focus()
        await pilot.press("enter")
        grid = app.query_one(ResultsGrid)
        pane = app.query_one(DetailPane)
        await wait_until(pilot, lambda: len(grid.results) == 10)
        await wait_until(pilot, lambda: pane.photo is not None and pane.photo["path"] == chelsea)
        await wait_until(pilot, lambda: all(t.query_one(".thumb").image for t in grid.query("Tile")))
        await wait_until(pilot, lambda: bool(pane.preview_path) and "/512/" in pane.preview_path)
        await app.workers.wait_for_complete()
        assert app.focused is grid  # the search box (and its blinking cursor) has let go
        app.clear_notifications()  # toasts time out (the first run builds caches and may say so)
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()
        svg = app.export_screenshot()
    # Rich names the SVG's classes after a hash of the whole content: any cell's change renames every
    # line; the library's folder name is random (same length, see snapshot_settings)
    svg = re.sub(r"terminal-\d+", "terminal", svg).replace(place.name, Path(PLACE).name)
    assert "scikit-image--chelsea.png" in svg and "▀" in svg  # half-block thumbnails
    return svg


async def test_snapshot_with_half_blocks_matches_the_reference(
    snapshot_settings: tuple[Settings, Path], tmp_path: Path
) -> None:
    """The whole screen after an image search, every cell's character and colour (thumbnails, the
    preview, borders, scores, details, status line and footer), against tests/snapshots/tui.svg;
    after a deliberate change, ``PHOTOMAN_UPDATE_SNAPSHOTS=1`` rewrites it (open it in a browser to
    review). Twice: the first run makes the thumbnails, the second reads them from the cache.

    The same on any machine: scores print with 3 decimals, the nearest 5e-5 from a rounding boundary
    (torch and ONNX Runtime agree to 1e-6); thumbnails and preview have fixed cell sizes, so the font
    size textual-image reads from a terminal (when the run has one) changes nothing."""
    settings, place = snapshot_settings
    shots = [await screenshot(settings, place) for _ in range(2)]
    for n, shot in enumerate(shots):
        (tmp_path / f"run{n + 1}.svg").write_text(shot)
    where = f"both runs in {tmp_path}"
    if diff := first_difference(shots[0], shots[1]):
        pytest.fail(f"run 1 and run 2 differ at {diff}\n{where}")
    path = SNAPSHOTS / "tui.svg"
    if os.environ.get("PHOTOMAN_UPDATE_SNAPSHOTS") == "1":
        path.write_text(shots[0])
    assert path.exists(), f"no snapshot {path}: run with PHOTOMAN_UPDATE_SNAPSHOTS=1 and review it"
    if diff := first_difference(path.read_text(), shots[0]):
        pytest.fail(f"the screen differs from {path} at {diff}\n{where}; review it, then update the snapshot")


def test_tui_starts_in_a_real_terminal(tui_settings: Settings, tmp_path: Path) -> None:
    """tmux: start `photoman tui`, type a query, see results and the status line, quit."""
    if shutil.which("tmux") is None:  # .ci/run installs it; nothing in the suite installs packages
        pytest.skip("tmux is not installed (apt-get install tmux)")
    env_vars = {
        "PHOTOMAN_DATA_DIR": str(tui_settings.data_dir),
        "PHOTOMAN_MODEL": tui_settings.model,
        "PHOTOMAN_RUNTIME_DIR": str(tmp_path / "run"),
        "PHOTOMAN_STATE_DIR": str(tmp_path / "state"),
        "PHOTOMAN_TUI_IMAGES": "halfcell",
        "PHOTOMAN_CONFIG": "",
        "HF_HUB_OFFLINE": "1",
    }
    exports = " ".join(f"{k}={v!r}" for k, v in env_vars.items())
    session = f"photoman-test-{os.getpid()}"
    sock = str(tmp_path / "tmux.sock")
    tmux = ["tmux", "-S", sock]
    subprocess.run([*tmux, "new-session", "-d", "-s", session, "-x", "130", "-y", "40",
                    f"env {exports} {sys.executable} -m photoman tui"], check=True)  # fmt: skip
    try:

        def screen() -> str:
            return subprocess.run(
                [*tmux, "capture-pane", "-p", "-t", session], capture_output=True, text=True
            ).stdout

        def wait_for(text: str, timeout: float = 90) -> None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if re.search(text, screen()):
                    return
                time.sleep(0.3)
            raise AssertionError(f"{text!r} never appeared:\n{screen()}")

        wait_for("10 photos")
        wait_for("daemon pid")  # the TUI started the daemon on demand and shows its state
        subprocess.run([*tmux, "send-keys", "-t", session, "/", "a harbour at dusk", "Enter"], check=True)
        wait_for(r"-?\d\.\d{3} [─━]*[╮┓]")  # a result tile, its score in the border
        subprocess.run([*tmux, "send-keys", "-t", session, "q"], check=True)

        def alive() -> bool:
            return subprocess.run([*tmux, "has-session", "-t", session], capture_output=True).returncode == 0

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and alive():
            time.sleep(0.3)
        assert not alive()
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
        env = {**base_env(), **env_vars}
        subprocess.run([sys.executable, "-m", "photoman", "stop"], env=env, capture_output=True, timeout=120)


async def test_tui_through_a_running_daemon(
    tui_settings: Settings, library_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With `photoman watch` up, the TUI asks the daemon (socket) for results, details and caption edits.
    While the daemon does not answer (stopped here; on a large library, building a search graph), the
    status line says it waits, with one request in flight however many refreshes pass, and recovers."""
    import signal

    from .daemon_helpers import start

    monkeypatch.setattr(PhotomanApp, "STATUS_EVERY", 0.2)

    env = base_env()
    env.update(
        PHOTOMAN_DATA_DIR=str(tui_settings.data_dir),
        PHOTOMAN_MODEL=tui_settings.model,
        PHOTOMAN_RUNTIME_DIR=str(tui_settings.runtime_dir),
        PHOTOMAN_STATE_DIR=str(tmp_path / "state"),
        PHOTOMAN_CONFIG="",
        PHOTOMAN_PRECISION="onnx",
    )
    proc = start(env, tmp_path)
    try:
        app = make_app(tui_settings)
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(
                pilot, lambda: "daemon pid" in app.status_text and "10 photos" in app.status_text
            )
            assert app.client is not None and app.client.mode == "daemon"
            chelsea = str(library_dir / "scikit-image--chelsea.png")
            app.query_one("#query", Input).value = chelsea
            app.query_one("#query", Input).focus()
            await pilot.press("enter")
            grid = app.query_one(ResultsGrid)
            await wait_until(pilot, lambda: bool(grid.results) and grid.results[0]["path"] == chelsea)
            pane = app.query_one(DetailPane)
            await wait_until(pilot, lambda: pane.photo is not None and pane.photo["path"] == chelsea)
            await pilot.press("e")
            app.query_one("#caption", Input).value = "cat portrait"
            await pilot.press("enter")
            await wait_until(pilot, lambda: pane.photo.get("caption") == "cat portrait")

            def threads_in_refresh() -> int:
                """Threads whose stack is in a status refresh (waiting on the daemon)."""
                n = 0
                for frame in sys._current_frames().values():
                    f = frame
                    while f is not None and f.f_code.co_name != "refresh_status":
                        f = f.f_back
                    n += f is not None
                return n

            proc.send_signal(signal.SIGSTOP)
            try:
                await pilot.pause(1.5)  # seven refreshes
                assert threads_in_refresh() == 1
                await wait_until(pilot, lambda: "has not answered" in app.status_text, timeout=30)
            finally:
                proc.send_signal(signal.SIGCONT)
            await wait_until(pilot, lambda: "daemon pid" in app.status_text, timeout=30)
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        proc.wait(timeout=60)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
async def test_what_users_hit_small_and_large(
    tui_settings: Settings, library_dir: Path, size: tuple[int, int]
) -> None:
    """Each point users hit, at the smallest common terminal and a large one."""
    from rich.console import Console

    from photoman.tui.widgets import LABEL_WIDTH, fit

    app = make_app(replace(tui_settings, viewer="no-such-viewer-for-photoman-tests"))
    async with app.run_test(size=size) as pilot:
        grid = app.query_one(ResultsGrid)
        query = app.query_one("#query", Input)
        await wait_until(pilot, lambda: "10 photos" in app.status_text)
        # `/` is a key, not a character: the results have the focus at start
        assert app.focused is grid
        await pilot.press("slash")
        assert app.focused is query and query.value == ""
        await pilot.press(*"x/y")  # in a box `/` is a character (image paths), in order
        assert query.value == "x/y"
        query.value = ""
        app.query_one("#all", Checkbox).value = True  # no search yet: nothing re-runs
        await pilot.press(*"a cat", "enter")
        await wait_until(pilot, lambda: len(grid.results) == 10)
        # tiles name their photo (cut in the middle when long); the score sits in the border
        tile = grid.query_one("#tile-0")
        label = str(tile.query_one(".label", Static).render())
        name = os.path.basename(grid.results[0]["path"])
        assert label == fit(name, LABEL_WIDTH) and label[:4] == name[:4] and label[-4:] == name[-4:]
        assert str(tile.border_title) == f"{grid.results[0]['score']:.3f}"
        # the details fit on screen, the caption box's hint too
        pane = app.query_one(DetailPane)
        await wait_until(pilot, lambda: pane.photo is not None)
        await pilot.pause(0.2)
        facts = app.query_one("#facts", Static)
        assert facts.region.bottom <= size[1] - 2 and facts.region.height == 7, facts.region
        assert facts.region.right <= size[0]
        caption = app.query_one("#caption", Input)
        assert caption.region.bottom <= size[1] - 2
        assert len(caption.placeholder) <= caption.content_region.width
        # more like this: the mode select stays, the results keep the keys, the next text search works
        grid.action_jump(2)
        target = grid.current["path"]
        await pilot.press("m")
        await wait_until(pilot, lambda: grid.results[0]["path"] == target)
        assert app.query_one("#mode", Select).value == "auto" and app.focused is grid
        await pilot.press("x")  # not a binding: must not land in the search box
        assert query.value.endswith(os.path.basename(target))
        await pilot.press("slash")
        query.value = "a dog"
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.last_query.terms[0].kind == "text" and len(grid.results) == 10)
        # `o` without a viewer: the path is copied instead, with a word saying so
        grid.focus()
        await pilot.press("o")
        assert app.clipboard == grid.current["path"]
        # a new mode applies to the search on screen at once
        app.query_one("#mode", Select).value = "text-caption"
        await wait_until(pilot, lambda: app.last_query.mode == "text-caption")
        # the help lists every key with its whole text, wrapped to the screen, never cut
        grid.focus()
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        help_static = app.screen.query_one("#help", Static)
        assert help_static.region.right <= size[0]
        with open(os.devnull, "w") as devnull:
            console = Console(width=help_static.content_region.width, record=True, file=devnull)
            console.print(help_static.content)
        text = console.export_text()
        for binding in app.BINDINGS:  # every word of every key's text, in order, whatever the wrapping
            assert re.search(r"\s+".join(map(re.escape, binding.tooltip.split())), text), binding.tooltip
        await pilot.press("escape")
