"""Payloads the store may hold out of step with the catalog after a crash, and their repair.

An operation that rewrites payloads (tagging, relocating a root, forgetting photos, a root adopting
others, a scan marking photos gone) writes the store and commits the catalog at different moments; a
process killed between the two left, say, a root's old folders in the catalog and its new ones in the
store, and nothing ever looked again. Such an operation first records the points it will touch in
``payload_pending`` under a token of its own (committed no later than the catalog change), and deletes
its records once the store has flushed. Records whose operation is not running in this process (the
single writer) were left by a crash or by an operation that failed halfway: :func:`replay` rewrites
those payloads from the catalog, the source of truth, when the writer opens the store, when a standby
becomes the writer, and from the daemon's idle loop."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, insert, select, update
from sqlalchemy.orm import Session

from photoman.catalog.models import PayloadPending

log = logging.getLogger(__name__)

_CHUNK = 500
# {hash: {"caption": vector}} for the given points, from the catalog's captions (payload.caption_vectors)
CaptionVectors = Callable[[Session, list[str]], dict[str, dict[str, Any]]]
_live: set[str] = set()  # tokens of the operations running in this process: their records are theirs
_live_lock = threading.Lock()


def new_token() -> str:
    """A token for one operation's records, live until :func:`clear` (or :func:`release`)."""
    token = uuid.uuid4().hex
    with _live_lock:
        _live.add(token)
    return token


def release(token: str) -> None:
    """The operation is over without clearing (it failed): its records are the next replay's."""
    with _live_lock:
        _live.discard(token)


def mark(catalog: Any, hashes: Iterable[str], model_id: str, token: str) -> None:
    """Record points about to be rewritten, in a transaction of their own (committed before the store
    is touched)."""
    if hashes := set(hashes):
        with catalog.session() as s:
            mark_in(s, hashes, model_id, token)


def mark_in(
    session: Session, hashes: Iterable[str], model_id: str, token: str, caption: bool = False
) -> None:
    """:func:`mark` inside a caller's transaction (one that changes the catalog before the store).
    ``caption``: the caption changed too (a replay then needs the text encoder)."""
    todo = sorted(set(hashes))
    for i in range(0, len(todo), _CHUNK):
        chunk = todo[i : i + _CHUNK]
        mine = (
            PayloadPending.token == token,
            PayloadPending.model_id == model_id,
            PayloadPending.content_hash.in_(chunk),
        )
        cols = (PayloadPending.content_hash, PayloadPending.caption)
        known = dict(session.execute(select(*cols).where(*mine)).all())
        if caption and not all(known.values()):  # recorded for its payload alone so far: its caption too
            session.execute(update(PayloadPending).where(*mine).values(caption=True))
        if new := [h for h in chunk if h not in known]:  # a core insert: ORM objects cost ~10x more here
            session.execute(
                insert(PayloadPending),
                [{"content_hash": h, "model_id": model_id, "token": token, "caption": caption} for h in new],
            )


def clear(catalog: Any, token: str) -> None:
    """The store has flushed what this operation wrote: forget its records."""
    with catalog.session() as s:
        s.execute(delete(PayloadPending).where(PayloadPending.token == token))
    release(token)


@contextmanager
def payload_writes(lib: Any, model_id: str | None = None) -> Iterator[Any]:
    """Collect the hashes an operation marks (``add`` them before writing their payloads); on success
    the store is flushed and they are cleared. On an error they stay for :func:`replay`."""
    model = model_id or lib.model_id
    token = new_token()
    marked: set[str] = set()

    class _Marks:
        def add(self, hashes: Iterable[str]) -> None:
            new = set(hashes) - marked
            mark(lib.catalog, new, model, token)
            marked.update(new)

    try:
        yield _Marks()
        if marked:
            lib.store.flush()
        clear(lib.catalog, token)
    finally:
        release(token)


