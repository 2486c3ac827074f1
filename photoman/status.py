"""What `photoman status` reports: roots, counts, errors, model, store sizes."""

from __future__ import annotations

import json
import os
from typing import Any

from sqlalchemy import func, select

from photoman.catalog.db import shown_url
from photoman.catalog.models import ERROR, OK, Photo, Root
from photoman.errors import PhotomanError
from photoman.library import Library


def image_runtime(lib: Library) -> dict[str, Any]:
    """What runs the image model and why (issue: `auto` is decided by measurement, so say its result).

    From the loaded encoder when there is one, else from the cached measurement: status never loads
    torch or the model for this."""
    from photoman.embedding import precision

    s = lib.settings
    if lib.encoder_loaded:
        info = precision.precision_choice(lib.encoder)
    elif s.precision == "auto" and s.device in ("auto", "cpu"):
        info = precision.cached_choice(s.cache_dir, s.model) or {}
    else:
        info = {"runtime": s.precision, "reason": f"precision = {s.precision!r} in the settings"}
    info = json.loads(json.dumps(info, default=str))  # a torch.device and the like, as text
    info["line"] = precision.summary(info or None)
    return info


def library_status(lib: Library, errors_limit: int = 20) -> dict[str, Any]:
    """A JSON-able summary; the vector store part says 'busy' rather than failing while an index runs."""
    from photoman.catalog.roots import offline_roots

    offline = set(offline_roots(lib))  # the one rule `find` uses to hide a drive's photos
    with lib.catalog.session() as s:
        roots = []
        for root in s.scalars(select(Root).order_by(Root.path)):
            n = s.scalar(select(func.count()).where(Photo.root_id == root.id, Photo.status == OK))
            roots.append({"path": root.path, "photos": n, "online": root.path not in offline})
        indexed = s.scalar(select(func.count()).where(Photo.status == OK)) or 0
        current = s.scalar(select(func.count()).where(Photo.indexed_with(lib.model_id)))
        unique = s.scalar(
            select(func.count(func.distinct(Photo.content_hash))).where(Photo.indexed_with(lib.model_id))
        )
        n_errors = s.scalar(select(func.count()).where(Photo.status == ERROR)) or 0
        errors = [
            {"path": p, "error": e}
            for p, e in s.execute(
                select(Photo.path, Photo.error)
                .where(Photo.status == ERROR)
                .order_by(Photo.path)
                .limit(errors_limit)
            )
        ]
    from photoman.catalog.queries import pending_removals

    pending, pending_paths = pending_removals(lib, limit=5)
    catalog_bytes = None
    db = lib.catalog.engine.url.database if lib.catalog.engine.dialect.name == "sqlite" else None
    if db and os.path.exists(db):
        catalog_bytes = sum(
            os.path.getsize(db + sfx) for sfx in ("", "-wal", "-shm") if os.path.exists(db + sfx)
        )
    store: dict[str, Any] = {"backend": "qdrant-server" if lib.settings.qdrant_url else "qdrant-edge"}
    try:
        if lib.dim_if_known() is None:  # status never downloads (or touches the network)
            store["error"] = f"model {lib.model_id} is not downloaded yet; `photoman index FOLDER` fetches it"
        else:
            store.update(
                collection=lib.store.name, points=lib.store.count(), disk_bytes=lib.store.disk_bytes()
            )
    except PhotomanError as exc:
        store["error"] = str(exc)
    from photoman.indexing.switch import progress

    return {
        "data_dir": str(lib.settings.data_dir),
        "model": lib.model_id,
        "switch": progress(lib),
        "runtime": image_runtime(lib),
        "catalog": {
            "url": shown_url(lib.catalog.engine.url),
            "bytes": catalog_bytes,
            # a shared (PostgreSQL) catalog: who holds its writer lease now (None: nobody); no lease on SQLite
            "lease": {"holder": lib.writer_name()} if lib.lease is not None else None,
        },
        "vectors": store,
        "roots": roots,
        "photos": {"indexed": indexed, "indexed_with_model": current, "unique": unique, "errors": n_errors},
        "errors": errors,
        # a scan found these gone with much of their root (a deletion, or a drive half there): hidden
        # from results, removed by the next scan that still misses them (indexing/pipeline.py)
        "pending_removal": {"photos": pending, "paths": pending_paths},
    }
