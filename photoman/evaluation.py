"""`photoman eval`: which model serves *your* photos best, measured on a labelled set of them.

A set is a folder whose sub-folders name what their photos show (``cats/``, ``beach/``…), or a TSV
file of ``path<TAB>caption`` lines (paths relative to the file). For each model it reports
text→image recall@1/5/10 — for every query (a caption, or "a photo of a {label}"), the share of its
photos found in the first k, out of at most k — and, for folder sets, zero-shot accuracy (each photo
classified among all the labels with prompt ensembles, as `photoman classify` does).
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from photoman.errors import BadInputError
from photoman.media.formats import is_image_path

KS = (1, 5, 10)


@dataclass
class EvalSet:
    images: list[Path]
    queries: list[str]
    relevant: list[set[int]]  # per query: indexes into images
    labels: list[int] | None  # per image: its label's query index (folder sets), else None
    kind: str  # folders | captions


def load_set(source: Path) -> EvalSet:
    """A labelled set from a folder of labelled sub-folders or a `path<TAB>caption` TSV file."""
    if source.is_dir():
        return _folders(source)
    if source.is_file():
        return _captions(source)
    raise BadInputError(f"no such folder or TSV file: {source}")


def _folders(root: Path) -> EvalSet:
    images: list[Path] = []
    queries: list[str] = []
    relevant: list[set[int]] = []
    labels: list[int] = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in sub.rglob("*") if f.is_file() and is_image_path(f))
        if not files:
            continue
        q = len(queries)
        queries.append(" ".join(sub.name.replace("_", " ").replace("-", " ").split()))
        relevant.append(set(range(len(images), len(images) + len(files))))
        images += files
        labels += [q] * len(files)
    if len(queries) < 2:
        raise BadInputError(f"{root}: needs at least two sub-folders of photos (one per label)")
    return EvalSet(images, queries, relevant, labels, "folders")


def _captions(tsv: Path) -> EvalSet:
    images: list[Path] = []
    queries: list[str] = []
    relevant: list[set[int]] = []
    index: dict[Path, int] = {}
    import io

    from photoman.userfiles import read_text

    with io.StringIO(read_text(tsv, "caption table"), newline="") as fh:
        for n, row in enumerate(csv.reader(fh, delimiter="\t"), 1):
            if not row or row[0].startswith("#"):
                continue
            if len(row) < 2 or not row[1].strip():
                raise BadInputError(f"{tsv}:{n}: expected path<TAB>caption")
            path = (tsv.parent / row[0]).resolve()
            if not path.is_file():
                raise BadInputError(f"{tsv}:{n}: no such image {row[0]}")
            i = index.setdefault(path, len(images))
            if i == len(images):
                images.append(path)
            queries.append(row[1].strip())
            relevant.append({i})
    if len(images) < 2:
        raise BadInputError(f"{tsv}: needs at least two captioned images")
    return EvalSet(images, queries, relevant, None, "captions")


def recall_at(ranking: np.ndarray, relevant: list[set[int]], k: int) -> float:
    """Mean over queries of |relevant ∩ top k| / min(k, |relevant|)."""
    scores = [
        len(rel & set(row[:k].tolist())) / min(k, len(rel))
        for row, rel in zip(ranking, relevant, strict=True)
    ]
    return float(np.mean(scores))


def evaluate(models: Any, data: EvalSet) -> dict[str, Any]:
    """The figures for one model (``models``: a :class:`photoman.library.Models`)."""
    from photoman.errors import DecodeError
    from photoman.media.decode import load_image
    from photoman.zeroshot.labels import label_vectors, zero_shot_probs

    started = time.perf_counter()
    encoder = models.encoder
    vecs_of: dict[int, np.ndarray] = {}
    skipped: list[dict[str, str]] = []  # an unreadable image costs its own place in the set, not the run
    for i, p in enumerate(data.images):
        try:
            vecs_of[i] = encoder.encode_images([load_image(p, min_side=encoder.spec.size)])[0]
        except DecodeError as exc:
            skipped.append({"path": str(p), "error": str(exc)})
    if skipped:
        data = _without(data, set(vecs_of))
        if not data.images or not data.queries:
            raise DecodeError(f"no readable image left to evaluate ({skipped[0]['error']})")
    image_vecs = np.stack([vecs_of[i] for i in sorted(vecs_of)])
    prompts = [f"a photo of a {q}" if data.kind == "folders" else q for q in data.queries]
    text_vecs = models.text_encoder.encode_texts(prompts)
    ranking = np.argsort(-(text_vecs @ image_vecs.T), axis=1, kind="stable")
    out: dict[str, Any] = {
        "model": models.model_id,
        "images": len(data.images),
        "queries": len(data.queries),
        **{f"recall@{k}": round(recall_at(ranking, data.relevant, k), 4) for k in KS},
        "zero_shot_accuracy": None,
    }
    if data.labels is not None:
        vecs = label_vectors(encoder, data.queries, None)
        predicted = zero_shot_probs(image_vecs, vecs, encoder).argmax(axis=1)
        out["zero_shot_accuracy"] = round(float(np.mean(predicted == np.array(data.labels))), 4)
    out["skipped"] = skipped
    out["seconds"] = round(time.perf_counter() - started, 2)
    return out


def _without(data: EvalSet, kept: set[int]) -> EvalSet:
    """The set with only the images at ``kept`` (renumbered), and the queries that still have one."""
    new = {old: n for n, old in enumerate(sorted(kept))}
    relevant = [{new[i] for i in rel if i in new} for rel in data.relevant]
    keep_q = [q for q, rel in enumerate(relevant) if rel]
    labels = None
    if data.labels is not None:  # folder sets: a kept image's label is a kept query (it is relevant to it)
        renumber = {q: n for n, q in enumerate(keep_q)}
        labels = [renumber[data.labels[old]] for old in sorted(kept)]
    return EvalSet(
        images=[data.images[old] for old in sorted(kept)],
        queries=[data.queries[q] for q in keep_q],
        relevant=[relevant[q] for q in keep_q],
        labels=labels,
        kind=data.kind,
    )
