"""The library's roots: register them, tell which are offline, list them, remove one (its photos
leave the catalog and the store; :func:`forget` is how any photo leaves), or relocate one (a drive
mounted elsewhere: paths change, nothing is re-embedded)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from photoman.catalog.models import OK, Photo, Root
from photoman.catalog.pending import clear, mark_in, new_token, payload_writes, release
from photoman.errors import BadInputError
from photoman.mounts import mount_points, root_online, root_state
from photoman.paths import absolute, canonical, is_inside


def register_roots(lib: Any, folders: Sequence[str]) -> dict[str, int]:
    """Root id per folder: a folder inside a known root joins it; a new root adopts roots inside it.
    A new root remembers its device and mount point (what :func:`root_online` later checks)."""
    token = new_token()
    try:
        return _register_roots(lib, folders, token)
    finally:
        release(token)


def _register_roots(lib: Any, folders: Sequence[str], token: str) -> dict[str, int]:
    out: dict[str, int] = {}
    mounts = mount_points()
    adopted: set[str] = set()  # their payloads name the inner root, and lack the new root's folders
    with lib.catalog.session() as s:
        for folder in folders:
            roots = list(s.scalars(select(Root)))
            parent = next((r for r in roots if is_inside(folder, r.path)), None)
            if parent is None:
                state = root_state(folder, mounts)
                parent = Root(path=folder, added_at=datetime.now())
                if state is not None:
                    parent.device, parent.mount = state
                s.add(parent)
                s.flush()
                for inner in roots:
                    if is_inside(inner.path, folder):
                        for photo in s.scalars(select(Photo).where(Photo.root_id == inner.id)):
                            photo.root_id = parent.id
                            if photo.content_hash:
                                adopted.add(photo.content_hash)
                        s.delete(inner)
            out[folder] = parent.id
        mark_in(s, adopted, lib.model_id, token)  # with the adoption: a crash before the rewrite is mended
    if adopted:
        rewrite_payloads(lib, adopted, token)
    return out


def rewrite_payloads(lib: Any, hashes: set[str], token: str) -> None:
    """Bring the payloads of these (marked) points in line with the catalog, flush, clear the marks."""
    from photoman.catalog.payload import payloads_for_hashes
    from photoman.vectors import point_id

    with lib.catalog.session() as s:
        payloads = payloads_for_hashes(s, hashes, lib.model_id)
    present = {p.id for p in lib.store.retrieve([point_id(h, lib.model_id) for h in payloads])}
    for h, payload in payloads.items():
        if point_id(h, lib.model_id) in present:  # one missing is reconcile's: it re-embeds that photo
            lib.store.set_payload([point_id(h, lib.model_id)], payload)
    lib.store.flush()
    clear(lib.catalog, token)


def forget(lib: Any, rows: Iterable[Photo], extra_stale: set[str], token: str | None = None) -> int:
    """Drop rows of vanished files (catalog first), then vectors nothing refers to any more.

    ``token``: the run's crash records (catalog/pending.py) that this ends, if any."""
    ran = token is not None  # the records may name points its run wrote: the store flushes before they go
    token = token or new_token()
    try:
        return _forget(lib, [r.id for r in rows], set(extra_stale), token, ran)
    finally:
        release(token)


def _forget(lib: Any, ids: list[int], stale: set[str], token: str, ran: bool) -> int:
    from photoman.catalog.payload import chosen_captions

    with lib.catalog.session() as s:
        chunks = (select(Photo).where(Photo.id.in_(ids[i : i + 500])) for i in range(0, len(ids), 500))
        rows = [r for q in chunks for r in s.scalars(q)]
        removed = {r.content_hash for r in rows if r.content_hash}
        before = chosen_captions(s, removed, lib.model_id)
        for row in rows:
            s.delete(row)
        s.flush()
        after = chosen_captions(s, removed, lib.model_id)
        # a point whose caption was a removed file's: its caption vector follows the catalog
        recaption = {h for h in removed if before.get(h) != after.get(h)}
        stale |= removed
        mark_in(s, recaption, lib.model_id, token, caption=True)
        mark_in(s, stale, lib.model_id, token)  # with the removal: a crash before the store's turn is mended
    lib.captions_changed(stale)  # a switch under way embeds their captions again (any removal: roots, dupes)
    if stale:
        from photoman.catalog.payload import caption_vectors, payloads_for_hashes
        from photoman.vectors import CAPTION, VectorPoint, point_id

        with lib.catalog.session() as s:
            payloads = payloads_for_hashes(s, stale, lib.model_id)
            recaption &= set(payloads)
            vectors = caption_vectors(lib, s, recaption) if recaption else {}
        gone = [point_id(h, lib.model_id) for h in stale if h not in payloads]
        lib.store.delete(gone)
        for h, payload in payloads.items():
            lib.store.set_payload([point_id(h, lib.model_id)], payload)
        if vectors:
            lib.store.update_vectors([VectorPoint(point_id(h, lib.model_id), v) for h, v in vectors.items()])
        if bare := [point_id(h, lib.model_id) for h in recaption if h not in vectors]:
            lib.store.delete_vectors(bare, [CAPTION])
    if stale or ran:
        lib.store.flush()
    clear(lib.catalog, token)
    return len(ids)


