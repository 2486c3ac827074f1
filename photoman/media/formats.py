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

# camera RAW files, read through LibRaw (rawpy; media/raw.py). ".raw" is left out on purpose: the name
# is as often a disk image or sensor dump as a Leica/Panasonic photo.
RAW_EXTENSIONS = frozenset(
    [
        ".3fr",  # Hasselblad
        ".arw", ".srf", ".sr2",  # Sony
        ".cr2", ".cr3", ".crw",  # Canon
        ".dcr", ".kdc",  # Kodak
        ".dng",  # Adobe DNG: Leica, Pentax, Ricoh, phones, converters
        ".erf",  # Epson
        ".fff",  # Imacon / Hasselblad
        ".gpr",  # GoPro
        ".iiq",  # Phase One
        ".mef",  # Mamiya
        ".mos",  # Leaf
        ".mrw",  # Minolta
        ".nef", ".nrw",  # Nikon
        ".orf",  # Olympus / OM System
        ".pef",  # Pentax
        ".raf",  # Fujifilm
        ".rw2", ".rwl",  # Panasonic, Leica
        ".srw",  # Samsung
        ".x3f",  # Sigma
    ]
)  # fmt: skip

# what a camera writes next to a RAW of the same shot (IMG_0001.CR2 + IMG_0001.JPG): the pair is one
# photo, embedded from this file (indexing/pairs.py); earlier in the list wins when there are several
PAIRED_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".heic", ".heif")

PHOTO_EXTENSIONS = IMAGE_EXTENSIONS | RAW_EXTENSIONS


def extension(path: os.PathLike[str] | str) -> str:
    """The lower-case extension, dot included ("" when there is none)."""
    return os.path.splitext(os.fspath(path))[1].lower()


def is_image_path(path: os.PathLike[str] | str) -> bool:
    """Whether a file name looks like a photo photoman can decode (RAW files included)."""
    return extension(path) in PHOTO_EXTENSIONS


def is_raw_path(path: os.PathLike[str] | str) -> bool:
    """Whether a file name is a camera RAW file (decoded by LibRaw, not Pillow)."""
    return extension(path) in RAW_EXTENSIONS
