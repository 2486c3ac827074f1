"""Switching model in the background: build the new model's collection while the old one answers.

`photoman models use NAME` (or a changed ``model`` setting) records NAME as the library's target
(catalog/modelstate.py). :func:`build` then embeds, a batch at a time, every photo search can find
now into the target's collection; what that collection already holds is done, so a stop or a crash
resumes where it was. New photos go into the active collection at once (the indexer) and into the
target by the next :func:`build` step, so they end up embedded with both models.

Once every photo has its vector in the target, :func:`complete` switches in one catalog commit
(the photos' model and the active model change together) and the library searches with the new
model from then on. The old collection stays on disk until `photoman models drop OLD`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import delete, select, update

from photoman.catalog.models import Photo, Tag
from photoman.diskspace import check_space
from photoman.embedding.checkpoint import model_identity
from photoman.errors import BadInputError, PhotomanError
from photoman.library import Models
from photoman.vectors import CAPTION, IMAGE, VectorPoint, point_id

if TYPE_CHECKING:
    from photoman.library import Library
    from photoman.vectors import VectorStore

Progress = Callable[[int, int], None]  # (photos in the new collection, photos in all)
Encode = Callable[[Any, np.ndarray], np.ndarray]  # (encoder, uint8 pixel batch) -> unit vectors
Swap = Callable[[Callable[[], None]], None]  # runs the commit where no query is in flight


class Target:
    """The model a switch builds: its encoder (loaded on first use) and its collection."""

    def __init__(self, lib: Library, model_id: str) -> None:
        self.lib = lib
        self.model_id = model_id
        self.models = Models(lib.settings.with_overrides(model=model_id))
        self._store: VectorStore | None = None
        self._done: set[str] | None = None  # point ids in the collection
        self.skipped: set[str] = set()  # hashes whose file could not be read for it (left to the indexer)
        # hashes whose caption vector this process wrote from the catalog as it is now; every other point
        # (built before a crash, kept from an earlier use of the model, or captioned anew since) gets its
        # caption embedded again by complete()
        self.captioned: set[str] = set()
        self._pids: dict[str, str] = {}
        self.started = time.monotonic()
        self.done_at_start: int | None = None  # photos done when this process started building

    @property
    def store(self) -> VectorStore:
        if self._store is None:
            from photoman.vectors import open_store

            self._store = open_store(self.lib.settings, self.model_id, self.models.dim)
        return self._store

    def done_ids(self) -> set[str]:
        if self._done is None:
            self._done = self.store.all_ids()
        return self._done

    def pid(self, content_hash: str) -> str:
        got = self._pids.get(content_hash)
        if got is None:
            got = self._pids[content_hash] = point_id(content_hash, self.model_id)
        return got

    def take_store(self) -> VectorStore:
        """The collection, handed over to the library that now searches it."""
        store = self.store
        self._store = None
        return store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def _photos(lib: Library) -> dict[str, tuple[str, str | None, int]]:
    """Every photo search finds now, one file per content: {hash: (path, raw_path, root id)}."""
    out: dict[str, tuple[str, str | None, int]] = {}
    with lib.catalog.session() as s:
        rows = s.execute(
            select(Photo.content_hash, Photo.path, Photo.raw_path, Photo.root_id)
            .where(Photo.indexed_with(lib.model_id), Photo.content_hash.is_not(None))
            .order_by(Photo.path)
        )
        for digest, path, raw, root in rows:
            out.setdefault(str(digest), (path, raw, root))
    return out


def _todo(lib: Library, target: Target) -> dict[str, tuple[str, str | None, int]]:
    done = target.done_ids()
    return {h: v for h, v in _photos(lib).items() if target.pid(h) not in done and h not in target.skipped}


def progress(lib: Library) -> dict[str, Any] | None:
    """Where a running switch stands: {from, to, done, total, rate, eta_s}; None when none runs."""
    target = lib.target
    if target is None:
        return None
    hashes = _photos(lib)
    info: dict[str, Any] = {"from": lib.model_id, "to": target.model_id, "total": len(hashes)}
    try:
        if lib.busy is not None:  # another process writes the library (and holds its collections)
            raise lib.busy
        done_ids = target.done_ids()
    except PhotomanError as exc:  # not downloaded yet, or the store is another process's right now
        return {**info, "done": None, "rate": None, "eta_s": None, "error": str(exc)}
    done = sum(1 for h in hashes if target.pid(h) in done_ids)
    rate = None
    if target.done_at_start is not None:
        elapsed = time.monotonic() - target.started
        rate = round((done - target.done_at_start) / elapsed, 2) if elapsed > 0 else 0.0
    eta = round((len(hashes) - done) / rate, 1) if rate else None
    return {**info, "done": done, "rate": rate, "eta_s": eta, "skipped": len(target.skipped)}


def start(lib: Library, name: str) -> dict[str, Any]:
    """Make ``name`` the model this library switches to (nothing to do when it is the active one; the
    active one again cancels a running switch). The model is checked (and downloaded) here."""
    ident = model_identity(name)
    if ident == lib.model_id:
        cancelled = lib.target_name
        if cancelled is not None:
            lib.set_target(None)
        return {"active": lib.model_id, "target": None, "switch": None, "cancelled": cancelled}
    Models(lib.settings.with_overrides(model=ident)).dim  # noqa: B018 - loads or says why not
    lib.set_target(ident)
    return {"active": lib.model_id, "target": ident, "switch": progress(lib)}


def drop(lib: Library, name: str) -> dict[str, Any]:
    """Delete a model's collection (and its tags); the active model is refused, the target cancelled."""
    from photoman.vectors import drop_collections

    ident = model_identity(name)
    if ident == lib.model_id:
        raise BadInputError(
            f"{name} is the model this library searches with; switch first (`photoman models use OTHER`)"
        )
    cancelled = ident == lib.target_name
    if cancelled:
        lib.set_target(None)
    with lib.switch_lock:
        # the catalog first (DESIGN.md's order for removals): a kill between the two leaves a collection
        # that a second drop deletes, or a switch back refills with the catalog's (no) tags
        with lib.catalog.session() as s:
            had_tags = s.scalar(select(Tag.id).where(Tag.model_id == ident).limit(1)) is not None
            s.execute(delete(Tag).where(Tag.model_id == ident))
        gone = drop_collections(lib.settings, ident)
    if not gone and not cancelled and not had_tags:
        raise BadInputError(f"this library has no collection for {name}")
    return {"model": ident, "collections": gone, "cancelled_switch": cancelled}


