"""One photo library: its catalog, vector store and model, opened on demand, with the single-writer lock."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING

from photoman.config import Settings
from photoman.embedding.checkpoint import model_identity
from photoman.errors import PhotomanError, StoreBusyError

if TYPE_CHECKING:
    from photoman.catalog.lease import WriterLease
    from photoman.embedding.cached import CachedEncoder
    from photoman.embedding.model import ClipEncoder
    from photoman.embedding.query_text import QueryTextEncoder
    from photoman.indexing.switch import Target
    from photoman.vectors import VectorStore

log = logging.getLogger(__name__)


class DataDirLock:
    """Exclusive advisory lock on the data dir, so only one process writes (or opens Qdrant Edge)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[bytes] | None = None

    def acquire(self, purpose: str) -> None:
        try:  # a data dir that cannot be made (another user's path, a read-only disk) is one line
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(self.path, "a+b", buffering=0)  # noqa: SIM115 - held for the process's lifetime
        except OSError as exc:
            raise PhotomanError(
                f"cannot use the data dir {self.path.parent}: {exc.strerror or exc} (set PHOTOMAN_DATA_DIR "
                "or --data-dir to a folder you can write)"
            ) from None
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fh.fileno(), 4096, 0).decode(errors="replace").strip()
            fh.close()
            raise StoreBusyError(
                f"the library in {self.path.parent} is busy: {holder or 'another photoman process'} "
                "holds it; wait for it to finish (or stop it), then retry"
            ) from None
        # who holds it, for the "busy" message: worth a try, never worth failing on a full disk
        with contextlib.suppress(OSError):
            os.ftruncate(fh.fileno(), 0)
            os.pwrite(fh.fileno(), f"pid {os.getpid()} ({purpose})".encode(), 0)
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fh.fileno(), 0)
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def open_encoder(settings: Settings) -> ClipEncoder:
    """The CLIP encoder these settings ask for (model, device, precision, int8 text tower), loaded
    through transformers; what it has to say (a download, a one-time export, a fallback) goes to the
    ``photoman`` loggers. :func:`cached_encoder` comes first where the caches hold it."""
    from photoman.embedding.model import load_encoder

    return load_encoder(
        settings.model,
        settings.device,
        settings.precision,
        text_int8=bool(settings.text_int8),
        cache_dir=settings.cache_dir,
    )


def cached_encoder(settings: Settings, text: QueryTextEncoder | None = None) -> CachedEncoder | None:
    """The encoder from this machine's caches alone (torch-free), or None when the model must load."""
    from photoman.embedding.cached import open_cached

    s = settings
    return open_cached(s.model, s.device, s.precision, bool(s.text_int8), s.cache_dir, text)


def _check_model(model: str) -> None:
    """A `model` setting that names another model than the library's starts a switch to it: only if its
    checkpoint is here and readable (no network; `photoman models use` downloads one)."""
    from photoman.embedding.model import ModelNotCached, model_dim

    try:
        model_dim(model)
    except ModelNotCached:
        raise PhotomanError(
            f"model {model} is not downloaded yet: `photoman models use {model}` downloads it and switches "
            "this library to it"
        ) from None


