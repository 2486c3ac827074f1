"""Where captions come from: sidecar files and the caption fields embedded in the image itself.

Sidecars: ``photo.jpg.txt``, ``photo.txt``, and XMP sidecars ``photo.jpg.xmp`` / ``photo.xmp``
(``dc:description``). Embedded: XMP ``dc:description``, IPTC Caption/Abstract (2:120), EXIF
ImageDescription and UserComment. Camera boilerplate ("OLYMPUS DIGITAL CAMERA") is not a caption.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from PIL import ExifTags, Image, IptcImagePlugin

from photoman.errors import DecodeError
from photoman.media.decode import MAX_SIDECAR_BYTES, read_regular

MAX_CAPTION = 2000
_BOILERPLATE = re.compile(
    r"^(.*digital (still )?camera|sony dsc|default|untitled|image|picture|photo|samsung|exif_jpeg_\d+|"
    r"created with .*|copyright.*|\(c\).*|©.*|all rights reserved.*|dsc[_ -]?\d+|img[_ -]?\d+|p\d{6,}|\d+)$",
    re.I,
)
_NS = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
}
SIDECAR_SUFFIXES = (".txt", ".xmp")


def clean(text: str | bytes | None) -> str | None:
    """A usable caption, or None for empty text and camera boilerplate."""
    if text is None:
        return None
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = " ".join(text.replace("\x00", " ").split())
    if not text or _BOILERPLATE.match(text):
        return None
    return text[:MAX_CAPTION]


def sidecar_names(photo_name: str) -> list[str]:
    """Sidecar file names for a photo, most specific first."""
    stem = os.path.splitext(photo_name)[0]
    return [photo_name + ".txt", stem + ".txt", photo_name + ".xmp", stem + ".xmp"]


def xmp_description(xml: bytes | str) -> str | None:
    """dc:description (x-default first) from an XMP packet; malformed XMP yields None."""
    if isinstance(xml, str):
        xml = xml.encode("utf-8", "replace")
    xml = xml.strip().strip(b"\x00")
    if not xml or len(xml) > 4_000_000 or b"<!ENTITY" in xml:  # no entity expansion, ever
        return None
    start = xml.find(b"<x:xmpmeta")
    if start < 0:
        start = xml.find(b"<rdf:RDF")
    end = xml.rfind(b"</x:xmpmeta>")
    xml = xml[start : end + len(b"</x:xmpmeta>")] if start >= 0 and end > 0 else xml[max(start, 0) :]
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    for desc in root.iter(f"{{{_NS['dc']}}}description"):
        items = list(desc.iter(f"{{{_NS['rdf']}}}li"))
        items.sort(key=lambda li: li.get("{http://www.w3.org/XML/1998/namespace}lang") != "x-default")
        for li in items or [desc]:
            text = clean(li.text)
            if text:
                return text
    return None


def read_sidecar(photo: Path | str) -> str | None:
    """Caption from the first sidecar that has one. Only regular files are read, at most 4 MB each:
    a sidecar that is a FIFO, a socket or a link to /dev/zero is passed over (the scan records it)."""
    photo = Path(photo)
    for name in sidecar_names(photo.name):
        side = photo.with_name(name)
        try:
            data = read_regular(side, MAX_SIDECAR_BYTES)
        except (DecodeError, OSError):
            continue
        text = xmp_description(data) if name.endswith(".xmp") else clean(data)
        if text:
            return text
    return None


def _user_comment(raw: object) -> str | None:
    if not isinstance(raw, bytes):
        return clean(raw) if isinstance(raw, str) else None
    head, body = raw[:8], raw[8:]
    if head.startswith(b"UNICODE"):
        for enc in ("utf-16-be", "utf-16-le"):
            try:
                return clean(body.decode(enc))
            except UnicodeDecodeError:
                continue
        return None
    return clean(body if head.strip(b"\x00 ") in (b"ASCII", b"") else raw)


def read_embedded(img: Image.Image) -> str | None:
    """Caption stored in the image: XMP dc:description, IPTC 2:120, EXIF ImageDescription, UserComment."""
    xmp = img.info.get("xmp") or img.info.get("XML:com.adobe.xmp")
    if xmp:
        text = xmp_description(xmp)
        if text:
            return text
    try:
        iptc = IptcImagePlugin.getiptcinfo(img) or {}  # type: ignore[arg-type]  # any opened image
    except Exception:  # noqa: BLE001 - malformed IPTC blocks are common and harmless
        iptc = {}
    value = iptc.get((2, 120))
    if isinstance(value, list):
        value = value[0] if value else None
    text = clean(value)
    if text:
        return text
    try:
        exif = img.getexif()
        text = clean(exif.get(ExifTags.Base.ImageDescription))
        if text:
            return text
        return _user_comment(exif.get_ifd(ExifTags.IFD.Exif).get(ExifTags.Base.UserComment))
    except Exception:  # noqa: BLE001
        return None
