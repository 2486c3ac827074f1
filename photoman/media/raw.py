"""Camera RAW files through LibRaw (rawpy): the camera's own embedded JPEG preview when it is large
enough (fast, and the camera's rendering, which is what the photographer saw), else a half-size
demosaic; metadata from the RAW's own TIFF tags, else the preview's EXIF, else what LibRaw reads.

Held to the bounds of :mod:`photoman.media.decode` like any photo: the file's size is checked before
it is read (by the caller's :func:`~photoman.media.decode.open_regular`), the sensor's shape and pixel
count before LibRaw unpacks anything, and the preview's through Pillow's own checks.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import ExifTags, Image

from photoman.errors import DecodeError
from photoman.media.decode import check_pixels, check_shape, decode_rgb, open_image, open_regular
from photoman.media.exif import PhotoMeta, meta_from_exif
from photoman.media.formats import extension

# A preview at least this big on its shorter side is used as it is (CLIP's input is 224 px; a model
# with a larger input raises it to its own size); a smaller one would be upscaled: demosaic instead.
MIN_PREVIEW_SIDE = 224

# LibRaw's flip (how the sensor's image is turned to stand upright) as the EXIF orientation value
_FLIP_TO_ORIENTATION = {0: 1, 3: 3, 5: 8, 6: 6}
_TRANSPOSE = {3: Image.Transpose.ROTATE_180, 5: Image.Transpose.ROTATE_90, 6: Image.Transpose.ROTATE_270}
# TIFF-structured RAW files (CR2, NEF, ARW, DNG, PEF...) start with a TIFF header; Olympus ORF and
# Panasonic RW2 are TIFF too behind their own magic number, read as little-endian TIFF
_TIFF_HEADS = (b"II*\x00", b"MM\x00*")
_TIFF_LIKE_HEADS = (b"IIRO", b"IIRS", b"IIU\x00")


@dataclass
class RawPhoto:
    """What a RAW file gave: its metadata, and (when asked for) the upright RGB image to embed."""

    meta: PhotoMeta
    image: Image.Image | None = None
    source: str | None = None  # preview | demosaic: where the image came from


_QUIET = threading.Lock()  # fd 2 is the process's: one RAW file at a time per process is read quietly


@contextlib.contextmanager
def _libraw_quiet() -> Iterator[None]:
    """LibRaw prints its data errors ("unknown file: Unexpected end of file") on the process's stderr,
    which is the terminal during `photoman index`; the reason reaches the catalog as the exception.
    (Decode workers read one file at a time; in the TUI or the daemon, threads take turns.)"""
    with _QUIET:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):
            yield
            return
        try:
            with open(os.devnull, "wb") as null:
                os.dup2(null.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _message(exc: BaseException) -> str:
    text = exc.args[0] if exc.args else exc
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{exc.__class__.__name__}: {text}"


def _open(data: bytes, name: str) -> Any:
    """LibRaw opened on the bytes (headers parsed, nothing unpacked); errors become DecodeError."""
    import rawpy

    if not data:
        raise DecodeError(f"{name}: empty file")
    raw = rawpy.RawPy()
    try:
        raw.open_buffer(io.BytesIO(data))  # read() of a whole BytesIO hands back ``data`` itself: no copy
    except rawpy.LibRawError as exc:
        raw.close()
        raise DecodeError(f"{name}: not a readable RAW file ({_message(exc)})") from None
    return raw


def _check_bounds(raw: Any, name: str) -> tuple[int, int]:
    """The image's size (sensor orientation), after the decode bounds: checked before LibRaw unpacks."""
    sizes = raw.sizes
    w, h = int(sizes.width), int(sizes.height)
    check_shape(w, h, name)
    check_pixels(max(w * h, int(sizes.raw_width) * int(sizes.raw_height)), w, h, name)
    return w, h


def tiff_exif(data: bytes) -> Image.Exif | None:
    """The RAW file's own EXIF when it is TIFF-structured (IFD0 with its EXIF and GPS sub-IFDs);
    None for CR3, RAF, MRW, CRW, X3F and anything unreadable."""
    head = data[:4]
    if head in _TIFF_LIKE_HEADS:
        data = b"II*\x00" + data[4:]
    elif head not in _TIFF_HEADS:
        return None
    exif = Image.Exif()
    try:
        exif.load(data)
    except Exception:  # noqa: BLE001 - a malformed header costs the metadata, never the photo
        return None
    return exif


def _preview(raw: Any) -> bytes | np.ndarray | None:
    """The embedded preview LibRaw finds (its largest): JPEG bytes, an RGB bitmap, or None."""
    import rawpy

    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawError, MemoryError):
        return None
    if thumb.format == rawpy.ThumbFormat.JPEG:
        return bytes(thumb.data)
    if thumb.format == rawpy.ThumbFormat.BITMAP and getattr(thumb.data, "ndim", 0) == 3:
        return thumb.data
    return None


def _preview_image(preview: bytes | np.ndarray | None, name: str) -> Image.Image | None:
    """The preview opened (not decoded), or None when there is none or it does not open."""
    if preview is None:
        return None
    if isinstance(preview, np.ndarray):
        h, w = preview.shape[:2]
        check_pixels(w * h, w, h, name)
        return Image.fromarray(preview.astype(np.uint8)).convert("RGB")
    try:
        return open_image(preview, f"{name} (preview)")
    except DecodeError:
        return None


def _fill(meta: PhotoMeta, other: PhotoMeta) -> None:
    """Fields ``meta`` lacks, taken from ``other``."""
    meta.camera_make = meta.camera_make or other.camera_make
    meta.camera_model = meta.camera_model or other.camera_model
    meta.taken_at = meta.taken_at or other.taken_at
    if meta.gps_lat is None and other.gps_lat is not None:
        meta.gps_lat, meta.gps_lon = other.gps_lat, other.gps_lon


