"""The checkpoint's resize (and crop) on PIL images, torch-free so it runs in decode worker processes.

Mirrors transformers' image processors: CLIP's resizes the shortest edge to ``size`` and centre-crops;
SigLIP's (``square``) resizes the whole image to ``crop`` × ``crop``, aspect ratio not kept, no crop.
The resampling filter and normalisation numbers come from the checkpoint's processor config. It
returns uint8 pixels; the float normalisation happens on the model side, in one vectorised step per
batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class PreprocessSpec:
    """The numbers a checkpoint's processor config fixes."""

    size: int = 224  # CLIP: shortest edge after resize; always the decoders' minimum shorter side
    crop: int = 224  # the side of the square the model sees
    resample: int = Image.Resampling.BICUBIC
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    square: bool = False  # SigLIP: resize straight to crop × crop (no aspect ratio kept, no crop)


def resize_crop(img: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """uint8 array (crop, crop, 3) exactly as the checkpoint's processor would resize (and crop) it."""
    w, h = img.size
    if spec.square:
        if (w, h) != (spec.crop, spec.crop):
            img = img.resize((spec.crop, spec.crop), resample=spec.resample)
        return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))
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
