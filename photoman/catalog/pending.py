"""Payloads the store may hold out of step with the catalog after a crash, and their repair.

An operation that rewrites payloads (tagging, relocating a root, forgetting photos) writes the store and
commits the catalog at different moments; a process killed between the two left, say, a root's old
folders in the catalog and its new ones in the store, and nothing ever looked again. Such an operation
first records the points it will touch in ``payload_pending`` (committed), and clears them once the
store has flushed; the next writer to open the store rewrites whatever is still recorded from the
catalog, which is the source of truth (:func:`replay`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import delete, select, tuple_
from sqlalchemy.orm import Session

from photoman.catalog.models import PayloadPending

log = logging.getLogger(__name__)

_CHUNK = 500


def mark(catalog: Any, hashes: Iterable[str], model_id: str) -> None:
    """Record points about to be rewritten, in a transaction of their own (committed before the store
    is touched)."""
    if hashes := set(hashes):
        with catalog.session() as s:
            mark_in(s, hashes, model_id)


def mark_in(session: Session, hashes: Iterable[str], model_id: str) -> None:
    """:func:`mark` inside a caller's transaction (one that changes the catalog before the store)."""
    todo = sorted(set(hashes))
    for i in range(0, len(todo), _CHUNK):
        chunk = todo[i : i + _CHUNK]
        known = set(
            session.scalars(
                select(PayloadPending.content_hash).where(
                    PayloadPending.model_id == model_id, PayloadPending.content_hash.in_(chunk)
                )
            )
        )
        session.add_all(PayloadPending(content_hash=h, model_id=model_id) for h in chunk if h not in known)


def clear(catalog: Any, hashes: Iterable[str], model_id: str) -> None:
    """Forget points whose payloads the store has flushed."""
    todo = sorted(set(hashes))
    with catalog.session() as s:
        for i in range(0, len(todo), _CHUNK):
            s.execute(
                delete(PayloadPending).where(
                    PayloadPending.model_id == model_id, PayloadPending.content_hash.in_(todo[i : i + _CHUNK])
                )
            )


@contextmanager
def payload_writes(lib: Any, model_id: str | None = None) -> Iterator[Any]:
    """Collect the hashes an operation marks (``add`` them before writing their payloads); on success
    the store is flushed and they are cleared. On an error they stay for :func:`replay`."""
    model = model_id or lib.model_id
    marked: set[str] = set()

    class _Marks:
        def add(self, hashes: Iterable[str]) -> None:
            new = set(hashes) - marked
            mark(lib.catalog, new, model)
            marked.update(new)

    yield _Marks()
    if marked:
        lib.store.flush()
        clear(lib.catalog, marked, model)


def replay(catalog: Any, store: Any, model_id: str, keep_models: Iterable[str] = ()) -> int:
    """Rewrite from the catalog the payload of every point still recorded for ``model_id``; drop the
    records of models that are gone (neither this one nor one in ``keep_models``). Returns how many."""
    from photoman.catalog.payload import payloads_for_hashes
    from photoman.vectors import point_id

    with catalog.session() as s:
        rows = s.execute(select(PayloadPending.content_hash, PayloadPending.model_id)).all()
    if not rows:
        return 0
    keep = {model_id, *keep_models}
    gone = [(h, m) for h, m in rows if m not in keep]
    hashes = sorted(h for h, m in rows if m == model_id)
    for i in range(0, len(hashes), _CHUNK):
        chunk = hashes[i : i + _CHUNK]
        with catalog.session() as s:
            payloads = payloads_for_hashes(s, chunk, model_id)
        ids = {point_id(h, model_id): h for h in payloads}
        present = {p.id for p in store.retrieve(list(ids))}  # a point the crash never wrote: reconcile's
        for pid in present:
            store.set_payload([pid], payloads[ids[pid]])
    if hashes:
        store.flush()
        log.warning("brought %d photos' search data back in line with the catalog after an unfinished "
                    "operation", len(hashes))  # fmt: skip
        clear(catalog, hashes, model_id)
    with catalog.session() as s:
        for i in range(0, len(gone), _CHUNK):
            pair = tuple_(PayloadPending.content_hash, PayloadPending.model_id)
            s.execute(delete(PayloadPending).where(pair.in_(gone[i : i + _CHUNK])))
    return len(hashes)
