"""photoman: semantic photo manager (CLIP embeddings in Qdrant, catalog in SQLite)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from photoman.client import Client
    from photoman.config import Settings

__version__ = "0.1.0"


def open(settings: Settings | None = None, *, daemon: bool | None = None, **overrides: Any) -> Client:
    """The library as a :class:`photoman.client.Client`: ``with photoman.open() as pm: pm.find("a red car")``.

    Uses the daemon when one runs (starting it unless ``autostart`` is off; ``daemon=False`` keeps
    everything in this process); keyword arguments override settings (``data_dir=...``).
    """
    from photoman.client import open_client

    return open_client(settings, daemon=daemon, **overrides)
