"""Duplicates: identical bytes (same hash) and near copies (image vectors above a similarity threshold),
including rotated copies, found by also searching with the embeddings of each photo turned 90/180/270°."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy import select

from photoman.catalog.models import Photo
from photoman.errors import PhotomanError
from photoman.indexing.pairs import raw_sibling
from photoman.library import Library
from photoman.media.decode import load_image
from photoman.media.exif import datetime_from_timestamp
from photoman.vectors import IMAGE, point_id

ROTATIONS = (Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270)


@dataclass
class DupeGroup:
    kind: str  # exact | near
    keeper: str
    photos: list[dict[str, Any]] = field(default_factory=list)  # each with its "similarity" to the keeper
    threshold: float = 0.95  # a near copy is trashed only this close to the keeper itself

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "keeper": self.keeper, "photos": self.photos}


class _Union:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, a: str) -> str:
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)


def _keeper_key(r: Photo) -> tuple:
    """The JPEG of a RAW+JPEG pair first (its RAW is the original), then the largest resolution, then
    the oldest date, then the shortest path."""
    when = r.taken_at or datetime_from_timestamp(r.mtime) or datetime.min  # out-of-range mtimes too
    return (r.raw_path is None, -(r.width or 0) * (r.height or 0), when, len(r.path), r.path)


def find_duplicates(
    lib: Library, threshold: float = 0.95, rotations: bool = True, neighbours: int = 10
) -> list[DupeGroup]:
    """Groups of copies, each with a suggested keeper; exact groups share bytes, near groups share looks."""
    with lib.catalog.session() as s:
        rows = list(s.scalars(select(Photo).where(Photo.indexed_with(lib.model_id))))
    by_hash: dict[str, list[Photo]] = {}
    for r in rows:
        by_hash.setdefault(r.content_hash, []).append(r)  # type: ignore[arg-type]
    uf = _Union()
    pid_to_hash = {point_id(h, lib.model_id): h for h in by_hash}
    hashes = sorted(by_hash)
    looks: dict[str, list[np.ndarray]] = {}  # a content's image vector and, with rotations, its turns
    for i in range(0, len(hashes), 256):
        chunk = hashes[i : i + 256]
        stored = lib.store.retrieve([point_id(h, lib.model_id) for h in chunk], with_vectors=True)
        for p in stored:
            h = pid_to_hash[p.id]
            queries = [p.vectors[IMAGE]] if IMAGE in p.vectors else []
            if rotations:
                queries.extend(_rotated_vectors(lib, by_hash[h][0].path))
            looks[h] = queries
            for q in queries:
                for hit in lib.store.search(q, limit=neighbours + 1):
                    other = pid_to_hash.get(hit.id)
                    if other and other != h and hit.score >= threshold:
                        uf.union(h, other)
    components: dict[str, list[str]] = {}
    for h in hashes:
        components.setdefault(uf.find(h), []).append(h)
    groups = []
    for members in components.values():
        photos = [r for h in members for r in by_hash[h]]
        if len(photos) < 2:
            continue
        photos.sort(key=_keeper_key)
        # near groups are joined by chains of close pairs (a~b, b~c): c may look nothing like a, so
        # each copy's own closeness to the keeper is what the trash step goes by
        kept = photos[0].content_hash or ""
        close = {h: _similarity(looks.get(kept, []), looks.get(h, [])) if h != kept else 1.0 for h in members}
        groups.append(
            DupeGroup(
                kind="exact" if len(members) == 1 else "near",
                keeper=photos[0].path,
                threshold=threshold,
                photos=[
                    {
                        "path": r.path,
                        "content_hash": r.content_hash,
                        "similarity": round(close[r.content_hash or ""], 4),
                        "width": r.width,
                        "height": r.height,
                        "taken_at": r.taken_at.isoformat() if r.taken_at else None,
                        "size": r.size,
                        "raw": r.raw_path,  # the RAW of a RAW+JPEG pair: this file is never trashed
                    }
                    for r in photos
                ],  # fmt: skip
            )
        )
    groups.sort(key=lambda g: g.keeper)
    return groups


def _similarity(keeper: list[np.ndarray], copy: list[np.ndarray]) -> float:
    """How close a copy's image is to the keeper's, the best of either turned (0 when unknown)."""
    if not keeper or not copy:
        return 0.0
    pairs = [(keeper[0], b) for b in copy] + [(a, copy[0]) for a in keeper[1:]]
    return max(float(np.dot(a, b)) for a, b in pairs)


def _rotated_vectors(lib: Library, path: str) -> list[np.ndarray]:
    try:
        img = load_image(path, min_side=lib.encoder.spec.size)
    except PhotomanError:
        return []
    return list(lib.encoder.encode_images([img.transpose(t) for t in ROTATIONS]))


@dataclass
class TrashStep:
    """One file of a duplicate group and what the trash step does with it, and why."""

    path: str
    action: str  # keep | trash | skip
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "action": self.action, "reason": self.reason}


def _physical(path: str) -> tuple[int, int] | None:
    """The file a path reaches (device, inode): symlinks, hard links and bind mounts share it."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


