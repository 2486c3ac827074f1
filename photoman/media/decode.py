"""Decode any supported image fast: JPEG draft mode, EXIF orientation, HEIC/AVIF via pillow-heif, camera
RAW files via LibRaw (media/raw.py); and the bounds every decode is held to, RAW included."""

from __future__ import annotations

import io
import os
import stat
import warnings
from pathlib import Path
from typing import BinaryIO

from PIL import Image, ImageOps, UnidentifiedImageError

from photoman.errors import DecodeError
from photoman.media.formats import IMAGE_EXTENSIONS, is_image_path, is_raw_path  # noqa: F401 - re-exported

try:  # HEIC/HEIF (and AVIF on Pillow builds without it) through libheif
    import pillow_heif

    pillow_heif.register_heif_opener()
    if hasattr(pillow_heif, "register_avif_opener") and "AVIF" not in Image.registered_extensions().values():
        pillow_heif.register_avif_opener()
except ImportError:  # pragma: no cover - pillow-heif is a dependency
    pass

Image.MAX_IMAGE_PIXELS = 40_000 * 40_000  # Pillow refuses twice this at open (a JPEG is drafted below)

# Bounds checked before anything is allocated, so one file can never take a worker's (or the
# daemon's) memory: the bytes on disk, the pixels decoded, and the shape.
MAX_FILE_BYTES = 2 << 30  # larger than any photo; a sparse or endless file is refused unread
MAX_DECODE_PIXELS = 120_000_000  # pixels actually decoded (after JPEG draft scaling): ~480 MB as RGB
MAX_ASPECT = 200  # longer side / shorter side: a CLIP resize of a 1 x 65500 strip is 3.3 gigapixels
MAX_SIDECAR_BYTES = 4_000_000  # caption sidecars and other text read beside a photo


def file_kind(mode: int) -> str:
    """What a file is, in words, for an error message ("FIFO", "socket", "character device"...)."""
    for test, word in (
        (stat.S_ISREG, "regular file"),
        (stat.S_ISDIR, "folder"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISLNK, "symbolic link"),
    ):
        if test(mode):
            return word
    return "special file"


def _size_words(n: int) -> str:
    return f"{n / (1 << 30):.1f} GB" if n >= 1 << 30 else f"{n / (1 << 20):.1f} MB"


def open_regular(
    path: Path | str, name: str | None = None, max_bytes: int | None = MAX_FILE_BYTES
) -> BinaryIO:
    """Open a regular file for reading. A FIFO, socket, device or folder is refused from its stat,
    before any open() that could block or act on a device; so is a file over ``max_bytes``."""
    name = str(path) if name is None else name
    try:
        st = os.stat(path)
    except OSError as exc:
        raise DecodeError(f"{name}: cannot read ({exc.strerror or exc})") from None
    _check_regular(st, name, max_bytes)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise DecodeError(f"{name}: cannot read ({exc.strerror or exc})") from None
    try:
        _check_regular(os.fstat(fd), name, max_bytes)  # swapped for something else since the stat
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def _check_regular(st: os.stat_result, name: str, max_bytes: int | None) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise DecodeError(f"{name}: not a regular file ({file_kind(st.st_mode)}); not opened")
    if max_bytes is not None and st.st_size > max_bytes:
        raise DecodeError(
            f"{name}: too large ({_size_words(st.st_size)}; photos are at most "
            f"{_size_words(max_bytes)}); not read"
        )


def read_regular(path: Path | str, limit: int = MAX_SIDECAR_BYTES, name: str | None = None) -> bytes:
    """At most ``limit`` bytes of a regular file (a sidecar, a caption): never a device or FIFO."""
    with open_regular(path, name, max_bytes=None) as fh:
        return fh.read(limit)


def _open(fp: BinaryIO, name: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(fp)
    except (UnidentifiedImageError, Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise DecodeError(f"{name}: not a readable image ({exc.__class__.__name__})") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise DecodeError(f"{name}: not a readable image ({exc})") from None
    return img


def open_image(data: bytes, name: str = "image") -> Image.Image:
    """Open the bytes as an image without decoding pixels yet; errors become DecodeError."""
    if not data:
        raise DecodeError(f"{name}: empty file")
    return _open(io.BytesIO(data), name)


def open_image_file(fh: BinaryIO, name: str = "image") -> Image.Image:
    """Open an already opened file (see :func:`open_regular`) as an image: the header only, nothing
    decoded and nothing read beyond what the format's header needs. Keep ``fh`` open until decoded."""
    fh.seek(0, os.SEEK_END)
    empty = fh.tell() == 0
    fh.seek(0)
    if empty:
        raise DecodeError(f"{name}: empty file")
    return _open(fh, name)


def plan_decode(img: Image.Image, min_side: int | None = None, name: str = "image") -> None:
    """Pick the decode scale (JPEG draft) and check the bounds, before any pixel is allocated.

    Draft mode lets libjpeg decode at 1/2, 1/4 or 1/8 scale (DCT scaling), several times faster,
    while keeping the shorter side at least ``min_side`` so the final resize still has detail.
    Raises DecodeError for an absurd shape or more pixels than :data:`MAX_DECODE_PIXELS`.
    """
    w, h = img.size
    check_shape(w, h, name)
    try:
        if min_side and img.format in ("JPEG", "MPO"):
            scale = min(w, h) / min_side
            if scale >= 2:
                img.draft("RGB", (max(1, int(w / scale)), max(1, int(h / scale))))
    except (OSError, ValueError) as exc:
        raise DecodeError(f"{name}: cannot decode image ({exc})") from None
    dw, dh = img.size
    check_pixels(dw * dh, w, h, name)


def check_shape(w: int, h: int, name: str) -> None:
    """Refuse an empty size or an absurd shape (:data:`MAX_ASPECT`) before anything is decoded."""
    if w < 1 or h < 1:
        raise DecodeError(f"{name}: not a readable image (size {w}x{h})")
    if max(w, h) > MAX_ASPECT * min(w, h):
        raise DecodeError(
            f"{name}: absurd aspect ratio ({w}x{h} pixels; at most {MAX_ASPECT}:1); not decoded"
        )


def check_pixels(pixels: int, w: int, h: int, name: str) -> None:
    """Refuse to decode more than :data:`MAX_DECODE_PIXELS` (``w`` x ``h``: the size to report)."""
    if pixels > MAX_DECODE_PIXELS:
        raise DecodeError(
            f"{name}: too many pixels to decode ({w}x{h} = {w * h / 1e6:.0f} megapixels; "
            f"at most {MAX_DECODE_PIXELS / 1e6:.0f}); not decoded"
        )


def decode_rgb(img: Image.Image, min_side: int | None = None, name: str = "image") -> Image.Image:
    """Fully decoded RGB image, upright per EXIF; JPEGs decode at reduced scale when min_side allows.

    The bounds of :func:`plan_decode` are checked first: nothing is allocated for a decompression
    bomb or a 1 x 65500 strip.
    """
    plan_decode(img, min_side, name)
    try:
        img.seek(0)  # first frame of GIF/MPO/animated WebP
        img.load()
        img = ImageOps.exif_transpose(img) or img
        if img.mode != "RGB":
            img = _to_rgb(img)
        return img
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise DecodeError(f"{name}: cannot decode image ({exc})") from None
    except MemoryError:
        raise DecodeError(f"{name}: out of memory while decoding") from None


def _to_rgb(img: Image.Image) -> Image.Image:
    """Flatten alpha onto white (transparent PNG logos become visible, not black)."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        img = img.point(lambda v: v / 256).convert("L")
    return img.convert("RGB")


def load_image(path: Path | str, min_side: int | None = None) -> Image.Image:
    """Read and decode one file (for queries by example, classify, locate, thumbnails).

    Only a regular file is opened (a FIFO given as a query image must not block the daemon), and
    the bounds of :func:`plan_decode` apply; each refusal is a one-line DecodeError."""
    name = str(path)
    with open_regular(path, name) as fh:
        if is_raw_path(path):
            from photoman.media.raw import raw_image

            return raw_image(fh.read(), name, min_side=min_side)
        return decode_rgb(open_image_file(fh, name), min_side=min_side, name=name)


def image_size(path: Path | str) -> tuple[int, int]:
    """Width and height as displayed (EXIF orientation applied), from the header alone."""
    if is_raw_path(path):
        from photoman.media.raw import raw_size

        return raw_size(path)
    with open_regular(path) as fh:
        try:
            with Image.open(fh) as im:
                w, h = im.size
                plan_decode(im, None, str(path))  # Pillow decodes a whole PNG to find its EXIF
                orientation = im.getexif().get(0x0112, 1)
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
            raise DecodeError(f"{path}: not a readable image ({exc})") from None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)
