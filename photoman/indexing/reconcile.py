"""Bring catalog and vector store back in line after a crash: the catalog is the source of truth."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from photoman.catalog.models import Photo
from photoman.library import Library
from photoman.vectors import point_id


@dataclass
class ReconcileReport:
    missing: set[int] = field(default_factory=set)  # catalog row ids whose vector is gone: re-embed
    orphans_removed: int = 0  # vectors no catalog row refers to


def reconcile(lib: Library) -> ReconcileReport:
    """Find rows without vectors (to re-queue) and delete vectors without rows."""
    report = ReconcileReport()
    store_ids = lib.store.all_ids()
    expected: set[str] = set()
    with lib.catalog.session() as s:
        rows = s.execute(
            select(Photo.id, Photo.content_hash).where(
                Photo.indexed_with(lib.model_id), Photo.content_hash.is_not(None)
            )
        ).all()
    for row_id, digest in rows:
        pid = point_id(str(digest), lib.model_id)  # never None: the query asks for a hash
        expected.add(pid)
        if pid not in store_ids:
            report.missing.add(row_id)
    orphans = store_ids - expected
    if orphans:
        lib.store.delete(sorted(orphans))
        report.orphans_removed = len(orphans)
    return report
