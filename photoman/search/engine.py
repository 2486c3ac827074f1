"""Run a query: terms → one combined vector → the mode's named vector(s) in Qdrant → cutoff → catalog join."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from photoman.catalog.models import OK, Photo
from photoman.catalog.queries import photo_fields
from photoman.errors import BadInputError, PhotomanError
from photoman.library import Library
from photoman.media.decode import decode_rgb, load_image, open_image
from photoman.pathmap import PathMap
from photoman.paths import is_inside
from photoman.search.cutoff import POOL, adaptive_threshold
from photoman.search.query import Query, Term
from photoman.vectors import CAPTION, IMAGE, Hit, SearchFilter, payload_hash

MODE_VECTORS = {
    "text-image": [IMAGE],
    "image-image": [IMAGE],
    "text-caption": [CAPTION],
    "image-caption": [CAPTION],
    "all": [IMAGE, CAPTION],
}


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
    caption: str = ""
    duplicates: list[str] = field(default_factory=list)
    explain: list[dict[str, Any]] | None = None
    mtime: float = 0.0
    raw: str | None = None  # the RAW file of the same shot, when ``path`` is the JPEG of a RAW+JPEG pair

    def to_json(self) -> dict[str, Any]:
        """The JSON schema of `photoman find --json` (stable: scripts depend on it)."""
        # written out rather than dataclasses.asdict (its deep copy was a tenth of a warm query)
        d: dict[str, Any] = {
            "rank": self.rank,
            "score": round(self.score, 6),
            **photo_fields(path=self.path, content_hash=self.content_hash, taken_at=self.taken_at,
                           width=self.width, height=self.height, camera=self.camera, format=self.format,
                           caption=self.caption, raw=self.raw, mtime=self.mtime),  # fmt: skip
            "duplicates": list(self.duplicates),
        }
        if self.explain is not None:
            d["explain"] = [dict(e) for e in self.explain]
        return d


def _when(r: Result) -> datetime:
    """What --sort date orders by: the EXIF date, else the file's time (never an error)."""
    if r.taken_at:
        return r.taken_at
    try:
        return datetime.fromtimestamp(r.mtime)
    except (ValueError, OverflowError, OSError):
        return datetime.min


