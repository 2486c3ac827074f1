"""Per-machine mount mapping for a shared library: the catalog stores each path as the indexing
machine sees it (``/mnt/nas/photos/2024/a.jpg``); a laptop that mounts the same share at
``/Volumes/photos`` maps stored roots to its own mount points, so results print (and open) local
paths and local paths given as input find their stored rows.

The setting (per machine, in its config.toml)::

    path_map = { "/mnt/nas/photos" = "/Volumes/photos" }    # stored root = local path

or ``PHOTOMAN_PATH_MAP="/mnt/nas/photos=/Volumes/photos"`` (several pairs joined by ``:``).

Where it applies: at the one boundary between this machine and the stores, the stored spelling of a
path (:func:`photoman.catalog.paths.to_store` / ``from_store``, for catalog columns and vector
payloads). Everything above that boundary (scanning, watching, search results, lookups, the trash)
sees this machine's paths only. Light (os only): the thin client's settings parse it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from photoman.errors import SettingValueError
from photoman.paths import is_inside

EXAMPLE = "/mnt/nas/photos=/Volumes/photos"


def parse_path_map(value: str | Mapping[str, Any] | None) -> dict[str, str]:
    """The setting's value, from a TOML table or the env form ``STORED=LOCAL[:STORED=LOCAL...]``
    (or a JSON object, which :func:`env_form` writes when a path holds ``:`` or ``=``)."""
    if value is None or (isinstance(value, str | Mapping) and not value):
        return {}
    if isinstance(value, str):
        value = _parse_env(value)
    if not isinstance(value, Mapping):
        raise SettingValueError(f"path_map must be a table of stored path = local path, got {value!r}")
    out: dict[str, str] = {}
    for stored, local in value.items():
        if not isinstance(local, str) or not os.path.isabs(str(stored)) or not os.path.isabs(local):
            raise SettingValueError(f"path_map: {stored!r} = {local!r}: both must be absolute paths")
        local = _norm(os.path.expanduser(local))
        twin = next((s for s, loc in out.items() if loc == local), None)
        if twin is not None:
            raise SettingValueError(
                f"path_map: {twin!r} and {stored!r} both map to {local!r}; give each its own"
            )
        out[_norm(str(stored))] = local
    return out


def _parse_env(value: str) -> dict[str, Any]:
    if value.lstrip().startswith("{"):  # no absolute path starts with "{"
        try:
            loaded = json.loads(value)
        except ValueError:
            raise SettingValueError(
                f"path_map: {value!r} is not a JSON object of stored = local paths"
            ) from None
        if not isinstance(loaded, dict):
            raise SettingValueError(f"path_map: {value!r} is not a JSON object of stored = local paths")
        return loaded
    pairs: dict[str, Any] = {}
    for item in value.split(os.pathsep):
        if not item.strip():
            continue
        stored, sep, local = item.partition("=")
        if not sep:
            raise SettingValueError(f"path_map: {item!r} is not STORED=LOCAL (e.g. {EXAMPLE})")
        pairs[stored.strip()] = local.strip()
    return pairs


def env_form(mapping: Mapping[str, str]) -> str:
    """The PHOTOMAN_PATH_MAP value that gives back this mapping (for a daemon started by a command)."""
    if any(os.pathsep in p or "=" in p for pair in mapping.items() for p in pair):
        return json.dumps(dict(mapping))
    return os.pathsep.join(f"{stored}={local}" for stored, local in mapping.items())


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
        """The mapping of these settings (``path_map``)."""
        return cls(settings.path_map)

    def __bool__(self) -> bool:
        return bool(self.mapping)

    def to_local(self, stored: str) -> str:
        """A path from the catalog as this machine reaches it (unchanged outside every mapped root)."""
        return _swap(stored, self._out) if self._out else stored

    def to_stored(self, local: str) -> str:
        """A path on this machine as the catalog stores it (unchanged outside every mapped local root)."""
        return _swap(local, self._in) if self._in else local
