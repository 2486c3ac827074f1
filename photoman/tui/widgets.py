"""TUI widgets: a thumbnail tile, the results grid, the detail pane and the help screen.

Names, captions, camera and tags come from files anyone can make: every widget shows them through
`shown` (controls escaped) in markup=False widgets, so they never drive the terminal or the styling."""

from __future__ import annotations

import os
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical, VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Input, Static

from photoman.textsafe import shown

LABEL_WIDTH = 22  # a tile's inner width


def fit(name: str, width: int) -> str:
    """A name cut in the middle to ``width`` cells: both its start and its extension stay readable."""
    if len(name) <= width:
        return name
    head = (width - 1) // 2
    return f"{name[:head]}…{name[len(name) - (width - 1 - head) :]}"


class Tile(Vertical):
    """One result: thumbnail, file name, and its score in the border. Clicking selects it."""

    DEFAULT_CSS = """
    Tile { width: 24; height: 12; border: round $panel; border-title-align: right; padding: 0; }
    Tile.-selected { border: heavy $accent; background: $boost; }
    Tile > .thumb { width: 22; height: 9; }
    Tile > .label { width: 22; height: 1; color: $text-muted; }
    """

    class Clicked(Message):
        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

    def __init__(self, index: int, result: dict[str, Any], image_cls: type[Widget]) -> None:
        super().__init__(id=f"tile-{index}")
        self.index = index
        self.result = result
        self.image_cls = image_cls

    def compose(self) -> ComposeResult:
        self.border_title = f"{self.result['score']:.3f}"
        yield self.image_cls(None, classes="thumb")  # type: ignore[call-arg,arg-type]  # textual-image's (image, …)
        name = fit(shown(os.path.basename(self.result["path"])), LABEL_WIDTH)
        yield Static(name, classes="label", markup=False)

    def on_click(self) -> None:
        self.post_message(self.Clicked(self.index))

    def show_thumbnail(self, path: str) -> None:
        self.query_one(".thumb").image = path  # type: ignore[attr-defined]


