"""Catalog lookups shared by the daemon, the TUI and the CLI."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from photoman.catalog.models import Photo, Tag
from photoman.errors import BadInputError


def photo_details(row: Photo) -> dict[str, Any]:
    """What the detail pane shows about one catalog row."""
    return {
        "path": row.path,
        "content_hash": row.content_hash,
        "size": row.size,
        "mtime": row.mtime,
        "width": row.width,
        "height": row.height,
        "format": row.format,
        "taken_at": row.taken_at.isoformat() if row.taken_at else None,
        "camera": row.camera,
        "gps": [row.gps_lat, row.gps_lon] if row.gps_lat is not None else None,
        "caption": row.caption,
        "caption_source": row.caption_source,
        "tags": [],  # filled by lookup_photo
        "status": row.status,
        "error": row.error,
    }


def lookup_photo(lib: Any, path: str) -> dict[str, Any]:
    """Details of the photo at path; BadInputError when the catalog does not know it."""
    with lib.catalog.session() as s:
        row = s.scalar(select(Photo).where(Photo.path == path))
        if row is None:
            raise BadInputError(f"not in the library: {path}")
        details = photo_details(row)
        tags = s.execute(
            select(Tag.label, Tag.score)
            .where(Tag.content_hash == row.content_hash, Tag.model == lib.model_id)
            .order_by(Tag.score.desc())
        ).all()
        details["tags"] = [label for label, _ in tags]
        return details


def pending_removals(lib: Any, limit: int | None = None) -> tuple[int, list[str]]:
    """Photos a scan found gone but kept until a later scan confirms it (a mass deletion may be a
    glitch): how many, and their paths (the first ``limit`` by path), for `photoman status`."""
    from sqlalchemy import func

    with lib.catalog.session() as s:
        n = s.scalar(select(func.count()).where(Photo.missing_since.is_not(None))) or 0
        paths = list(
            s.scalars(
                select(Photo.path).where(Photo.missing_since.is_not(None)).order_by(Photo.path).limit(limit)
            )
        )
    return n, paths
