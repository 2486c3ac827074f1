"""Label sets and prompts: a label's embedding is the mean of its prompts' embeddings.

CLIP takes an ensemble of eight prompts and a softmax over the labels; SigLIP its own single prompt
("This is a photo of {}.") and an independent sigmoid per label with its learned scale and bias,
which is how each family was trained to score (see :mod:`photoman.embedding.family`).
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

import numpy as np

from photoman.embedding.family import CLIP_TEMPLATES
from photoman.errors import BadInputError

MAX_LABELS = 5000  # in one label file: its texts are encoded before any photo is tagged
TEMPLATES = CLIP_TEMPLATES  # CLIP's ensemble (a SigLIP encoder brings its own: encoder.templates)

Label = tuple[str, float | None]  # name, its own probability threshold (None: the default)


def parse_labels(text: str, where: str = "labels") -> list[Label]:
    """One label per line, optional TAB threshold; '#' comments; duplicates kept once."""
    out: dict[str, float | None] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, thr = line.partition("\t")
        name = " ".join(name.split()).lower()
        threshold = None
        if thr.strip():
            try:
                threshold = float(thr)
            except ValueError:
                raise BadInputError(f"{where}:{n}: threshold {thr.strip()!r} is not a number") from None
            if not 0 < threshold <= 1:
                raise BadInputError(f"{where}:{n}: threshold must be in (0, 1]")
        out.setdefault(name, threshold)
    return list(out.items())


def builtin_labels() -> list[Label]:
    """The built-in general vocabulary (about 330 everyday photo concepts)."""
    return parse_labels(
        resources.files("photoman.zeroshot").joinpath("vocabulary.txt").read_text(), "vocabulary"
    )


def load_labels(path: Path | str) -> list[Label]:
    from photoman.userfiles import read_text

    labels = parse_labels(read_text(path, "label file"), str(path))
    if len(labels) > MAX_LABELS:
        raise BadInputError(f"label file {path} has {len(labels)} labels; photoman takes at most "
                            f"{MAX_LABELS} (each is {len(TEMPLATES)} text encodings)")  # fmt: skip
    if not labels:
        raise BadInputError(f"label file {path} has no labels")
    return labels


def ensemble(prompt_vectors: np.ndarray, n_labels: int) -> np.ndarray:
    """(labels × templates, dim) unit vectors → (labels, dim): mean over templates, re-normalised."""
    v = prompt_vectors.reshape(n_labels, len(prompt_vectors) // n_labels, -1).mean(axis=1)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def templates_of(encoder) -> tuple[str, ...]:  # noqa: ANN001
    """The zero-shot prompt(s) of the encoder's model family (CLIP's ensemble by default)."""
    return tuple(getattr(encoder, "templates", None) or TEMPLATES)


def label_vectors(encoder, names: list[str], cache_dir: Path | None) -> np.ndarray:  # noqa: ANN001
    """Ensembled text embeddings for labels, cached on disk per model, prompts and label set."""
    templates = templates_of(encoder)
    key = hashlib.sha1("\n".join([encoder.model_id, *templates, *names]).encode()).hexdigest()[:16]
    cache = cache_dir / f"labels-{key}.npy" if cache_dir else None
    if cache is not None and cache.exists():
        vecs = np.load(cache)
        if vecs.shape == (len(names), encoder.dim):
            return vecs
    prompts = [t.format(n) for n in names for t in templates]
    vecs = np.concatenate([encoder.encode_texts(prompts[i : i + 256]) for i in range(0, len(prompts), 256)])
    out = ensemble(vecs, len(names)).astype(np.float32)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, out)
    return out


def zero_shot_probs(image_vecs: np.ndarray, label_vecs: np.ndarray, encoder) -> np.ndarray:  # noqa: ANN001
    """Label probabilities the way the encoder's model family scores them (rows: images).

    CLIP: a softmax over the labels (rows sum to 1). SigLIP: sigmoid(scale × cosine + bias) for each
    label on its own, as ``SiglipModel`` computes ``logits_per_image``; rows need not sum to 1.
    """
    family = getattr(encoder, "family", None)
    if family is not None and family.sigmoid:
        return sigmoid_probs(image_vecs, label_vecs, encoder.logit_scale, encoder.logit_bias)
    return softmax_probs(image_vecs, label_vecs, encoder.logit_scale)


def sigmoid_probs(
    image_vecs: np.ndarray, label_vecs: np.ndarray, logit_scale: float, logit_bias: float
) -> np.ndarray:
    """SigLIP's zero-shot probabilities: an independent sigmoid of logit_scale × cosine + logit_bias."""
    logits = logit_scale * (np.atleast_2d(image_vecs) @ label_vecs.T) + logit_bias
    return 1.0 / (1.0 + np.exp(-logits))


def softmax_probs(image_vecs: np.ndarray, label_vecs: np.ndarray, logit_scale: float) -> np.ndarray:
    """CLIP's zero-shot probabilities: softmax over labels of logit_scale × cosine."""
    logits = logit_scale * (np.atleast_2d(image_vecs) @ label_vecs.T)
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def choose_tags(
    probs: np.ndarray, labels: list[Label], min_prob: float, top_k: int
) -> list[list[tuple[str, float]]]:
    """Per photo: labels whose probability reaches their threshold, best first, at most top_k."""
    out = []
    for row in np.atleast_2d(probs):
        picked = []
        for i in np.argsort(-row)[:top_k]:
            name, own = labels[i]
            if row[i] >= (own if own is not None else min_prob):
                picked.append((name, float(row[i])))
        out.append(picked)
    return out