class ResultsGrid(VerticalScroll, can_focus=True):
    """Thumbnails in a grid; arrows/hjkl, page up/down, home/end move the selection."""

    DEFAULT_CSS = """
    ResultsGrid { width: 1fr; height: 1fr; }
    ResultsGrid > Grid { grid-size: 4; grid-gutter: 0 1; height: auto; grid-rows: 12; grid-columns: 24; }
    ResultsGrid > .message { padding: 1 2; color: $text-muted; }
    """
    BINDINGS = [
        Binding("left,h", "move(-1, 0)", "left", show=False),
        Binding("right,l", "move(1, 0)", "right", show=False),
        Binding("up,k", "move(0, -1)", "up", show=False),
        Binding("down,j", "move(0, 1)", "down", show=False),
        Binding("pageup", "page(-1)", "page up", show=False),
        Binding("pagedown", "page(1)", "page down", show=False),
        Binding("home", "jump(0)", "first", show=False),
        Binding("end", "jump(-1)", "last", show=False),
    ]

    selected: reactive[int] = reactive(-1)

    class Selected(Message):
        def __init__(self, result: dict[str, Any] | None) -> None:
            super().__init__()
            self.result = result

    def __init__(self, image_cls: type[Widget], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.image_cls = image_cls
        self.results: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield Static("Type a description and press Enter.", classes="message", markup=False)
        yield Grid()

    @property
    def columns(self) -> int:
        return max(1, (self.size.width - 2) // 25)

    def on_resize(self) -> None:
        self.query_one(Grid).styles.grid_size_columns = self.columns

    def show_message(self, text: str) -> None:
        """One line of news (errors may quote a file name: escaped)."""
        msg = self.query_one(".message", Static)
        msg.update(shown(text))
        msg.display = bool(text)

    async def set_results(self, results: list[dict[str, Any]], message: str = "") -> None:
        self.results = results
        grid = self.query_one(Grid)
        await grid.remove_children()
        await grid.mount_all([Tile(i, r, self.image_cls) for i, r in enumerate(results)])
        grid.styles.grid_size_columns = self.columns
        self.show_message(message)
        self.selected = -1
        self.selected = 0 if results else -1

    def watch_selected(self, old: int, new: int) -> None:
        for idx, flag in ((old, False), (new, True)):
            if 0 <= idx < len(self.results):
                tile = self.query_one(f"#tile-{idx}", Tile)
                tile.set_class(flag, "-selected")
                if flag:
                    self.scroll_to_widget(tile, animate=False)
        self.post_message(self.Selected(self.current))

    @property
    def current(self) -> dict[str, Any] | None:
        return self.results[self.selected] if 0 <= self.selected < len(self.results) else None

    def action_move(self, dx: int, dy: int) -> None:
        if self.results:
            self.selected = min(max(0, self.selected + dx + dy * self.columns), len(self.results) - 1)

    def action_page(self, direction: int) -> None:
        rows = max(1, self.size.height // 12)
        self.action_move(0, direction * rows)

    def action_jump(self, where: int) -> None:
        if self.results:
            self.selected = where % len(self.results)

    @on(Tile.Clicked)
    def _clicked(self, event: Tile.Clicked) -> None:
        self.selected = event.index
        self.focus()


class DetailPane(VerticalScroll):
    """The selected photo: preview, facts, and its caption (editable in place).

    State is reactive: setting ``photo`` or ``preview_path`` (on the UI thread) redraws what shows it."""

    DEFAULT_CSS = """
    DetailPane { height: 1fr; border-left: solid $panel; padding: 0 1; }
    DetailPane > .preview { width: 1fr; height: 1fr; max-height: 18; }
    DetailPane > #facts { height: auto; text-wrap: nowrap; text-overflow: ellipsis; }
    DetailPane > #caption { margin-top: 1; }
    """

    photo: reactive[dict[str, Any] | None] = reactive(None, always_update=True)
    preview_path: reactive[str | None] = reactive(None)
    heatmap_shown: reactive[bool] = reactive(False)

    def __init__(self, image_cls: type[Widget], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.image_cls = image_cls

    def compose(self) -> ComposeResult:
        yield self.image_cls(None, classes="preview")  # type: ignore[call-arg,arg-type]  # textual-image's (image, …)
        yield Static("", id="facts", markup=False)
        yield Input(placeholder="caption: Enter saves", id="caption")

    def watch_photo(self, photo: dict[str, Any] | None) -> None:
        facts = self.query_one("#facts", Static)
        caption = self.query_one("#caption", Input)
        if photo is None:
            facts.update("")
            caption.value = ""
            self.preview_path = None
            return
        gps = photo.get("gps")
        lines = [
            shown(photo["path"]),
            f"taken   {shown(photo.get('taken_at') or 'unknown')}",
            f"camera  {shown(photo.get('camera') or '—')}",
            f"gps     {gps[0]:.5f}, {gps[1]:.5f}" if gps else "gps     —",
            f"size    {photo.get('width')}×{photo.get('height')} {shown(photo.get('format') or '')}, "
            f"{(photo.get('size') or 0) / 1e6:.1f} MB",
            f"tags    {shown(', '.join(photo.get('tags') or [])) or '—'}",
            f"caption {shown(photo.get('caption_source') or 'none')}",
        ]
        facts.update("\n".join(lines))
        caption.value = shown(photo.get("caption") or "")

    def watch_preview_path(self, path: str | None) -> None:
        self.query_one(".preview").image = path  # type: ignore[attr-defined]

    def entered_caption(self, value: str) -> str | None:
        """The caption to save from the box: its escaped form left as it was means the caption itself."""
        current = (self.photo or {}).get("caption") or ""
        if current and value == shown(current):
            return current.strip() or None
        return value.strip() or None


class HelpScreen(ModalScreen[None]):
    """`?`: every key binding of the app (built from the bindings themselves), wrapped to the screen."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 90%; max-width: 100; height: auto; max-height: 90%;
                                  border: round $accent; padding: 0 1; }
    HelpScreen #help { height: auto; }
    """
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "close")]

    def __init__(self, rows: list[tuple[str, str]]) -> None:
        super().__init__()
        self.rows = rows

    def compose(self) -> ComposeResult:
        from rich.table import Table

        table = Table(show_header=True, header_style="bold", box=None, expand=True, padding=(0, 1))
        table.add_column("key", no_wrap=True, style="bold")
        table.add_column("action", ratio=1, overflow="fold")
        for key, action in self.rows:
            table.add_row(key, action)
        with VerticalScroll():
            yield Static(table, id="help")
