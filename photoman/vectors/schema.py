"""What the vector store's callers name and filter by, importable without numpy (the thin client builds
filters too): the named vectors and :class:`SearchFilter`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

IMAGE = "image"
CAPTION = "caption"


def rfc3339(value: datetime) -> str:
    """Datetime as Qdrant's datetime index expects it (naive times are taken as UTC)."""
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class SearchFilter:
    """Payload conditions pushed into the Qdrant query (never applied afterwards in Python)."""

    roots: list[str] | None = None
    folder: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    camera: list[str] | None = None  # lower-case words that must all appear in make + model
    formats: list[str] | None = None
    tags: list[str] | None = None  # all must be present
    near: tuple[float, float, float] | None = None  # lat, lon, radius in km
    ids: list[str] | None = None
    exclude_roots: list[str] | None = None  # offline roots: hidden unless asked for
    exclude_ids: list[str] | None = None  # points whose every file a scan found gone (pending removal)

    def is_empty(self) -> bool:
        fields = (
            self.roots,
            self.folder,
            self.since,
            self.until,
            self.camera,
            self.formats,
            self.tags,
            self.near,
        )
        return not any(fields) and not self.exclude_roots and not self.exclude_ids and self.ids is None

    def to_json(self) -> dict[str, Any]:
        """For the daemon protocol."""
        d = {k: v for k, v in self.__dict__.items() if v is not None}
        for k in ("since", "until"):
            if k in d:
                d[k] = d[k].isoformat()
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SearchFilter:
        """From the wire; a wrong type raises TypeError or ValueError (a bad request, never a crash)."""
        d = dict(d)
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown filter(s): {', '.join(sorted(unknown))}")
        for k in ("since", "until"):
            if d.get(k):
                d[k] = datetime.fromisoformat(d[k])
        if d.get("folder") is not None and not isinstance(d["folder"], str):
            raise TypeError("folder must be a string")
        for k in ("roots", "camera", "formats", "tags", "ids", "exclude_roots", "exclude_ids"):
            v = d.get(k)
            if v is not None and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
                raise TypeError(f"{k} must be a list of strings")
        if d.get("near"):
            near = d["near"]
            if not (isinstance(near, list | tuple) and len(near) == 3 and all(_finite(x) for x in near)):
                raise TypeError("near must be [lat, lon, radius_km]")
            d["near"] = tuple(float(x) for x in near)
        return cls(**d)


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