def term_vectors(lib: Library, terms: list[Term], encoded: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """One unit vector per term (texts batched through the text encoder, images through the image one);
    ``encoded``: texts already encoded (a batch of queries)."""
    out = np.zeros((len(terms), lib.dim), dtype=np.float32)
    texts = [(i, t.value) for i, t in enumerate(terms) if t.kind == "text"]
    todo = [(i, v) for i, v in texts if encoded is None or v not in encoded]
    for i, v in texts:
        if encoded is not None and v in encoded:
            out[i] = encoded[v]
    if todo:  # the text side alone: a cached ONNX session answers without torch
        out[[i for i, _ in todo]] = lib.text_encoder.encode_texts([v for _, v in todo])
    images = [(i, t) for i, t in enumerate(terms) if t.kind == "image"]
    if images:  # decoded (and checked) before the image model loads: a bad file fails fast
        from photoman.embedding.model import checkpoint_spec

        size = checkpoint_spec(lib.settings.model).size
        decoded = [(i, _image_of(t, size)) for i, t in images]
        enc = lib.encoder
        for i, img in decoded:
            out[i] = enc.encode_images([img])[0]
    return out


def _image_of(term: Term, min_side: int) -> Any:
    if term.data is not None:
        return decode_rgb(open_image(term.data, "stdin image"), min_side=min_side, name="stdin image")
    path = Path(term.value)
    if path.is_dir():
        raise BadInputError(f"not an image file: {term.value} is a folder")
    if not path.exists():
        raise BadInputError(f"no such image: {term.value}")
    return load_image(path, min_side=min_side)


def combine(vectors: np.ndarray, terms: list[Term]) -> tuple[np.ndarray, np.ndarray]:
    """Weighted, signed sum normalised to unit length; also each term's coefficient in it."""
    coef = np.array([t.sign * t.weight for t in terms], dtype=np.float32)
    raw = coef @ vectors
    norm = float(np.linalg.norm(raw))
    if norm < 1e-6:
        raise BadInputError("the query's terms cancel each other out; change a weight or a sign")
    return raw / norm, coef / norm


def search(lib: Library, q: Query) -> list[Result]:
    """Run a query end to end; filters go into Qdrant, the cutoff applies to this query's own scores."""
    (answer,) = search_many(lib, [q])
    if isinstance(answer, Exception):
        raise answer
    return answer


@dataclass
class _Plan:
    """One query of a batch between its phases: what is searched, then what was found."""

    q: Query
    mode: str
    vectors: np.ndarray | None = None
    qvec: np.ndarray | None = None
    coef: np.ndarray | None = None
    store_flt: SearchFilter | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    bare: list[Hit] | None = None  # pool hits kept, payloads still to fetch


def search_many(lib: Library, queries: list[Query]) -> list[list[Result] | Exception]:
    """Several queries answered together (the daemon's burst of clients): the work they share is done
    once — the offline roots, the catalog's roots, one text-encoder pass, one payload fetch, one
    catalog join — and a query's own mistake is its answer, not the others'."""
    out: list[list[Result] | Exception | None] = [None] * len(queries)
    plans: dict[int, _Plan] = {}
    for i, q in enumerate(queries):
        try:
            q.check()
            plans[i] = _Plan(q, q.resolved_mode())
        except PhotomanError as exc:
            out[i] = exc
    _encode(lib, plans, out)
    shared = _Shared(lib)
    for i, plan in list(plans.items()):
        try:
            _search_store(lib, plan, shared)
        except PhotomanError as exc:
            out[i] = exc
            del plans[i]
    _fetch_payloads(lib, list(plans.values()))
    joined = join_many(lib, [(p.hits, p.q.filters.folder, [] if p.q.include_offline else shared.offline())
                             for p in plans.values()])  # fmt: skip
    for (i, plan), results in zip(plans.items(), joined, strict=True):
        try:
            out[i] = _finish(lib, plan, results, shared)
        except PhotomanError as exc:
            out[i] = exc
    return [r if r is not None else PhotomanError("query not answered") for r in out]


class _Shared:
    """What every query of a batch asks the catalog the same way, asked at most once."""

    def __init__(self, lib: Library) -> None:
        self.lib = lib
        self._offline: list[str] | None = None
        self._roots: list[str] | None = None
        self._gone: list[str] | None = None
        self._empty: bool | None = None

    def offline(self) -> list[str]:
        if self._offline is None:
            from photoman.catalog.roots import offline_roots

            self._offline = offline_roots(self.lib)
        return self._offline

    def gone(self) -> list[str]:
        """Points whose every file a scan found gone (pending removal until a second scan): hidden."""
        if self._gone is None:
            from photoman.catalog.queries import gone_points

            self._gone = gone_points(self.lib)
        return self._gone

    def roots(self) -> list[str]:
        if self._roots is None:
            from photoman.catalog.models import Root

            with self.lib.catalog.session() as s:
                self._roots = list(s.scalars(select(Root.path)))
        return self._roots

    def library_empty(self) -> bool:
        if self._empty is None:
            self._empty = _library_empty(self.lib)
        return self._empty


def _encode(lib: Library, plans: dict[int, _Plan], out: list[Any]) -> None:
    """Every text term of the batch through the text encoder in one call; image terms one by one."""
    texts = sorted({t.value for p in plans.values() for t in p.q.terms if t.kind == "text"})
    by_text: dict[str, np.ndarray] = {}
    if texts:
        by_text = dict(zip(texts, lib.text_encoder.encode_texts(texts), strict=True))
    for i, plan in list(plans.items()):
        try:
            plan.vectors = term_vectors(lib, plan.q.terms, by_text)
            plan.qvec, plan.coef = combine(plan.vectors, plan.q.terms)
        except PhotomanError as exc:
            out[i] = exc
            del plans[i]


def _search_store(lib: Library, plan: _Plan, shared: _Shared) -> None:
    """The query's filter checked and translated, then its searches in the store."""
    q = plan.q
    flt = replace(q.filters)  # the caller's filter stays as given (a Query may be searched again)
    if flt.folder:
        roots = shared.roots()
        if not any(is_inside(flt.folder, r) for r in roots):
            raise BadInputError(
                f"--in {flt.folder}: not inside the library (roots: {', '.join(roots) or 'none'})"
            )
    if flt.tags:
        _check_tags(lib, flt.tags)
    if not q.include_offline and (offline := shared.offline()):
        # a photo is hidden when all its copies are offline: one with a copy on a connected root is
        # found there (excluding every point that has an offline copy hid it)
        online = [r for r in shared.roots() if r not in offline and (flt.roots is None or r in flt.roots)]
        flt.roots, flt.exclude_roots = (online, None) if online else (flt.roots, offline)
    flt.exclude_ids = shared.gone() or None  # filtered in the store: a limit of 10 still gets 10
    plan.store_flt = store_flt = stored_filter(flt, lib.path_map)
    qvec = plan.qvec
    assert qvec is not None
    kind = "image" if all(t.kind == "image" for t in q.terms) else "text"
    names = MODE_VECTORS[plan.mode]
    pools: dict[str, list[Hit]] = {}
    for name in names:
        if q.cutoff == "none":
            plan.thresholds[name] = float("-inf")
        elif q.cutoff == "fixed":
            plan.thresholds[name] = float(q.threshold if q.threshold is not None else -1.0)
        else:
            # the pool only needs scores: reading 100 payloads from disk would cost more than the scan
            pools[name] = lib.store.search(
                qvec, using=name, limit=max(POOL, q.limit), flt=store_flt, with_payload=False
            )
            plan.thresholds[name] = adaptive_threshold([h.score for h in pools[name]], kind)
    if len(names) == 1:
        name = names[0]
        if name in pools:
            plan.bare = [h for h in pools[name] if h.score >= plan.thresholds[name]][: q.limit]
        else:
            hits = lib.store.search(qvec, using=name, limit=q.limit, flt=store_flt)
            plan.hits = [h for h in hits if h.score >= plan.thresholds[name]][: q.limit]
    else:
        plan.hits = lib.store.fused_search({n: qvec for n in names}, limit=q.limit, flt=store_flt,
                                           thresholds=plan.thresholds)  # fmt: skip


def _fetch_payloads(lib: Library, plans: list[_Plan]) -> None:
    """The payloads of every pool's kept hits, in one read of the store."""
    wanted = [p for p in plans if p.bare is not None]
    if not wanted:
        return
    ids = list(dict.fromkeys(h.id for p in wanted for h in p.bare or []))
    payloads = {pt.id: pt.payload for pt in lib.store.retrieve(ids)} if ids else {}
    for p in wanted:
        p.hits = [Hit(h.id, h.score, payloads[h.id]) for h in p.bare or [] if h.id in payloads]


def _finish(lib: Library, plan: _Plan, results: list[Result], shared: _Shared) -> list[Result]:
    q = plan.q
    if not results and shared.library_empty():
        raise PhotomanError("the library is empty: run `photoman index FOLDER` first")
    if q.explain:
        assert plan.vectors is not None and plan.coef is not None
        explain(lib, results, q.terms, plan.vectors, plan.coef, MODE_VECTORS[plan.mode])
    if q.sort == "date":
        results.sort(key=_when, reverse=True)
    elif q.sort != "score":
        raise BadInputError(f"unknown sort {q.sort!r}; use score or date")
    for i, r in enumerate(results, 1):
        r.rank = i
    return results


def stored_filter(flt: SearchFilter, path_map: PathMap) -> SearchFilter:
    """The filter with its folders and roots as the store spells them: this machine's paths (``--in``,
    offline roots) under a shared library's mapped roots become the stored ones."""
    if not path_map:
        return flt
    many = lambda paths: [path_map.to_stored(p) for p in paths] if paths is not None else None  # noqa: E731
    return replace(flt, roots=many(flt.roots), exclude_roots=many(flt.exclude_roots),
                   folder=path_map.to_stored(flt.folder) if flt.folder else flt.folder)  # fmt: skip


_JOIN_COLUMNS = (
    Photo.path,
    Photo.content_hash,
    Photo.taken_at,
    Photo.width,
    Photo.height,
    Photo.camera_make,
    Photo.camera_model,
    Photo.format,
    Photo.caption,
    Photo.mtime,
    Photo.raw_path,
)


def _check_tags(lib: Library, tags: list[str]) -> None:
    """An unknown --tag is a mistake to point out, not a query with no results."""
    from photoman.catalog.models import Tag

    with lib.catalog.engine.connect() as conn:
        found = set(
            conn.scalars(
                select(Tag.label).where(Tag.label.in_(tags), Tag.model_id == lib.model_id).distinct()
            )
        )
    unknown = [t for t in tags if t not in found]
    if unknown:
        from photoman.catalog.queries import tag_counts

        known = {label for label, _ in tag_counts(lib)}
        if not known:
            raise BadInputError(f"no photo has tags yet (--tag {unknown[0]}): run `photoman tag` first")
        listed = ", ".join(sorted(known)[:30]) + (", …" if len(known) > 30 else "")
        raise BadInputError(f"unknown tag {unknown[0]!r}; known tags: {listed}")


def _library_empty(lib: Library) -> bool:
    with lib.catalog.engine.connect() as conn:
        row = conn.execute(select(Photo.id).where(Photo.indexed_with(lib.model_id)).limit(1)).first()
    return row is None


def join(lib: Library, hits: list[Hit], folder: str | None = None) -> list[Result]:
    """Hits joined with their catalog rows; points the catalog does not know are dropped.

    Identical copies fold into one result; with ``folder`` (``--in``) its path is a copy inside it.
    """
    return join_many(lib, [(hits, folder, [])])[0]


def join_many(lib: Library, lists: list[tuple[list[Hit], str | None, list[str]]]) -> list[list[Result]]:
    """:func:`join` for several hit lists, with one catalog query for all of them. Each list's third
    item: roots whose copies it does not show (the offline ones, unless the query asks for them)."""
    found = (payload_hash(h.payload) for hits, _, _ in lists for h in hits)
    hashes = list(dict.fromkeys(h for h in found if h is not None))
    rows: list[Any] = []
    if hashes:
        with lib.catalog.engine.connect() as conn:
            # plain columns on a Core connection, not ORM objects in a session (a third of the time);
            # filter on the hash index only: an ORDER BY or a status condition lets SQLite walk the
            # path or status index instead (2 ms → 50 ms)
            for chunk in range(0, len(hashes), 500):
                rows += conn.execute(
                    select(*_JOIN_COLUMNS, Photo.status, Photo.model_id, Photo.missing_since).where(
                        Photo.content_hash.in_(hashes[chunk : chunk + 500])
                    )
                ).all()
    # a file a scan found gone (pending removal, see indexing/pipeline.py) is not shown: it is not there
    shown = (r for r in rows if r.status == OK and r.model_id == lib.model_id and r.missing_since is None)
    rows = sorted(shown, key=lambda r: r.path)
    by_hash: dict[str, list[Any]] = {}
    for r in rows:
        by_hash.setdefault(r.content_hash, []).append(r)
    return [_results(hits, by_hash, folder, hidden) for hits, folder, hidden in lists]


def _results(
    hits: list[Hit], by_hash: dict[str, list[Any]], folder: str | None, hidden: list[str]
) -> list[Result]:
    results: list[Result] = []
    for hit in hits:
        group = by_hash.get(payload_hash(hit.payload) or "")
        if group and hidden:
            group = [r for r in group if not any(is_inside(r.path, root) for root in hidden)]
        if not group:
            continue
        if folder:
            inside = [r for r in group if is_inside(r.path, folder) and r.path != folder]
            group = inside + [r for r in group if r not in inside] if inside else group
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
                camera=Photo.camera_name(first.camera_make, first.camera_model),
                format=first.format,
                caption=next((r.caption for r in group if r.caption), ""),
                duplicates=[r.path for r in group[1:]],
                mtime=first.mtime,
                raw=first.raw_path,
            )
        )
    return results