def build(
    lib: Library, limit: int | None = None, progress: Progress | None = None, encode: Encode | None = None
) -> int:
    """Embed up to ``limit`` photos missing from the target's collection; how many it tried.

    A file that is gone, unreadable or changed since it was indexed is skipped: the indexer deals with
    it (a changed file is embedded into both collections once it is indexed again)."""
    from photoman.embedding.model import checkpoint_spec
    from photoman.indexing.pipeline import decode_stream
    from photoman.indexing.scanner import stat_photo

    target = lib.target
    if target is None:
        return 0
    with lib.switch_lock:
        check_space(lib.settings)
        todo = _todo(lib, target)
        total = len(_photos(lib))
        done = total - len(todo) - len(target.skipped)
        if target.done_at_start is None:
            target.started, target.done_at_start = time.monotonic(), done
        items = list(todo.items())[:limit]
        if not items:  # every image is in: then the captions it did not embed itself, a step at a time
            stale = _uncaptioned(lib, target)[: limit or None]
            _recaption(lib, target, stale)
            target.store.flush()
            return len(stale)
        files, want = [], {}
        for digest, (path, raw, _root) in items:
            st = stat_photo(path)
            if st is None or st.problem is not None:
                target.skipped.add(digest)
                continue
            files.append(replace(st, raw=raw))
            want[path] = digest
        spec = checkpoint_spec(target.model_id)
        stream = decode_stream(files, spec, frozenset(), lib.settings.decode_workers, ())
        batch: dict[str, np.ndarray] = {}
        try:
            for prep in stream:
                digest = want[prep.file.path]
                if prep.error is not None or prep.pixels is None or prep.content_hash != digest:
                    target.skipped.add(digest)
                else:
                    batch.setdefault(digest, prep.pixels)
                if len(batch) >= lib.settings.batch_size:
                    done += _write(lib, target, batch, encode)
                    batch = {}
                    if progress:
                        progress(done, total)
        finally:
            stream.close()
        done += _write(lib, target, batch, encode)
        target.store.flush()
        if progress:
            progress(done, total)
        return len(items)


