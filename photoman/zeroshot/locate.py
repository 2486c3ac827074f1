"""Zero-shot localisation: score sliding windows against a text prompt, overlay the scores as a heat map."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

SCALES = (0.35, 0.55, 0.8)  # window side as a fraction of the image's shorter side
OVERLAP = 0.5
MAX_SIDE = 1024  # windows are cut from a copy this big at most: bounded work for any photo size
BATCH = 32


@dataclass
class LocateResult:
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1): the best-scoring window, in the original's pixels
    score: float
    heat: np.ndarray  # (h, w) in [0, 1], at the working size
    windows: int
    seconds: float
    scores: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"box": list(self.box), "score": round(self.score, 6), "windows": self.windows,
                "seconds": round(self.seconds, 3)}  # fmt: skip


def _positions(length: int, size: int, step: int) -> list[int]:
    last = max(0, length - size)
    out = list(range(0, last + 1, step))
    if out[-1] != last:
        out.append(last)  # cover the far edge too
    return out


def windows(
    width: int, height: int, scales: tuple[float, ...] = SCALES, overlap: float = OVERLAP
) -> list[tuple[int, int, int, int]]:
    """Square windows (x0, y0, x1, y1) at each scale, overlapping by ``overlap``, covering the whole image."""
    short = min(width, height)
    out: list[tuple[int, int, int, int]] = []
    for s in scales:
        size = max(16, int(round(short * s)))
        step = max(1, int(round(size * (1 - overlap))))
        for y in _positions(height, size, step):
            for x in _positions(width, size, step):
                out.append((x, y, min(width, x + size), min(height, y + size)))
    return out


def locate(encoder, image: Image.Image, text_vector: np.ndarray) -> LocateResult:  # noqa: ANN001
    """Score every window's image embedding against the text embedding; averaged per pixel into a heat map."""
    started = time.perf_counter()
    ratio = min(1.0, MAX_SIDE / max(image.size))
    work = image if ratio >= 1 else image.resize((round(image.width * ratio), round(image.height * ratio)),
                                                 Image.Resampling.BILINEAR)  # fmt: skip
    wins = windows(work.width, work.height)
    scores = np.concatenate(
        [
            encoder.encode_images([work.crop(w) for w in wins[i : i + BATCH]]) @ text_vector
            for i in range(0, len(wins), BATCH)
        ]
    )
    heat = np.zeros((work.height, work.width), dtype=np.float64)
    count = np.zeros_like(heat)
    for (x0, y0, x1, y1), s in zip(wins, scores, strict=True):
        heat[y0:y1, x0:x1] += s
        count[y0:y1, x0:x1] += 1
    heat = heat / np.maximum(count, 1)
    lo, hi = heat.min(), heat.max()
    heat = (heat - lo) / (hi - lo) if hi > lo else np.zeros_like(heat)
    best = int(np.argmax(scores))
    x0, y0, x1, y1 = wins[best]
    box = tuple(int(round(v / ratio)) for v in (x0, y0, x1, y1))
    box = (box[0], box[1], min(box[2], image.width), min(box[3], image.height))
    return LocateResult(box, float(scores[best]), heat.astype(np.float32), len(wins),
                        time.perf_counter() - started, [float(s) for s in scores])  # fmt: skip


def overlay(image: Image.Image, heat: np.ndarray, box: tuple[int, int, int, int] | None = None,
            alpha: float = 0.55) -> Image.Image:  # fmt: skip
    """The photo with the heat map blended over it (cold = transparent, hot = red/yellow) and the best box."""
    from PIL import ImageDraw

    h = Image.fromarray((np.clip(heat, 0, 1) * 255).astype(np.uint8)).resize(
        image.size, Image.Resampling.BILINEAR
    )
    v = np.asarray(h, dtype=np.float32) / 255.0
    colour = np.stack([np.full_like(v, 255), 255 * v, np.zeros_like(v)], axis=-1)  # red → yellow
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    a = (alpha * v)[..., None]
    out = Image.fromarray((base * (1 - a) + colour * a).clip(0, 255).astype(np.uint8))
    if box is not None:
        ImageDraw.Draw(out).rectangle(box, outline=(0, 255, 255), width=max(2, min(image.size) // 200))
    return out


def heatmap_png(encoder, cache: Path, path: str, content_hash: str, text: str) -> tuple[str, LocateResult]:  # noqa: ANN001
    """Locate ``text`` in the photo and save the overlay (for the TUI's preview) into the cache."""
    import hashlib

    from photoman.media.decode import load_image

    image = load_image(path, min_side=512)
    result = locate(encoder, image, encoder.encode_texts([text])[0])
    key = hashlib.sha1(f"{content_hash}\n{text}".encode()).hexdigest()[:16]
    dest = cache / "heat" / f"{key}.png"
    dest.parent.mkdir(parents=True, exist_ok=True)
    overlay(image, result.heat, result.box).save(dest)
    return str(dest), result
