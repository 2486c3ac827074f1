"""Run a query against the vector store and join the hits with the catalog (the source of truth)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from photoman.catalog.models import Photo
from photoman.errors import BadInputError
from photoman.library import Library
from photoman.media.decode import load_image
from photoman.vectors import IMAGE, SearchFilter


@dataclass
class Result:
    """One photo in a result list; identical copies are folded into ``duplicates``."""

    rank: int
    score: float
    path: str
    content_hash: str
    taken_at: datetime | None = None
    width: int | None = None
    height: int | None = None
    camera: str | None = None
    format: str | None = None
    duplicates: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The JSON schema of `photoman find --json` (stable: scripts depend on it)."""
        d = asdict(self)
        d["score"] = round(self.score, 6)
        d["taken_at"] = self.taken_at.isoformat() if self.taken_at else None
        return d


def text_vector(lib: Library, text: str) -> np.ndarray:
    """CLIP text embedding of a non-empty query."""
    if not text or not text.strip():
        raise BadInputError("empty query: describe what you are looking for, or pass --image PATH")
    return lib.encoder.encode_texts([text.strip()])[0]


def image_vector(lib: Library, path: Path | str) -> np.ndarray:
    """CLIP image embedding of any readable image file, inside the library or not."""
    p = Path(path).expanduser()
    if not p.exists():
        raise BadInputError(f"no such image: {path}")
    if p.is_dir():
        raise BadInputError(f"not an image file: {path} is a folder")
    return lib.encoder.encode_images([load_image(p, min_side=lib.encoder.spec.size)])[0]


def search_vector(
    lib: Library, vector: np.ndarray, limit: int = 10, using: str = IMAGE, flt: SearchFilter | None = None
) -> list[Result]:
    """Nearest points, joined with their catalog rows; points the catalog does not know are dropped."""
    if limit < 1:
        raise BadInputError("--limit must be at least 1")
    hits = lib.store.search(vector, using=using, limit=limit, flt=flt)
    hashes = [h.payload.get("hash") for h in hits if h.payload.get("hash")]
    with lib.catalog.session() as s:
        rows = s.scalars(
            select(Photo)
            .where(Photo.content_hash.in_(hashes), Photo.status == "ok", Photo.indexed_model == lib.model_id)
            .order_by(Photo.path)
        ).all()
    by_hash: dict[str, list[Photo]] = {}
    for r in rows:
        by_hash.setdefault(r.content_hash, []).append(r)  # type: ignore[arg-type]
    results: list[Result] = []
    for hit in hits:
        group = by_hash.get(hit.payload.get("hash", ""))
        if not group:
            continue
        first = group[0]
        results.append(
            Result(
                rank=len(results) + 1,
                score=hit.score,
                path=first.path,
                content_hash=first.content_hash or "",
                taken_at=first.taken_at,
                width=first.width,
                height=first.height,
                camera=first.camera,
                format=first.format,
                duplicates=[r.path for r in group[1:]],
            )
        )
    return results


def find(
    lib: Library,
    text: str | None = None,
    image: Path | str | None = None,
    limit: int = 10,
    flt: SearchFilter | None = None,
    include_offline: bool = False,
) -> list[Result]:
    """Text→image or image→image search; photos on offline drives are left out unless asked for."""
    from photoman.indexing.pipeline import offline_roots

    if image is not None and text:
        raise BadInputError("give either a text query or --image, not both")
    vector = image_vector(lib, image) if image is not None else text_vector(lib, text or "")
    flt = flt or SearchFilter()
    if not include_offline:
        flt.exclude_roots = offline_roots(lib) or None
    return search_vector(lib, vector, limit=limit, flt=flt)
