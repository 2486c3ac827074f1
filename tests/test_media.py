"""Decoding, orientation, formats and EXIF on real photos and files generated here."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path
from typing import Any

import pillow_heif
import pytest
from PIL import Image

from photoman.errors import DecodeError
from photoman.media.decode import decode_rgb, is_image_path, load_image, open_image
from photoman.media.exif import parse_exif_datetime, read_meta


def meta_of(path: Path) -> Any:
    return read_meta(open_image(path.read_bytes(), str(path)))


def test_exif_date_camera_gps_from_real_photos(photos_src: Path) -> None:
    m = meta_of(photos_src / "exif--test1.jpg")
    assert m.taken_at == datetime(2013, 2, 6, 16, 0, 3)
    assert (m.camera_make, m.camera_model) == ("Apple", "iPhone 4S")
    assert m.gps_lat == pytest.approx(37.885, abs=1e-3) and m.gps_lon == pytest.approx(-122.6225, abs=1e-3)
    star = meta_of(photos_src / "exif-parser--starfish.jpg")
    assert star.gps_lat == pytest.approx(55.0388, abs=1e-3) and star.gps_lon == pytest.approx(
        8.4572, abs=1e-3
    )
    png = meta_of(photos_src / "scikit-image--chelsea.png")
    assert png.taken_at is None and png.gps_lat is None and (png.width, png.height) == (451, 300)


def test_exif_dates_parse_or_are_unknown() -> None:
    assert parse_exif_datetime("2014:04:18 20:33:53") == datetime(2014, 4, 18, 20, 33, 53)
    assert parse_exif_datetime(b"2014:04:18 20:33:53\x00") == datetime(2014, 4, 18, 20, 33, 53)
    assert parse_exif_datetime("0000:00:00 00:00:00") is None
    assert parse_exif_datetime("    ") is None
    assert parse_exif_datetime("not a date") is None


def test_exif_orientation_is_applied(tmp_path: Path, photos_src: Path) -> None:
    src = Image.open(photos_src / "scikit-image--rocket.jpg")  # 640x427 landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    path = tmp_path / "rotated.jpg"
    src.save(path, exif=exif)
    img = load_image(path)
    assert img.size == (427, 640)  # upright portrait
    meta = meta_of(path)
    assert meta.orientation == 6 and (meta.width, meta.height) == (427, 640)


def test_large_jpeg_uses_draft_mode_but_keeps_detail(photos_src: Path) -> None:
    path = photos_src / "exif--sony-alpha-6000.jpg"  # 6000x4000 MPO
    img = decode_rgb(open_image(path.read_bytes()), min_side=224)
    assert img.mode == "RGB"
    assert min(img.size) >= 224 and img.size[0] < 6000  # decoded at a reduced DCT scale
    assert img.size[0] / img.size[1] == pytest.approx(1.5, rel=0.01)


def test_heic_and_avif_generated_here_decode(tmp_path: Path, photos_src: Path) -> None:
    src = Image.open(photos_src / "scikit-learn--china.jpg").convert("RGB")
    heic = tmp_path / "china.heic"
    pillow_heif.from_pillow(src).save(heic, quality=80)
    avif = tmp_path / "china.avif"
    src.save(avif, quality=80)
    for path in (heic, avif):
        assert is_image_path(path)
        img = load_image(path)
        assert img.size == (640, 427) and img.mode == "RGB"


def test_png_with_alpha_and_gif_first_frame(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (40, 30), (255, 0, 0, 0))
    buf = io.BytesIO()
    rgba.save(buf, "PNG")
    img = decode_rgb(open_image(buf.getvalue()))
    assert img.mode == "RGB" and img.getpixel((0, 0)) == (255, 255, 255)  # transparent → white
    frames = [Image.new("RGB", (20, 20), c) for c in ((0, 0, 255), (0, 255, 0))]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    assert load_image(gif).getpixel((5, 5)) == (0, 0, 255)


def test_bad_files_raise_decode_error(tmp_path: Path, photos_src: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"this is not an image at all" * 10)
    data = (photos_src / "scikit-learn--china.jpg").read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data[: len(data) // 3])
    for path, words in ((empty, "empty"), (junk, "not a readable image"), (truncated, "cannot decode")):
        with pytest.raises(DecodeError, match=words):
            load_image(path)
    with pytest.raises(DecodeError, match="cannot read"):
        load_image(tmp_path / "missing.jpg")


def _png_header_only(path: Path, w: int, h: int) -> None:
    """A PNG whose header claims w x h RGB pixels, followed by one row of image data (a few bytes)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    idat = zlib.compress(bytes(1 + 3 * w))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_pixel_and_shape_bounds_are_checked_before_decoding(tmp_path: Path) -> None:
    from photoman.media.decode import MAX_DECODE_PIXELS

    claims = tmp_path / "claims.png"
    _png_header_only(claims, 30_000, 30_000)  # 900 MP claimed: refused from the header, not "truncated"
    with pytest.raises(DecodeError, match="too many pixels.*900 megapixels"):
        load_image(claims)
    strip = tmp_path / "strip.png"
    _png_header_only(strip, 1, 5_000)
    with pytest.raises(DecodeError, match="absurd aspect ratio"):
        load_image(strip)
    panorama = tmp_path / "panorama.png"  # 40:1 is a panorama, not an attack
    Image.new("RGB", (4000, 100), (10, 120, 200)).save(panorama)
    assert load_image(panorama).size == (4000, 100)
    assert MAX_DECODE_PIXELS > 100 * 10**6  # a 102 MP medium-format frame still decodes


