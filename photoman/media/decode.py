"""Decode any supported image fast: JPEG draft mode, EXIF orientation, HEIC/AVIF via pillow-heif."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from photoman.errors import DecodeError
from photoman.media.formats import IMAGE_EXTENSIONS, is_image_path  # noqa: F401 - re-exported

try:  # HEIC/HEIF (and AVIF on Pillow builds without it) through libheif
    import pillow_heif

    pillow_heif.register_heif_opener()
    if hasattr(pillow_heif, "register_avif_opener") and "AVIF" not in Image.registered_extensions().values():
        pillow_heif.register_avif_opener()
except ImportError:  # pragma: no cover - pillow-heif is a dependency
    pass

Image.MAX_IMAGE_PIXELS = 40_000 * 40_000  # panoramas are legitimate; decompression bombs are not

def open_image(data: bytes, name: str = "image") -> Image.Image:
    """Open the bytes as an image without decoding pixels yet; errors become DecodeError."""
    if not data:
        raise DecodeError(f"{name}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise DecodeError(f"{name}: not a readable image ({exc.__class__.__name__})") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise DecodeError(f"{name}: not a readable image ({exc})") from None
    return img


def decode_rgb(img: Image.Image, min_side: int | None = None, name: str = "image") -> Image.Image:
    """Fully decoded RGB image, upright per EXIF; JPEGs decode at reduced scale when min_side allows.

    Draft mode lets libjpeg decode at 1/2, 1/4 or 1/8 scale (DCT scaling), several times faster,
    while keeping the shorter side at least ``min_side`` so the final resize still has detail.
    """
    try:
        if min_side and img.format in ("JPEG", "MPO"):
            w, h = img.size
            scale = min(w, h) / min_side
            if scale >= 2:
                img.draft("RGB", (max(1, int(w / scale)), max(1, int(h / scale))))
        img.seek(0)  # first frame of GIF/MPO/animated WebP
        img.load()
        img = ImageOps.exif_transpose(img) or img
        if img.mode != "RGB":
            img = _to_rgb(img)
        return img
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise DecodeError(f"{name}: cannot decode image ({exc})") from None


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
    """Read and decode one file (for queries by example and the reference pipeline)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DecodeError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return decode_rgb(open_image(data, str(path)), min_side=min_side, name=str(path))


def image_size(path: Path | str) -> tuple[int, int]:
    """Width and height as displayed (EXIF orientation applied), from the header alone."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DecodeError(f"{path}: not a readable image ({exc})") from None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)
