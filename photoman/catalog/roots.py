"""The library's roots: list them, remove one (its photos leave the catalog and the store), or
relocate one (a drive mounted elsewhere: paths change, nothing is re-embedded)."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import func, select

from photoman.catalog.models import OK, Photo, Root
from photoman.errors import BadInputError
from photoman.paths import absolute, canonical, is_inside


def _find_root(s: Any, path: str) -> Root:
    """The root a user names, in any spelling (relative, through a symlink, trailing slash)."""
    roots = list(s.scalars(select(Root)))
    for r in roots:
        if r.path == absolute(path) or (os.path.exists(path) and os.path.exists(r.path)
                                        and canonical(r.path) == canonical(path)):  # fmt: skip
            return r
    known = ", ".join(r.path for r in roots) or "none"
    raise BadInputError(f"{path} is not a library root (roots: {known})")


def list_roots(lib: Any, watching: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Each root with its photo count, whether it is online now, and how it is watched."""
    from photoman.indexing.pipeline import offline_roots

    offline = set(offline_roots(lib))
    with lib.catalog.session() as s:
        counts = dict(
            s.execute(
                select(Photo.root_id, func.count()).where(Photo.status == OK).group_by(Photo.root_id)
            ).all()
        )
        rows = [(r.id, r.path) for r in s.scalars(select(Root).order_by(Root.path))]
    polled = set(lib.settings.poll_roots)
    out = []
    for rid, path in rows:
        mode = (watching or {}).get(path) or ("polling" if path in polled else "native")
        out.append({"path": path, "photos": int(counts.get(rid, 0)), "online": path not in offline,
                    "watch": mode if watching is not None else f"{mode} (when the daemon runs)"})  # fmt: skip
    return out


def remove_root(lib: Any, path: str) -> dict[str, Any]:
    """Forget a root: its photos leave the catalog and the store (a vector shared with a photo under
    another root stays). The files themselves are not touched."""
    from photoman.indexing.pipeline import forget

    with lib.catalog.session() as s:
        root = _find_root(s, path)
        root_path, rid = root.path, root.id
        rows = list(s.scalars(select(Photo).where(Photo.root_id == rid)))
    lib.store  # noqa: B018 - open the store before the catalog changes (vectors are dropped right after)
    removed = forget(lib, rows, set())
    with lib.catalog.session() as s:
        s.delete(s.get(Root, rid))
    lib.store.flush()
    return {"root": root_path, "photos_removed": removed}


def relocate_root(lib: Any, old: str, new: str) -> dict[str, Any]:
    """Point a root at its new place (a drive mounted elsewhere, a folder moved): every path under it
    changes, the vectors stay (their payloads follow); nothing is re-embedded."""
    from photoman.indexing.payload import payloads_for_hashes
    from photoman.vectors import point_id

    target = canonical(new)
    if not os.path.isdir(target):
        raise BadInputError(f"no such folder: {new}")
    with lib.catalog.session() as s:
        root = _find_root(s, old)
        source = root.path
        if target == source:
            return {"root": source, "to": target, "photos_moved": 0}
        clash = [r.path for r in s.scalars(select(Root)) if r.id != root.id and
                 (is_inside(target, r.path) or is_inside(r.path, target))]  # fmt: skip
        if clash:
            raise BadInputError(f"{target} overlaps the root {clash[0]}; remove that one first")
        rows = list(s.scalars(select(Photo).where(Photo.root_id == root.id)))
        hashes = {r.content_hash for r in rows if r.content_hash}
        for r in rows:
            r.path = target + r.path[len(source.rstrip("/")) :] if r.path != source else target
        root.path = target
        s.flush()
        payloads = payloads_for_hashes(s, hashes, lib.model_id)
        lib.store  # noqa: B018
        for h, payload in payloads.items():  # vectors' payloads (roots, folders) before the commit
            lib.store.set_payload([point_id(h, lib.model_id)], payload)
        lib.store.flush()
    return {"root": source, "to": target, "photos_moved": len(rows)}