def _write(lib: Library, target: Target, pixels: dict[str, np.ndarray], encode: Encode | None) -> int:
    """One batch into the target's collection, with the payload and caption vector the active has."""
    from photoman.catalog.payload import chosen_captions, payloads_for_hashes, tag_labels

    if not pixels:
        return 0
    hashes = list(pixels)
    target.captioned.update(hashes)  # before the captions are read: an edit committed after that undoes it
    encoder = target.models.encoder
    stack = np.stack([pixels[h] for h in hashes])
    vectors = encode(encoder, stack) if encode else encoder.encode_pixels(stack)
    with lib.catalog.session() as s:
        payloads = payloads_for_hashes(s, hashes, lib.model_id)
        tags = tag_labels(s, hashes, target.model_id)
        captions = chosen_captions(s, hashes, lib.model_id)
    keys = list(captions)
    texts: Any = encoder.encode_texts([captions[h] for h in keys]) if keys else []
    caption_vecs = dict(zip(keys, texts, strict=True))
    points = [
        VectorPoint(
            target.pid(h),
            {IMAGE: v, **({CAPTION: caption_vecs[h]} if h in caption_vecs else {})},
            # zero-shot tags are per model: the target's own (a switch back finds them), else none yet
            {**payloads[h], "tags": sorted(set(tags.get(h, [])))},
        )
        for h, v in zip(hashes, vectors, strict=True)
        if h in payloads  # removed while it was being decoded
    ]
    target.store.upsert(points)
    target.done_ids().update(p.id for p in points)
    return len(points)


def _recaption(lib: Library, target: Target, hashes: list[str]) -> None:
    """Caption vectors from the catalog's captions as they are now, with the target's text encoder."""
    from photoman.catalog.payload import chosen_captions

    for i in range(0, len(hashes), 256):
        chunk = hashes[i : i + 256]
        target.captioned.update(chunk)  # before the captions are read: an edit committed after that undoes it
        with lib.catalog.session() as s:
            captions = chosen_captions(s, chunk, lib.model_id)
        keys = list(captions)
        if keys:
            texts = target.models.encoder.encode_texts([captions[h] for h in keys])
            target.store.update_vectors(
                [VectorPoint(target.pid(h), {CAPTION: v}) for h, v in zip(keys, texts, strict=True)]
            )
        bare = [target.pid(h) for h in chunk if h not in captions]
        if bare := [p.id for p in target.store.retrieve(bare, with_vectors=True) if CAPTION in p.vectors]:
            target.store.delete_vectors(bare, [CAPTION])  # (only those that have one: no rewrite of the rest)


def _uncaptioned(lib: Library, target: Target) -> list[str]:
    """Photos in the target whose caption vector this process did not write from the catalog as it is."""
    done = target.done_ids()
    return [h for h in _photos(lib) if h not in target.captioned and target.pid(h) in done]


def complete(lib: Library, swap: Swap | None = None) -> bool:
    """Switch, if every photo has its vector in the target: True when the library now searches with it.

    Vectors first (photos removed or moved during the switch are brought up to date), then one commit
    that moves the photos and the library to the new model; ``swap`` runs that commit where no query
    is in flight (the daemon's query thread)."""
    from photoman.catalog.modelstate import State, load, save
    from photoman.catalog.payload import payloads_for_hashes, tag_labels

    target = lib.target
    if target is None:
        return False
    with lib.switch_lock:
        if _todo(lib, target):
            return False
        check_space(lib.settings)
        photos = list(_photos(lib))
        wanted = {target.pid(h) for h in photos}
        orphans = target.done_ids() - wanted
        if orphans:
            target.store.delete(sorted(orphans))
            target.done_ids().difference_update(orphans)
        present = [h for h in photos if target.pid(h) in target.done_ids()]
        for i in range(0, len(present), 500):  # photos moved, renamed or relocated during the switch
            with lib.catalog.session() as s:
                payloads = payloads_for_hashes(s, present[i : i + 500], lib.model_id)
                tags = tag_labels(s, present[i : i + 500], target.model_id)
            for h, payload in payloads.items():
                target.store.set_payload([target.pid(h)], {**payload, "tags": sorted(set(tags.get(h, [])))})
        _recaption(lib, target, [h for h in present if h not in target.captioned])  # (build did most)
        target.store.flush()
        target.store.optimize()
        skipped = sorted(target.skipped)

        def commit() -> None:
            # where no query (nor caption edit: the daemon's query thread) runs: edits since the captions
            # above were embedded, before the library searches with the new model
            if late := [h for h in present if h not in target.captioned]:
                _recaption(lib, target, late)
                target.store.flush()
            with lib.catalog.session() as s:
                moved = update(Photo).where(Photo.indexed_with(lib.model_id))
                if skipped:  # left with the old model: the indexer embeds them when it next sees them
                    moved = moved.where(Photo.content_hash.not_in(skipped))
                s.execute(moved.values(model_id=target.model_id))
                recorded = load(s)
                save(s, State(target.model_id, None, recorded.setting if recorded else None))
            lib.adopt(target)

        (swap or (lambda fn: fn()))(commit)
    return True


def run(lib: Library, progress: Progress | None = None) -> bool:
    """The whole switch in this process (no daemon): build everything, then switch."""
    while build(lib, progress=progress):
        pass
    return complete(lib)
