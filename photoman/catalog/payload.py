"""The Qdrant payload of a point, derived from the catalog rows that share its content hash."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from photoman.catalog.models import OK, Photo, Root, Tag
from photoman.catalog.paths import path_map_of, to_store
from photoman.media.exif import datetime_from_timestamp
from photoman.vectors.base import HASH_KEY, rfc3339

if TYPE_CHECKING:
    from photoman.pathmap import PathMap


def ancestors(path: str, root: str) -> list[str]:
    """Folders from the file's own up to and including the root (what `--in FOLDER` matches)."""
    out = []
    folder = os.path.dirname(path)
    while folder.startswith(root) and folder not in out:
        out.append(folder)
        if folder == root:
            break
        folder = os.path.dirname(folder)
    return out


def payload_for(
    rows: list[Photo], roots: dict[int, str], tags: list[str] | None = None, path_map: PathMap | None = None
) -> dict[str, Any]:
    """Filter fields for one point; the first row by path gives the per-photo fields.

    Paths, folders and roots are in their stored spelling (:func:`photoman.catalog.paths.to_store`,
    through this machine's ``path_map``): a filter value compared with them must be spelt the same
    way. A file time outside what a date can hold leaves ``taken_at`` unknown (None)."""
    present = [r for r in rows if r.missing_since is None]  # a file a scan found gone: not where it is
    rows = sorted(present or rows, key=lambda r: r.path)
    first = rows[0]
    taken = first.taken_at or datetime_from_timestamp(first.mtime)
    folders = sorted({to_store(f, path_map) for r in rows for f in ancestors(r.path, roots[r.root_id])})
    located = next((r for r in rows if r.gps_lat is not None and r.gps_lon is not None), None)
    return {
        HASH_KEY: first.content_hash,
        "paths": [to_store(r.path, path_map) for r in rows],
        "folders": folders,
        "roots": sorted({to_store(roots[r.root_id], path_map) for r in rows}),
        "taken_at": rfc3339(taken) if taken else None,
        "camera": first.camera,
        "camera_terms": camera_terms(first.camera),
        "format": (first.format or "").lower() or None,
        "location": {"lat": located.gps_lat, "lon": located.gps_lon} if located else None,
        "tags": sorted(set(tags or [])),
    }


def camera_terms(camera: str | None) -> list[str]:
    """Lower-case words of make and model, so `--camera canon` or `--camera "eos 350d"` match."""
    return sorted(set((camera or "").lower().replace(",", " ").split()))


def payloads_for_hashes(session: Session, hashes: Iterable[str], model_id: str) -> dict[str, dict[str, Any]]:
    """Payload per hash from the indexed rows that have it; hashes with no row are left out."""
    hashes = list(set(hashes))
    if not hashes:
        return {}
    roots = dict(session.execute(select(Root.id, Root.path)).all())
    by_hash: dict[str, list[Photo]] = defaultdict(list)
    for i in range(0, len(hashes), 500):
        # the hash index alone: extra conditions can make SQLite pick a worse index
        for r in session.scalars(select(Photo).where(Photo.content_hash.in_(hashes[i : i + 500]))):
            if r.status == OK and r.model_id == model_id:
                by_hash[r.content_hash].append(r)  # type: ignore[index]
    tags = tag_labels(session, hashes, model_id)
    path_map = path_map_of(session.get_bind())  # the rows hold this machine's paths; payloads the stored
    return {h: payload_for(rows, roots, tags.get(h), path_map) for h, rows in by_hash.items()}


def tag_labels(session: Session, hashes: Iterable[str], model_id: str) -> dict[str, list[str]]:
    """Each hash's zero-shot labels from ``model_id`` (tags are per model: a switch back to a model
    finds its tags again)."""
    hashes = list(set(hashes))
    tags: dict[str, list[str]] = defaultdict(list)
    for i in range(0, len(hashes), 500):
        for content_hash, label in session.execute(
            select(Tag.content_hash, Tag.label).where(
                Tag.content_hash.in_(hashes[i : i + 500]), Tag.model_id == model_id
            )
        ):
            tags[content_hash].append(label)
    return tags


def chosen_captions(session: Session, hashes: Iterable[str], model_id: str) -> dict[str, str]:
    """The caption each point carries: a user's caption first, else the first by path; none if empty."""
    hashes = list(set(hashes))
    out: dict[str, tuple[bool, str, str]] = {}
    for i in range(0, len(hashes), 500):
        rows = session.execute(
            select(Photo.content_hash, Photo.path, Photo.caption, Photo.caption_source).where(
                Photo.content_hash.in_(hashes[i : i + 500]),
                Photo.indexed_with(model_id),
                Photo.caption != "",
            )
        )
        for content_hash, path, caption, source in rows:
            if content_hash is None:
                continue
            key = (source != "user", path, caption)
            if content_hash not in out or key < out[content_hash]:
                out[content_hash] = key
    return {h: v[2] for h, v in out.items()}


def caption_vectors(lib: Any, session: Session, hashes: Iterable[str]) -> dict[str, dict[str, Any]]:
    """{hash: {"caption": vector}} for the points whose photos have a caption (CLIP text encoder)."""
    from photoman.vectors import CAPTION

    captions = chosen_captions(session, hashes, lib.model_id)
    if not captions:
        return {}
    keys = list(captions)
    vecs = lib.encoder.encode_texts([captions[h] for h in keys])
    return {h: {CAPTION: v} for h, v in zip(keys, vecs, strict=True)}