def test_large_jpeg_is_bounded_after_draft_scaling(tmp_path: Path) -> None:
    """A JPEG decodes at 1/8 scale when the caller needs little: its bound is on the drafted size."""
    from photoman.media import decode

    big = tmp_path / "big.jpg"
    Image.new("RGB", (4000, 3000), (90, 90, 90)).save(big, quality=50)
    limit = decode.MAX_DECODE_PIXELS
    try:
        decode.MAX_DECODE_PIXELS = 1_000_000  # 12 MP full size, 0.19 MP at 1/8
        assert max(load_image(big, min_side=224).size) < 4000
        with pytest.raises(DecodeError, match="too many pixels"):
            load_image(big)
    finally:
        decode.MAX_DECODE_PIXELS = limit


def test_only_regular_files_are_opened(tmp_path: Path, photos_src: Path) -> None:
    import os

    from photoman.captions.sources import read_sidecar
    from photoman.media.decode import read_regular
    from photoman.media.hashing import content_hash, hash_fd

    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)  # open() on it would wait for a writer forever
    with pytest.raises(DecodeError, match=r"not a regular file \(FIFO\)"):
        load_image(fifo)
    with pytest.raises(DecodeError, match=r"character device"):
        read_regular("/dev/zero")
    with pytest.raises(DecodeError, match="folder"):
        load_image(tmp_path)
    text = tmp_path / "big.txt"
    text.write_bytes(b"x" * 5000)
    assert read_regular(text, 100) == b"x" * 100
    photo = tmp_path / "photo.jpg"
    photo.write_bytes((photos_src / "scikit-image--rocket.jpg").read_bytes())
    os.mkfifo(tmp_path / "photo.jpg.txt")  # the first sidecar tried is a FIFO, the next one /dev/zero
    os.symlink("/dev/zero", tmp_path / "photo.txt")
    (tmp_path / "photo.xmp").write_text(
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:description><rdf:Alt>'
        '<rdf:li xml:lang="x-default">rocket on the pad</rdf:li></rdf:Alt></dc:description>'
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    assert read_sidecar(photo) == "rocket on the pad"
    fd = os.open(photo, os.O_RDONLY)
    try:
        assert hash_fd(fd, chunk=4096) == content_hash(photo.read_bytes())  # same identity as before
    finally:
        os.close(fd)
