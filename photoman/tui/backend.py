"""Where the TUI gets its answers: the running daemon over its socket, or the stores opened directly."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Protocol

from photoman.catalog.queries import lookup_photo
from photoman.config import Settings
from photoman.search.engine import Query
from photoman.service.protocol import call, daemon_running


class Backend(Protocol):
    kind: str  # "daemon" | "direct"

    def search(self, q: Query) -> list[dict[str, Any]]: ...
    def status(self) -> dict[str, Any]: ...
    def photo(self, path: str) -> dict[str, Any]: ...
    def set_caption(self, path: str, text: str | None) -> dict[str, Any]: ...
    def heatmap(self, path: str, content_hash: str, text: str) -> str: ...
    def close(self) -> None: ...


class DaemonBackend:
    kind = "daemon"

    def __init__(self, settings: Settings) -> None:
        self.sock = settings.socket_path

    def search(self, q: Query) -> list[dict[str, Any]]:
        return call(self.sock, "find", {"query": q.to_json()})

    def status(self) -> dict[str, Any]:
        return call(self.sock, "status", timeout=10)

    def photo(self, path: str) -> dict[str, Any]:
        return call(self.sock, "photo", {"path": path})

    def set_caption(self, path: str, text: str | None) -> dict[str, Any]:
        return call(self.sock, "caption", {"path": path, "text": text, "clear": text is None})

    def heatmap(self, path: str, content_hash: str, text: str) -> str:
        return call(self.sock, "heatmap", {"path": path, "content_hash": content_hash, "text": text})

    def close(self) -> None:
        pass


class DirectBackend:
    """No daemon: this process is the single writer while the TUI runs."""

    kind = "direct"

    def __init__(self, settings: Settings) -> None:
        from photoman.library import Library

        self.lib = Library(settings, "photoman tui")

    def search(self, q: Query) -> list[dict[str, Any]]:
        from photoman.search.engine import search

        return [r.to_json() for r in search(self.lib, q)]

    def status(self) -> dict[str, Any]:
        from photoman.status import library_status

        info = library_status(self.lib)
        info["daemon"] = None
        return info

    def photo(self, path: str) -> dict[str, Any]:
        return lookup_photo(self.lib, path)

    def set_caption(self, path: str, text: str | None) -> dict[str, Any]:
        from photoman.indexing.captions import set_caption

        return asdict(set_caption(self.lib, path, text))

    def heatmap(self, path: str, content_hash: str, text: str) -> str:
        from photoman.zeroshot.locate import heatmap_png

        return heatmap_png(self.lib.encoder, self.lib.settings.thumbs_dir, path, content_hash, text)[0]

    @property
    def model_loaded(self) -> bool:
        return self.lib.encoder_loaded

    def close(self) -> None:
        self.lib.close()


def open_backend(settings: Settings) -> Backend:
    """The daemon when one answers, else the stores themselves (StoreBusyError if someone holds them)."""
    if daemon_running(settings.socket_path):
        return DaemonBackend(settings)
    return DirectBackend(settings)
