"""DNG files made in the tests: Bayer data written by PiDNG (``pip install pidng``), with camera, date and
GPS tags, and optionally an embedded JPEG preview (LibRaw's "thumbnail", as a camera writes one).

PiDNG writes one IFD (the raw image). Its sub-IFD tags (EXIF, GPS) need :class:`_SubIfd` (PiDNG 4.0.9
builds an IFD-typed tag's value as ``str`` and fails); the preview is a second IFD chained after the
first, compressed JPEG (NewSubfileType 1), which is how LibRaw finds a DNG's preview.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pidng.core import RAW2DNG, DNGTags, Tag
from pidng.defs import CalibrationIlluminant, CFAPattern, DNGVersion, PhotometricInterpretation
from pidng.dng import Type, dngIFD, dngTag
from PIL import Image

GPS_IFD = (34853, Type.IFD)
# the camera's colour matrix (XYZ to camera RGB): a "camera" that sees in linear sRGB
XYZ_TO_SRGB = [[round(v * 10000), 10000] for v in (3.2406, -1.5372, -0.4986, -0.9689, 1.8758, 0.0415,
                                                    0.0557, -0.2040, 1.0570)]  # fmt: skip


class _SubIfd(dngTag):
    """An IFD-pointer tag (ExifIFD, GPSInfo) holding ``value[0]``, a dngIFD."""

    def setValue(self, value: list[dngIFD]) -> None:
        self.Value = b"\0\0\0\0"
        self.subIFD = value[0]


@dataclass
class Shot:
    """What a test DNG says about itself."""

    make: str = "Canon"
    model: str = "Canon EOS R5"
    date: str | None = "2021:06:05 14:03:02"  # DateTimeOriginal, in the EXIF sub-IFD
    gps: tuple[float, float] | None = None  # (lat, lon) in degrees
    orientation: int = 1  # EXIF orientation of the raw image (LibRaw's flip)


def _dms(deg: float) -> list[list[int]]:
    deg = abs(deg)
    d, rem = int(deg), (abs(deg) - int(deg)) * 60
    m = int(rem)
    return [[d, 1], [m, 1], [round((rem - m) * 60 * 10000), 10000]]


def bayer(rgb: np.ndarray) -> np.ndarray:
    """RGGB mosaic (12 bits in uint16) of an RGB image with even sides: what a sensor would record."""
    rgb = rgb.astype(np.uint16) * 16
    h, w = rgb.shape[:2]
    raw = np.zeros((h, w), np.uint16)
    raw[0::2, 0::2] = rgb[0::2, 0::2, 0]
    raw[0::2, 1::2] = rgb[0::2, 1::2, 1]
    raw[1::2, 0::2] = rgb[1::2, 0::2, 1]
    raw[1::2, 1::2] = rgb[1::2, 1::2, 2]
    return raw


def raw_dng(mosaic: np.ndarray, shot: Shot) -> bytes:
    """A DNG of 12-bit RGGB ``mosaic`` with the shot's tags (identity colour matrix, neutral white)."""
    h, w = mosaic.shape
    t = DNGTags()
    for tag, value in (
        (Tag.ImageWidth, w), (Tag.ImageLength, h), (Tag.TileWidth, w), (Tag.TileLength, h),
        (Tag.Orientation, shot.orientation),
        (Tag.PhotometricInterpretation, PhotometricInterpretation.Color_Filter_Array),
        (Tag.SamplesPerPixel, 1), (Tag.BitsPerSample, 16),
        (Tag.CFARepeatPatternDim, [2, 2]), (Tag.CFAPattern, CFAPattern.RGGB),
        (Tag.BlackLevel, 0), (Tag.WhiteLevel, 4095),
        (Tag.ColorMatrix1, XYZ_TO_SRGB),
        (Tag.CalibrationIlluminant1, CalibrationIlluminant.D65),
        (Tag.AsShotNeutral, [[1, 1], [1, 1], [1, 1]]),
        (Tag.Make, shot.make), (Tag.Model, shot.model), (Tag.UniqueCameraModel, shot.model),
        (Tag.DNGVersion, DNGVersion.V1_4), (Tag.DNGBackwardVersion, DNGVersion.V1_2),
    ):  # fmt: skip
        t.set(tag, value)
    if shot.date:
        exif = dngIFD()
        exif.tags.append(dngTag(Tag.DateTimeOriginal, shot.date))
        t.__tags__[Tag.EXIF_IFD] = _SubIfd(Tag.EXIF_IFD, [exif])
    if shot.gps:
        lat, lon = shot.gps
        gps = dngIFD()
        gps.tags += [
            dngTag((1, Type.Ascii), "N" if lat >= 0 else "S"), dngTag((2, Type.Rational), _dms(lat)),
            dngTag((3, Type.Ascii), "E" if lon >= 0 else "W"), dngTag((4, Type.Rational), _dms(lon)),
        ]  # fmt: skip
        t.__tags__[GPS_IFD] = _SubIfd(GPS_IFD, [gps])
    dng = RAW2DNG()
    dng.options(t, path="", compress=False)
    return bytes(dng.convert(mosaic))


