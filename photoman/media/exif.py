"""Metadata a search filter needs, read from EXIF: date taken, camera, GPS, orientation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from PIL import ExifTags, Image

_DATE_FORMATS = ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y:%m:%d %H:%M", "%Y-%m-%dT%H:%M:%S")


@dataclass
class PhotoMeta:
    """What the catalog stores about an image beyond its bytes."""

    width: int | None = None
    height: int | None = None
    format: str | None = None
    taken_at: datetime | None = None
    camera_make: str | None = None
    camera_model: str | None = None
    gps_lat: float | None = None
    gps_lon: float | None = None
    orientation: int | None = None


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).replace("\x00", "").strip()
    return text or None


def parse_exif_datetime(value: object) -> datetime | None:
    """EXIF dates are 'YYYY:MM:DD HH:MM:SS'; blank or zeroed dates mean unknown."""
    text = _text(value)
    if not text or text.startswith("0000"):
        return None
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text[:19], fmt)
        except ValueError:
            continue
    return None


def datetime_from_timestamp(stamp: float | None) -> datetime | None:
    """Local time of a file timestamp, or None when it is outside what datetime holds (a file dated
    year -1199 or 11476 exists on filesystems with 64-bit times): an unknown date, never an error."""
    if stamp is None:
        return None
    try:
        return datetime.fromtimestamp(stamp)
    except (ValueError, OverflowError, OSError):
        return None


def _dms_to_degrees(dms: object, ref: object) -> float | None:
    try:
        d, m, s = (float(x) for x in dms)  # type: ignore[attr-defined,union-attr]  # EXIF rationals
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    deg = d + m / 60 + s / 3600
    if _text(ref) in ("S", "W"):
        deg = -deg
    return round(deg, 7)


def read_meta(img: Image.Image, size: tuple[int, int] | None = None) -> PhotoMeta:
    """Read size, format and EXIF fields; a broken EXIF block yields what could be read.

    ``size``: the stored pixel size when ``img`` was already set to decode at a reduced scale (JPEG
    draft). Pillow reads a PNG's EXIF by decoding the whole image: check the decode bounds
    (:func:`photoman.media.decode.plan_decode`) before calling this on an untrusted file."""
    w, h = size or img.size
    try:
        exif = img.getexif()
    except Exception:  # noqa: BLE001 - malformed EXIF must never stop indexing
        exif = None
    return meta_from_exif(exif, w, h, img.format)


def meta_from_exif(exif: Image.Exif | None, w: int, h: int, fmt: str | None) -> PhotoMeta:
    """The catalog's fields from an EXIF block (a JPEG's, or a TIFF-based RAW file's own tags), for an
    image of ``w`` x ``h`` stored pixels; what is missing or malformed stays unknown."""
    meta = PhotoMeta(width=w, height=h, format=fmt)
    if not exif:
        return meta
    tags = ExifTags.Base
    orientation = exif.get(tags.Orientation)
    if isinstance(orientation, int) and 1 <= orientation <= 8:
        meta.orientation = orientation
        if orientation >= 5:  # rotated 90/270: report upright dimensions
            meta.width, meta.height = h, w
    meta.camera_make = _text(exif.get(tags.Make))
    meta.camera_model = _text(exif.get(tags.Model))
    try:
        sub = exif.get_ifd(ExifTags.IFD.Exif)
    except Exception:  # noqa: BLE001
        sub = {}
    meta.taken_at = (
        parse_exif_datetime(sub.get(tags.DateTimeOriginal))
        or parse_exif_datetime(sub.get(tags.DateTimeDigitized))
        or parse_exif_datetime(exif.get(tags.DateTime))
    )
    try:
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    except Exception:  # noqa: BLE001
        gps = {}
    if gps:
        lat = _dms_to_degrees(gps.get(ExifTags.GPS.GPSLatitude), gps.get(ExifTags.GPS.GPSLatitudeRef))
        lon = _dms_to_degrees(gps.get(ExifTags.GPS.GPSLongitude), gps.get(ExifTags.GPS.GPSLongitudeRef))
        if lat is not None and lon is not None and -90 <= lat <= 90 and -180 <= lon <= 180:
            meta.gps_lat, meta.gps_lon = lat, lon
    return meta
