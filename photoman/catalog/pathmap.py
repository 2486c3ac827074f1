"""Per-machine mount mapping for a shared library: the catalog stores each path as the indexing
machine sees it (``/mnt/nas/photos/2024/a.jpg``); a laptop that mounts the same share at
``/Volumes/photos`` maps stored roots to its own mount points, so results print (and open) local
paths and local paths given as input find their stored rows.

The setting (per machine, in its config.toml)::

    path_map = { "/mnt/nas/photos" = "/Volumes/photos" }    # stored root = local path

or ``PHOTOMAN_PATH_MAP="/mnt/nas/photos=/Volumes/photos"`` (several pairs joined by ``:``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from photoman.errors import ConfigError
from photoman.paths import is_inside


def parse_path_map(value: str | Mapping[str, Any] | None) -> dict[str, str]:
    """The setting's value, from a TOML table or the env form ``STORED=LOCAL[:STORED=LOCAL...]``."""
    if not value:
        return {}
    if isinstance(value, str):
        pairs: dict[str, str] = {}
        for item in value.split(os.pathsep):
            if not item.strip():
                continue
            stored, sep, local = item.partition("=")
            if not sep:
                example = "/mnt/nas/photos=/Volumes/photos"
                raise ConfigError(f"path_map: {item!r} is not STORED=LOCAL (e.g. {example})")
            pairs[stored.strip()] = local.strip()
        value = pairs
    if not isinstance(value, Mapping):
        raise ConfigError(f"path_map must be a table of stored path = local path, got {value!r}")
    out = {}
    for stored, local in value.items():
        if not isinstance(local, str) or not os.path.isabs(str(stored)) or not os.path.isabs(local):
            raise ConfigError(f"path_map: {stored!r} = {local!r}: both must be absolute paths")
        out[_norm(str(stored))] = _norm(os.path.expanduser(local))
    return out


def _norm(path: str) -> str:
    path = os.path.normpath(path)
    return "/" if path == "//" else path


def _swap(path: str, pairs: list[tuple[str, str]]) -> str:
    for src, dst in pairs:  # longest prefix first
        if path == src:
            return dst
        if is_inside(path, src):
            return dst.rstrip("/") + "/" + path[len(src.rstrip("/")) + 1 :]
    return path


class PathMap:
    """Stored (catalog) paths to this machine's paths and back, by the longest matching prefix."""

    def __init__(self, mapping: str | Mapping[str, Any] | None = None) -> None:
        self.mapping = parse_path_map(mapping)
        self._out = sorted(self.mapping.items(), key=lambda kv: len(kv[0]), reverse=True)
        self._in = sorted(((v, k) for k, v in self.mapping.items()), key=lambda kv: len(kv[0]), reverse=True)

    @classmethod
    def from_settings(cls, settings: Any) -> PathMap:
        """The mapping of these settings (``path_map``; none when the setting does not exist)."""
        return cls(getattr(settings, "path_map", None))

    def __bool__(self) -> bool:
        return bool(self.mapping)

    def to_local(self, stored: str) -> str:
        """A path from the catalog as this machine reaches it (unchanged outside every mapped root)."""
        return _swap(stored, self._out) if self._out else stored

    def to_stored(self, local: str) -> str:
        """A path on this machine as the catalog stores it (for inputs: --in, --image, caption PATH)."""
        return _swap(local, self._in) if self._in else local
