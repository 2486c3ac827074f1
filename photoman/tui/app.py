"""`photoman tui`: search box, filter bar, thumbnail grid, detail pane, live status line."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from textual import events, on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.notifications import SeverityLevel
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Checkbox, Footer, Input, Select, Static
from textual.worker import get_current_worker

from photoman.client import Client
from photoman.config import Settings
from photoman.errors import PhotomanError
from photoman.notices import NoticeHandler
from photoman.search.filters import build_filter
from photoman.search.query import MODES, Query, Term, parse_query
from photoman.textsafe import shown
from photoman.tui.thumbs import thumbnail
from photoman.tui.widgets import DetailPane, HelpScreen, ResultsGrid

MODE_OPTIONS = [("auto", "auto")] + [(m, m) for m in MODES]


def image_widget_class(kind: str) -> type[Widget]:
    """textual-image widget: the terminal's graphics protocol, or half-block cells when asked (tests)."""
    import textual_image.widget as ti

    return {"halfcell": ti.HalfcellImage, "unicode": ti.UnicodeImage}.get(kind, ti.Image)


class PhotomanApp(App[None]):
    """The app: state in reactives (status line, the query in effect), work in thread workers that
    never touch the DOM (they hand results back with ``call_from_thread``)."""

    CSS_PATH = "photoman.tcss"
    TITLE = "photoman"
    # `tooltip` is the help screen's text for each key (the help is built from these bindings)
    BINDINGS = [
        # priority: handled as the key arrives, so what is typed right after it lands in the box (a
        # key that bubbles up from the grid is handled late, after the keys that followed it)
        Binding("slash", "focus_search", "search", priority=True,
                tooltip="type a search: text, + / - algebra, weights 2:..., or an image path; Enter runs it"),
        Binding("escape", "focus_results", "results", show=False, tooltip="back to the results"),
        Binding("m", "more_like_this", "more like this", tooltip="photos similar to the selected one"),
        Binding("o", "open", "open",
                tooltip="open the photo in the viewer (no viewer: its path is copied instead)"),
        Binding("c", "copy_path", "copy path", tooltip="copy the photo's path"),
        Binding("r", "reveal", "reveal folder", tooltip="open the photo's folder"),
        Binding("e", "edit_caption", "caption",
                tooltip="edit the caption (Enter saves; Enter on an empty box clears yours)"),
        Binding("t", "toggle_heatmap", "heat map",
                tooltip="where the query's words are in the selected photo (toggle)"),
        Binding("f", "focus_filters", "filters", show=False,
                tooltip="jump to the filters (dates, folder, camera, tag; Enter applies)"),
        Binding("question_mark", "help", "keys", tooltip="this list"),
        Binding("q", "quit", "quit", tooltip="quit"),
    ]  # fmt: skip

    status_text: reactive[str] = reactive("starting…")
    STATUS_EVERY = 2.0  # seconds between status refreshes

    def __init__(
        self,
        settings: Settings,
        client_factory: Callable[[Settings], Client] | None = None,
        image_cls: type[Widget] | None = None,
        daemon: bool | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.daemon = daemon
        self.client_factory = client_factory or self._client
        self.client: Client | None = None
        self.image_cls = image_cls or image_widget_class(settings.tui_images)
        self.last_query: Query | None = None
        self._search_seq = 0  # the newest search; older ones' results are dropped
        self._showing = asyncio.Lock()
        self.shown_query: tuple[str, str] | None = None  # (escaped path in the search box, real path)
        self._notices: NoticeHandler | None = None  # while mounted: library notices become toasts
        self._notice_level = logging.NOTSET
        self._app_thread = threading.get_ident()
        # held by the one status request in flight: a daemon that does not answer (its store building
        # a search graph, or the process stopped) must not gain a waiting thread every refresh
        self._status_lock = threading.Lock()
        self._status_since = 0.0  # when the request in flight was sent (0: none is)

    # ---- layout ----
    def compose(self) -> ComposeResult:
        with Horizontal(id="searchbar"):
            yield Input(placeholder="describe a photo, or: beach + ./sunset.jpg - people", id="query")
            yield Select(MODE_OPTIONS, value="auto", allow_blank=False, id="mode")
        with Horizontal(id="filters"):
            yield Input(placeholder="since YYYY-MM-DD", id="since")
            yield Input(placeholder="until", id="until")
            yield Input(placeholder="in folder", id="folder")
            yield Input(placeholder="camera", id="camera")
            yield Input(placeholder="tag", id="tag")
            yield Checkbox("all", id="all", tooltip="no relevance cutoff")
        with Horizontal(id="main"):
            yield ResultsGrid(self.image_cls, id="results")
            yield DetailPane(self.image_cls, id="detail")
        yield Static("starting…", id="status", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self._show_notices()
        grid = self.query_one(ResultsGrid)
        grid.show_message("Press / to describe a photo (or give an image path), Enter to search; ? for keys.")
        grid.focus()
        self.connect()
        self.set_interval(self.STATUS_EVERY, self._poll_status)

    def on_unmount(self) -> None:
        if self.client is not None:
            self.client.close()
        self._hide_notices()

    # ---- library notices (model download, the daemon started, a fallback) as toasts ----
    def _show_notices(self) -> None:
        """Records of the ``photoman`` loggers become toasts while the app runs (Textual owns the
        terminal: a line on stderr would be lost or tear the screen)."""
        self._app_thread = threading.get_ident()
        logger = logging.getLogger("photoman")
        self._notice_level = logger.level
        self._notices = NoticeHandler(self._toast)
        logger.addHandler(self._notices)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)

    def _hide_notices(self) -> None:
        if self._notices is not None:
            logger = logging.getLogger("photoman")
            logger.removeHandler(self._notices)
            logger.setLevel(self._notice_level)
            self._notices = None

    def _toast(self, line: str, level: int) -> None:
        """One notice (already escaped) as a toast, from whichever thread logged it."""
        severity: SeverityLevel = (
            "error" if level >= logging.ERROR else "warning" if level >= logging.WARNING else "information"
        )
        if threading.get_ident() == self._app_thread:
            self.notify(line, severity=severity, markup=False)
            return
        with contextlib.suppress(RuntimeError):  # the app has stopped (a thread still winding down)
            self.call_from_thread(self.notify, line, severity=severity, markup=False)

    # ---- the library and status ----
    def _client(self, settings: Settings) -> Client:
        """The daemon (started on demand unless autostart is off), else the stores in this process."""
        client = Client(settings, daemon=self.daemon, purpose="photoman tui")
        client.connect()
        return client

    @work(thread=True, exclusive=True, group="connect")
    def connect(self) -> None:
        try:
            client = self.client_factory(self.settings)
        except PhotomanError as exc:
            hint = "Start `photoman watch` to search while another process indexes."
            self.call_from_thread(self._message, f"The library is busy: {exc}. {hint}")
            return
        self.client = client
        self.refresh_status()

    def _poll_status(self) -> None:
        """The timer's refresh: none while one still waits, whose wait the status line shows instead."""
        if not self._status_lock.locked():
            self.refresh_status()
            return
        since = self._status_since  # read once: the worker sets and clears it
        through_daemon = self.client is not None and self.client.mode == "daemon"
        if through_daemon and since and time.monotonic() - since >= 2 * self.STATUS_EVERY:
            self._set_status(
                f"the daemon has not answered for {time.monotonic() - since:.0f} s (busy sealing or "
                "building the search index, or its process stopped); waiting for it"
            )

    @work(thread=True, group="status")
    def refresh_status(self) -> None:
        client = self.client
        if client is None or not self._status_lock.acquire(blocking=False):
            return  # not connected yet, or a refresh already waits for the daemon
        try:
            self._status_since = time.monotonic()
            self._refresh_status(client)
        finally:
            self._status_since = 0.0
            self._status_lock.release()

    def _refresh_status(self, client: Client) -> None:
        try:
            info = client.status()
        except PhotomanError as exc:
            self._status_since = 0.0
            self.call_from_thread(self._set_status, f"status unavailable: {exc}")
            return
        self._status_since = 0.0  # answered: the line below must not be overwritten with the wait
        photos = info["photos"]["indexed"]
        d = info.get("daemon")
        text = f"{photos} photos, {info['photos']['errors']} unreadable │ "
        if d:
            text += (f"daemon pid {d['pid']}: {d['state']}, queue {d['queue']}, {d['rate']:.1f} photos/s, "
                     f"{d['errors_since_start']} errors")  # fmt: skip
        else:
            text += "no daemon: direct access (`photoman watch` indexes live)"
        text += f" │ {info['model']}"
        sw = info.get("switch")
        if sw and sw.get("done") is not None:
            rate = f", {sw['rate']:.1f}/s" if sw.get("rate") else ""
            eta = f", ETA {sw['eta_s']:.0f}s" if sw.get("eta_s") is not None else ""
            text += f" │ switching to {sw['to']}: {sw['done']}/{sw['total']}{rate}{eta}"
        self.call_from_thread(self._set_status, text)
        if photos == 0 and self.last_query is None:
            self.call_from_thread(
                self._message, "Your library is empty: run `photoman index ~/Pictures` (or `photoman watch`)."
            )

    def _set_status(self, text: str) -> None:
        self.status_text = shown(text)  # the model may be a folder, an error may quote a file name

    # A worker's answer may arrive while the app exits (its widgets already gone): then it goes nowhere.
    def watch_status_text(self, text: str) -> None:
        for status in self.query("#status").results(Static):
            status.update(text)

    def _message(self, text: str) -> None:
        for grid in self.query(ResultsGrid):
            grid.show_message(text)

    def say(self, text: str, severity: SeverityLevel = "information") -> None:
        """A toast that may quote a file name or an error: escaped, never read as markup."""
        self.notify(shown(text), severity=severity, markup=False)

    # ---- search ----
    def build_query(self) -> Query:
        text = self.query_one("#query", Input).value.strip()
        if self.shown_query is not None and text == self.shown_query[0].strip():
            text = self.shown_query[1]  # more-like-this put the path there, escaped for the eye
        tags = (
            [self.query_one("#tag", Input).value.strip()]
            if self.query_one("#tag", Input).value.strip()
            else None
        )
        flt = build_filter(
            since=self.query_one("#since", Input).value.strip() or None,
            until=self.query_one("#until", Input).value.strip() or None,
            folder=self.query_one("#folder", Input).value.strip() or None,
            camera=self.query_one("#camera", Input).value.strip() or None,
            tags=tags,
        )
        q = Query(
            parse_query([text]),
            mode=str(self.query_one("#mode", Select).value),
            limit=60,
            filters=flt,
            cutoff="none" if self.query_one("#all", Checkbox).value else "auto",
        )
        q.resolved_mode()
        return q

    @on(Input.Submitted, "#query, #since, #until, #folder, #camera, #tag")
    def _submitted(self) -> None:
        self.start_search()

    @on(Select.Changed, "#mode")
    @on(Checkbox.Changed, "#all")
    def _options_changed(self) -> None:
        """A new mode or cutoff applies to the search on screen at once (not only to the next one)."""
        if self.last_query is not None:
            self.start_search()

    @on(Input.Changed, "#query")
    def _query_edited(self, event: Input.Changed) -> None:
        if self.shown_query is not None and event.value.strip() != self.shown_query[0].strip():
            self.shown_query = None  # the box no longer holds the more-like-this path

    def start_search(self, q: Query | None = None) -> None:
        try:
            q = q or self.build_query()
        except PhotomanError as exc:
            self._message(str(exc))
            return
        self.last_query = q
        self._search_seq += 1
        self._message("Searching…")
        self.run_search(q, self._search_seq)

    @work(thread=True, exclusive=True, group="search")
    def run_search(self, q: Query, seq: int) -> None:
        client = self.client
        if client is None:
            self.call_from_thread(self._message, "Not connected to the library yet; try again in a moment.")
            self.call_from_thread(self.connect)
            return
        if not client.model_loaded:
            self.call_from_thread(self._message, "Loading the model (the first search may download it)…")
        try:
            results = client.search(q)
        except PhotomanError as exc:
            if seq == self._search_seq:
                self.call_from_thread(self._message, str(exc))
            return
        message = "" if results else "No results above the relevance cutoff (tick 'all' to see everything)."
        self.call_from_thread(self._show_results, results, message, seq)  # type: ignore[arg-type]  # awaited

    async def _show_results(self, results: list[dict[str, Any]], message: str, seq: int) -> None:
        """Only the newest search's results, one redraw at a time: a mode change re-runs the search
        while another may be finishing, and two interleaved redraws mounted tiles twice."""
        async with self._showing:
            if seq != self._search_seq:
                return  # a newer search is on its way
            grid = self.query_one(ResultsGrid)
            await grid.set_results(results, message)
            if results:
                grid.focus()
            self.load_thumbnails(results)

    @work(thread=True, exclusive=True, group="thumbs")
    def load_thumbnails(self, results: list[dict[str, Any]]) -> None:
        worker = get_current_worker()
        for i, r in enumerate(results):
            if worker.is_cancelled:
                return  # a newer search replaced these (exclusive workers cancel the older one)
            try:
                path = thumbnail(self.settings.thumbs_dir, r["path"], r["content_hash"], 256)
            except PhotomanError:
                continue
            self.call_from_thread(self._set_thumb, results, i, str(path))

    def _set_thumb(self, results: list[dict[str, Any]], index: int, path: str) -> None:
        grid = self.query_one(ResultsGrid)
        if grid.results is results:
            grid.query_one(f"#tile-{index}").show_thumbnail(path)  # type: ignore[attr-defined]

    # ---- details ----
    @on(ResultsGrid.Selected)
    def _selected(self, event: ResultsGrid.Selected) -> None:
        pane = self.query_one(DetailPane)
        pane.heatmap_shown = False
        if event.result is None:
            pane.photo = None
            return
        self.load_details(event.result["path"], event.result["content_hash"])

    @work(thread=True, exclusive=True, group="details")
    def load_details(self, path: str, content_hash: str) -> None:
        client = self.client
        if client is None:
            return
        try:
            photo = client.photo(path)
        except PhotomanError as exc:
            self.call_from_thread(self.say, str(exc), "error")
            return
        self.call_from_thread(self._show_photo, photo)
        try:
            preview = str(thumbnail(self.settings.thumbs_dir, path, content_hash, 512))
        except PhotomanError:
            return
        self.call_from_thread(self._show_preview, preview, False)

    def _show_photo(self, photo: dict[str, Any]) -> None:
        self.query_one(DetailPane).photo = photo

    def _show_preview(self, path: str, heatmap: bool) -> None:
        pane = self.query_one(DetailPane)
        pane.preview_path, pane.heatmap_shown = path, heatmap

    @on(Input.Submitted, "#caption")
    def _caption_submitted(self, event: Input.Submitted) -> None:
        photo = self.query_one(DetailPane).photo
        if photo is not None:
            text = self.query_one(DetailPane).entered_caption(event.value)
            self.save_caption(photo["path"], photo["content_hash"], text)

    @work(thread=True, group="caption")
    def save_caption(self, path: str, content_hash: str, text: str | None) -> None:
        assert self.client is not None
        try:
            info = self.client.caption(path, text, clear=text is None)
        except PhotomanError as exc:
            self.call_from_thread(self.say, str(exc), "error")
            return
        self.call_from_thread(self.say, f"caption saved ({info['source'] or 'none'})")
        self.load_details(path, content_hash)

    # ---- actions ----
    def _current(self) -> dict[str, Any] | None:
        current = self.query_one(ResultsGrid).current
        if current is None:
            self.notify("select a photo first", severity="warning")
        return current

    def focus_now(self, widget: Widget) -> None:
        """Move the focus before the next key is handled: Widget.focus() defers it, so the keys
        typed right after `/` (fast typing, a paste, tmux send-keys) still went to the grid."""
        self.screen.set_focus(widget)

    def action_focus_search(self) -> None:
        focused = self.focused
        if isinstance(focused, Input):  # typing a path: `/` is a character there, handed on in order
            focused.post_message(events.Key("slash", "/"))  # (after the keys already on their way to it)
            return
        self.focus_now(self.query_one("#query", Input))

    def action_focus_results(self) -> None:
        self.focus_now(self.query_one(ResultsGrid))

    def action_focus_filters(self) -> None:
        self.focus_now(self.query_one("#since", Input))

    def action_edit_caption(self) -> None:
        if self._current() is not None:
            self.focus_now(self.query_one("#caption", Input))

    def action_more_like_this(self) -> None:
        current = self._current()
        if current is None:
            return
        self.query_one("#query", Input).value = shown(current["path"])
        self.shown_query = (shown(current["path"]), current["path"])
        base = self.last_query or Query([])
        q = Query([Term("image", current["path"])], mode="image-image", limit=base.limit,
                  filters=base.filters, cutoff=base.cutoff)  # fmt: skip
        self.start_search(q)

    def _launch(self, target: str) -> None:
        viewer = self.settings.viewer or ("open" if sys.platform == "darwin" else "xdg-open")
        try:
            quiet = subprocess.DEVNULL
            subprocess.Popen([*shlex.split(viewer), target], stdin=quiet, stdout=quiet, stderr=quiet,
                             start_new_session=True)  # fmt: skip
        except OSError as exc:  # no viewer here (a server, a container): the path is the next best thing
            self.copy_to_clipboard(target)
            self.say(
                f"cannot run {viewer!r} ({exc.strerror or exc}); copied the path instead: {target} "
                "(set `viewer` in config.toml)",
                "warning",
            )

    def action_open(self) -> None:
        current = self._current()
        if current is not None:
            self._launch(current["path"])

    def action_reveal(self) -> None:
        current = self._current()
        if current is not None:
            self._launch(os.path.dirname(current["path"]))

    def action_copy_path(self) -> None:
        current = self._current()
        if current is not None:
            self.copy_to_clipboard(current["path"])
            self.say(f"copied {current['path']}")

    def action_toggle_heatmap(self) -> None:
        current = self._current()
        if current is None:
            return
        pane = self.query_one(DetailPane)
        if pane.heatmap_shown:
            pane.heatmap_shown = False
            self.load_details(current["path"], current["content_hash"])
            return
        words = [
            t.value
            for t in (self.last_query.terms if self.last_query else [])
            if t.kind == "text" and t.sign > 0
        ]
        if not words:
            self.notify("the heat map needs a text query (what to look for)", severity="warning")
            return
        self.notify("locating…")
        self.show_heatmap(current["path"], current["content_hash"], " ".join(words))

    @work(thread=True, exclusive=True, group="details")
    def show_heatmap(self, path: str, content_hash: str, text: str) -> None:
        assert self.client is not None
        try:
            png = self.client.heatmap(path, content_hash, text)
        except PhotomanError as exc:
            self.call_from_thread(self.say, str(exc), "error")
            return
        self.call_from_thread(self._show_preview, png, True)

    def help_rows(self) -> list[tuple[str, str]]:
        """The help screen's rows, from the app's and the grid's bindings (one source of truth)."""
        rows = [("enter", "run the search (search box or a filter); a new mode or 'all' re-runs it")]
        moves: list[str] = []
        for b in ResultsGrid.BINDINGS:
            assert isinstance(b, Binding)
            moves.append(" / ".join(self.get_key_display(Binding(k, b.action)) for k in b.key.split(",")))
        rows.append((", ".join(moves), "move in the results (or click a tile)"))
        for b in self.BINDINGS:
            assert isinstance(b, Binding)
            rows.append((self.get_key_display(b), b.tooltip or b.description))
        return rows

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.help_rows()))


def run_tui(settings: Settings, daemon: bool | None = None) -> None:
    """Entry point for `photoman tui`: textual-image probes the terminal before Textual takes it over.

    ``daemon`` as for :class:`photoman.client.Client` (False: `--no-daemon`)."""
    image_widget_class(settings.tui_images)
    PhotomanApp(settings, daemon=daemon).run()
