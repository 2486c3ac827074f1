"""One photo library: its catalog, vector store and model, opened on demand, with the single-writer lock."""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path
from typing import IO

from photoman.catalog import Catalog
from photoman.config import Settings
from photoman.embedding.model import ClipEncoder, Notify, load_encoder, model_dim, model_identity
from photoman.errors import StoreBusyError
from photoman.vectors import VectorStore, open_store


class DataDirLock:
    """Exclusive advisory lock on the data dir, so only one process writes (or opens Qdrant Edge)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] | None = None

    def acquire(self, purpose: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")  # noqa: SIM115 - held for the process's lifetime
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another photoman process"
            fh.close()
            raise StoreBusyError(
                f"the library in {self.path.parent} is busy: {holder} holds it; "
                "wait for it to finish (or stop it), then retry"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} ({purpose})")
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            self._fh.seek(0)
            self._fh.truncate()
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def open_encoder(settings: Settings, notify: Notify = _stderr) -> ClipEncoder:
    """The CLIP encoder these settings ask for (model, device, precision, int8 text tower)."""
    return load_encoder(
        settings.model,
        settings.device,
        settings.precision,
        notify=notify,
        text_int8=bool(settings.text_int8),
        cache_dir=settings.cache_dir,
    )


class Library:
    """Everything a command needs, opened lazily: torch and the model load only when something embeds."""

    def __init__(
        self,
        settings: Settings,
        purpose: str = "photoman",
        *,
        write: bool = True,
        allow_busy: bool = False,
        notify: Notify = _stderr,
    ) -> None:
        self.settings = settings
        self.notify = notify
        self.model_id = model_identity(settings.model)
        self._lock = DataDirLock(settings.lock_file)
        self.write = write
        self.busy: StoreBusyError | None = None
        if write or not settings.qdrant_url:
            # one writer per library; and Qdrant Edge admits a single opener, readers included
            try:
                self._lock.acquire(purpose)
            except StoreBusyError as exc:
                if not allow_busy:
                    raise
                self.busy = exc  # catalog readable (SQLite WAL), vector store not
        try:
            self.catalog = Catalog(settings.catalog)
        except BaseException:
            self._lock.release()
            raise
        self._encoder: ClipEncoder | None = None
        self._store: VectorStore | None = None

    @property
    def dim(self) -> int:
        return self._encoder.dim if self._encoder else model_dim(self.settings.model)

    @property
    def store(self) -> VectorStore:
        if self.busy is not None:
            raise self.busy
        if self._store is None:
            self._store = open_store(self.settings, self.model_id, self.dim)
        return self._store

    @property
    def encoder(self) -> ClipEncoder:
        if self._encoder is None:
            self._encoder = open_encoder(self.settings, self.notify)
        return self._encoder

    @property
    def encoder_loaded(self) -> bool:
        return self._encoder is not None

    def close(self) -> None:
        try:
            if self._store is not None:
                self._store.close()
                self._store = None
            self.catalog.close()
        finally:
            self._lock.release()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