def with_preview(dng: bytes, jpeg: bytes) -> bytes:
    """The DNG with a JPEG preview IFD chained after its first one (LibRaw's thumbnail)."""
    buf = bytearray(dng)
    ifd0 = struct.unpack_from("<I", buf, 4)[0]
    next_at = ifd0 + 2 + 12 * struct.unpack_from("<H", buf, ifd0)[0]
    w, h = Image.open(io.BytesIO(jpeg)).size
    buf += b"\0" * (-len(buf) % 4)
    jpeg_at = len(buf)
    buf += jpeg + b"\0" * (-len(jpeg) % 4)
    bps_at = len(buf)
    buf += struct.pack("<HHHH", 8, 8, 8, 0)
    entries = [  # tag, type (3 SHORT, 4 LONG), count, value or offset
        (254, 4, 1, 1), (256, 4, 1, w), (257, 4, 1, h), (258, 3, 3, bps_at), (259, 3, 1, 7), (262, 3, 1, 6),
        (273, 4, 1, jpeg_at), (277, 3, 1, 3), (278, 4, 1, h), (279, 4, 1, len(jpeg)),
    ]  # fmt: skip
    ifd_at = len(buf)
    buf += struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        packed = struct.pack("<HH", value, 0) if kind == 3 and count == 1 else struct.pack("<I", value)
        buf += struct.pack("<HHI", tag, kind, count) + packed
    buf += struct.pack("<I", 0)
    struct.pack_into("<I", buf, next_at, ifd_at)
    return bytes(buf)


def jpeg_bytes(image: Image.Image, exif: Image.Exif | None = None) -> bytes:
    """A JPEG; given ``exif``, its EXIF block comes first, right after SOI (no JFIF block), as in a
    camera's own JPEG: LibRaw hands such a preview out as it is (to one that does not start with EXIF
    it adds an EXIF block of its own)."""
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=90, **({"exif": exif} if exif is not None else {}))
    data = out.getvalue()
    if exif is not None and data[2:4] == b"\xff\xe0":  # drop the JFIF APP0 segment
        data = data[:2] + data[4 + struct.unpack(">H", data[4:6])[0] :]
    return data


def write_dng(
    path: Path,
    image: Image.Image,
    shot: Shot | None = None,
    preview: Image.Image | None = None,
    preview_exif: Image.Exif | None = None,
) -> Path:
    """``image`` as the DNG's Bayer data (cropped to even sides), with ``preview`` embedded if given."""
    rgb = np.asarray(image.convert("RGB"))
    rgb = rgb[: rgb.shape[0] // 2 * 2, : rgb.shape[1] // 2 * 2]
    data = raw_dng(bayer(rgb), shot or Shot())
    if preview is not None:
        data = with_preview(data, jpeg_bytes(preview, preview_exif))
    path.write_bytes(data)
    return path
