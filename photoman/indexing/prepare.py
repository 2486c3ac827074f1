"""The per-file work done in decode worker processes: read, hash, read EXIF, decode, resize and crop."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from photoman.embedding.preprocess import PreprocessSpec, resize_crop
from photoman.errors import DecodeError
from photoman.indexing.scanner import FileStat
from photoman.media.captions import read_embedded, read_sidecar
from photoman.media.decode import decode_rgb, open_image
from photoman.media.exif import PhotoMeta, read_meta
from photoman.media.hashing import content_hash

_SPEC = PreprocessSpec()
_KNOWN: frozenset[str] = frozenset()
_CAPTIONS: tuple[str, ...] = ("sidecar", "embedded")


@dataclass
class Prepared:
    """A file's result: always its stat, then either an error or hash + metadata (+ pixels to embed)."""

    file: FileStat
    content_hash: str | None = None
    meta: PhotoMeta | None = None
    pixels: np.ndarray | None = None  # uint8 (crop, crop, 3); None when the hash already has a vector
    error: str | None = None
    caption: str | None = None
    caption_source: str | None = None  # sidecar | embedded


def init_worker(spec: PreprocessSpec, known_hashes: frozenset[str], captions: tuple[str, ...]) -> None:
    """Pool initializer: preprocessing numbers, hashes that need no embedding, caption sources in order."""
    global _SPEC, _KNOWN, _CAPTIONS
    _SPEC, _KNOWN, _CAPTIONS = spec, known_hashes, captions
    import signal
    import warnings

    # Ctrl-C reaches the whole process group: the parent reports it once; a worker just stops
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Pillow's "Corrupt EXIF data" and similar: the reason goes to the catalog, not the terminal
    warnings.simplefilter("ignore")


def prepare(
    file: FileStat,
    spec: PreprocessSpec | None = None,
    known: frozenset[str] | None = None,
    captions: tuple[str, ...] | None = None,
) -> Prepared:
    """Never raises for a bad file: the error text is returned so one bad photo never stops a run."""
    spec = spec or _SPEC
    known = _KNOWN if known is None else known
    captions = _CAPTIONS if captions is None else captions
    try:
        with open(file.path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        return Prepared(file, error=f"cannot read: {exc.strerror or exc}")
    digest = content_hash(data)
    try:
        with warnings.catch_warnings():  # Pillow's "Corrupt EXIF data" and the like: not for the terminal
            warnings.simplefilter("ignore")
            img = open_image(data, "file")
            meta = read_meta(img)
            pixels = None
            if digest not in known:
                pixels = resize_crop(decode_rgb(img, min_side=spec.size, name="file"), spec)
    except DecodeError as exc:
        return Prepared(file, content_hash=digest, error=str(exc).removeprefix("file: "))
    except Exception as exc:  # noqa: BLE001 - any decoder failure is the file's problem, not the run's
        return Prepared(
            file, content_hash=digest, error=f"cannot decode image ({exc.__class__.__name__}: {exc})"
        )
    prep = Prepared(file, digest, meta, pixels)
    for source in captions:
        try:
            text = (
                read_sidecar(file.path)
                if source == "sidecar"
                else read_embedded(img)
                if source == "embedded"
                else None
            )
        except Exception:  # noqa: BLE001 - a bad caption field never costs the photo
            text = None
        if text:
            prep.caption, prep.caption_source = text, source
            break
    return prep
