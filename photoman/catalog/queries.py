"""Catalog lookups shared by the daemon, the TUI and the CLI."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from photoman.catalog.models import OK, Photo, Tag
from photoman.errors import BadInputError


def _missing() -> Any:
    """Photo rows a scan found gone. Written as a range, not IS NOT NULL: SQLite scans the whole
    table for IS NOT NULL (16 ms per query at 100k photos, ~150 ms at 1M, on every `find`) where
    the range reads the index (0.02 ms); every real date is past 1970."""
    return Photo.missing_since >= datetime(1970, 1, 1)

def photo_fields(
    *,
    path: str,
    content_hash: str,
    taken_at: datetime | None,
    width: int | None,
    height: int | None,
    camera: str | None,
    format: str | None,
    caption: str | None,
    raw: str | None,
    mtime: float,
) -> dict[str, Any]:
    """One photo as JSON, the one shape: a `find` result is these plus rank, score and duplicates;
    `photoman photo` (the TUI's detail pane) is these plus size, gps, caption source, tags, status."""
    return {
        "path": path,
        "content_hash": content_hash,
        "taken_at": taken_at.isoformat() if taken_at else None,
        "width": width,
        "height": height,
        "camera": camera,
        "format": format,
        "caption": caption or "",
        "raw": raw,  # the RAW file beside this JPEG (IMG_0001.CR2 for IMG_0001.JPG), or null
        # the file's modification time: what --since/--until and --sort date use without taken_at
        "file_time": iso_time(mtime),
    }


def iso_time(stamp: float) -> str | None:
    """A file time as ISO 8601, or None (0, or a time no calendar can show)."""
    try:
        return datetime.fromtimestamp(stamp).isoformat(timespec="seconds") if stamp else None
    except (ValueError, OverflowError, OSError):
        return None


def photo_details(row: Photo) -> dict[str, Any]:
    """What the detail pane shows about one catalog row: the photo's fields and what only it needs."""
    return {
        **photo_fields(path=row.path, content_hash=row.content_hash or "", taken_at=row.taken_at,
                       width=row.width, height=row.height, camera=row.camera, format=row.format,
                       caption=row.caption, raw=row.raw_path, mtime=row.mtime or 0.0),  # fmt: skip
        "size": row.size,
        "gps": [row.gps_lat, row.gps_lon] if row.gps_lat is not None else None,
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
            .where(Tag.content_hash == row.content_hash, Tag.model_id == lib.model_id)
            .order_by(Tag.score.desc())
        ).all()
        details["tags"] = [label for label, _ in tags]
        return details


def pending_removals(lib: Any, limit: int | None = None) -> tuple[int, list[str]]:
    """Photos a scan found gone but kept until a later scan confirms it (a mass deletion may be a
    glitch): how many, and their paths (the first ``limit`` by path), for `photoman status`."""
    from sqlalchemy import func

    with lib.catalog.session() as s:
        n = s.scalar(select(func.count()).where(_missing())) or 0
        paths = list(
            s.scalars(
                select(Photo.path).where(_missing()).order_by(Photo.path).limit(limit)
            )
        )
    return n, paths


def gone_points(lib: Any) -> list[str]:
    """Point ids of the photos pending removal that have no copy left (search hides them); one indexed
    query that finds nothing in the usual case."""
    from photoman.vectors import point_id

    with lib.catalog.session() as s:
        pending = set(s.scalars(select(Photo.content_hash).where(_missing())))
        pending.discard(None)
        if not pending:
            return []
        kept: set[str | None] = set()
        todo = sorted(h for h in pending if h)
        for i in range(0, len(todo), 500):
            kept.update(
                s.scalars(
                    select(Photo.content_hash).where(
                        Photo.content_hash.in_(todo[i : i + 500]),
                        Photo.missing_since.is_(None),
                        Photo.indexed_with(lib.model_id),
                    )
                )
            )
    return [point_id(str(h), lib.model_id) for h in sorted(h for h in pending - kept if h)]


def tag_counts(lib: Any) -> list[tuple[str, int]]:
    """Tags with the number of photos (files) carrying each, most common first (files a scan found
    gone, pending removal, not counted: `find --tag` does not show them)."""
    with lib.catalog.session() as s:
        rows = s.execute(
            select(Tag.label, func.count(func.distinct(Photo.id)))
            .join(Photo, Photo.content_hash == Tag.content_hash)
            .where(Tag.model_id == lib.model_id, Photo.status == OK, Photo.missing_since.is_(None))
            .group_by(Tag.label)
            .order_by(func.count(func.distinct(Photo.id)).desc(), Tag.label)
        ).all()
    return [(label, int(n)) for label, n in rows]
