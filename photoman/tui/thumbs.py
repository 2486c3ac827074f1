"""Thumbnail cache in the data dir: one WebP per content hash and size, made once, read many times."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from PIL import Image

from photoman.media.decode import load_image


def thumbnail(cache: Path, source: str, content_hash: str, size: int = 256) -> Path:
    """Path of a cached thumbnail, making it (atomically) on first use; DecodeError if unreadable."""
    dest = cache / str(size) / content_hash[:2] / f"{content_hash}.webp"
    if dest.exists():
        return dest
    img = load_image(source, min_side=size)
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".tmp")
    os.close(fd)
    try:
        img.save(tmp, "WEBP", quality=80, method=4)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest
