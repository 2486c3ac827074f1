"""CLIP's resize + centre crop on PIL images, torch-free so it runs in decode worker processes.

Mirrors transformers' CLIP image processor (shortest edge to ``size`` with bicubic resampling,
then centre crop) and returns uint8 pixels; the float normalisation happens on the model side,
in one vectorised step per batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class PreprocessSpec:
    """The numbers a CLIP checkpoint's processor config fixes."""

    size: int = 224  # shortest edge after resize
    crop: int = 224
    resample: int = Image.Resampling.BICUBIC
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)


def resize_crop(img: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """uint8 array (crop, crop, 3) exactly as the CLIP processor would crop it."""
    w, h = img.size
    if w <= h:
        new_w, new_h = spec.size, int(spec.size * h / w)
    else:
        new_w, new_h = int(spec.size * w / h), spec.size
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), resample=spec.resample)
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    c = spec.crop
    if new_h < c or new_w < c:  # tiny images: pad like the processor's centre crop does
        padded = np.zeros((max(c, new_h), max(c, new_w), 3), dtype=np.uint8)
        top, left = (padded.shape[0] - new_h) // 2, (padded.shape[1] - new_w) // 2
        padded[top : top + new_h, left : left + new_w] = arr
        arr, new_h, new_w = padded, padded.shape[0], padded.shape[1]
    top, left = (new_h - c) // 2, (new_w - c) // 2
    return np.ascontiguousarray(arr[top : top + c, left : left + c])
