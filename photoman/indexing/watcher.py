"""Watch library roots with watchdog and collect the paths that changed, debounced.

inotify (or the platform's native API) by default; polling for roots on network filesystems
(``poll_roots``) and as the fallback when the inotify watch limit is reached.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Iterable

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from photoman.media.decode import is_image_path
from photoman.paths import is_inside

log = logging.getLogger("photoman.watcher")

INOTIFY_HINT = (
    "the inotify {what} limit is reached; raise it with "
    "`sudo sysctl fs.inotify.{sysctl}={value}` (persist it in /etc/sysctl.d/); "
    "polling {root} meanwhile"
)


def inotify_hint(err: int, root: str) -> str:
    """What to tell the user when inotify runs out: which limit, and the sysctl that raises it."""
    if err == errno.EMFILE:  # too many inotify instances (each watching program holds one or more)
        return INOTIFY_HINT.format(what="instance", sysctl="max_user_instances", value=1024, root=root)
    return INOTIFY_HINT.format(what="watch", sysctl="max_user_watches", value=524288, root=root)


class DirtyPaths:
    """Paths touched by events, each with the time of its last event; taken once quiet for ``debounce``."""

    def __init__(self) -> None:
        self._paths: dict[str, float] = {}
        self._lock = threading.Lock()
        self.changed = threading.Event()

    def add(self, path: str, when: float | None = None) -> None:
        with self._lock:
            self._paths[path] = when if when is not None else time.monotonic()
        self.changed.set()

    def take_quiet(self, debounce: float) -> list[str]:
        """Paths with no event for ``debounce`` seconds; a path inside another taken path is folded in."""
        now = time.monotonic()
        with self._lock:
            ready = sorted(p for p, t in self._paths.items() if now - t >= debounce)
            for p in ready:
                del self._paths[p]
            if not self._paths:
                self.changed.clear()
        out: list[str] = []
        for p in ready:  # sorted, so a folder comes before what is inside it
            if not any(is_inside(p, q) for q in out):
                out.append(p)
        return out

    def __len__(self) -> int:
        with self._lock:
            return len(self._paths)


# what the indexer acts on. Not opens, reads and closes without a write: a rescan lists every folder
# (an open and a close of each), which overflowed inotify's queue at 100k photos and sent watchdog
# re-walking the whole tree to re-add its watches, nearly doubling the daemon's rescan
# (attribute changes stay: `touch -d` sets the date of a photo without EXIF)
EVENTS = [FileCreatedEvent, FileDeletedEvent, FileModifiedEvent, FileAttribEvent, FileMovedEvent,
          FileClosedEvent, DirCreatedEvent, DirDeletedEvent, DirMovedEvent]  # fmt: skip


class _Handler(FileSystemEventHandler):
    def __init__(self, dirty: DirtyPaths, root: str) -> None:
        self.dirty = dirty
        self.root = root

    def on_any_event(self, event: FileSystemEvent) -> None:
        # only EVENTS arrive: no opens or reads, and no folder "modified" (a folder's mtime changes
        # with its files; the file events say what changed)
        paths = [event.src_path, getattr(event, "dest_path", "") or ""]
        for raw in paths:
            if not raw:
                continue
            path = os.fsdecode(raw)
            hidden = any(part.startswith(".") for part in os.path.relpath(path, self.root).split(os.sep))
            if (event.is_directory or is_image_path(path)) and not hidden:
                self.dirty.add(os.path.normpath(path))


class Watcher:
    """One observer per root so one root can poll while the others use inotify."""

    def __init__(self, dirty: DirtyPaths, poll_roots: Iterable[str] = (), poll_interval: float = 5.0) -> None:
        self.dirty = dirty
        self.poll_roots = {os.path.normpath(p) for p in poll_roots}
        self.poll_interval = poll_interval
        self.observers: dict[str, BaseObserver] = {}
        self.kinds: dict[str, str] = {}

    def watch(self, root: str) -> str:
        """Start watching root (idempotent); returns 'native' or 'polling'."""
        if root in self.observers:
            return self.kinds[root]
        handler = _Handler(self.dirty, root)
        if root not in self.poll_roots:
            observer: BaseObserver | None = None
            try:
                observer = Observer()  # watchdog's inotify observer opens its instance right here
                observer.schedule(handler, root, recursive=True, event_filter=EVENTS)
                observer.start()
                self.observers[root], self.kinds[root] = observer, "native"
                return "native"
            except OSError as exc:
                if observer is not None:
                    _stop(observer)
                if exc.errno not in (errno.ENOSPC, errno.EMFILE):
                    raise
                log.warning(inotify_hint(exc.errno, root))
        observer = PollingObserver(timeout=self.poll_interval)
        observer.schedule(handler, root, recursive=True, event_filter=EVENTS)
        observer.start()
        self.observers[root], self.kinds[root] = observer, "polling"
        return "polling"

    def unwatch(self, root: str) -> None:
        observer = self.observers.pop(root, None)
        self.kinds.pop(root, None)
        if observer is not None:
            _stop(observer)

    def stop(self) -> None:
        for root in list(self.observers):
            self.unwatch(root)


def _stop(observer: BaseObserver) -> None:
    try:
        observer.stop()
        if observer.is_alive():
            observer.join(timeout=5)
    except Exception:  # noqa: BLE001 - an observer that never started has nothing to stop
        pass
