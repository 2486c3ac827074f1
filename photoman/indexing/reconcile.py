"""Bring catalog and vector store back in line after a crash: the catalog is the source of truth."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import select

from photoman.catalog.models import Photo
from photoman.library import Library
from photoman.vectors import point_id

log = logging.getLogger(__name__)

# A crash leaves a few batches' vectors without rows. A catalog that knows none of the store's points,
# or not half of them, is not this store's catalog (another catalog_url, an old backup, a new file):
# those vectors are the library's photos, kept (search drops points the catalog does not know, and
# indexing the same photos again finds them under the same ids).
ORPHANS_KEPT_PAST = 0.5  # share of the store's points


@dataclass
class ReconcileReport:
    missing: set[int] = field(default_factory=set)  # catalog row ids whose vector is gone: re-embed
    orphans_removed: int = 0  # vectors no catalog row refers to
    orphans_kept: int = 0  # too many to be a crash's leftovers: this catalog is not the store's


def reconcile(lib: Library) -> ReconcileReport:
    """Find rows without vectors (to re-queue) and delete vectors without rows, unless there are so
    many that the catalog cannot be the store's (:data:`ORPHANS_KEPT_PAST`)."""
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
    if orphans and (not expected or len(orphans) > ORPHANS_KEPT_PAST * len(store_ids)):
        report.orphans_kept = len(orphans)
        from photoman.catalog.db import shown_url

        where = shown_url(lib.catalog.engine.url)
        log.warning(
            "the vector store holds %d photos that the catalog (%s) does not know: left alone, as "
            "this may not be the library's catalog (check catalog_url)", len(orphans), where,
        )  # fmt: skip
    elif orphans:
        lib.store.delete(sorted(orphans))
        report.orphans_removed = len(orphans)
    return report