def offline_roots(lib: Any) -> list[str]:
    """Roots whose drive is not there right now: their photos are kept but hidden from results.

    The one rule (:func:`photoman.mounts.root_online`) for `index`, `find`, `status`,
    `roots` and the daemon: decided from the mount that held the root when it was last seen online,
    never from the folder being empty."""
    with lib.catalog.session() as s:
        roots = s.execute(
            select(Root.path, Root.mount, select(Photo.id).where(Photo.root_id == Root.id).exists())
        ).all()
    mounts = mount_points()
    return [path for path, mount, has in roots if not root_online(path, mount, bool(has), mounts)]


def remember_roots(lib: Any, paths: Iterable[str], offline: set[str]) -> None:
    """Record the device and mount point of each online root (a root from before they were recorded
    learns them here; a drive mounted again, maybe under another device number, updates them)."""
    mounts = mount_points()
    with lib.catalog.session() as s:
        for root in s.scalars(select(Root).where(Root.path.in_([p for p in paths if p not in offline]))):
            state = root_state(root.path, mounts)
            if state is not None and (root.device, root.mount) != state:
                root.device, root.mount = state


def _find_root(s: Any, path: str) -> Root:
    """The root a user names, in any spelling (relative, through a symlink, trailing slash)."""
    if not path:
        raise BadInputError("an empty path (it would mean the current folder): name the root")
    roots = list(s.scalars(select(Root)))
    for r in roots:
        if r.path == absolute(path) or (os.path.exists(path) and os.path.exists(r.path)
                                        and canonical(r.path) == canonical(path)):  # fmt: skip
            return r
    known = ", ".join(r.path for r in roots) or "none"
    raise BadInputError(f"{path} is not a library root (roots: {known})")


def list_roots(lib: Any, watching: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Each root with its photo count, whether it is online now, and how it is watched."""
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
    with lib.catalog.session() as s:
        root = _find_root(s, path)
        root_path, rid = root.path, root.id
        rows = list(s.scalars(select(Photo).where(Photo.root_id == rid)))
    lib.store  # noqa: B018 - open the store before the catalog changes (vectors are dropped right after)
    removed = forget(lib, rows, set())
    with lib.catalog.session() as s:
        s.delete(s.get(Root, rid))
    lib.store.flush()
    ok = sum(r.status == OK for r in rows)  # counted as `roots` counts; unreadable files' rows go too
    return {"root": root_path, "photos_removed": ok, "unreadable_removed": removed - ok}


RELOCATE_SAMPLE = 24  # photos looked for in the new place before a relocation is believed


def _check_holds_the_photos(source: str, target: str, paths: list[str]) -> None:
    """Refuse a new place that does not hold the root's photos (a mistyped or wrong folder, the
    root's own sub-folder): believed, the relocation would mark every photo missing, and the next
    scans would forget them with their captions and tags. A sample spread over the root's photos
    must mostly be there, under the same relative paths."""
    if not paths:
        return
    paths = sorted(paths)
    step = max(1, len(paths) // RELOCATE_SAMPLE)
    sample = paths[::step][:RELOCATE_SAMPLE]
    base = source.rstrip("/")
    found = sum(os.path.lexists(target + p[len(base) :]) for p in sample)  # (unreadable files count too)
    if 2 * found <= len(sample):
        raise BadInputError(
            f"{target} does not hold the photos of {source} ({found} of {len(sample)} looked for are "
            "there, under the same relative paths); give the folder the root's photos are in now"
        )


def relocate_root(lib: Any, old: str, new: str) -> dict[str, Any]:
    """Point a root at its new place (a drive mounted elsewhere, a folder moved): every path under it
    changes, the vectors stay (their payloads follow); nothing is re-embedded."""
    from photoman.catalog.payload import payloads_for_hashes
    from photoman.vectors import point_id

    if not new:
        raise BadInputError("an empty path (it would mean the current folder): give the root's new place")
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
        here = [r.path for r in rows if r.missing_since is None]  # (those missing may be anywhere)
        _check_holds_the_photos(source, target, here or [r.path for r in rows])
    lib.store  # noqa: B018 - opened (and any earlier crash mended) before this one's marks are made
    with payload_writes(lib) as marks, lib.catalog.session() as s:
        marks.add(hashes)  # committed first: a crash below leaves them for the next writer to mend
        root = s.get(Root, root.id)
        rows = list(s.scalars(select(Photo).where(Photo.root_id == root.id)))
        for r in rows:
            r.path = target + r.path[len(source.rstrip("/")) :] if r.path != source else target
        root.path = target
        s.flush()
        payloads = payloads_for_hashes(s, hashes, lib.model_id)
        for h, payload in payloads.items():  # vectors' payloads (roots, folders) before the commit
            lib.store.set_payload([point_id(h, lib.model_id)], payload)
        lib.store.flush()
    ok = sum(r.status == OK for r in rows)  # counted as `roots` counts; unreadable files moved too
    return {"root": source, "to": target, "photos_moved": ok, "unreadable_moved": len(rows) - ok}