def _current_hash(path: str) -> str | None:
    from photoman.media.hashing import content_hash

    try:
        with open(path, "rb") as fh:
            return content_hash(fh.read())
    except OSError:
        return None


def trash_plan(groups: list[DupeGroup]) -> list[TrashStep]:
    """What the trash step would do, checked against the files as they are now.

    A copy is trashed only if it and its keeper are still there with the bytes that were indexed and
    it is a different physical file from every file kept; so the last physical copy of a photo is
    never removed. Nor is
    half of a RAW+JPEG pair (the catalog's, or one on disk now): the RAW would be left on its own.
    """
    steps: list[TrashStep] = []
    for g in groups:
        keeper_file = _physical(g.keeper)
        if keeper_file is None:
            steps += [TrashStep(p["path"], "skip", "the keeper is gone; nothing trashed") for p in g.photos]
            continue
        indexed = next((p["content_hash"] for p in g.photos if p["path"] == g.keeper), None)
        if _current_hash(g.keeper) != indexed:
            # overwritten since indexing: a copy may now be the photo's last one
            why = "the keeper changed since it was indexed; nothing trashed (re-index, then decide)"
            steps += [TrashStep(p["path"], "skip", why) for p in g.photos]
            continue
        kept = {keeper_file}
        steps.append(TrashStep(g.keeper, "keep", "suggested keeper"))
        for p in g.photos:
            path = p["path"]
            if path == g.keeper:
                continue
            here = _physical(path)
            raw = p.get("raw") or raw_sibling(path)
            if here is None:
                steps.append(TrashStep(path, "skip", "no longer there (or not a regular file)"))
            elif raw:
                why = f"half of a RAW+JPEG pair (with {os.path.basename(raw)}); never trashed alone"
                steps.append(TrashStep(path, "skip", why))
                kept.add(here)
            elif here in kept:
                steps.append(
                    TrashStep(path, "keep", "the same file as one kept (symlink, hard link or mount)")
                )
            elif g.kind == "near" and p.get("similarity", 0.0) < g.threshold:
                why = f"only {p.get('similarity', 0.0):.3f} like the keeper (a near copy of a near copy)"
                steps.append(TrashStep(path, "skip", why))
            elif _current_hash(path) != p["content_hash"]:
                steps.append(TrashStep(path, "skip", "changed since it was indexed"))
                kept.add(here)
            else:
                steps.append(TrashStep(path, "trash", f"a copy of {g.keeper}"))
    return steps


def trash_duplicates(lib: Library, groups: list[DupeGroup]) -> list[str]:
    """Move the copies the plan marks to the platform trash (never deleted outright), then forget them.

    Each file is checked again right before it moves (still there, same bytes, a different physical
    file from every file kept, and its keeper still there).
    """
    from send2trash import send2trash

    from photoman.catalog.roots import forget
    from photoman.indexing.pipeline import set_missing

    plans = [(g, trash_plan([g])) for g in groups]  # (the files read once here, and again before each move)
    planned = [step.path for _, plan in plans for step in plan if step.action == "trash"]
    marked = {r.path: r.id for r in _rows_at(lib, planned)}
    moved: list[str] = []
    try:
        # marked pending removal before any move: a kill after some moves leaves them hidden from
        # search, and the next scan, finding them gone, forgets them (and marks back what never moved)
        set_missing(lib, sorted(marked.values()), datetime.now())
        for g, plan in plans:
            for step in plan:
                if step.action != "trash":
                    continue
                # again, right before the move: nothing may have changed since the plan was shown
                pair = [p for p in g.photos if p["path"] in (g.keeper, step.path)]
                again = trash_plan([DupeGroup(g.kind, g.keeper, pair, g.threshold)])
                if not any(s.path == step.path and s.action == "trash" for s in again):
                    continue
                try:
                    send2trash(step.path)
                except OSError as exc:
                    raise PhotomanError(f"cannot move {step.path} to the trash: {exc}") from None
                moved.append(step.path)
    finally:  # whatever went to the trash leaves the catalog and the store, even if a later move failed
        forget(lib, _rows_at(lib, moved), set())
        done = set(moved)
        set_missing(lib, sorted(i for p, i in marked.items() if p not in done), None)
        lib.store.flush()
    return moved


def _rows_at(lib: Library, paths: list[str]) -> list[Photo]:
    """The catalog rows of these paths, asked 500 at a time (a query's parameters are limited)."""
    rows: list[Photo] = []
    with lib.catalog.session() as s:
        for i in range(0, len(paths), 500):
            rows += s.scalars(select(Photo).where(Photo.path.in_(paths[i : i + 500])))
    return rows