def _libraw_time(raw: Any) -> datetime | None:
    """The date LibRaw read from the maker's own tags (CR3's and the like), if it found one."""
    try:
        stamp = raw.other.timestamp
    except (AttributeError, ValueError, OverflowError, OSError):
        return None
    return stamp if isinstance(stamp, datetime) else None


def _known(when: datetime | None) -> datetime | None:
    """LibRaw's "no date" is time 0 (1970-01-01, local time), also written into the EXIF block it puts
    on a preview that has none of its own: unknown, not a date."""
    return None if when is None or when == datetime.fromtimestamp(0) else when


def _meta(data: bytes, raw: Any, w: int, h: int, fmt: str, preview: Image.Image | None) -> PhotoMeta:
    """Date, camera and GPS from the RAW's TIFF tags, then the preview's EXIF, then LibRaw; the size
    and orientation always from LibRaw (it knows each maker's own orientation tags).

    A preview whose JPEG does not start with an EXIF block (a CR2's, a CR3's) comes out of LibRaw with
    one LibRaw writes (Software "dcraw") from what it parsed: its make, model and date are used (the
    camera of a CR3), its GPS is not (written with garbled N/S and E/W references)."""
    meta = meta_from_exif(tiff_exif(data), w, h, fmt)
    if preview is not None and (meta.taken_at is None or meta.camera_model is None or meta.gps_lat is None):
        with contextlib.suppress(Exception):  # a preview's broken EXIF costs nothing
            exif = preview.getexif()
            found = meta_from_exif(exif, w, h, fmt)
            if str(exif.get(ExifTags.Base.Software, "")).startswith("dcraw"):
                found.gps_lat = found.gps_lon = None  # LibRaw's own block: its GPS references are garbled
            _fill(meta, found)
    meta.taken_at = _known(meta.taken_at) or _known(_libraw_time(raw))
    meta.orientation = _FLIP_TO_ORIENTATION.get(int(raw.sizes.flip), 1)
    meta.width, meta.height = (h, w) if meta.orientation >= 5 else (w, h)
    return meta


def _upright_preview(preview: Image.Image, flip: int, min_side: int | None, name: str) -> Image.Image:
    """The preview decoded and stood upright: by its own EXIF orientation when it has one (a Fujifilm
    preview is a whole camera JPEG), else by the RAW's (a CR2's or DNG's preview has none)."""
    try:
        own = preview.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # noqa: BLE001
        own = 1
    image = decode_rgb(preview, min_side=min_side, name=name)
    if own in (None, 1) and flip in _TRANSPOSE:
        image = image.transpose(_TRANSPOSE[flip])
    return image


def _demosaic(raw: Any, name: str) -> Image.Image:
    """A half-size demosaic (each 2x2 Bayer cell becomes a pixel: 4x fewer pixels, no interpolation),
    the camera's white balance, 8 bits, turned upright by LibRaw."""
    import rawpy

    try:
        rgb = raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8)
    except rawpy.LibRawError as exc:
        raise DecodeError(f"{name}: cannot decode RAW data ({_message(exc)})") from None
    return Image.fromarray(np.ascontiguousarray(rgb[..., :3]), "RGB")


def raw_format(path: os.PathLike[str] | str) -> str:
    """The format the catalog records for a RAW file: its extension ("CR2", "NEF", "DNG")."""
    return extension(path).lstrip(".").upper() or "RAW"


def read_raw(
    data: bytes, name: str = "image", min_side: int | None = None, decode: bool = True, fmt: str | None = None
) -> RawPhoto:
    """Metadata and, with ``decode``, the upright RGB image of a RAW file's bytes (``fmt``: the format
    to record, from ``name``'s extension when not given).

    The image is the embedded preview when its shorter side is at least ``min_side`` (and
    :data:`MIN_PREVIEW_SIDE`), else a half-size demosaic. Every failure is one DecodeError line."""
    with _libraw_quiet():
        return _read_raw(data, name, min_side, decode, fmt)


def _read_raw(data: bytes, name: str, min_side: int | None, decode: bool, fmt: str | None) -> RawPhoto:
    raw = _open(data, name)
    try:
        w, h = _check_bounds(raw, name)
        preview = _preview_image(_preview(raw), name)
        meta = _meta(data, raw, w, h, fmt or raw_format(name), preview)
        if not decode:
            return RawPhoto(meta)
        flip = int(raw.sizes.flip)
        if preview is not None and min(preview.size) >= max(MIN_PREVIEW_SIDE, min_side or 0):
            return RawPhoto(meta, _upright_preview(preview, flip, min_side, name), "preview")
        return RawPhoto(meta, _demosaic(raw, name), "demosaic")
    except MemoryError:
        raise DecodeError(f"{name}: out of memory while decoding") from None
    finally:
        raw.close()


def raw_image(data: bytes, name: str = "image", min_side: int | None = None) -> Image.Image:
    """The upright RGB image of a RAW file's bytes (preview or demosaic, as :func:`read_raw` picks)."""
    image = read_raw(data, name, min_side=min_side).image
    if image is None:  # pragma: no cover - read_raw always decodes when asked to
        raise DecodeError(f"{name}: cannot decode RAW data")
    return image


def raw_size(path: Path | str) -> tuple[int, int]:
    """Width and height of a RAW file as displayed (LibRaw's orientation applied), nothing unpacked."""
    name = os.fspath(path)
    with open_regular(path, name) as fh, _libraw_quiet():
        raw = _open(fh.read(), name)
    try:
        w, h = _check_bounds(raw, name)
        return (h, w) if int(raw.sizes.flip) in (5, 6) else (w, h)
    finally:
        raw.close()
