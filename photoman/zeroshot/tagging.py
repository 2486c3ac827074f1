"""Zero-shot tagging of the library: stored image vectors against ensembled label embeddings."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, select

from photoman.catalog.models import Photo, Tag
from photoman.catalog.payload import payloads_for_hashes
from photoman.catalog.pending import payload_writes
from photoman.errors import BadInputError
from photoman.library import Library
from photoman.vectors import IMAGE, point_id
from photoman.zeroshot.labels import (
    MAX_LABELS,
    Label,
    builtin_labels,
    choose_tags,
    label_vectors,
    load_labels,
    zero_shot_probs,
)

MIN_PROB = 0.1
TOP_K = 5


@dataclass
class TagReport:
    tagged: int = 0  # photos (unique contents) that got at least one tag
    considered: int = 0
    labels: int = 0


def label_set(files: list[Path] | None = None, builtin: bool = True) -> list[Label]:
    """The built-in vocabulary plus user label files (a user's threshold wins for a shared label)."""
    merged: dict[str, float | None] = dict(builtin_labels()) if builtin else {}
    own: set[str] = set()
    for f in files or []:
        for name, thr in load_labels(f):
            merged[name] = thr if thr is not None else merged.get(name)
            own.add(name)
    if len(own) > MAX_LABELS:  # several files, each under the limit, add up to a wait with no output too
        raise BadInputError(f"the label files hold {len(own)} labels together; photoman takes at most "
                            f"{MAX_LABELS}")  # fmt: skip
    return list(merged.items())


_OWED = "auto-tag-owed"  # in the data dir while auto-tagging is owed for work under way


def owe_auto_tag(lib: Library) -> bool:
    """Before work that auto-tagging must follow (an index run, a switch's commit): whether an earlier
    one was killed before its tagging (its photos were never tagged). Mark this one owed."""
    if not lib.settings.auto_tag:
        return False
    owed = lib.settings.data_dir / _OWED
    before = owed.exists()
    with contextlib.suppress(OSError):  # best effort (a full disk): the work itself says what is wrong
        owed.touch()
    return before


def auto_tag(lib: Library, hashes: list[str], everything: bool = False) -> None:
    """Tag what an index run just embedded (``everything``: every photo without tags yet, after a
    switch or a killed run), when the library's ``auto_tag`` setting asks for it (run by whoever ran
    the indexing: the indexer itself knows nothing of tags)."""
    if not lib.settings.auto_tag:
        return
    if everything:
        tag_library(lib, label_set())
    elif hashes:
        tag_library(lib, label_set(), hashes=hashes)
    (lib.settings.data_dir / _OWED).unlink(missing_ok=True)


def tag_library(
    lib: Library,
    labels: list[Label],
    retag: bool = False,
    min_prob: float = MIN_PROB,
    top_k: int = TOP_K,
    hashes: list[str] | None = None,
) -> TagReport:
    """Tag photos that have no zero-shot tags yet (all with ``retag``), reusing their stored vectors."""
    report = TagReport(labels=len(labels))
    names = [n for n, _ in labels]
    vecs = label_vectors(lib.encoder, names, lib.settings.data_dir / "zeroshot")
    with lib.catalog.session() as s:
        q = select(Photo.content_hash).where(Photo.indexed_with(lib.model_id)).distinct()
        todo = {h for h in s.scalars(q) if h is not None} if hashes is None else set(hashes)
        if not retag:
            done = set(
                s.scalars(
                    select(Tag.content_hash).where(Tag.model_id == lib.model_id, Tag.source == "zeroshot")
                )
            )
            todo -= done
    todo_list = sorted(todo)
    report.considered = len(todo_list)
    with payload_writes(lib) as marks:  # a crash midway: the next writer mends the payloads
        _tag_chunks(lib, todo_list, labels, vecs, min_prob, top_k, report, marks)
    return report


def _tag_chunks(lib: Library, todo_list: list[str], labels: list[Label], vecs: np.ndarray, min_prob: float,
                top_k: int, report: TagReport, marks: Any) -> None:  # fmt: skip
    for i in range(0, len(todo_list), 256):
        chunk = todo_list[i : i + 256]
        ids = {point_id(h, lib.model_id): h for h in chunk}
        stored = {ids[p.id]: p.vectors.get(IMAGE) for p in lib.store.retrieve(list(ids), with_vectors=True)}
        present = [h for h in chunk if stored.get(h) is not None]
        if not present:
            continue
        probs = zero_shot_probs(np.stack([np.asarray(stored[h]) for h in present]), vecs, lib.encoder)
        picks = choose_tags(probs, labels, min_prob, top_k)
        marks.add(present)
        with lib.catalog.session() as s:
            s.execute(
                delete(Tag).where(
                    Tag.content_hash.in_(present), Tag.model_id == lib.model_id, Tag.source == "zeroshot"
                )
            )
            for h, tags in zip(present, picks, strict=True):
                s.add_all(
                    Tag(content_hash=h, model_id=lib.model_id, label=n, score=p, source="zeroshot")
                    for n, p in tags
                )
                report.tagged += bool(tags)
            s.flush()
            payloads = payloads_for_hashes(s, present, lib.model_id)
            # tags are mirrored into the payload so `find --tag` filters inside Qdrant
            for h in present:
                if h in payloads:
                    lib.store.set_payload([point_id(h, lib.model_id)], {"tags": payloads[h]["tags"]})
    lib.store.flush()


def classify(lib_or_encoder, image, labels: list[str]) -> list[tuple[str, float]]:  # noqa: ANN001
    """Probabilities of one image over the given labels (CLIP: softmax over them; SigLIP: a sigmoid for
    each), best first."""
    encoder = getattr(lib_or_encoder, "encoder", lib_or_encoder)
    vecs = label_vectors(encoder, labels, None)
    img = encoder.encode_images([image])
    probs = zero_shot_probs(img, vecs, encoder)[0]
    return sorted(zip(labels, (float(p) for p in probs), strict=True), key=lambda x: -x[1])