def explain(
    lib: Library,
    results: list[Result],
    terms: list[Term],
    vectors: np.ndarray,
    coef: np.ndarray,
    names: list[str],
) -> None:
    """Per result, each term's share of the cosine score: coefficient × (term · photo vector)."""
    from photoman.vectors import point_id

    ids = [point_id(r.content_hash, lib.model_id) for r in results]
    stored = {p.id: p.vectors for p in lib.store.retrieve(ids, with_vectors=True)}
    for r, pid in zip(results, ids, strict=True):
        parts = []
        for name in names:
            v = stored.get(pid, {}).get(name)
            if v is None:
                continue
            for t, tv, c in zip(terms, vectors, coef, strict=True):
                parts.append({"vector": name, "term": t.label, "contribution": round(float(c * (tv @ v)), 6)})
        r.explain = parts


def find(
    lib: Library,
    text: str | None = None,
    image: Path | str | None = None,
    limit: int = 10,
    flt: SearchFilter | None = None,
    include_offline: bool = False,
    cutoff: str = "none",
) -> list[Result]:
    """The spine's two modes as a library call: text→image, or image→image from one image file."""
    if image is not None and text:
        raise BadInputError("give either a text query or an image, not both")
    if image is None and (not text or not text.strip()):
        raise BadInputError("empty query: describe what you are looking for, or pass --image PATH")
    term = (
        Term("image", str(Path(image).expanduser().absolute()))
        if image is not None
        else Term("text", (text or "").strip())
    )
    q = Query([term], limit=limit, filters=flt or SearchFilter(), cutoff=cutoff)
    q.include_offline = include_offline
    return search(lib, q)
