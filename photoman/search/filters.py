"""Turn `find`'s filter options into a SearchFilter, with one-line errors for anything malformed."""

from __future__ import annotations

import calendar
import math
import os
import re
from datetime import datetime, timedelta

from photoman.errors import BadInputError
from photoman.media.formats import RAW_EXTENSIONS
from photoman.vectors.schema import SearchFilter

_DATE = re.compile(r"^(\d{4})(?:-(\d{1,2})(?:-(\d{1,2})(?:[T ](\d{1,2}):(\d{2})(?::(\d{2}))?)?)?)?$")
FORMATS = {
    "jpeg": ["jpeg", "mpo"],
    "jpg": ["jpeg", "mpo"],
    "png": ["png"],
    "heic": ["heif"],
    "heif": ["heif"],
    "avif": ["avif"],
    "webp": ["webp"],
    "gif": ["gif"],
    "tiff": ["tiff"],
    "tif": ["tiff"],
    "bmp": ["bmp"],
}
# RAW files are stored under their extension (CR2, NEF, DNG...); --format raw means any of them
_RAW_FORMATS = sorted(ext.lstrip(".") for ext in RAW_EXTENSIONS)
FORMATS.update({name: [name] for name in _RAW_FORMATS}, raw=_RAW_FORMATS)


def _known_formats() -> str:
    """The --format names for an error message, the RAW extensions summed up as one."""
    plain = sorted(f for f in FORMATS if f not in _RAW_FORMATS)
    return ", ".join(plain) + f" (raw: any of {', '.join(_RAW_FORMATS)})"


def parse_date(value: str, option: str, end: bool = False) -> datetime:
    """YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS]; with ``end``, a partial date ends late."""
    m = _DATE.match(value.strip())
    if not m:
        raise BadInputError(f"{option}: {value!r} is not a date (use YYYY, YYYY-MM or YYYY-MM-DD)")
    y, mo, d, hh, mm, ss = m.groups()
    try:
        year, month = int(y), int(mo or (12 if end else 1))
        day = int(d) if d else (calendar.monthrange(year, month)[1] if end else 1)
        if hh is None:
            start = datetime(year, month, day)
            return start + timedelta(days=1, microseconds=-1) if end else start
        return datetime(year, month, day, int(hh), int(mm), int(ss or 0))
    except (ValueError, calendar.IllegalMonthError) as exc:
        raise BadInputError(f"{option}: {value!r} is not a real date ({exc})") from None


def parse_near(value: str, radius_km: float | None) -> tuple[float, float, float]:
    try:
        lat_s, lon_s = value.split(",")
        lat, lon = float(lat_s), float(lon_s)
    except ValueError:
        raise BadInputError(f"--near: {value!r} is not LAT,LON (e.g. 48.8584,2.2945)") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise BadInputError(f"--near: {value!r} is off the globe (latitude ±90, longitude ±180)")
    radius = 10.0 if radius_km is None else radius_km
    if not math.isfinite(radius) or radius <= 0:
        raise BadInputError("--radius must be more than 0 km")
    return lat, lon, radius


def build_filter(
    since: str | None = None,
    until: str | None = None,
    folder: str | None = None,
    camera: str | None = None,
    tags: list[str] | None = None,
    near: str | None = None,
    radius_km: float | None = None,
    formats: list[str] | None = None,
) -> SearchFilter:
    """Validate and translate filter options (whether --in lies inside a root is checked where the
    roots are known: :func:`photoman.search.engine.search`)."""
    flt = SearchFilter()
    if since is not None:  # given but empty is a mistake, not "no filter"
        flt.since = parse_date(since, "--since")
    if until is not None:
        flt.until = parse_date(until, "--until", end=True)
    if flt.since and flt.until and flt.since > flt.until:
        raise BadInputError(f"--since {since} is after --until {until}: nothing can match")
    if folder:
        flt.folder = os.path.normpath(os.path.abspath(os.path.expanduser(folder)))
        if os.path.exists(flt.folder) and not os.path.isdir(flt.folder):  # absent: maybe an offline drive's
            raise BadInputError(f"--in {folder} is a file, not a folder")
    if camera is not None:
        words = camera.lower().replace(",", " ").split()
        if not words:
            raise BadInputError("--camera needs a make or model, e.g. --camera 'iphone 4s'")
        flt.camera = words
    if tags:
        if not all(t.strip() for t in tags):
            raise BadInputError("--tag needs a label, e.g. --tag beach (see `photoman tags`)")
        flt.tags = [t.strip().lower() for t in tags]
    if near is not None:
        flt.near = parse_near(near, radius_km)
    elif radius_km is not None:
        raise BadInputError("--radius needs --near LAT,LON")
    if formats:
        out: list[str] = []
        for f in formats:
            key = f.lower().lstrip(".")
            if key not in FORMATS:
                raise BadInputError(f"--format {f}: unknown format (known: {_known_formats()})")
            out.extend(FORMATS[key])
        flt.formats = sorted(set(out))
    return flt