def replay(
    catalog: Any,
    store: Any,
    model_id: str,
    keep_models: Iterable[str] = (),
    before_write: Callable[[], None] | None = None,
    store_was_open: bool = False,
    caption_vectors: CaptionVectors | None = None,
) -> int:
    """Rewrite from the catalog the payload of every point recorded for ``model_id`` by an operation not
    running now; drop the records of models that are gone (neither this one nor one in
    ``keep_models``). Returns how many points were rewritten. ``before_write`` runs first when there
    is something to do (the free-space check: it raises to refuse). A caption edit's records also
    re-embed the caption vector through ``caption_vectors`` (called only then: it loads the model).

    The records of operations running in this process are theirs, never replayed. With
    ``store_was_open`` (the daemon's idle loop) nothing is replayed while any runs: one may have written
    the store and not yet committed the catalog, and a rewrite from the catalog would undo its store
    writes for a photo that a dead record shares. On the store's first open none has written it yet."""
    with _live_lock:  # held throughout: an operation starting meanwhile waits (a replay is short)
        if store_was_open and _live:  # the next call does it
            return 0
        return _replay(catalog, store, model_id, keep_models, before_write, frozenset(_live), caption_vectors)


def _replay(
    catalog: Any,
    store: Any,
    model_id: str,
    keep_models: Iterable[str],
    before_write: Callable[[], None] | None,
    live: frozenset[str],
    caption_vectors: CaptionVectors | None,
) -> int:
    from photoman.catalog.payload import payloads_for_hashes
    from photoman.vectors import CAPTION, VectorPoint, point_id

    with catalog.session() as s:
        cols = (PayloadPending.content_hash, PayloadPending.model_id, PayloadPending.token)
        rows = [r for r in s.execute(select(*cols, PayloadPending.caption)).all() if r.token not in live]
    if not rows:
        return 0
    if before_write is not None:
        before_write()
    keep = {model_id, *keep_models}
    hashes = sorted({r.content_hash for r in rows if r.model_id == model_id})
    captions = {r.content_hash for r in rows if r.model_id == model_id and r.caption}
    for i in range(0, len(hashes), _CHUNK):
        chunk = hashes[i : i + _CHUNK]
        with catalog.session() as s:
            payloads = payloads_for_hashes(s, chunk, model_id)
            recaption = [h for h in chunk if h in captions and h in payloads] if caption_vectors else []
            try:
                vectors = caption_vectors(s, recaption) if recaption and caption_vectors else {}
            except Exception as exc:  # noqa: BLE001 - no model here now: payloads still, captions later
                log.warning("could not embed captions to mend them (later, then): %s", exc)
                caption_vectors, recaption, vectors = None, [], {}
        # a content no catalog row holds any more (an operation killed after its rows went, before the
        # store's turn): its point goes, as the operation would have done (photoman.catalog.roots.forget)
        if orphans := [point_id(h, model_id) for h in chunk if h not in payloads]:
            store.delete(orphans)
        ids = {point_id(h, model_id): h for h in payloads}
        present = {p.id for p in store.retrieve(list(ids))}  # a point the crash never wrote: reconcile's
        for pid in present:
            store.set_payload([pid], payloads[ids[pid]])
            if ids[pid] in vectors:
                store.update_vectors([VectorPoint(pid, vectors[ids[pid]])])
            elif ids[pid] in recaption:  # no caption left in the catalog
                store.delete_vectors([pid], [CAPTION])
    if hashes:
        store.flush()
        log.warning("brought %d photos' search data back in line with the catalog after an unfinished "
                    "operation", len(hashes))  # fmt: skip
    done = sorted({r.token for r in rows})  # every token read here belongs to no running operation
    # the records of this model, or of a model that is gone
    gone: ColumnElement[bool] = PayloadPending.model_id.not_in(sorted(keep - {model_id}))
    if captions and caption_vectors is None:  # a caption edit's stay for a replay that can embed them
        gone = and_(gone, ~and_(PayloadPending.caption, PayloadPending.model_id == model_id))
    with catalog.session() as s:
        for i in range(0, len(done), _CHUNK):
            s.execute(delete(PayloadPending).where(PayloadPending.token.in_(done[i : i + _CHUNK]), gone))
    return len(hashes)
