"""SQLAlchemy ORM models; the schema itself is only ever changed through Alembic revisions."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    false,
    or_,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from photoman.catalog.paths import from_store, path_map_of, to_store


class Base(DeclarativeBase):
    pass


class PathString(TypeDecorator[str]):
    """A file path column: names that are not UTF-8 are stored losslessly (see catalog/paths.py).

    Comparisons (``==``, ``in_``) pass their operands through the same mapping, and so does the
    engine's per-machine ``path_map`` (this machine's paths in Python, the stored ones in the
    database). A prefix match must use :func:`path_under`: an escaped LIKE pattern is no longer a path
    either mapping could recognise."""

    impl = String(4096)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return to_store(value, path_map_of(dialect)) if isinstance(value, str) else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return from_store(value, path_map_of(dialect)) if isinstance(value, str) else value


class _UnderPattern(TypeDecorator[str]):
    """A folder (as this machine spells it) bound as the LIKE pattern of every stored path under it:
    spelt for the store first, escaped after (with ``/`` as the escape character)."""

    impl = String(4096)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        prefix = to_store(value, path_map_of(dialect)).rstrip("/") + "/"
        return prefix.replace("/", "//").replace("%", "/%").replace("_", "/_") + "%"


def path_under(column: Any, folder: str) -> ColumnElement[bool]:
    """``column`` (a path column) is ``folder`` or lies under it, in SQL (cf. photoman.paths.is_inside)."""
    return or_(column == folder, column.like(bindparam(None, folder, type_=_UnderPattern()), escape="/"))


class Root(Base):
    """A library folder the user asked photoman to index; stored apart so a library can move."""

    __tablename__ = "roots"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(PathString, unique=True)
    added_at: Mapped[datetime] = mapped_column(DateTime)
    # when last seen online: its device (st_dev) and the mount point holding it ("/" when on the system
    # disk); a root whose mount point is no longer mounted is offline (mounts.py)
    device: Mapped[int | None] = mapped_column(BigInteger)
    mount: Mapped[str | None] = mapped_column(PathString)

    photos: Mapped[list[Photo]] = relationship(back_populates="root", cascade="all, delete-orphan")


PhotoStatus = Literal["ok", "error"]  # ok: read and embedded; error: unreadable, with the reason
OK: PhotoStatus = "ok"
ERROR: PhotoStatus = "error"


class Photo(Base):
    """One file on disk. Identity for vectors is content_hash; several files may share one."""

    __tablename__ = "photos"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    root_id: Mapped[int] = mapped_column(ForeignKey("roots.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(PathString, unique=True)
    content_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime: Mapped[float] = mapped_column(Float)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    format: Mapped[str | None] = mapped_column(String(16))
    taken_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    camera_make: Mapped[str | None] = mapped_column(String(128))
    camera_model: Mapped[str | None] = mapped_column(String(128))
    gps_lat: Mapped[float | None] = mapped_column(Float)
    gps_lon: Mapped[float | None] = mapped_column(Float)
    orientation: Mapped[int | None] = mapped_column(Integer)
    caption: Mapped[str] = mapped_column(Text, default="")
    caption_source: Mapped[str | None] = mapped_column(String(16))  # user | sidecar | embedded
    sidecar_mtime: Mapped[float | None] = mapped_column(Float)
    # the RAW file of the same shot, when this is the JPEG of a RAW+JPEG pair (indexing/pairs.py)
    raw_path: Mapped[str | None] = mapped_column(PathString)
    model_id: Mapped[str | None] = mapped_column(String(512))  # the model whose collection holds its vector
    status: Mapped[str] = mapped_column(String(16), default=OK, index=True)  # a PhotoStatus
    error: Mapped[str | None] = mapped_column(Text)
    indexed_at: Mapped[datetime | None] = mapped_column(DateTime)
    # set when a scan finds the file gone but keeps the row: a mass deletion waits for a second scan
    missing_since: Mapped[datetime | None] = mapped_column(DateTime, index=True)  # every search asks

    root: Mapped[Root] = relationship(back_populates="photos")

    @classmethod
    def indexed_with(cls, model_id: str) -> ColumnElement[bool]:
        """Rows searchable with this model: read fine and embedded into its collection (the one
        predicate every query, count and reconciliation uses)."""
        return and_(cls.status == OK, cls.model_id == model_id)

    @property
    def camera(self) -> str | None:
        """Make and model as one string, without the make repeated (\"Canon Canon EOS\")."""
        return Photo.camera_name(self.camera_make, self.camera_model)

    @staticmethod
    def camera_name(make: str | None, model: str | None) -> str | None:
        """What :attr:`camera` shows, from the two columns (for joins that read plain rows)."""
        make, model = (make or "").strip(), (model or "").strip()
        if model.lower().startswith(make.lower()):
            make = ""
        return " ".join(p for p in (make, model) if p) or None


class Tag(Base):
    """A label on a photo's content (so copies share it), per model, with the score that earned it."""

    __tablename__ = "tags"
    __table_args__ = (UniqueConstraint("content_hash", "model_id", "label", name="uq_tags_hash_model_label"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    model_id: Mapped[str] = mapped_column(String(512))
    label: Mapped[str] = mapped_column(String(128), index=True)
    score: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(16), default="zeroshot")


class ModelState(Base):
    """The library's one row saying which model answers queries (``active_model``), which one a switch
    is building (``target_model``, None when none runs), and the ``model`` setting last acted on, so a
    changed setting starts a switch once (catalog/modelstate.py)."""

    __tablename__ = "model_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    active_model: Mapped[str] = mapped_column(String(4096))
    target_model: Mapped[str | None] = mapped_column(String(4096))
    model_setting: Mapped[str | None] = mapped_column(String(4096))
    switch_started: Mapped[datetime | None] = mapped_column(DateTime)


class PayloadPending(Base):
    """A point whose payload the store may not match the catalog on: written (and committed) before an
    operation touches payloads, deleted once the store has flushed them. A crash in between leaves the
    row, and the next writer rewrites that payload from the catalog (catalog/pending.py)."""

    __tablename__ = "payload_pending"

    content_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_id: Mapped[str] = mapped_column(String(512), primary_key=True)
    token: Mapped[str] = mapped_column(String(32), primary_key=True)  # the operation's (pending.new_token)
    # a caption edit's: the replay re-embeds the caption vector from the catalog's caption too
    caption: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
