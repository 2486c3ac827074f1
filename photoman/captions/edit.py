"""Set, clear and show a photo's caption; an edit re-embeds only the point's `caption` vector."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from photoman.captions.sources import MAX_CAPTION, clean, read_embedded, read_sidecar
from photoman.catalog.models import OK, Photo
from photoman.catalog.payload import caption_vectors
from photoman.catalog.pending import clear, mark_in, new_token, release
from photoman.errors import BadInputError
from photoman.library import Library
from photoman.media.decode import open_image_file, open_regular, plan_decode
from photoman.media.formats import is_raw_path
from photoman.paths import absolute
from photoman.vectors import CAPTION, VectorPoint, point_id


@dataclass
class CaptionInfo:
    path: str
    caption: str
    source: str | None  # user | sidecar | embedded | None


def _row(session, path: str) -> Photo:  # noqa: ANN001
    row = session.scalar(select(Photo).where(Photo.path == absolute(path)))
    if row is None:
        raise BadInputError(f"not in the library: {path} (index its folder first)")
    if row.status != OK:
        raise BadInputError(f"{path} could not be read when it was indexed: {row.error}")
    if row.missing_since is not None:  # found gone by a scan: hidden from searches, forgotten by the next
        raise BadInputError(f"not in the library: {path} (a scan found it gone)")
    return row


def get_caption(lib: Library, path: str) -> CaptionInfo:
    with lib.catalog.session() as s:
        row = _row(s, path)
        return CaptionInfo(row.path, row.caption, row.caption_source)


def _file_caption(path: str, sources: list[str]) -> tuple[str, str | None]:
    for source in sources:
        if source == "sidecar":
            text = read_sidecar(path)
        elif source == "embedded" and not is_raw_path(path):  # as when indexing: RAW captions from sidecars
            try:  # a regular file, bounded like the indexer's reads (Pillow decodes a PNG to find EXIF)
                with open_regular(path) as fh:
                    img = open_image_file(fh, path)
                    plan_decode(img, None, path)
                    text = read_embedded(img)
            except Exception:  # noqa: BLE001 - unreadable now: no embedded caption
                text = None
        else:
            continue
        if text:
            return text, source
    return "", None


def set_caption(lib: Library, path: str, text: str | None) -> CaptionInfo:
    """Set a user caption, or (``None``) go back to the file's own; re-embeds the caption vector."""
    if text is not None:
        cleaned = " ".join(text.split())
        if not cleaned:
            raise BadInputError("empty caption: give some text, or use --clear to remove your caption")
        if len(cleaned) > MAX_CAPTION:
            raise BadInputError(f"caption too long ({len(cleaned)} characters; at most {MAX_CAPTION})")
    token = new_token()
    try:
        # catalog first, with a crash record: a kill before the store follows is mended on the next open
        # (catalog/pending.py re-embeds the caption); the other order left the store with a caption the
        # catalog never had, until the user edited it again
        with lib.catalog.session() as s:
            row = _row(s, path)
            if text is not None:
                row.caption, row.caption_source = " ".join(text.split()), "user"
            else:
                row.caption, row.caption_source = _file_caption(row.path, lib.settings.caption_sources)
                row.caption = clean(row.caption) or ""
            s.flush()
            digest = str(row.content_hash)  # an ok row always has its hash (_row refuses others)
            vecs = caption_vectors(lib, s, [digest])  # before the commit: a model that fails changes nothing
            mark_in(s, [digest], lib.model_id, token, caption=True)
            info = CaptionInfo(row.path, row.caption, row.caption_source)
        pid = point_id(digest, lib.model_id)
        if digest in vecs:
            lib.store.update_vectors([VectorPoint(pid, vecs[digest])])
        else:
            lib.store.delete_vectors([pid], [CAPTION])
        lib.store.flush()
        clear(lib.catalog, token)
    finally:
        release(token)
    lib.captions_changed([digest])  # a switch under way embeds it again for the new model
    return info
