"""Which file names are photos: a list of extensions, importable without Pillow (the thin client uses it)."""

from __future__ import annotations

import os

IMAGE_EXTENSIONS = frozenset(
    [
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".webp",
        ".gif",
        ".bmp",
        ".tif",
        ".tiff",
        ".heic",
        ".heif",
        ".avif",
        ".mpo",
    ]
)


def is_image_path(path: os.PathLike[str] | str) -> bool:
    """Whether a file name looks like a photo photoman can decode."""
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS
