"""One API over a photo library, used by the CLI, the TUI and scripts (``photoman.open()``).

A :class:`Client` talks to the library's daemon when one answers, starts one on demand when the
settings allow it (``autostart``, on by default), and otherwise opens the stores in this process.
Either way each method returns the same JSON-ready values: the daemon serves every request from
:data:`photoman.ops.OPS`, and the in-process path calls those very functions.

This module imports only what talking to the daemon needs (no numpy, torch, SQLAlchemy, Qdrant
or Pillow): a `photoman find` answered by a running daemon costs little more than starting Python.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from photoman.config import Settings, load_settings
from photoman.errors import BadInputError, PhotomanError, StoreBusyError
from photoman.service import protocol

if TYPE_CHECKING:
    from photoman.library import Models
    from photoman.search.query import Query

# notices (the daemon started here) go to the `photoman` loggers; each front end shows them its way
Progress = Callable[[int, int], None]

# ops that start the daemon when none runs (with autostart on); the rest run in-process then
AUTOSTART_OPS = frozenset(
    {"find", "caption", "photo", "heatmap", "tags", "tag", "dupes", "classify", "locate", "embed"}
    | {"models_use"}
)
LONG_OPS = {"tag": 3600.0, "dupes": 3600.0, "index": 60.0, "models_use": 3600.0}  # a model may download


def _strings(value: Any, name: str, paths: bool = False) -> list[Any]:
    """A list argument as a list: one string (or path) given alone is a list of one, not of its
    characters; anything else but strings is refused as the user's mistake."""
    kinds = (str, os.PathLike) if paths else (str,)
    if value is None:
        return []
    if isinstance(value, kinds):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, kinds) for v in value):
        return list(value)
    what = "paths" if paths else "strings"
    raise BadInputError(f"{name} must be a list of {what} (or one), not {value!r:.60}")


def _text(value: Any, name: str) -> None:
    """An option that takes text: None or a string, nothing else (a number is the caller's mistake)."""
    if value is not None and not isinstance(value, str):
        raise BadInputError(f"{name} must be a string, not {value!r:.60}")


def _abs(path: str | os.PathLike[str]) -> str:
    """Absolute, as the daemon needs; an empty path is refused (it would mean this process's folder)."""
    if not isinstance(path, (str, os.PathLike)):
        raise BadInputError(f"a path must be a string, not {path!r:.60}")
    if not os.fspath(path):
        raise BadInputError("an empty path (it would mean the current folder)")
    return os.path.abspath(os.path.expanduser(os.fspath(path)))


class Client:
    """A library, through its daemon or in-process; use as a context manager (or call :meth:`close`).

    ``daemon``: None follows the ``autostart`` setting (use a running daemon, start one for the
    commands that need the model); True always goes through a daemon (starting it if needed);
    False never uses one (opens the stores here, as ``--no-daemon`` does).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        daemon: bool | None = None,
        purpose: str = "photoman",
        before_library: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        # called once, before the library opens in this process or a daemon is started (what may log
        # notices): a front end attaches its notice handler then, so a query the daemon answers never
        # imports logging
        self.before_library = before_library
        self.purpose = purpose
        self.want_daemon = daemon
        self.mode: str | None = None  # "daemon" | "direct" once the first request decided it
        self.started_pid: int | None = None
        self._busy_said = False  # the "daemon is busy" notice, once per client
        self._lib: Models | None = None
        self._lib_kind = ""  # "models" | "read" | "write" | "busy-ok"
        self._closed = False

    # ---- transport ----
    @property
    def socket(self) -> Path:
        return self.settings.socket_path

    def daemon_running(self) -> bool:
        """Whether this library's daemon is there: answering now, or busy (said once, then waited for)."""
        state = protocol.daemon_state(self.socket)
        if state == "busy":
            self._say_busy()
        return state != "absent"

    def _use_daemon(self, op: str) -> bool:
        if self.mode is not None:
            return self.mode == "daemon"
        if self.want_daemon is False:
            self.mode = "direct"
            return False
        if self.daemon_running():
            self.mode = "daemon"
            return True
        autostart = self.want_daemon is True or (bool(self.settings.autostart) and op in AUTOSTART_OPS)
        if not autostart:
            return False  # undecided: a later op may still start the daemon
        self.start_daemon()
        self.mode = "daemon"
        return True

    def _say_busy(self) -> None:
        """One notice that the daemon answers late and why, if it can be told: the command waits."""
        import logging

        if self._busy_said:
            return
        self._busy_said = True
        self._library_here()  # the front end's notices, as for a daemon started here
        log = logging.getLogger(__name__)
        pid, stopped = protocol.busy_daemon(self.socket)
        if stopped:
            log.warning("the daemon (pid %d) is stopped (suspended, as by Ctrl-Z): `kill -CONT %d` or `fg` "
                        "in its terminal resumes it; waiting for it", pid, pid)  # fmt: skip
            return
        who = "the daemon" if pid is None else f"the daemon (pid {pid})"
        log.warning(
            "%s has not answered for %g s: it is busy (a model switch's last step, a machine under load) "
            "or stuck; waiting for it; its log: %s", who, protocol.PING_TIMEOUT, self.settings.log_file,
        )  # fmt: skip

    def _check_open(self) -> None:
        """A closed client stays closed: reopening the library unasked kept its lock until the process
        ended, and a new client in the same process then found it busy."""
        if self._closed:
            raise PhotomanError("this photoman client is closed; open another with photoman.open()")

    def _daemon_call(self, op: str, args: dict[str, Any] | None = None) -> Any:
        """A request to the daemon; one that stopped answering (or never did) is a one-line error."""
        self._check_open()
        try:
            return protocol.call(self.socket, op, args, timeout=LONG_OPS.get(op, 300.0))
        except protocol.DaemonError:
            raise
        except OSError as exc:
            raise PhotomanError(
                f"the daemon stopped answering ({exc.strerror or exc}); see {self.settings.log_file}"
            ) from None

    def connect(self) -> str:
        """Decide now (the TUI does, at start): the daemon, started unless autostart is off, or the
        stores opened in this process; returns "daemon" or "direct"."""
        if not self._use_daemon("find"):
            try:
                self._open_lib("write")
            except StoreBusyError:  # another machine writes this shared library: read it (or say why not)
                self._open_lib("read")
        assert self.mode is not None
        return self.mode

    def start_daemon(self) -> int | None:
        """Start this library's daemon in the background unless one answers; its pid if started here."""
        from photoman.service.launcher import start_daemon

        self._library_here()
        self._close_lib()  # the daemon becomes the single writer: let go of the stores first
        pid = start_daemon(self.settings)
        if pid is not None:
            self.started_pid = pid
            import logging

            log = logging.getLogger(__name__)
            log.info("started the photoman daemon (pid %d); `photoman stop` ends it", pid)
        return pid

    def _call(self, op: str, args: dict[str, Any], *, progress: Progress | None = None) -> Any:
        if self._use_daemon(op):
            return self._daemon_call(op, args)
        return self._local(op, args, progress)

    def _local(self, op: str, args: dict[str, Any], progress: Progress | None) -> Any:
        from photoman import ops

        self._check_open()
        entry = ops.OPS.get(op)
        if entry is None:
            raise BadInputError(f"{op} needs the daemon (`photoman watch --detach`)")
        # a request that only reads opens the library read-only: it answers even while another
        # machine writes a shared library
        kind = "models" if not entry.library else "write" if entry.changes(args) else "read"
        if op == "index":  # the decode workers' fork server gets ready while the library opens
            from photoman.indexing.forkserver import start

            start()
        lib = self._open_lib(kind, prefetch_text=op == "find")
        if op == "index":
            return ops.index(lib, **args, progress=progress)  # type: ignore[arg-type]
        if op == "models_use":
            return ops.models_use(lib, **args, progress=progress)  # type: ignore[arg-type]
        return ops.run(lib, op, args)  # type: ignore[arg-type]

    def _open_lib(self, kind: str, prefetch_text: bool = False) -> Models:
        rank = {"models": 0, "busy-ok": 1, "read": 2, "write": 3}
        if self._lib is not None and rank[self._lib_kind] >= rank[kind]:
            return self._lib
        self._library_here()
        self._close_lib()
        self.mode = "direct"
        if kind == "models":
            from photoman.library import Models

            self._lib = Models(self.settings)
        else:
            from photoman.library import Library

            self._lib = Library(self.settings, self.purpose, write=kind == "write",
                                allow_busy=kind == "busy-ok", prefetch_text=prefetch_text)
        self._lib_kind = kind
        return self._lib

    def _library_here(self) -> None:
        hook, self.before_library = self.before_library, None
        if hook is not None:
            hook()

    def _close_lib(self) -> None:
        if self._lib is not None:
            lib, self._lib = self._lib, None
            lib.close()
            if self.mode == "direct":
                self.mode = None

    @property
    def model_loaded(self) -> bool:
        """Whether a query pays no model load (the daemon keeps it warm; here, once loaded)."""
        if self.mode == "daemon":
            return True
        return self._lib is not None and (self._lib.encoder_loaded or self._lib._text_pack() is not None)

    def close(self) -> None:
        """Release the stores if this process opened them (a daemon it started keeps running); the
        client answers nothing more."""
        self._close_lib()
        self._closed = True

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the library's operations ----
    def search(self, query: Query) -> list[dict[str, Any]]:
        """Results of a parsed query (what `find` builds from its words and options)."""
        return self._call("find", {"query": query.check().to_json()})

    def find(self, query: str | Sequence[str] | None = None, **options: Any) -> list[dict[str, Any]]:
        """Search by description, example images (``image=``), or both, with `photoman find`'s
        options as keywords (see :func:`build_query`: ``limit``, ``since``, ``folder``, ``tags``,
        ``all``, ``threshold``, ``sort``, ``explain``…)."""
        return self.search(build_query(query, **options))

    def caption(
        self, path: str | os.PathLike[str], text: str | None = None, clear: bool = False
    ) -> dict[str, Any]:
        """A photo's caption ({path, caption, source}); with ``text`` set it, with ``clear`` drop yours."""
        return self._call("caption", {"path": _abs(path), "text": text, "clear": clear})

    def photo(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """Everything the catalog knows about one photo."""
        return self._call("photo", {"path": _abs(path)})

    def heatmap(self, path: str, content_hash: str, text: str) -> str:
        """Path of a (cached) heat-map PNG of where ``text`` is in the photo."""
        return self._call("heatmap", {"path": _abs(path), "content_hash": content_hash, "text": text})

    def status(self, errors_limit: int = 20) -> dict[str, Any]:
        """Roots, counts, the first ``errors_limit`` unreadable files, model, store sizes; ``daemon`` is
        its state, or None when none runs."""
        if self.mode != "direct" and self._use_daemon("status"):
            return self._call("status", {"errors_limit": errors_limit})
        return self._local_status(errors_limit)

    def _local_status(self, errors_limit: int = 20) -> dict[str, Any]:
        from photoman import ops

        return ops.status(self._open_lib("busy-ok"), errors_limit=errors_limit)  # type: ignore[arg-type]

    def roots(self) -> list[dict[str, Any]]:
        """The library's folders with photo counts, whether each is online, and how it is watched."""
        return self._call("roots", {})

    def remove_root(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """Forget a root and its photos (catalog and vectors; the files stay): {root, photos_removed}."""
        return self._call("roots_remove", {"path": _abs(path)})

    def relocate_root(self, old: str | os.PathLike[str], new: str | os.PathLike[str]) -> dict[str, Any]:
        """A root moved (a drive mounted elsewhere): paths follow, nothing is re-embedded."""
        return self._call("roots_relocate", {"old": _abs(old), "new": _abs(new)})

    def tags(self) -> dict[str, int]:
        """Each tag with the number of photos that carry it."""
        return self._call("tags", {})

    def tag(
        self,
        labels: Sequence[str | os.PathLike[str]] | None = None,
        *,
        no_builtin: bool = False,
        retag: bool = False,
        min_prob: float = 0.1,
        top_k: int = 5,
    ) -> dict[str, Any]:
        """Zero-shot tagging with the built-in vocabulary and/or label files."""
        files = [_abs(f) for f in labels or []]
        if no_builtin and not files:
            raise BadInputError("--no-builtin needs at least one --labels FILE")
        args = {
            "labels": files,
            "no_builtin": no_builtin,
            "retag": retag,
            "min_prob": min_prob,
            "top_k": top_k,
        }
        return self._call("tag", args)

    def dupes(
        self,
        threshold: float = 0.95,
        rotations: bool = True,
        trash: bool = False,
        dry_run: bool = False,
        only: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Duplicate groups ({groups, trashed}, and ``plan`` with ``dry_run`` or ``trash``); ``trash``
        moves the copies the plan marks (only those in ``only`` when given) to the trash."""
        args: dict[str, Any] = {
            "threshold": threshold,
            "rotations": rotations,
            "trash": trash,
            "dry_run": dry_run,
        }
        if only is not None:
            args["only"] = list(only)
        return self._call("dupes", args)

    def classify(self, path: str | os.PathLike[str], labels: Sequence[str]) -> dict[str, float]:
        """Probability of each label for one image (zero-shot)."""
        if isinstance(labels, str):  # as on the command line: "cat,dog,car"
            labels = [w.strip() for w in labels.split(",")]
        return self._call("classify", {"path": _image_arg(path), "labels": _strings(labels, "labels")})

    def locate(
        self, path: str | os.PathLike[str], text: str, out: str | os.PathLike[str] | None = None
    ) -> dict[str, Any]:
        """Where ``text`` is in the image: best box, score, and a heat-map PNG written to ``out``."""
        if not text.strip():
            raise BadInputError("empty query: say what to look for")
        return self._call(
            "locate", {"path": _image_arg(path), "text": text, "out": _abs(out) if out else None}
        )

    def embed(
        self, images: Sequence[str | os.PathLike[str]] = (), texts: Sequence[str] = ()
    ) -> dict[str, Any]:
        """Unit vectors of images and texts: {model, dim, vectors: [{input, kind, vector}]}."""
        files = [_image_arg(p) for p in _strings(images, "images", paths=True)]
        return self._call("embed", {"images": files, "texts": _strings(texts, "texts")})

    def models(self) -> dict[str, Any]:
        """Known models and this library's: downloaded, collection present, photos, current."""
        return self._call("models", {})

    def models_use(self, name: str, progress: Progress | None = None) -> dict[str, Any]:
        """Switch the library to model ``name``. A daemon (started on demand) builds its collection in
        the background and switches once it is complete (``background``: true; `status` shows how far);
        without one it all happens here, ``progress`` called as it goes. Queries keep using the old
        model until then, and its collection stays until :meth:`models_drop`."""
        name = name if os.path.isabs(name) or not os.path.isdir(name) else _abs(name)
        if self._use_daemon("models_use"):
            return self._call("models_use", {"name": name})
        return self._local("models_use", {"name": name}, progress)

    def models_drop(self, name: str) -> dict[str, Any]:
        """Delete a model's collection (not the active model's; the target's cancels the switch)."""
        name = name if os.path.isabs(name) or not os.path.isdir(name) else _abs(name)
        return self._call("models_drop", {"name": name})

    def evaluate(self, source: str | os.PathLike[str], models: Sequence[str] | None = None) -> dict[str, Any]:
        """Recall@1/5/10 and zero-shot accuracy of each model on a labelled set (a one-off job: it
        runs in this process, loading each model here)."""
        names = [str(m) for m in models or []] or None
        return self._local("eval", {"source": _abs(source), "models": names}, None)

    def index(
        self,
        folders: Sequence[str | os.PathLike[str]] | None = None,
        progress: Progress | None = None,
        force: bool = False,
    ) -> dict[str, Any]:
        """Index folders (added as roots) or every root. A running daemon takes the work over
        (``{"daemon": true, "queued": [...]}``); otherwise it runs here and returns its report."""
        from photoman.paths import check_new_root

        own = self.settings.own_folders
        folders = _strings(folders, "folders", paths=True)
        paths = [check_new_root(f, force=force, own=own) for f in folders]  # refused before any work
        args = {"folders": paths, "force": force}
        if self.mode != "direct" and self.want_daemon is not False and self.daemon_running():
            self.mode = "daemon"
            return {"daemon": True, **self._daemon_call("index", args)}
        if self.want_daemon is True:
            return {"daemon": True, **self._call("index", args)}
        return self._local("index", args, progress)

    def stop(self, timeout: float = 120.0) -> int:
        """Stop the running daemon and wait until it has let go of the library; its pid."""
        import time

        if not self.daemon_running():
            raise PhotomanError(f"no daemon is running for {self.settings.data_dir}")
        pid = int(self._daemon_call("status")["daemon"]["pid"])
        self._daemon_call("stop")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:  # the daemon releases the data-dir lock as the very last thing it does
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            if not self.daemon_running() and self._lock_free():
                break
            time.sleep(0.1)
        else:
            raise PhotomanError(f"daemon pid {pid} is still shutting down; see {self.settings.log_file}")
        self.mode = None
        return pid

    def _lock_free(self) -> bool:
        import fcntl

        try:
            with open(self.settings.lock_file, "a+") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fh, fcntl.LOCK_UN)
            return True
        except BlockingIOError:
            return False


def _image_arg(path: str | os.PathLike[str]) -> str:
    """An image path checked here (a clear error before any model loads) and made absolute."""
    p = Path(path).expanduser()
    if not p.exists():
        raise BadInputError(f"no such image file: {path}")
    if not p.is_file():
        raise BadInputError(f"not an image file: {path}")
    return _abs(p)


def build_query(
    query: str | Sequence[str] | None = None,
    *,
    image: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    mode: str = "auto",
    limit: int = 10,
    since: str | None = None,
    until: str | None = None,
    folder: str | None = None,
    camera: str | None = None,
    tags: Sequence[str] | None = None,
    near: str | None = None,
    radius: float | None = None,
    formats: Sequence[str] | None = None,
    all: bool = False,
    threshold: float | None = None,
    sort: str = "score",
    explain: bool = False,
    include_offline: bool = False,
    stdin: bytes | None = None,
) -> Query:
    """A checked :class:`Query` from `find`'s words and options (no model, no library needed)."""
    from photoman.search.filters import build_filter
    from photoman.search.query import Query, parse_query

    words = _strings(query, "query")
    images = _strings(image, "image", paths=True)
    texts = {"since": since, "until": until, "folder": folder, "camera": camera, "near": near}
    for name, value in texts.items():
        _text(value, name)
    tags, formats = _strings(tags, "tags"), _strings(formats, "formats")
    if all and threshold is not None:
        raise BadInputError("--all and --threshold contradict each other; pick one")
    q = Query(
        terms=parse_query(words, [os.fspath(i) for i in images], stdin),
        mode=mode,
        limit=limit,
        filters=build_filter(
            since, until, folder, camera, list(tags or []), near, radius, list(formats or [])
        ),
        cutoff="none" if all else "fixed" if threshold is not None else "auto",
        threshold=threshold,
        sort=sort,
        explain=explain,
        include_offline=include_offline,
    )
    return q.check()


def open_client(settings: Settings | None = None, *, daemon: bool | None = None, **overrides: Any) -> Client:
    """A :class:`Client` for the library these settings (or the config file and PHOTOMAN_* variables) name.

    ``with photoman.open() as pm: pm.find("a red car")``; keyword overrides are settings
    (``data_dir=...``, ``model=...``).
    """
    base = settings or load_settings()
    return Client(base.with_overrides(**overrides) if overrides else base, daemon=daemon, purpose="python")