class Models:
    """The model side of a library, loaded on first use and at most once (threads may race for it).

    ``text_encoder`` answers query texts from the cached torch-free pack when there is one, so a
    text query never waits for (or imports) torch; ``encoder`` is the full CLIP model.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model_id = model_identity(settings.model)
        self._encoder: ClipEncoder | CachedEncoder | None = None
        self._text: QueryTextEncoder | None = None
        self._text_tried = False
        self._cache_tried = False
        self._model_lock = threading.RLock()

    @property
    def encoder(self) -> ClipEncoder | CachedEncoder:
        """From this machine's caches when they hold everything it runs (no torch: seconds and half a
        GB less), else loaded through transformers."""
        if self._encoder is None:
            with self._model_lock:
                if self._encoder is None and not self.encoder_from_cache():
                    self._encoder = open_encoder(self.settings)
        assert self._encoder is not None
        return self._encoder

    def encoder_from_cache(self) -> bool:
        """Open the encoder from the caches if they hold it (no torch); False when it has to load."""
        if self._encoder is None and not self._cache_tried:
            with self._model_lock:
                if self._encoder is None and not self._cache_tried:
                    self._encoder = cached_encoder(self.settings, self._text_pack())
                    self._cache_tried = True
        from photoman.embedding.cached import CachedEncoder

        return isinstance(self._encoder, CachedEncoder)

    def prefetch_text(self) -> None:
        """Open the cached text encoder in a thread: a one-shot query overlaps its ONNX session set-up
        (which mostly releases the GIL) with opening the catalog and the vector store."""
        if not self._text_tried:
            self._prefetch = threading.Thread(target=self._text_pack, name="photoman-text-pack", daemon=True)
            self._prefetch.start()

    def _join_prefetch(self) -> None:
        """Wait for the prefetch thread: a process that exits (a busy library's one-line error) while
        it is inside ONNX Runtime's session set-up crashed in the interpreter's teardown (SIGSEGV)."""
        thread = getattr(self, "_prefetch", None)
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _pack_used(self) -> bool:
        s = self.settings
        # on a CPU the model's texts go through this very pack whatever runs its images
        # (embedding/model.py: load_encoder); fp16 asks for a GPU
        return bool(s.text_int8) and s.device in ("auto", "cpu") and s.precision != "fp16"

    def _text_pack(self) -> QueryTextEncoder | None:
        if not self._text_tried:
            with self._model_lock:
                if not self._text_tried:
                    s = self.settings
                    if self._pack_used():
                        from photoman.embedding.query_text import open_pack

                        self._text = open_pack(s.cache_dir, s.model)
                    self._text_tried = True
        return self._text

    @property
    def text_encoder(self) -> ClipEncoder | CachedEncoder | QueryTextEncoder:
        """What encodes query texts: the loaded model's own fast path, else the cached pack, else load."""
        if self._encoder is not None:
            return self._encoder
        return self._text_pack() or self.encoder

    @property
    def encoder_loaded(self) -> bool:
        return self._encoder is not None

    @property
    def torch_loaded(self) -> bool:
        """Whether the loaded encoder runs in torch (then imported whole); False before it loads."""
        from photoman.embedding.model import ClipEncoder

        return isinstance(self._encoder, ClipEncoder) or bool(getattr(self._encoder, "uses_torch", False))

    @property
    def dim(self) -> int:
        known = self.dim_if_known()
        # first use of a hub model: it downloads (and says so) as it loads
        return known if known is not None else self.encoder.dim

    def dim_if_known(self) -> int | None:
        """The vector size when it is known without loading or downloading anything (for status)."""
        if self._encoder is not None:
            return self._encoder.dim
        if self._text is not None:
            return self._text.dim
        if self._pack_used():
            from photoman.embedding.query_text import pack_dim

            dim = pack_dim(self.settings.cache_dir, self.settings.model)
            if dim is not None:
                return dim
        from photoman.embedding.model import ModelNotCached, model_dim

        try:
            return model_dim(self.settings.model)
        except ModelNotCached:
            return None

    def close(self) -> None:
        pass

    def __enter__(self) -> Models:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Library(Models):
    """Everything a command needs, opened lazily: torch and the model load only when something embeds.

    One process writes a library at a time. With a SQLite catalog the data-dir lock says who; with a
    shared (PostgreSQL) catalog the writer also holds the catalog's writer lease (catalog/lease.py),
    which every machine sees. ``standby=True``: when another process holds that lease, open anyway,
    read-only (``write`` is False, ``writer_busy`` says who writes), and call :meth:`take_over` now
    and then to become the writer once that process is gone.
    """

    def __init__(
        self,
        settings: Settings,
        purpose: str = "photoman",
        *,
        write: bool = True,
        allow_busy: bool = False,
        standby: bool = False,
        prefetch_text: bool = False,
    ) -> None:
        super().__init__(settings)
        if prefetch_text:
            self.prefetch_text()
        from photoman.pathmap import PathMap

        self.path_map = PathMap.from_settings(settings)  # this machine's mounts of a shared library's roots
        self._lock = DataDirLock(settings.lock_file)
        self.write = write
        self.busy: StoreBusyError | None = None
        self.lease: WriterLease | None = None
        self.writer_busy: StoreBusyError | None = None
        if write or not settings.qdrant_url:
            # one writer per library; and Qdrant Edge admits a single opener, readers included
            try:
                self._lock.acquire(purpose)
            except StoreBusyError as exc:
                if not allow_busy:
                    self._join_prefetch()
                    raise
                self.busy = exc  # catalog readable (SQLite WAL), vector store not
        try:
            from photoman.catalog import Catalog
            from photoman.catalog.lease import is_shared

            self.catalog = Catalog(settings.catalog, self.path_map)
            if is_shared(settings.catalog):
                self._open_lease(purpose, standby or allow_busy)
            self._resolve_model()
        except BaseException:
            self._join_prefetch()
            if self.lease is not None:
                self.lease.close()
            if hasattr(self, "catalog"):
                self.catalog.close()
            self._lock.release()
            raise
        self._store: VectorStore | None = None
        self._store_lock = threading.Lock()
        self._target: Target | None = None
        # held by whoever starts, builds, finishes or cancels a switch (indexing/switch.py)
        self.switch_lock = threading.RLock()

    def _resolve_model(self) -> None:
        """Search with the library's active model, whatever the setting says; a setting that changed
        since it was last acted on starts a switch to it (catalog/modelstate.py)."""
        from photoman.catalog.modelstate import resolve

        self.requested_model = self.model_id
        writable = self.busy is None and (self.lease is None or self.write)  # not a shared library's standby
        state = resolve(self.catalog, self.model_id, write=writable, check=_check_model)
        if state.active != self.model_id:
            # the text encoder prefetched for the setting's model is not this library's: start over
            self._join_prefetch()
            with self._model_lock:
                self._encoder, self._text, self._text_tried, self._cache_tried = None, None, False, False
            self.settings = self.settings.with_overrides(model=state.active)
            self.model_id = state.active
        self.target_name: str | None = state.target

    @property
    def target(self) -> Target | None:
        """The model a switch is building, with its collection (opened on first use); None when none runs."""
        if self.target_name is None:
            return None
        if self._target is None or self._target.model_id != self.target_name:
            from photoman.indexing.switch import Target

            with self.switch_lock:
                if self._target is not None:
                    self._target.close()
                self._target = Target(self, self.target_name)
        return self._target

    def captions_changed(self, hashes: Iterable[str]) -> None:
        """These points' captions may have changed in the catalog (an edit, a sidecar, a file removed):
        a switch this process builds embeds them again before it completes (indexing/switch.py; one
        in another process, or resumed after a crash, embeds every caption it did not write itself)."""
        if self._target is not None:  # only one this process has loaded: none other wrote anything here
            self._target.captioned.difference_update(hashes)

    def set_target(self, name: str | None) -> None:
        """Start building ``name`` (an identity) in the background, or cancel the switch (None)."""
        from photoman.catalog.modelstate import set_target

        with self.switch_lock:
            state = set_target(self.catalog, name)
            if self._target is not None and self._target.model_id != state.target:
                self._target.close()
                self._target = None
            self.target_name = state.target

    def adopt(self, target: Target) -> None:
        """The switch is committed: search with the target's model and collection from now on.

        Called with ``switch_lock`` held (maybe by another thread: the daemon runs this on its query
        thread while the indexer thread waits for it)."""
        with self._store_lock, self._model_lock:
            old = self._store
            self.settings = self.settings.with_overrides(model=target.model_id)
            self.model_id = target.model_id
            self._encoder = target.models._encoder
            self._text, self._text_tried = target.models._text, target.models._text_tried
            self._store = target.take_store()
            self._target, self.target_name = None, None
        if old is not None:
            old.close()

    def _open_lease(self, purpose: str, standby: bool) -> None:
        from photoman.catalog.lease import WriterLease

        self.lease = WriterLease(self.settings.catalog, purpose)
        if self.busy is not None:  # the data dir is busy here (allow_busy): read-only
            self.write, self.writer_busy = False, self.busy
        elif self.write and not self.lease.try_acquire():
            busy = self.lease.busy_error()
            if not standby:
                raise busy
            self.write, self.writer_busy = False, busy
        self.catalog.guard_writes(self._check_writer)

    def _check_writer(self) -> None:
        """Before each writing transaction on a shared catalog: still the lease holder, or refuse."""
        assert self.lease is not None
        if not self.write:
            raise self.writer_busy or self.lease.busy_error()
        from photoman.catalog.lease import LeaseLost

        try:
            self.lease.verify()
        except LeaseLost as exc:  # someone else writes now: this process is a standby from here on
            self.write, self.writer_busy = False, exc
            raise

    def take_over(self) -> bool:
        """For a standby: take the writer lease if it is free; True once this process is the writer.

        Cheap (one query, never blocks): poll it every few seconds. Always True for a writer."""
        if self.write:
            return True
        if self.lease is None or self.busy is not None or not self.lease.try_acquire():
            return False
        self.write, self.writer_busy = True, None
        self.mend()  # what the last writer left halfway, before this one writes anything
        return True

    def check_lease(self) -> bool:
        """For a writer: whether it still holds the writer lease (one round trip on a shared catalog).

        The daemon asks every few seconds, so a lost lease (its connection cut, someone else took it)
        turns it into a standby at once rather than at its next write. A dead connection with the
        lease still free is mended (the lease taken again). False, and read-only from here on, when it
        is gone; always True for a writer of a SQLite catalog, always False for a standby."""
        if not self.write:
            return False
        if self.lease is None:
            return True
        from photoman.catalog.lease import LeaseLost

        try:
            self.lease.verify()
        except LeaseLost as exc:
            self.write, self.writer_busy = False, exc
            return False
        return True

    def writer_name(self) -> str | None:
        """Who holds a shared catalog's writer lease now ("pid 4242 on gpu-box (photoman watch)"); None
        for a SQLite catalog, when nobody holds it, or while the catalog cannot be reached."""
        if self.lease is None:
            return None
        if self.write:
            return self.lease.name
        from sqlalchemy.exc import DBAPIError

        try:
            return self.lease.holder()
        except DBAPIError:
            return None

    def read_only_error(self) -> StoreBusyError:
        """What a standby says to a request that would write: who writes the library now, instead."""
        if self.lease is not None and self.busy is None:
            return self.lease.busy_error()
        return self.writer_busy or self.busy or StoreBusyError("this process opened the library read-only")

    @property
    def store(self) -> VectorStore:
        if self.busy is not None:
            raise self.busy
        if self._store is None:
            with self._store_lock:
                if self._store is None:
                    from photoman.vectors import open_store

                    store = open_store(self.settings, self.model_id, self.dim)
                    if self._may_mend():
                        self._replay_pending(store)
                    self._store = store
        return self._store

    def _may_mend(self) -> bool:
        """Whether this process alone writes the store now: the writer, or a reader of an embedded store
        (it holds the data-dir lock too); never a shared catalog's standby or a read-only catalog."""
        holds_lock = self.write or not self.settings.qdrant_url
        return holds_lock and (self.lease is None or self.write) and not self.catalog.read_only

    def _replay_pending(self, store: VectorStore, store_was_open: bool = False) -> None:
        """Payloads an operation killed halfway left out of step with the catalog are rewritten before
        anything reads or writes the store (catalog/pending.py; one empty query otherwise)."""
        from photoman.catalog.payload import caption_vectors
        from photoman.catalog.pending import replay
        from photoman.diskspace import check_space

        try:
            keep = [self.target_name] if self.target_name else []
            space = lambda: check_space(self.settings)  # noqa: E731 - run only when there is work
            captions = lambda s, hashes: caption_vectors(self, s, hashes)  # noqa: E731 - loads the model
            replay(self.catalog, store, self.model_id, keep, space, store_was_open, captions)
        except Exception as exc:  # noqa: BLE001 - a full disk, a lost lease: a later open or mend retries
            log.warning("could not bring search data in line with the catalog yet: %s", exc)

    def mend(self) -> None:
        """What :meth:`store`'s open does, for a process that keeps the store open: the daemon on taking
        over the writer lease and from its idle loop (an operation that failed halfway, or a writer on
        another machine killed halfway, left records). Cheap: one query on an empty table."""
        if self._store is not None and self.busy is None and self._may_mend():
            self._replay_pending(self._store, store_was_open=True)

    def close(self) -> None:
        self._join_prefetch()
        try:
            if self._target is not None:
                self._target.close()
                self._target = None
            if self._store is not None:
                self._store.close()
                self._store = None
            self.catalog.close()
        finally:
            try:
                if self.lease is not None:
                    self.lease.close()
            finally:
                self._lock.release()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
